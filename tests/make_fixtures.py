"""Make the tiny Hugging Face-layout checkpoints that tests/test_loader.py checks our loader against.

Development only: this script needs `transformers`, which is NOT a dependency of coevo (the committed
fixtures let the test suite check parity without it). Install it outside the project environment and run:

    /work/main/.venv/bin/python -m pip install --target /tmp/hfsite transformers
    PYTHONPATH=/tmp/hfsite .venv/bin/python tests/make_fixtures.py

For every fixture it writes tests/fixtures/<name>/ with
    config.json, model.safetensors (or model-0000k-of-0000n.safetensors + model.safetensors.index.json),
    tokenizer.json, tokenizer_config.json, generation_config.json   -- what a hub folder holds
    expected.json        -- the fixed input ids, the greedy continuation transformers produces, notes
    expected.safetensors -- "logits": the fp32 logits (1, T, V) transformers computes for the fixed input

Why the weights are perturbed: transformers initialises biases to 0 and norm weights to 1, so a loader that
forgets a bias or a norm would still match. We add noise to every parameter so each one matters.
Why the input is long: with llama3 rope scaling, original_max_position_embeddings is 32 here and the input
is 48 tokens, so positions past the original window exercise the rescaled low frequencies.
Everything is seeded: rerunning the script writes the same fixtures (up to transformers' own numerics).
"""

import json
import shutil
from pathlib import Path

import torch
import transformers
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (LlamaConfig, LlamaForCausalLM, MistralConfig, MistralForCausalLM, Qwen2Config,
                          Qwen2ForCausalLM, Qwen3Config, Qwen3ForCausalLM)

OUT = Path(__file__).parent / "fixtures"
N_INPUT = 48  # fixed input length (> 32 = the llama3 fixture's original_max_position_embeddings)
N_NEW = 20    # greedy tokens stored in expected.json

# A few hundred words of our own text to train the tiny BPE tokenizers on (ASCII, like the environments).
CORPUS = """
You are in a small shop. The shelves hold red shoes, blue shirts, a green lamp and a box of tea.
The price of the red shoes is 42 dollars. The blue shirt costs 17 dollars and comes in size small or large.
Search for a cheap lamp. Click on the first item that matches every constraint you can see on the page.
The lab has a sink, a stove, a fridge and a table. On the table there is a beaker of water and a thermometer.
Focus on the beaker. Move the beaker to the stove. Activate the stove. Wait two steps. Read the thermometer.
The water is now boiling. The task is done when the water reaches one hundred degrees.
The database has a table named orders with columns id, customer, item, price and date.
Select the customer and the total price from orders where the price is above 10, grouped by customer.
The query returned three rows. An error in the query scores zero; the result rows are compared as a multiset.
Nothing happens. You cannot do that here. Try another action, or look around the room first.
The agent reads the observation, thinks about the goal and writes one short action on a single line.
A failure that is close to success is a hard negative: it shares most steps with the expert trajectory.
Open the door to the hallway. Go to the kitchen. Pick up the cup. Put the cup in the sink. Turn on the tap.
Your score is 0.83 out of 1.0. The episode ended because the step limit was reached before the goal.
Buy the blue shirt in size large for less than 20 dollars. Check the reviews, then click buy now.
The answer is 7. The count of rows is 12. Sort by date and show the last 5 orders of each customer.
> search[blue shirt large] > click[item 3] > click[size: large] > click[buy now] > look around
> open door to kitchen > focus on beaker > SELECT customer, SUM(price) FROM orders GROUP BY customer;
"""
FIXED_TEXT = ("The agent reads the observation about the red shoes in the small shop, then it searches for a "
              "cheap lamp and a blue shirt in size large, checks the price of 42 dollars, clicks buy now, "
              "and the lab stove boils the water while the query returns three rows from the orders table.")


def train_tokenizer(kind, specials, vocab_size, bos=None, chat_template=None):
    """A tiny BPE tokenizer. kind 'byte' = byte-level like Llama-3 and Qwen; 'meta' = Metaspace like the
    sentencepiece-derived Llama-2, TinyLlama and Mistral files. bos: a special token the post-processor adds
    at the start of every encode (Llama family), or None (Qwen adds none)."""
    if kind == "byte":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    else:
        tok = Tokenizer(models.BPE(unk_token="<unk>"))
        tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="first")
        tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
        # Every printable ASCII character and the newline get a token (the real files use byte fallback).
        alphabet = [chr(c) for c in range(32, 127)] + ["\n"]
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False,
                                      initial_alphabet=alphabet)
    tok.train_from_iterator([line for line in CORPUS.splitlines() if line], trainer)
    if bos is not None:
        # BOS comes from the post-processor, as in the real files; a rendered chat must not get it twice.
        tok.post_processor = processors.TemplateProcessing(
            single=f"{bos} $A", pair=f"{bos} $A {bos} $B:1", special_tokens=[(bos, tok.token_to_id(bos))])
    return tok


# Hand-written stand-ins for the hub's jinja chat templates: our loader never runs jinja, it only looks at
# which markers a template mentions (e.g. "<|user|>" for Zephyr, "[INST]" for Mistral) to pick a format.
TEMPLATES = {
    "chatml": "{% for m in messages %}<|im_start|>{{ m.role }}\n{{ m.content }}<|im_end|>\n{% endfor %}"
              "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}",
    "llama3": "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m.role }}<|end_header_id|>\n\n"
              "{{ m.content | trim }}<|eot_id|>{% endfor %}",
    "zephyr": "{% for m in messages %}{% if m.role == 'user' %}<|user|>\n{{ m.content }}{{ eos_token }}\n"
              "{% else %}<|assistant|>\n{{ m.content }}{{ eos_token }}\n{% endif %}{% endfor %}",
    "mistral": "{{ bos_token }}{% for m in messages %}{% if m.role == 'user' %}[INST] {{ m.content }} [/INST]"
               "{% else %}{{ m.content }}{{ eos_token }}{% endif %}{% endfor %}",
}


def perturb_(model, gen):
    """Noise on every parameter so each one changes the logits: norms 1 + 0.1*randn, biases 0.1*randn,
    everything else + 0.02*randn (tied weights are one tensor, so they get noise once)."""
    seen = set()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if id(p) in seen:
                continue
            seen.add(id(p))
            noise = torch.randn(p.shape, generator=gen)
            if name.endswith("norm.weight"):
                p.copy_(1.0 + 0.1 * noise)
            elif name.endswith(".bias"):
                p.copy_(0.1 * noise)
            else:
                p.add_(0.02 * noise)


def greedy(model, ids, n_new, n_real):
    """Greedy continuation by full forward passes (no cache, so there is nothing to get wrong).
    Logits of padded vocab rows (ids >= n_real, no token behind them) are masked, as sampling must do.
    Also returns the smallest top-1 / top-2 logit margin, so a near tie that could flip is visible."""
    ids, margin = list(ids), float("inf")
    with torch.no_grad():
        for _ in range(n_new):
            logits = model(torch.tensor([ids])).logits[0, -1].float()
            logits[n_real:] = float("-inf")
            top2 = logits.topk(2).values
            margin = min(margin, (top2[0] - top2[1]).item())
            ids.append(int(logits.argmax()))
    return ids[-n_new:], margin


def write_tokenizer_files(d, tok, tok_config, gen_config):
    tok.save(str(d / "tokenizer.json"))
    (d / "tokenizer_config.json").write_text(json.dumps(tok_config, indent=2) + "\n")
    (d / "generation_config.json").write_text(json.dumps(gen_config, indent=2) + "\n")


def write_expected(d, model, tok, n_real, note):
    input_ids = tok.encode(FIXED_TEXT).ids[:N_INPUT]
    assert len(input_ids) == N_INPUT, f"fixed text too short for {d.name}: {len(input_ids)} tokens"
    with torch.no_grad():
        logits = model(torch.tensor([input_ids])).logits.float().contiguous()  # (1, T, V)
    new_ids, margin = greedy(model, input_ids, N_NEW, n_real)
    save_file({"logits": logits}, str(d / "expected.safetensors"))
    expected = {"input_ids": input_ids, "greedy_ids": new_ids, "greedy_min_margin": round(margin, 6),
                "tokenizer_size": n_real, "transformers_version": transformers.__version__, "note": note}
    (d / "expected.json").write_text(json.dumps(expected) + "\n")
    return logits, margin


def make(name, model_cls, config, tok, tok_config, gen_config, seed, shard=None, note=""):
    torch.manual_seed(seed)
    model = model_cls(config).float().eval()
    perturb_(model, torch.Generator().manual_seed(seed + 1))
    d = OUT / name
    shutil.rmtree(d, ignore_errors=True)
    d.mkdir(parents=True)
    model.save_pretrained(str(d), max_shard_size=shard) if shard else model.save_pretrained(str(d))
    write_tokenizer_files(d, tok, tok_config, gen_config)
    n_real = tok.get_vocab_size()
    logits, margin = write_expected(d, model, tok, n_real, note)
    # Reload the saved folder with transformers itself: what we wrote is what transformers reads.
    again = model_cls.from_pretrained(str(d)).float().eval()
    with torch.no_grad():
        diff = (again(torch.tensor([json.loads((d / "expected.json").read_text())["input_ids"]])).logits
                - logits).abs().max().item()
    assert diff < 1e-5, f"{name}: transformers does not reload its own save ({diff})"
    print(f"{name:14s} vocab {config.vocab_size} (tokenizer {n_real}) files "
          f"{sorted(p.name for p in d.iterdir())} min greedy margin {margin:.4f}")
    return model


def old_layout(cfg):
    """The other config.json layout (older transformers): rope_theta + rope_scaling and torch_dtype, instead
    of v5's rope_parameters {rope_type, rope_theta, ...} and dtype."""
    cfg = dict(cfg)
    rope = dict(cfg.pop("rope_parameters"))
    cfg["rope_theta"] = rope.pop("rope_theta")
    cfg["rope_scaling"] = None if rope.get("rope_type") == "default" else rope
    cfg["torch_dtype"] = cfg.pop("dtype")
    cfg["transformers_version"] = "4.45.0"
    return cfg


def new_layout(cfg):
    """v5 layout from an old one (used if this script runs under transformers v4)."""
    cfg = dict(cfg)
    rope = dict(cfg.pop("rope_scaling") or {"rope_type": "default"})
    rope["rope_type"] = rope.pop("type", rope.get("rope_type"))
    rope["rope_theta"] = cfg.pop("rope_theta")
    cfg["rope_parameters"] = rope
    cfg["dtype"] = cfg.pop("torch_dtype")
    cfg["transformers_version"] = "5.0.0"
    return cfg


def main():
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    small = dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                 num_key_value_heads=2, max_position_embeddings=256)

    # Llama-3 style: byte-level BPE, header tokens, BOS by post-processor, eos a list in generation_config.
    llama3_specials = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>", "<|end_header_id|>",
                       "<|eot_id|>"]
    tok = train_tokenizer("byte", llama3_specials, 400, bos="<|begin_of_text|>")
    ids = {s: tok.token_to_id(s) for s in llama3_specials}
    config = LlamaConfig(**small, vocab_size=416, rms_norm_eps=1e-5, tie_word_embeddings=False,
                         rope_parameters={"rope_type": "llama3", "rope_theta": 500000.0, "factor": 8.0,
                                          "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                          "original_max_position_embeddings": 32},
                         bos_token_id=ids["<|begin_of_text|>"], eos_token_id=ids["<|end_of_text|>"])
    make("llama3", LlamaForCausalLM, config, tok,
         {"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "<|begin_of_text|>",
          "eos_token": "<|eot_id|>", "chat_template": TEMPLATES["llama3"], "model_max_length": 256},
         {"bos_token_id": ids["<|begin_of_text|>"], "eos_token_id": [ids["<|end_of_text|>"], ids["<|eot_id|>"]],
          "do_sample": True, "temperature": 0.6},
         seed=1, note="llama3 rope scaling, GQA 4/2, untied, vocab padded 400 -> 416")

    # The same weights with the other config.json layout: both layouts must load to equal logits.
    src, dst = OUT / "llama3", OUT / "llama3_oldcfg"
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst)
    cfg = json.loads((src / "config.json").read_text())
    cfg = old_layout(cfg) if "rope_parameters" in cfg else new_layout(cfg)
    (dst / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    check = LlamaForCausalLM.from_pretrained(str(dst)).eval()
    ref = LlamaForCausalLM.from_pretrained(str(src)).eval()
    x = torch.tensor([json.loads((src / "expected.json").read_text())["input_ids"]])
    with torch.no_grad():
        assert (check(x).logits - ref(x).logits).abs().max() < 1e-6, "layouts disagree inside transformers"
    print(f"llama3_oldcfg  same weights, config layout: {'rope_scaling' if 'rope_scaling' in cfg else 'rope_parameters'}")

    # TinyLlama / SmolLM2-like: tied embeddings, no scaling, Metaspace BPE, Zephyr chat (<|user|> is text).
    tok = train_tokenizer("meta", ["<unk>", "<s>", "</s>"], 300, bos="<s>")
    config = LlamaConfig(**small, vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-5, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
                         bos_token_id=1, eos_token_id=2)
    make("llama_tied", LlamaForCausalLM, config, tok,
         {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "unk_token": "<unk>",
          "eos_token": {"content": "</s>", "lstrip": False, "normalized": False, "rstrip": False,
                        "single_word": False, "__type": "AddedToken"},
          "chat_template": TEMPLATES["zephyr"]},
         {"bos_token_id": 1, "eos_token_id": 2, "max_length": 2048},
         seed=2, note="tied embeddings, default rope, Zephyr chat template")

    # Qwen2: q/k/v bias hard-wired, tied, eps 1e-6, ChatML, no BOS, eos as {"content": ...} here.
    qwen_specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    tok = train_tokenizer("byte", qwen_specials, 400)
    ids = {s: tok.token_to_id(s) for s in qwen_specials}
    config = Qwen2Config(**small, vocab_size=448, rms_norm_eps=1e-6, tie_word_embeddings=True,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                         use_sliding_window=False, sliding_window=32768, max_window_layers=2,
                         bos_token_id=ids["<|endoftext|>"], eos_token_id=ids["<|endoftext|>"])
    make("qwen2", Qwen2ForCausalLM, config, tok,
         {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "pad_token": "<|endoftext|>",
          "eos_token": {"content": "<|im_end|>", "special": True}, "chat_template": TEMPLATES["chatml"]},
         {"eos_token_id": [ids["<|im_end|>"], ids["<|endoftext|>"]], "pad_token_id": ids["<|endoftext|>"]},
         seed=3, note="qwen2 qkv bias, tied, eps 1e-6, vocab padded 400 -> 448, sliding window inactive")

    # Qwen3: per-head q/k RMSNorm before RoPE; head_dim 32 although hidden/heads = 16; untied here.
    tok = train_tokenizer("byte", qwen_specials, 360)
    ids = {s: tok.token_to_id(s) for s in qwen_specials}
    config = Qwen3Config(**small, head_dim=32, vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-6,
                         tie_word_embeddings=False, attention_bias=False,
                         rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                         use_sliding_window=False, bos_token_id=ids["<|endoftext|>"],
                         eos_token_id=ids["<|im_end|>"])
    make("qwen3", Qwen3ForCausalLM, config, tok,
         {"tokenizer_class": "Qwen2Tokenizer", "bos_token": None, "eos_token": "<|im_end|>",
          "chat_template": TEMPLATES["chatml"]},
         {"eos_token_id": ids["<|im_end|>"], "pad_token_id": ids["<|endoftext|>"], "top_k": 20},
         seed=4, note="qwen3 q/k norm, head_dim 32 != 64/4, untied")

    # Mistral: [INST] chat, sliding window off (null), saved in shards with an index.
    tok = train_tokenizer("meta", ["<unk>", "<s>", "</s>", "[INST]", "[/INST]"], 320, bos="<s>")
    config = MistralConfig(**small, vocab_size=tok.get_vocab_size(), rms_norm_eps=1e-5, tie_word_embeddings=False,
                           sliding_window=None, rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
                           bos_token_id=1, eos_token_id=2)
    make("mistral", MistralForCausalLM, config, tok,
         {"tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
          "chat_template": TEMPLATES["mistral"]},
         {"bos_token_id": 1, "eos_token_id": 2},
         seed=5, shard="200KB", note="mistral, sliding_window null, sharded with an index")

    total = sum(p.stat().st_size for p in OUT.rglob("*") if p.is_file())
    print(f"transformers {transformers.__version__}; fixtures total {total / 1e6:.2f} MB in {OUT}")


if __name__ == "__main__":
    main()
