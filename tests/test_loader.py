"""Loading open Hugging Face-layout checkpoints (Llama, Mistral, Qwen2, Qwen3) into our own Transformer.

What these tests teach:
- Parity: for tiny random checkpoints of every family, saved by transformers with every parameter perturbed
  (so a forgotten bias or norm cannot hide), our logits equal transformers' to 1e-4 in fp32 and greedy
  decoding picks the same 20 tokens. The fixtures cover llama3 RoPE scaling, GQA, tied and untied heads,
  Qwen2's q/k/v biases, Qwen3's q/k norms with an explicit head_dim, a sharded Mistral, a vocabulary padded
  past the tokenizer, and both config.json layouts (rope_theta + rope_scaling, and v5's rope_parameters).
- Refusal: whatever our model cannot run exactly (another model_type, another RoPE type, an active sliding
  window shorter than the context, a missing / unexpected / misshapen tensor, a missing file) raises an
  error that names the culprit, instead of loading into something subtly wrong.
- Chat formats: rendering [obs, act, obs, act] masks exactly the action tokens and their end-of-turn token,
  puts BOS once at the start (only for families whose tokenizer adds one), and that token stops generation.
- Saving: a loaded open model saved with save_checkpoint reloads in a fresh Python process with bit-equal logits and
  the same rendering and stop tokens (the filled-in chat format is stored in config.json), and two checkpoints whose
  formats share a name ("chatml") but not their stop tokens do not overwrite each other.

The fixtures are committed (tests/make_fixtures.py made them with transformers, which these tests never need).
Run: .venv/bin/python -m pytest -q tests/test_loader.py
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

import agent
import loader
from loader import config_from_hf, load_pretrained

FIXTURES = Path(__file__).parent / "fixtures"
NAMES = ["llama3", "llama3_oldcfg", "llama_tied", "qwen2", "qwen3", "mistral"]




def expected(name):
    d = FIXTURES / name
    return json.loads((d / "expected.json").read_text()), load_file(str(d / "expected.safetensors"))["logits"]


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor([ids]))  # (1, T, V)


def copy_fixture(tmp_path, name):
    return Path(shutil.copytree(FIXTURES / name, tmp_path / name))


def edit_json(path, **changes):
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


def edit_weights(d, change):
    """Apply change(tensors: dict) to a single-file checkpoint in place."""
    tensors = load_file(str(d / "model.safetensors"))
    change(tensors)
    save_file(tensors, str(d / "model.safetensors"))


# -----------------------------------------------------------------------------
# parity with transformers

@pytest.mark.parametrize("name", NAMES)
def test_logits_match_transformers(name):
    exp, ref = expected(name)
    model, _ = load_pretrained(FIXTURES / name)
    out = logits_of(model, exp["input_ids"])
    assert out.shape == ref.shape
    # a correct fp32 loader lands near 1e-6; the usual mistakes (RoPE layout, GQA tiling, a missing bias or
    # norm, llama3 scaling ignored) move these logits by 1e-2 or more
    assert (out - ref).abs().max().item() < 1e-4


@pytest.mark.parametrize("name", NAMES)
def test_greedy_generation_matches_transformers(name):
    exp, _ = expected(name)
    model, renderer = load_pretrained(FIXTURES / name)
    ids = list(exp["input_ids"])
    for _ in range(len(exp["greedy_ids"])):
        logits = logits_of(model, ids)[0, -1]
        # padded vocabulary rows have no token: they must never be chosen (rollout masks them the same way)
        logits[renderer.vocab_size:] = float("-inf")
        ids.append(int(logits.argmax()))
    assert ids[len(exp["input_ids"]):] == exp["greedy_ids"]


def test_bf16_load_keeps_rope_in_fp32():
    exp, ref = expected("llama3")
    model, _ = load_pretrained(FIXTURES / "llama3", dtype=torch.bfloat16)
    assert model.model.embed_tokens.weight.dtype == torch.bfloat16
    assert model.rotary.inv_freq.dtype == torch.float32  # bf16 angles would be off by radians at long range
    # bf16 keeps about 3 significant digits: close to the fp32 reference, not equal
    assert (logits_of(model, exp["input_ids"]).float() - ref).abs().max() < 0.05


def test_padded_vocab_is_wider_than_the_tokenizer():
    # the checkpoint has rows no token maps to; the renderer knows the real size
    model, renderer = load_pretrained(FIXTURES / "qwen2")
    assert (model.cfg.vocab_size, renderer.vocab_size) == (448, 400)


def test_both_config_layouts_give_equal_logits(tmp_path):
    exp, _ = expected("llama3")
    new, old = (json.loads((FIXTURES / n / "config.json").read_text()) for n in ("llama3", "llama3_oldcfg"))
    assert "rope_parameters" in new and "rope_scaling" in old and "rope_parameters" not in old
    # the oldest files spell the key "type" instead of "rope_type"
    d = copy_fixture(tmp_path, "llama3_oldcfg")
    scaling = dict(old["rope_scaling"])
    scaling["type"] = scaling.pop("rope_type")
    edit_json(d / "config.json", rope_scaling=scaling)
    outs = [logits_of(load_pretrained(p)[0], exp["input_ids"]) for p in (FIXTURES / "llama3", FIXTURES / "llama3_oldcfg", d)]
    assert torch.equal(outs[0], outs[1]) and torch.equal(outs[0], outs[2])
    assert config_from_hf(new) == config_from_hf(old)


def test_config_translation_per_family():
    read = lambda n: json.loads((FIXTURES / n / "config.json").read_text())
    llama3 = config_from_hf(read("llama3"))
    assert llama3.rope_theta == 500000.0 and llama3.rope_scaling["rope_type"] == "llama3"
    assert not llama3.tie_word_embeddings and llama3.num_key_value_heads == 2
    qwen2 = config_from_hf(read("qwen2"))
    assert qwen2.attention_bias and not qwen2.qk_norm and qwen2.tie_word_embeddings  # Qwen2's bias is hard-wired
    qwen3 = config_from_hf(read("qwen3"))
    assert qwen3.qk_norm and not qwen3.attention_bias and qwen3.head_dim == 32  # head_dim != hidden / heads
    # Qwen3's own default head_dim is 128, not hidden_size // heads
    no_head_dim = {k: v for k, v in read("qwen3").items() if k != "head_dim"}
    assert config_from_hf(no_head_dim).head_dim == 128


# -----------------------------------------------------------------------------
# refusals: each names what is wrong

def test_missing_config_json(tmp_path):
    d = copy_fixture(tmp_path, "llama_tied")
    (d / "config.json").unlink()
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_pretrained(d)


def test_missing_tokenizer_json(tmp_path):
    d = copy_fixture(tmp_path, "llama_tied")
    (d / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_pretrained(d)


def test_missing_shard_file(tmp_path):
    d = copy_fixture(tmp_path, "mistral")
    (d / "model-00002-of-00003.safetensors").unlink()
    with pytest.raises(FileNotFoundError, match="model-00002-of-00003.safetensors"):
        load_pretrained(d)


@pytest.mark.parametrize("change, message", [
    ({"model_type": "gpt2"}, "model_type 'gpt2'"),
    ({"rope_parameters": {"rope_type": "yarn", "rope_theta": 1e4, "factor": 4.0}}, "rope type 'yarn'"),
    ({"rope_parameters": None, "rope_theta": 1e4, "rope_scaling": {"type": "dynamic", "factor": 2.0}},
     "rope type 'dynamic'"),
    ({"hidden_act": "gelu"}, "hidden_act 'gelu'"),
    ({"attention_bias": True}, "attention_bias"),  # Llama's attention_bias also biases o_proj
])
def test_unsupported_config_is_refused(tmp_path, change, message):
    d = copy_fixture(tmp_path, "llama3")
    edit_json(d / "config.json", **change)
    with pytest.raises(ValueError, match=message):
        load_pretrained(d)


def test_active_sliding_window_shorter_than_context_is_refused(tmp_path):
    # Mistral: any window set is active; 16 < max_position_embeddings 256 would silently change attention
    d = copy_fixture(tmp_path, "mistral")
    edit_json(d / "config.json", sliding_window=16)
    with pytest.raises(ValueError, match="sliding_window 16"):
        load_pretrained(d)
    edit_json(d / "config.json", sliding_window=4096)  # never reached within the context: plain causal attention
    load_pretrained(d)
    # Qwen: the window is only used with use_sliding_window, on layers >= max_window_layers
    d = copy_fixture(tmp_path, "qwen2")
    edit_json(d / "config.json", sliding_window=16, use_sliding_window=False, layer_types=None)
    load_pretrained(d)
    edit_json(d / "config.json", use_sliding_window=True, max_window_layers=1)
    with pytest.raises(ValueError, match="sliding_window 16"):
        load_pretrained(d)


def test_missing_tensor(tmp_path):
    d = copy_fixture(tmp_path, "qwen2")
    edit_weights(d, lambda t: t.pop("model.layers.1.self_attn.k_proj.bias"))
    with pytest.raises(ValueError, match="model.layers.1.self_attn.k_proj.bias"):
        load_pretrained(d)


def test_unexpected_tensor(tmp_path):
    d = copy_fixture(tmp_path, "qwen3")
    edit_weights(d, lambda t: t.update({"model.layers.0.self_attn.o_proj.bias": torch.zeros(64)}))
    with pytest.raises(ValueError, match=r"unexpected tensor 'model.layers.0.self_attn.o_proj.bias' in model.safetensors"):
        load_pretrained(d)


def test_wrong_shape(tmp_path):
    d = copy_fixture(tmp_path, "llama3")
    edit_weights(d, lambda t: t.update({"model.layers.0.self_attn.k_proj.weight": torch.zeros(64, 64)}))
    with pytest.raises(ValueError, match=r"'model.layers.0.self_attn.k_proj.weight' in model.safetensors has shape \[64, 64\]"):
        load_pretrained(d)


def test_error_in_a_shard_names_the_shard(tmp_path):
    d = copy_fixture(tmp_path, "mistral")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    shard = index["weight_map"]["model.norm.weight"]
    tensors = load_file(str(d / shard))
    tensors["model.norm.weight"] = torch.ones(32)
    save_file(tensors, str(d / shard))
    with pytest.raises(ValueError, match=f"'model.norm.weight' in {shard} has shape"):
        load_pretrained(d)


def test_truncated_or_inconsistent_shards(tmp_path):
    d = copy_fixture(tmp_path, "mistral")
    index = json.loads((d / "model.safetensors.index.json").read_text())
    # the index promises a tensor in a shard that does not hold it
    index["weight_map"]["model.norm.weight"] = "model-00001-of-00003.safetensors"
    (d / "model.safetensors.index.json").write_text(json.dumps(index))
    with pytest.raises(ValueError, match="'model.norm.weight' is listed for model-00001-of-00003.safetensors"):
        load_pretrained(d)
    # a download cut short
    shutil.copy(FIXTURES / "mistral" / "model.safetensors.index.json", d)
    shard = d / "model-00002-of-00003.safetensors"
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ValueError, match="model-00002-of-00003.safetensors: cannot read safetensors"):
        load_pretrained(d)


# -----------------------------------------------------------------------------
# tolerated oddities

def test_tied_model_ignores_a_stored_lm_head(tmp_path):
    exp, ref = expected("llama_tied")
    d = copy_fixture(tmp_path, "llama_tied")
    # some tied checkpoints store the head anyway; the embedding matrix is the head, the copy is ignored
    edit_weights(d, lambda t: t.update({"lm_head.weight": torch.randn(t["model.embed_tokens.weight"].shape)}))
    assert (logits_of(load_pretrained(d)[0], exp["input_ids"]) - ref).abs().max() < 1e-4


def test_untied_model_without_lm_head_is_tied_with_a_warning(tmp_path):
    d = copy_fixture(tmp_path, "llama3")
    edit_weights(d, lambda t: t.pop("lm_head.weight"))
    with pytest.warns(UserWarning, match="lm_head"):
        model, _ = load_pretrained(d)
    assert model.cfg.tie_word_embeddings and not hasattr(model, "lm_head")


def test_old_rotary_inv_freq_buffers_are_skipped(tmp_path):
    exp, ref = expected("llama3")
    d = copy_fixture(tmp_path, "llama3")
    edit_weights(d, lambda t: t.update({"model.layers.0.self_attn.rotary_emb.inv_freq": torch.ones(8)}))
    assert (logits_of(load_pretrained(d)[0], exp["input_ids"]) - ref).abs().max() < 1e-4


# -----------------------------------------------------------------------------
# chat formats

# (fixture, chat_format override or None, expected format, expected end-of-turn token, BOS token or None)
CHATS = [
    ("llama3", None, "llama3", "<|eot_id|>", "<|begin_of_text|>"),
    ("qwen2", None, "chatml", "<|im_end|>", None),
    ("qwen3", None, "chatml", "<|im_end|>", None),
    ("llama_tied", None, "zephyr", "</s>", "<s>"),
    ("mistral", None, "mistral", "</s>", "<s>"),
    ("llama_tied", "base", "base", "</s>", "<s>"),
    ("qwen2", "base", "base", "<|im_end|>", None),
]


@pytest.mark.parametrize("name, override, fmt, end, bos", CHATS)
def test_chat_format_masks_exactly_the_actions(name, override, fmt, end, bos):
    _, renderer = load_pretrained(FIXTURES / name, chat_format=override)
    tok = renderer.tokenizer
    assert renderer.chat_format == fmt
    messages = ["you are in a shop. buy blue shoes.", "search[blue shoes]", "item 3: blue shoes, 42 dollars",
                "click[item 3]"]
    ids, mask = renderer.render(messages)
    # the mask is built per message: observation pieces 0, action pieces (text + end-of-turn token) 1
    pieces = [renderer.encode_observation(messages[0], first=True), renderer.encode_action(messages[1]),
              renderer.encode_observation(messages[2]), renderer.encode_action(messages[3])]
    assert ids == sum(pieces, [])
    assert mask == [0] * len(pieces[0]) + [1] * len(pieces[1]) + [0] * len(pieces[2]) + [1] * len(pieces[3])
    # each action ends with the end-of-turn token, which stops generation, and decodes back to its text
    for act, piece in ((messages[1], pieces[1]), (messages[3], pieces[3])):
        assert piece[-1] == tok.token_to_id(end) and tok.token_to_id(end) in renderer.stop_ids
        assert renderer.decode_action(piece) == act
    # BOS exactly once, first, and only where the family's tokenizer adds one
    if bos is None:
        assert all(not tok.id_to_token(i).startswith(("<|begin", "<s>")) for i in ids)
    else:
        assert ids[0] == tok.token_to_id(bos) and ids.count(tok.token_to_id(bos)) == 1


def test_stop_ids_are_the_union_of_all_declared_eos():
    # qwen2: generation_config lists [<|im_end|>, <|endoftext|>]; tokenizer_config says {"content": "<|im_end|>"}
    _, r = load_pretrained(FIXTURES / "qwen2")
    assert r.stop_ids == {r.tokenizer.token_to_id(t) for t in ("<|im_end|>", "<|endoftext|>")}
    # llama3: config.json says <|end_of_text|>, generation_config a list, tokenizer_config the string <|eot_id|>
    _, r = load_pretrained(FIXTURES / "llama3")
    assert r.stop_ids == {r.tokenizer.token_to_id(t) for t in ("<|eot_id|>", "<|end_of_text|>")}


def test_unknown_chat_format_is_refused():
    with pytest.raises(ValueError, match="chat_format 'alpaca'"):
        load_pretrained(FIXTURES / "qwen2", chat_format="alpaca")


# -----------------------------------------------------------------------------
# a fine-tuned open model is saved with save_checkpoint and must come back with its own format

def test_same_name_formats_keep_their_own_stop_tokens():
    # both are "chatml", but Qwen2's files also declare <|endoftext|> as a stop token and Qwen3's do not.
    # A registry keyed by name would let the second load rewrite the first renderer's format.
    _, r2 = load_pretrained(FIXTURES / "qwen2")
    _, r3 = load_pretrained(FIXTURES / "qwen3")
    assert r2.chat_format == r3.chat_format == "chatml"
    assert "<|endoftext|>" in r2.spec["stop"] and "<|endoftext|>" not in r3.spec["stop"]
    assert len(r2.stop_ids) == 2 and len(r3.stop_ids) == 1
    assert set(agent.CHAT_FORMATS) == {"plain"}  # loading an open checkpoint registers nothing


RELOAD = """
import json, sys, torch
import loader
out = {}
for path in sys.argv[1:]:
    model, renderer = loader.load_checkpoint(path)
    ids, mask = renderer.render(json.loads(open(path + "/messages.json").read()))
    with torch.no_grad():
        logits = model(torch.tensor([ids]))
    out[path] = {"ids": ids, "mask": mask, "stop_ids": sorted(renderer.stop_ids), "format": renderer.chat_format,
                 "logits": logits.flatten().tolist()}
print(json.dumps(out))
"""


def test_saved_open_model_reloads_in_a_fresh_process(tmp_path):
    # a fresh process knows none of the loader's formats: the checkpoint alone must rebuild the renderer
    # (llama3: BOS in the format and llama3 RoPE scaling; qwen2: chatml with two stop tokens, q/k/v biases)
    messages = ["you are in a shop. buy blue shoes.", "search[blue shoes]", "item 3: blue shoes", "click[item 3]"]
    before = {}
    for name in ("llama3", "qwen2"):
        model, renderer = load_pretrained(FIXTURES / name)
        path = str(tmp_path / name)
        loader.save_checkpoint(path, model, renderer)
        (tmp_path / name / "messages.json").write_text(json.dumps(messages))
        ids, mask = renderer.render(messages)
        before[path] = {"ids": ids, "mask": mask, "stop_ids": sorted(renderer.stop_ids),
                        "format": renderer.chat_format, "logits": logits_of(model, ids).flatten().tolist()}
    root = Path(__file__).parent.parent
    done = subprocess.run([sys.executable, "-c", RELOAD, *before], cwd=root, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    after = json.loads(done.stdout)
    for path in before:
        assert after[path]["format"] == before[path]["format"] != "plain"
        assert after[path]["ids"] == before[path]["ids"] and after[path]["mask"] == before[path]["mask"]
        assert after[path]["stop_ids"] == before[path]["stop_ids"]
        assert after[path]["logits"] == before[path]["logits"]  # fp32 written and read back: bit-equal
