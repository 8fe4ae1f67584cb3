"""loader.py: checkpoints in the Hugging Face layout, one job kept out of model.py: open ones (Llama, Qwen, Mistral,
SmolLM2 families) loaded into our own model, and ours saved and loaded (`save_checkpoint`, `load_checkpoint`, at the
bottom). The dependencies point one way: loader.py imports model.py and agent.py, which never import this.

Loads a Hugging Face-layout folder of the Llama family (Llama 2/3.x, TinyLlama, SmolLM2, Mistral, Qwen2/2.5,
Qwen3) into our own `Transformer`, whose parameter names are exactly the Hugging Face ones, so loading is a
config translation plus a strict, shape-checked copy of each tensor. No transformers, no jinja: the tokenizer
comes from tokenizer.json through `tokenizers`, and the few chat formats are written out by hand below.

    model, renderer = load_pretrained("path/to/SmolLM2-135M-Instruct")   # fp32 on CPU by default
    renderer = renderer_from_hf("path/to/SmolLM2-135M-Instruct")          # tokenizer and chat format only

Everything here needs only `ModelConfig`, `Transformer` (model.py) and `Renderer` (agent.py). The chat format is filled
in for the checkpoint's own tokenizer and handed to the Renderer as a spec (never put into the shared
`agent.CHAT_FORMATS`, where two tokenizers' "chatml" would overwrite each other); `save_checkpoint` stores that
spec, so a fine-tuned open model reloads with exactly its format in a fresh process.
"""

import json
import os
import shutil
import warnings
from dataclasses import asdict, fields
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import Tokenizer

from agent import Renderer
from model import ModelConfig, Transformer, pick_device

# -----------------------------------------------------------------------------
# config.json -> ModelConfig

# What each family's config class assumes when config.json leaves a field out (transformers' defaults).
# qkv_bias: Qwen2 hard-wires a bias on q, k, v (its config has no field for it). qk_norm: Qwen3's per-head
# RMSNorm on q and k. Qwen3 falls back to head_dim 128, not hidden_size // heads.
FAMILIES = {
    "llama":   dict(tie_word_embeddings=False, rms_norm_eps=1e-6, head_dim=None, qkv_bias=False, qk_norm=False),
    "mistral": dict(tie_word_embeddings=False, rms_norm_eps=1e-6, head_dim=None, qkv_bias=False, qk_norm=False),
    "qwen2":   dict(tie_word_embeddings=False, rms_norm_eps=1e-6, head_dim=None, qkv_bias=True, qk_norm=False),
    "qwen3":   dict(tie_word_embeddings=False, rms_norm_eps=1e-6, head_dim=128, qkv_bias=False, qk_norm=True),
}
LLAMA3_KEYS = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")


def rope_from_hf(d):
    """(rope_theta, rope_scaling or None) from either config.json layout.
    Old layout (transformers v4): top-level rope_theta + rope_scaling {"type" or "rope_type", ...}.
    New layout (v5): rope_parameters {rope_type, rope_theta, ...}. Reading only one of them and falling back
    to theta 10000 is the classic silent bug: Llama-3 uses 500000, Qwen 1000000."""
    if d.get("rope_parameters") is not None:
        rope = dict(d["rope_parameters"])
        theta = rope.get("rope_theta", d.get("rope_theta", 10000.0))
    else:
        rope = dict(d.get("rope_scaling") or {})
        theta = d.get("rope_theta", 10000.0)  # transformers' own default when the field is absent
    rope_type = rope.get("rope_type", rope.get("type", "default"))
    if rope.get("partial_rotary_factor", 1.0) != 1.0:
        raise ValueError(f"config.json: partial_rotary_factor {rope['partial_rotary_factor']} is not supported "
                         "(our RoPE rotates the whole head)")
    if rope_type == "default":
        return float(theta), None
    if rope_type != "llama3":
        raise ValueError(f"config.json: rope type {rope_type!r} is not supported (supported: default, llama3)")
    missing = [k for k in LLAMA3_KEYS if k not in rope]
    if missing:
        raise ValueError(f"config.json: llama3 rope scaling lacks {missing}")
    return float(theta), {"rope_type": "llama3", **{k: rope[k] for k in LLAMA3_KEYS}}


def sliding_window_from_hf(d, family):
    """The attention window if any layer really uses one, else None. Mistral: active whenever sliding_window
    is set. Qwen: only with use_sliding_window, and only on layers >= max_window_layers. transformers v5 also
    writes the outcome as layer_types, which then decides."""
    window = d.get("sliding_window")
    if window is None or family == "llama":
        return None
    if d.get("layer_types") is not None:
        return window if "sliding_attention" in d["layer_types"] else None
    if family in ("qwen2", "qwen3"):
        used = d.get("use_sliding_window", False) and d.get("max_window_layers", 28) < d["num_hidden_layers"]
        return window if used else None
    return window


def config_from_hf(d: dict) -> ModelConfig:
    """Translate a Hugging Face config.json (as a dict) into our ModelConfig; refuse what our model cannot run."""
    family = d.get("model_type")
    if family not in FAMILIES:
        raise ValueError(f"config.json: model_type {family!r} is not supported (supported: {', '.join(FAMILIES)})")
    defaults = FAMILIES[family]
    need = ("vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
            "max_position_embeddings")
    absent = [k for k in need if d.get(k) is None]
    if absent:
        raise ValueError(f"config.json ({family}): missing fields {absent}")
    # Our MLP is SwiGLU with SiLU; gelu variants would load without error and compute something else.
    if d.get("hidden_act", "silu") != "silu":
        raise ValueError(f"config.json: hidden_act {d['hidden_act']!r} is not supported (only silu)")
    if d.get("mlp_bias"):
        raise ValueError("config.json: mlp_bias is true; our MLP has no biases")
    # Llama/Qwen3's attention_bias puts a bias on o_proj too; our model only has q, k, v biases (Qwen2 style).
    if d.get("attention_bias") and family != "qwen2":
        raise ValueError(f"config.json: attention_bias is true for {family}, which adds an o_proj bias "
                         "our model does not have")
    theta, scaling = rope_from_hf(d)
    # A window shorter than the context means the model never saw attention past it: we would compute
    # something it was not trained for, silently. Refuse, naming the field.
    window = sliding_window_from_hf(d, family)
    if window is not None and window < d["max_position_embeddings"]:
        raise ValueError(f"config.json: sliding_window {window} is active and shorter than "
                         f"max_position_embeddings {d['max_position_embeddings']}; our attention is full causal")
    heads = d["num_attention_heads"]
    return ModelConfig(
        vocab_size=d["vocab_size"],
        hidden_size=d["hidden_size"],
        num_hidden_layers=d["num_hidden_layers"],
        num_attention_heads=heads,
        num_key_value_heads=d.get("num_key_value_heads") or heads,  # absent or null means plain multi-head
        head_dim=d.get("head_dim") or defaults["head_dim"],          # None -> hidden_size // heads
        intermediate_size=d["intermediate_size"],
        max_position_embeddings=d["max_position_embeddings"],
        rms_norm_eps=d.get("rms_norm_eps", defaults["rms_norm_eps"]),
        rope_theta=theta,
        rope_scaling=scaling,
        attention_bias=defaults["qkv_bias"] or bool(d.get("attention_bias", False)),
        qk_norm=defaults["qk_norm"],
        tie_word_embeddings=d.get("tie_word_embeddings", defaults["tie_word_embeddings"]),
    )


# -----------------------------------------------------------------------------
# weights: safetensors, one tensor at a time, strict

def read_json(path, required=True):
    path = Path(path)
    if not path.is_file():
        if required:
            raise FileNotFoundError(f"{path.name} not found in {path.parent}")
        return {}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None


def weight_files(path):
    """{tensor name: file} from model.safetensors.index.json (sharded) or the single model.safetensors."""
    path = Path(path)
    index = path / "model.safetensors.index.json"
    if index.is_file():
        weight_map = read_json(index).get("weight_map")
        if not isinstance(weight_map, dict):
            raise ValueError(f"{index}: no weight_map")
        files = {name: path / f for name, f in weight_map.items()}
        for f in sorted(set(files.values())):
            if not f.is_file():
                raise FileNotFoundError(f"{f.name} (listed in {index.name}) not found in {path}")
        return files
    single = path / "model.safetensors"
    if not single.is_file():
        raise FileNotFoundError(f"neither model.safetensors nor model.safetensors.index.json in {path} "
                                "(.bin / .pth checkpoints are not supported)")
    with safe_open(str(single), framework="pt") as f:
        return {name: single for name in f.keys()}


def load_hf_weights_(model, files):
    """Copy every tensor of `files` ({name: file}) into the model's preallocated parameters, strictly:
    an unknown name, a missing name or a wrong shape raises with the tensor's name and file. One tensor is
    in memory at a time, so the peak stays near one copy of the model. Casts to the parameter's dtype/device."""
    params = dict(model.named_parameters())
    tied = "lm_head.weight" not in params  # a tied model has no parameter of its own for the head
    by_file = {}
    for name, f in files.items():
        by_file.setdefault(f, []).append(name)
    loaded = set()
    for f, names in by_file.items():
        try:
            st = safe_open(str(f), framework="pt")
        except Exception as e:  # safetensors raises its own error type for a truncated or corrupt file
            raise ValueError(f"{f}: cannot read safetensors ({e})") from None
        with st:
            present = set(st.keys())
            for name in names:
                # Old files store the RoPE table; we compute it. A tied model ignores a stored lm_head copy.
                if name.endswith("rotary_emb.inv_freq") or (tied and name == "lm_head.weight"):
                    continue
                if name not in params:
                    raise ValueError(f"unexpected tensor {name!r} in {f.name}: our model has no such parameter")
                if name not in present:  # the index promised it in this shard
                    raise ValueError(f"tensor {name!r} is listed for {f.name} in the index but is not in that file")
                shape = tuple(st.get_slice(name).get_shape())  # read the header only, before the data
                if shape != tuple(params[name].shape):
                    raise ValueError(f"tensor {name!r} in {f.name} has shape {list(shape)}, "
                                     f"our model expects {list(params[name].shape)}")
                with torch.no_grad():
                    params[name].copy_(st.get_tensor(name))
                loaded.add(name)
    missing = sorted(set(params) - loaded)
    if missing:
        raise ValueError(f"checkpoint lacks {len(missing)} tensor(s) our model needs: {', '.join(missing[:4])}")


# -----------------------------------------------------------------------------
# tokenizer, stop ids, chat formats

def bos_token_of(tokenizer):
    """The token the tokenizer's post-processor puts in front of every encode (Llama family), or "" (Qwen).
    The Renderer encodes without post-processing, so the format adds this token once, at the very start:
    encoding a rendered chat with special tokens on would give the model two BOS tokens."""
    with_special = tokenizer.encode("a").ids
    without = tokenizer.encode("a", add_special_tokens=False).ids
    extra = len(with_special) - len(without)
    return tokenizer.id_to_token(with_special[0]) if extra > 0 and with_special[extra:] == without else ""


def stop_ids_from_hf(path, tokenizer, config):
    """Union of the end-of-sequence ids the three files declare: generation_config.json eos_token_id (int or
    list), config.json eos_token_id, tokenizer_config.json eos_token (a string or {"content": ...}).
    Instruct models often list their end-of-turn token in only one of them."""
    ids = set()
    for value in (read_json(Path(path) / "generation_config.json", required=False).get("eos_token_id"),
                  config.get("eos_token_id")):
        ids.update([value] if isinstance(value, int) else (value or []))
    eos = read_json(Path(path) / "tokenizer_config.json", required=False).get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    if isinstance(eos, str) and tokenizer.token_to_id(eos) is not None:
        ids.add(tokenizer.token_to_id(eos))
    return sorted(i for i in ids if tokenizer.id_to_token(i) is not None)


# The open models' chat formats, written in the Renderer's terms (as in agent.CHAT_FORMATS): "{text}" is the message;
# the text before and after it is encoded on its own, so the action mask is exact. An observation carries the
# header of the assistant turn that follows it, so the model generates exactly the action text and then the
# end-of-turn token (mask 1); headers are mask 0. "{bos}" is the tokenizer's BOS ("" if it adds none), "{eos}"
# its end-of-sequence token. "base" is for base models without a chat template (our toy "plain" format needs
# the toy tokenizer's own <bos>/<act>/<eoa> tokens, which open vocabularies lack).
OPEN_CHAT_FORMATS = {
    "base":    {"first": "{bos}{text}\n", "observation": "\n{text}\n", "action": "{text}{eos}", "stop": ["{eos}"]},
    "chatml":  {"first": "{bos}<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n",
                "observation": "\n<|im_start|>user\n{text}<|im_end|>\n<|im_start|>assistant\n",
                "action": "{text}<|im_end|>", "stop": ["<|im_end|>"]},
    "llama3":  {"first": "{bos}<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>"
                         "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "observation": "<|start_header_id|>user<|end_header_id|>\n\n{text}<|eot_id|>"
                               "<|start_header_id|>assistant<|end_header_id|>\n\n",
                "action": "{text}<|eot_id|>", "stop": ["<|eot_id|>"]},
    "zephyr":  {"first": "{bos}<|user|>\n{text}{eos}\n<|assistant|>\n",
                "observation": "\n<|user|>\n{text}{eos}\n<|assistant|>\n", "action": "{text}{eos}", "stop": ["{eos}"]},
    "mistral": {"first": "{bos}[INST] {text} [/INST]", "observation": "[INST] {text} [/INST]",
                "action": "{text}{eos}", "stop": ["{eos}"]},
}


def detect_chat_format(tokenizer, tokenizer_config):
    """Pick the chat format from special tokens in the vocabulary and markers in the (never run) jinja template."""
    vocab = tokenizer.get_vocab()
    template = tokenizer_config.get("chat_template") or ""
    template = template if isinstance(template, str) else json.dumps(template)  # some files store a list
    if "<|im_start|>" in vocab:
        return "chatml"
    if "<|start_header_id|>" in vocab:
        return "llama3"
    if "[INST]" in vocab or "[INST]" in template:
        return "mistral"
    if "<|user|>" in template:
        return "zephyr"
    return "base"


def chat_format_for(chat_format, bos_token, eos_token, stop_tokens):
    """One OPEN_CHAT_FORMATS entry filled in for this tokenizer: the Renderer's `spec`. Its stop list is
    the format's end-of-turn token first (the Renderer closes every action with it) plus every
    end-of-sequence token the checkpoint's files declare."""
    if chat_format not in OPEN_CHAT_FORMATS:
        raise ValueError(f"unknown chat_format {chat_format!r} for an open checkpoint "
                         f"(known: {', '.join(OPEN_CHAT_FORMATS)})")
    spec = OPEN_CHAT_FORMATS[chat_format]
    if eos_token is None and any("{eos}" in v for v in spec.values() if isinstance(v, str)):
        raise ValueError(f"chat_format {chat_format!r} needs an end-of-sequence token; none of "
                         "tokenizer_config.json, generation_config.json, config.json names one")
    def fill(text):
        return text.replace("{bos}", bos_token).replace("{eos}", eos_token or "")
    end = fill(spec["stop"][0])
    return {"first": fill(spec["first"]), "observation": fill(spec["observation"]), "action": fill(spec["action"]),
            "stop": [end] + [t for t in stop_tokens if t != end]}


def renderer_from_hf(path, chat_format=None, config=None) -> Renderer:
    """The Renderer of a Hugging Face-layout folder: tokenizer.json, its chat format and stop tokens.
    Cheap (no weights), so a caller that only needs the renderer need not load the model."""
    path = Path(path)
    config = read_json(path / "config.json") if config is None else config
    if not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"tokenizer.json not found in {path} (only the fast-tokenizer file is supported)")
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # newer files need a recent tokenizers (>= 0.20)
        raise ValueError(f"{path / 'tokenizer.json'}: tokenizers cannot read it ({e})") from None
    tokenizer_config = read_json(path / "tokenizer_config.json", required=False)
    stop_ids = stop_ids_from_hf(path, tokenizer, config)
    eos = tokenizer_config.get("eos_token")
    eos = eos.get("content") if isinstance(eos, dict) else eos
    eos = eos if isinstance(eos, str) and tokenizer.token_to_id(eos) is not None else None
    eos = eos or (tokenizer.id_to_token(stop_ids[0]) if stop_ids else None)  # else the lowest declared eos id
    chat_format = chat_format or detect_chat_format(tokenizer, tokenizer_config)
    spec = chat_format_for(chat_format, bos_token_of(tokenizer), eos, [tokenizer.id_to_token(i) for i in stop_ids])
    # The spec depends on this tokenizer (its BOS, its stop tokens), so it goes to this Renderer only, not into a
    # registry by name: two checkpoints' "chatml" differ in stop tokens. save_checkpoint stores the spec.
    return Renderer(tokenizer, chat_format, spec)


# -----------------------------------------------------------------------------
# the whole folder

def load_pretrained(path, dtype=torch.float32, device="cpu", chat_format=None):
    """(model, renderer) from a Hugging Face-layout folder: config.json, model.safetensors (or shards with
    model.safetensors.index.json), tokenizer.json, and optionally tokenizer_config.json and
    generation_config.json. chat_format: None picks it from the tokenizer; else one of OPEN_CHAT_FORMATS.

    The checkpoint's vocab_size may exceed the tokenizer's size (rows padded for fast matmuls): rows
    >= renderer.vocab_size have no token, so sampling must set their logits to -inf (rollout does)."""
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"{path} is not a directory")
    config = read_json(path / "config.json")
    cfg = config_from_hf(config)
    renderer = renderer_from_hf(path, chat_format, config)
    if renderer.vocab_size > cfg.vocab_size:
        raise ValueError(f"tokenizer.json has {renderer.vocab_size} tokens, more than config.json "
                         f"vocab_size {cfg.vocab_size}")
    files = weight_files(path)
    # An untied config without lm_head in the files: the only sensible reading is a tied head. Say so.
    if not cfg.tie_word_embeddings and "lm_head.weight" not in files:
        warnings.warn(f"{path.name}: tie_word_embeddings is false but there is no lm_head.weight; "
                      "tying it to model.embed_tokens.weight")
        cfg.tie_word_embeddings = True
    # Built on the meta device (no time spent on a random init that is overwritten anyway), given its dtype
    # there, then allocated once on the target device: each tensor is then copied straight into its place.
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to(dtype=dtype).to_empty(device=pick_device(str(device)))  # cuda asked but absent: says so
    load_hf_weights_(model, files)  # strict: every parameter is overwritten, or it raises
    return model.eval(), renderer


# -----------------------------------------------------------------------------
# our own checkpoints: a Hugging Face-layout folder (config.json, model.safetensors, tokenizer.json)
def hf_config(cfg: ModelConfig, dtype: torch.dtype, renderer) -> dict:
    """config.json that transformers reads as LlamaForCausalLM (Qwen2/Qwen3ForCausalLM for bias / q-k norms)."""
    out = {k: v for k, v in asdict(cfg).items() if k != "qk_norm"}
    # transformers' Llama puts attention_bias on o_proj too; Qwen2 has q,k,v biases only, Qwen3 has the q/k norms
    # (with both switches on, Qwen3 adds an o_proj bias that transformers initialises to zero: same logits)
    kind = "qwen3" if cfg.qk_norm else "qwen2" if cfg.attention_bias else "llama"
    dtype_name = str(dtype).removeprefix("torch.")
    out.update(head_dim=cfg.hd, hidden_act="silu", attention_dropout=0.0, mlp_bias=False, initializer_range=0.02,
               pretraining_tp=1, use_cache=True, torch_dtype=dtype_name, dtype=dtype_name, model_type=kind,
               architectures=[{"llama": "Llama", "qwen2": "Qwen2", "qwen3": "Qwen3"}[kind] + "ForCausalLM"],
               bos_token_id=renderer.tokenizer.token_to_id("<bos>"), eos_token_id=renderer.action_end_id,
               pad_token_id=renderer.pad_id)
    if kind != "llama":
        out.update(use_sliding_window=False, sliding_window=None)
    out["coevo"] = {"chat_format": renderer.chat_format, "chat_format_spec": renderer.spec, "qk_norm": cfg.qk_norm,
                    "format_version": 1}
    return out


def _fsync(path: Path):  # data (or a folder's entries) on disk before the rename makes it visible
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def save_checkpoint(path, model, renderer) -> None:
    """Write the checkpoint folder atomically: everything goes into a temporary sibling, is fsynced, then
    renamed into place. A crash leaves either the old checkpoint or the new one, never half of one (in the
    instant between the two renames of a replacement, the old one is at .<name>.old-<pid>)."""
    path = Path(path)
    tmp, old = path.with_name(f".{path.name}.tmp-{os.getpid()}"), path.with_name(f".{path.name}.old-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    dtype = model.model.embed_tokens.weight.dtype
    (tmp / "config.json").write_text(json.dumps(hf_config(model.cfg, dtype, renderer), indent=2) + "\n")
    save_file(state, str(tmp / "model.safetensors"), metadata={"format": "pt"})
    renderer.tokenizer.save(str(tmp / "tokenizer.json"))
    for f in tmp.iterdir():
        _fsync(f)
    _fsync(tmp)
    if path.exists():
        os.rename(path, old)
    os.rename(tmp, path)
    _fsync(path.parent)
    shutil.rmtree(old, ignore_errors=True)


def _read_tensors(file: Path) -> dict:
    try:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            return {k: f.get_tensor(k) for k in f.keys()}
    except Exception as e:  # safetensors raises its own error type for truncated or corrupt files
        raise ValueError(f"{file}: cannot read safetensors ({e}); the file is truncated or corrupt") from e


def _copy_strict(model, tensors: dict, file) -> None:
    """Copy tensors into the model's parameters; any missing, unexpected or wrongly shaped tensor is an error."""
    expected = model.state_dict()
    missing, unexpected = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing:
        raise ValueError(f"{file}: missing tensor(s) {', '.join(missing[:8])}")
    if unexpected:
        raise ValueError(f"{file}: unexpected tensor(s) {', '.join(unexpected[:8])}")
    for name, t in tensors.items():
        if t.shape != expected[name].shape:
            raise ValueError(f"{file}: tensor {name} has shape {tuple(t.shape)}, the config needs "
                             f"{tuple(expected[name].shape)}")
    with torch.no_grad():
        for name, t in tensors.items():
            expected[name].copy_(t)  # state_dict() tensors share storage with the parameters


def _our_meta(path: Path) -> tuple:
    """(config.json as a dict, the renderer) of a folder written by save_checkpoint, without its weights."""
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path}: missing {name}")
    try:
        meta = json.loads((path / "config.json").read_text())
    except ValueError as e:
        raise ValueError(f"{path / 'config.json'}: not a valid model config ({e})") from e
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception for unreadable files
        raise ValueError(f"{path / 'tokenizer.json'}: cannot read it ({e})") from e
    extra = meta.get("coevo", {}) if isinstance(meta, dict) else {}
    return meta, Renderer(tokenizer, extra.get("chat_format", "plain"), extra.get("chat_format_spec"))


def load_checkpoint(path, device="cpu") -> tuple:
    """(model in eval mode, renderer) from a folder written by save_checkpoint. Strict: see _copy_strict."""
    path = Path(path)
    meta, renderer = _our_meta(path)
    try:
        extra = meta.get("coevo", {})
        cfg = ModelConfig(**{f.name: meta[f.name] for f in fields(ModelConfig) if f.name in meta},
                          qk_norm=extra.get("qk_norm", False))
    except (ValueError, TypeError, AttributeError) as e:  # unknown or inconsistent fields
        raise ValueError(f"{path / 'config.json'}: not a valid model config ({e})") from e
    tensors = _read_tensors(path / "model.safetensors")
    # built on the meta device: no time spent on random init, and torch's global RNG is left untouched
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu")
    _copy_strict(model, tensors, path / "model.safetensors")
    dtype = getattr(torch, meta.get("torch_dtype") or meta.get("dtype") or "float32")
    return model.to(device=pick_device(str(device)), dtype=dtype).eval(), renderer


# -----------------------------------------------------------------------------
# either kind: what --init-from reads
def is_ours(path) -> bool:
    """Whether a folder was written by save_checkpoint (its config.json carries our "coevo" section)."""
    config = Path(path) / "config.json"
    try:
        return config.is_file() and "coevo" in json.loads(config.read_text())
    except ValueError:
        return False


def load_renderer(path, chat_format=None) -> Renderer:
    """The renderer of a checkpoint folder, without its weights: ours (its saved tokenizer and chat format) or an
    open Hugging Face one (renderer_from_hf)."""
    return _our_meta(Path(path))[1] if is_ours(path) else renderer_from_hf(path, chat_format=chat_format)


def load_model(path, device="cpu", chat_format=None) -> tuple:
    """(model, renderer) of a checkpoint folder, ours (load_checkpoint: the shipped base, a run's checkpoint) or an
    open Hugging Face one (load_pretrained), fp32."""
    if is_ours(path):
        model, renderer = load_checkpoint(path, device=device)
        return model.float(), renderer
    return load_pretrained(path, device=device, chat_format=chat_format)
