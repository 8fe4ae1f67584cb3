"""model.py: a small Llama-family transformer and everything an agent needs around it, top to bottom:
blocks, config, model, tokenizer and transcript rendering, batched multi-turn rollouts with a KV cache,
action log-probs, checkpoint I/O. Open Hugging Face checkpoints are loaded by loader.py, which imports this
module (never the reverse: model.py imports nothing of the project).

Tensor letters used in shape comments: B rows (episodes or sequences), T tokens fed in one call, S cached key
positions, V vocabulary, D hidden size, H query heads, KV key/value heads, hd head dimension, N counted tokens.

Parameter names are exactly Hugging Face's Llama names, so our checkpoints load as `LlamaForCausalLM` and open
Llama-family checkpoints load here with a config translation only.
"""
import json
import math
import os
import shutil
import string
import sys
from contextlib import nullcontext
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint
from safetensors import safe_open
from safetensors.torch import save_file
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from tqdm import tqdm


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar that redraws 10 times a second on a terminal but every 30 s into a log file (readable logs)."""
    return tqdm(total=total, desc=desc, disable=disable, leave=False, mininterval=0.1 if sys.stderr.isatty() else 30)


# -----------------------------------------------------------------------------------------------------------
# Blocks
class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        # normalise in fp32 (squares of bf16 values lose digits), cast back, then scale: HF's order, so logits match
        x32 = x.float()
        return self.weight * (x32 * torch.rsqrt(x32.pow(2).mean(-1, keepdim=True) + self.eps)).to(x.dtype)


def rope_inv_freq(cfg) -> torch.Tensor:
    """RoPE frequencies (hd/2,) in fp32, rescaled once if the config asks for Llama-3 scaling."""
    hd = cfg.hd
    # device="cpu" on purpose: under `with torch.device("meta")` (fast loading) these must still be real numbers
    inv_freq = 1.0 / (cfg.rope_theta ** (torch.arange(0, hd, 2, dtype=torch.int64, device="cpu").float() / hd))
    scaling = cfg.rope_scaling or {}
    kind = scaling.get("rope_type", scaling.get("type", "default"))
    if kind == "default":
        return inv_freq
    if kind == "linear":
        return inv_freq / scaling["factor"]
    if kind != "llama3":
        raise ValueError(f"rope_scaling type {kind!r} is not supported (default, linear, llama3)")
    factor, low, high = scaling["factor"], scaling["low_freq_factor"], scaling["high_freq_factor"]
    old_context = scaling["original_max_position_embeddings"]
    wavelen = 2 * math.pi / inv_freq
    # Llama 3 stretches only slow rotations: a wavelength longer than old_context/low spans more than the
    # pre-training context, so it is slowed by `factor` (smooth = 0); one shorter than old_context/high encodes
    # local order and is kept (smooth = 1); in between the two are blended linearly in old_context/wavelen.
    smooth = ((old_context / wavelen - low) / (high - low)).clamp(0, 1)
    return (1 - smooth) * inv_freq / factor + smooth * inv_freq


class Rotary(nn.Module):
    """Holds the fp32 frequencies; angles are made per call from each row's own positions (ragged caches)."""
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        # not persistent: it is not a weight (and HF's state dicts do not carry it either)
        self.register_buffer("inv_freq", rope_inv_freq(cfg), persistent=False)

    def _apply(self, fn, *args, **kwargs):
        # model.to(torch.bfloat16) or to_empty() would round or wipe the frequencies, and bf16 angles are wrong
        # by whole radians at position 1000: rebuild them in fp32 on whatever device the model moved to
        super()._apply(fn, *args, **kwargs)
        self.inv_freq = rope_inv_freq(self.cfg).to(self.inv_freq.device)
        return self

    def forward(self, pos):  # pos: (B or 1, T) long
        freqs = pos[..., None].float() * self.inv_freq  # (B, T, hd/2), fp32 angles
        emb = torch.cat([freqs, freqs], -1)[:, :, None]  # (B, T, 1, hd): pairs are (i, i + hd/2), HF's layout
        return emb.cos(), emb.sin()


def rotate_half(x):
    x1, x2 = x.chunk(2, -1)
    return torch.cat([-x2, x1], -1)


class Attention(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        D, H, KV, hd = cfg.hidden_size, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.hd
        self.H, self.KV, self.hd = H, KV, hd
        # attention_bias: Qwen2's q,k,v biases (HF Llama's flag of that name would also bias o_proj; ours never)
        self.q_proj = nn.Linear(D, H * hd, bias=cfg.attention_bias)
        self.k_proj = nn.Linear(D, KV * hd, bias=cfg.attention_bias)
        self.v_proj = nn.Linear(D, KV * hd, bias=cfg.attention_bias)
        self.o_proj = nn.Linear(H * hd, D, bias=False)
        if cfg.qk_norm:  # Qwen3: one RMSNorm over hd shared by all heads, applied before the rotation
            self.q_norm, self.k_norm = RMSNorm(hd, cfg.rms_norm_eps), RMSNorm(hd, cfg.rms_norm_eps)

    def forward(self, x, cos, sin, mask, cache, layer):
        B, T, _ = x.shape
        q = self.q_proj(x).view(B, T, self.H, self.hd)  # (B, T, H, hd)
        k = self.k_proj(x).view(B, T, self.KV, self.hd)  # (B, T, KV, hd)
        v = self.v_proj(x).view(B, T, self.KV, self.hd)
        if hasattr(self, "q_norm"):
            q, k = self.q_norm(q), self.k_norm(k)
        # rotate in the activations' dtype with angles made in fp32, as HF does
        q = q * cos.to(q.dtype) + rotate_half(q) * sin.to(q.dtype)
        k = k * cos.to(k.dtype) + rotate_half(k) * sin.to(k.dtype)
        q = q.transpose(1, 2)  # (B, H, T, hd)
        if cache is not None:  # store the rotated keys at each row's own offset, read back all S positions
            k, v = cache.write(layer, k, v)  # (B, KV, S, hd) each, views into the cache
        else:
            k, v = k.transpose(1, 2), v.transpose(1, 2)  # (B, KV, T, hd)
        n_rep = self.H // self.KV
        if mask is None:  # no cache: plain causal attention; right padding never reaches earlier tokens
            # GQA: kv head j serves query heads j*n_rep .. j*n_rep+n_rep-1, i.e. repeat_interleave, NOT repeat
            k, v = k.repeat_interleave(n_rep, dim=1), v.repeat_interleave(n_rep, dim=1)  # (B, H, T, hd)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            # the same grouping without copying the cache every token: the n_rep query heads of kv head j
            # become n_rep*T query rows against it, and the mask is repeated to match those rows
            y = F.scaled_dot_product_attention(q.reshape(B, self.KV, n_rep * T, self.hd), k, v,
                                               attn_mask=mask.repeat(1, 1, n_rep, 1)).view(B, self.H, T, self.hd)
        return self.o_proj(y.transpose(1, 2).reshape(B, T, self.H * self.hd))


class MLP(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.gate_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.up_proj = nn.Linear(cfg.hidden_size, cfg.intermediate_size, bias=False)
        self.down_proj = nn.Linear(cfg.intermediate_size, cfg.hidden_size, bias=False)

    def forward(self, x):  # SwiGLU
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Block(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.self_attn = Attention(cfg)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.mlp = MLP(cfg)

    def forward(self, x, cos, sin, mask, cache, layer):  # pre-norm residual block
        x = x + self.self_attn(self.input_layernorm(x), cos, sin, mask, cache, layer)
        return x + self.mlp(self.post_attention_layernorm(x))


# -----------------------------------------------------------------------------------------------------------
# Config and model
@dataclass
class ModelConfig:
    vocab_size: int = 256
    hidden_size: int = 128
    num_hidden_layers: int = 4
    num_attention_heads: int = 4
    num_key_value_heads: int = 2
    head_dim: int | None = None  # None -> hidden_size // num_attention_heads
    intermediate_size: int = 384
    max_position_embeddings: int = 512
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    rope_scaling: dict | None = None  # {"rope_type": "llama3", "factor", "low_freq_factor", "high_freq_factor", ...}
    attention_bias: bool = False  # bias on q, k, v projections (Qwen2); never on o_proj
    qk_norm: bool = False  # per-head RMSNorm on q and k, applied before RoPE (Qwen3)
    tie_word_embeddings: bool = True

    def __post_init__(self):
        H, KV = self.num_attention_heads, self.num_key_value_heads
        if min(self.vocab_size, self.hidden_size, self.num_hidden_layers, H, KV, self.intermediate_size) < 1:
            raise ValueError(f"ModelConfig: sizes must be positive, got {self}")
        if H % KV:
            raise ValueError(f"ModelConfig: num_attention_heads={H} is not a multiple of num_key_value_heads={KV}")
        if self.head_dim is None and self.hidden_size % H:
            raise ValueError(f"ModelConfig: hidden_size={self.hidden_size} is not divisible by {H} heads; set head_dim")
        if self.hd % 2:
            raise ValueError(f"ModelConfig: head dimension {self.hd} must be even for RoPE")

    @property
    def hd(self) -> int:
        return self.head_dim or self.hidden_size // self.num_attention_heads


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.cfg = cfg
        self.model = nn.Module()  # the `model.` prefix of HF's names
        self.model.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.model.layers = nn.ModuleList(Block(cfg) for _ in range(cfg.num_hidden_layers))
        self.model.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps)
        self.rotary = Rotary(cfg)
        if not cfg.tie_word_embeddings:  # tied: the head IS the embedding matrix, so no lm_head.weight key at all
            self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        for name, p in self.named_parameters():
            if name.endswith("norm.weight"):
                nn.init.ones_(p)
            elif name.endswith(".bias"):
                nn.init.zeros_(p)
            else:  # GPT-2: each residual branch adds to the stream, so its output projection starts smaller
                residual = name.endswith(("o_proj.weight", "down_proj.weight"))
                nn.init.normal_(p, 0.0, 0.02 / math.sqrt(2 * cfg.num_hidden_layers) if residual else 0.02)

    def head(self, h):  # (..., D) -> (..., V)
        return F.linear(h, self.model.embed_tokens.weight if self.cfg.tie_word_embeddings else self.lm_head.weight)

    def hidden(self, ids, cache=None, n_new=None):
        """Final normed hidden states (B, T, D). With a cache, row b's T new tokens sit at positions
        cache.lens[b] + t; only its first n_new[b] are real (the rest is padding, and is never attended to)."""
        B, T = ids.shape
        if cache is None:
            pos, mask = torch.arange(T, device=ids.device)[None], None  # (1, T)
        else:
            pos = cache.lens[:, None] + torch.arange(T, device=ids.device)  # (B, T)
            S = cache.reserve(T)
            # key j is visible to query t iff j <= t's position: earlier turns, and this call's causal part.
            # Keys past a row's length are stale or padding and always lie beyond that bound.
            mask = (torch.arange(S, device=ids.device) <= pos[:, :, None])[:, None]  # (B, 1, T, S)
        cos, sin = self.rotary(pos)
        x = self.model.embed_tokens(ids)  # (B, T, D)
        for i, layer in enumerate(self.model.layers):
            x = layer(x, cos, sin, mask, cache, i)
        if cache is not None:
            cache.lens += T if n_new is None else n_new
        return self.model.norm(x)

    def forward(self, ids, cache=None, n_new=None):
        return self.head(self.hidden(ids, cache, n_new))  # (B, T, V)


class KVCache:
    """Rotated keys and values of every layer for B rows of different lengths (a row is one episode). Buffers
    are (B, KV, capacity, hd); row b's valid entries are [0, lens[b]) on axis 2. The capacity doubles when
    full, so an episode grown token by token costs amortised linear time, never a re-run of its transcript."""
    def __init__(self, n_layers: int, device):
        self.k, self.v = [None] * n_layers, [None] * n_layers  # allocated on first write, in autocast's dtype
        self.lens = torch.zeros(0, dtype=torch.long, device=device)  # (B,)
        self.capacity, self.S = 0, 0

    def _each(self, fn):  # apply fn to every allocated key and value buffer
        self.k, self.v = [[b if b is None else fn(b) for b in bufs] for bufs in (self.k, self.v)]

    def add_rows(self, n: int):  # new episodes join with empty history
        self.lens = torch.cat([self.lens, self.lens.new_zeros(n)])
        self._each(lambda b: torch.cat([b, b.new_zeros(n, *b.shape[1:])]))

    def keep(self, rows: torch.Tensor):  # compaction: finished episodes leave the batch
        self.lens = self.lens[rows]
        self._each(lambda b: b[rows])

    def reserve(self, T: int) -> int:  # room for T more tokens in every row; returns S, the keys to attend over
        self.S = (int(self.lens.max()) if len(self.lens) else 0) + T
        if self.S > self.capacity:
            self.capacity = max(self.S, 2 * self.capacity)
            self._each(lambda b: torch.cat([b, b.new_zeros(*b.shape[:2], self.capacity - b.shape[2], b.shape[3])], 2))
        return self.S

    def write(self, layer: int, k, v):  # k, v: (B, T, KV, hd), written at positions lens[b] .. lens[b]+T-1
        B, T, KV, hd = k.shape
        if self.k[layer] is None:
            self.k[layer], self.v[layer] = k.new_zeros(B, KV, self.capacity, hd), v.new_zeros(B, KV, self.capacity, hd)
        pos = self.lens[:, None] + torch.arange(T, device=k.device)  # (B, T)
        rows = torch.arange(B, device=k.device)[:, None]
        # indices on axes 0 and 2 with a slice between: the indexed block is laid out (B, T, KV, hd), like k
        self.k[layer][rows, :, pos], self.v[layer][rows, :, pos] = k, v
        return self.k[layer][:, :, :self.S], self.v[layer][:, :, :self.S]


def pick_device(name: str | None = None) -> torch.device:
    """'cpu' by default; 'cuda' only if it is there (a silent CPU fallback would turn minutes into hours)."""
    device = torch.device(name or "cpu")
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} was asked for, but torch.cuda.is_available() is False on this machine")
    return device


def autocast(device):
    """bf16 autocast on GPU (weights stay fp32; norms, angles and log-softmax run in fp32); nothing on CPU."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if torch.device(device).type == "cuda" else nullcontext()


# -----------------------------------------------------------------------------------------------------------
# Tokenizer and rendering
SPECIAL_TOKENS = ["<pad>", "<unk>", "<bos>", "<act>", "<eoa>", "<eos>"]  # ids 0..5, in this order


def _pre_tokenizer():
    # "\n" kept as its own word; a space becomes "▁" glued to the next word (so decoding restores it);
    # punctuation isolated; digits one by one, so prices and ids are spelled from 10 tokens and generalise
    return pre_tokenizers.Sequence([
        pre_tokenizers.Split("\n", "isolated"),
        pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="never"),
        pre_tokenizers.Punctuation("isolated"),
        pre_tokenizers.Digits(individual_digits=True)])


def build_tokenizer(texts) -> Tokenizer:
    """Word-level tokenizer whose vocabulary is every piece of `texts`, sorted: same texts, same ids. Digits,
    ASCII punctuation, "▁" and "\\n" are always in, so any number or symbol is spelled without <unk>."""
    pre, words = _pre_tokenizer(), set(string.digits) | set(string.punctuation) | {"▁", "\n"}
    for text in texts:
        if not isinstance(text, str):
            raise TypeError(f"build_tokenizer: texts must be str, got {type(text).__name__}: {text!r:.60}")
        for piece, _ in pre.pre_tokenize_str(text):
            # both spellings of every word: "mug" after "(" or "\n" and "▁mug" after a space are different pieces,
            # and a text may use a word in a position the corpus never showed
            words.update({piece, piece.lstrip("▁"), "▁" + piece.lstrip("▁")} - {""})
    vocab = {tok: i for i, tok in enumerate(SPECIAL_TOKENS + sorted(words - set(SPECIAL_TOKENS)))}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="never")  # "▁" back to " ", nothing stripped
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_TOKENS])
    return tok


# How each chat format wraps a turn; "{text}" marks the message. The parts before and after it are encoded on
# their own, so the action mask is exact by construction. "first" wraps the first observation (it carries the
# episode start), "observation" every later one (it also holds the prompt that says an action comes next),
# "action" an action: its suffix must be ONE token, which is also the first of "stop" (rollouts emit it to
# close a truncated action). "stop": tokens that end an action when the model emits them.
# Open models' formats (ChatML, Llama-3, Zephyr, Mistral) depend on their tokenizer's BOS/EOS, so the loader at
# the bottom fills one in and hands it to the Renderer as `spec`; checkpoints store the spec they were saved with.
CHAT_FORMATS = {
    "plain": {"first": "<bos>{text}<act>", "observation": "{text}<act>", "action": "{text}<eoa>", "stop": ["<eoa>"]},
}


class Renderer:
    """Turns messages [obs_0, act_1, obs_1, ..., act_n(, obs_n)] into token ids and an action mask. It is the
    single path from text to tokens for SFT, DPO and rollouts, so what is trained is exactly what is sampled."""
    def __init__(self, tokenizer: Tokenizer, chat_format: str = "plain", spec: dict | None = None):
        # spec: a format not in CHAT_FORMATS (e.g. one filled in for an open tokenizer); checkpoints store it
        if spec is None and chat_format not in CHAT_FORMATS:
            raise ValueError(f"unknown chat_format {chat_format!r}; known: {', '.join(sorted(CHAT_FORMATS))}")
        self.spec = dict(CHAT_FORMATS[chat_format] if spec is None else spec)
        self.tokenizer, self.chat_format, self.vocab_size = tokenizer, chat_format, tokenizer.get_vocab_size()
        bad = [k for k in ("first", "observation", "action") if str(self.spec.get(k)).count("{text}") != 1]
        if bad or not self.spec.get("stop"):
            raise ValueError(f"chat_format {chat_format!r}: {bad or 'stop'} must hold '{{text}}' once / be a list")
        self.wrap = {kind: [self._encode(part) for part in self.spec[kind].split("{text}")]
                     for kind in ("first", "observation", "action")}  # kind -> [prefix ids, suffix ids]
        missing = [t for t in self.spec["stop"] if tokenizer.token_to_id(t) is None]
        if missing:
            raise ValueError(f"chat_format {chat_format!r}: stop token(s) {missing} are not in the tokenizer")
        self.stop_ids = {tokenizer.token_to_id(t) for t in self.spec["stop"]}
        self.action_end_id = tokenizer.token_to_id(self.spec["stop"][0])
        if self.wrap["action"] != [[], [self.action_end_id]]:
            raise ValueError(f"chat_format {chat_format!r}: an action must be '{{text}}' plus its first stop token")
        pad = tokenizer.token_to_id("<pad>")
        self.pad_id = self.action_end_id if pad is None else pad  # any id pads: padding is masked everywhere
        # special tokens never appear inside an action (they would break the transcript's structure)
        added = tokenizer.get_added_tokens_decoder()
        self.banned_ids = sorted(i for i, t in added.items() if t.special and i not in self.stop_ids)

    def _encode(self, text: str) -> list:
        return self.tokenizer.encode(text, add_special_tokens=False).ids  # BOS comes from the format, not here

    def encode_observation(self, text: str, first: bool = False) -> list:
        prefix, suffix = self.wrap["first" if first else "observation"]
        return prefix + self._encode(text) + suffix

    def encode_action(self, text: str) -> list:
        return self._encode(text) + [self.action_end_id]

    def decode_action(self, ids) -> str:
        ids = list(ids)
        if ids and ids[-1] in self.stop_ids:
            ids = ids[:-1]
        return self.tokenizer.decode(ids, skip_special_tokens=False)  # "<unk>" stays visible, round-trips

    def render(self, messages) -> tuple:
        """(ids, mask): mask is 1 on action tokens and their stop token, 0 on observations and prompts. A final
        observation after the last action is left out: nothing is predicted from it."""
        ids, mask = [], []
        for i, text in enumerate(messages):
            if not isinstance(text, str):
                raise TypeError(f"render: message {i} is {type(text).__name__}, expected str")
            if i % 2 == 0 and i == len(messages) - 1:
                break
            piece = self.encode_observation(text, first=i == 0) if i % 2 == 0 else self.encode_action(text)
            ids += piece
            mask += [i % 2] * len(piece)
        return ids, mask


# -----------------------------------------------------------------------------------------------------------
# Rollouts: N episodes at once, one KV cache kept across turns
def _feed(model, cache, seqs, pad_id, device):
    """Feed each row its own new tokens (ragged; may be empty) and return the fp32 logits (B, V) that predict
    each row's next token. The head runs on one position per row only."""
    n_new = [len(s) for s in seqs]
    T = max(1, max(n_new))
    ids = torch.tensor([s + [pad_id] * (T - len(s)) for s in seqs], device=device)  # (B, T), right-padded
    n_new = torch.tensor(n_new, device=device)
    h = model.hidden(ids, cache, n_new)  # (B, T, D)
    last = (n_new - 1).clamp(min=0)  # rows with nothing new read a padding position: ignored by the caller
    return model.head(h[torch.arange(len(seqs), device=device), last]).float()


def _choose(logits, banned, temperature, top_p, generator, force=None):
    """Next token per row (B,) and its log-prob under the raw model: log_softmax of the logits without
    temperature, top-p or bans, i.e. exactly what sequence_logps recomputes later."""
    logp = torch.log_softmax(logits, -1)  # (B, V) fp32
    allowed = logits.masked_fill(banned, float("-inf"))
    if force is not None:
        tok = torch.full_like(logits[:, 0], force, dtype=torch.long)
    elif temperature == 0:
        tok = allowed.argmax(-1)  # greedy; ties go to the lowest id, deterministically
    else:
        probs = torch.softmax(allowed / temperature, -1)
        if top_p < 1:  # nucleus: keep the smallest top set whose mass reaches top_p (always the top token)
            p_sorted, order = probs.sort(-1, descending=True)
            p_sorted = p_sorted.masked_fill(p_sorted.cumsum(-1) - p_sorted >= top_p, 0.0)
            probs = torch.zeros_like(probs).scatter(-1, order, p_sorted)
        if generator is not None:  # sample where the generator lives (a CPU generator may drive a GPU model)
            probs = probs.to(generator.device)
        tok = torch.multinomial(probs, 1, generator=generator).squeeze(1).to(logits.device)
    return tok, logp.gather(-1, tok[:, None]).squeeze(1)


@torch.no_grad()
def rollout(model, renderer, make_env, tasks, *, temperature=0.0, top_p=1.0, generator=None, max_action_tokens=24,
            batch_size=64, device=None, progress=False, desc="rollout") -> list:
    """Play every task once; returns trajectories (docs/design.md) in the order of `tasks`.

    Up to batch_size episodes run at once and new ones join as others finish. Each turn feeds only the new
    observation (the transcript stays in the KV cache), then decodes the action token by token until a stop
    token or max_action_tokens (then the stop token is forced). Greedy at temperature 0, else temperature and
    top-p sampling from `generator` (None: torch's global generator). Extras per trajectory: "action_logps"
    (per action, raw-model log-probs of its tokens and stop token) and "ids"/"mask" (the exact tokens fed).
    These equal renderer.render(messages) unless the model spelled a word unusually (e.g. "▁" then "buy" for
    "▁buy"): the env sees the same text either way, and training re-renders it canonically."""
    if temperature < 0 or not 0 < top_p <= 1 or max_action_tokens < 1 or batch_size < 1:
        raise ValueError(f"rollout: bad settings temperature={temperature} top_p={top_p} "
                         f"max_action_tokens={max_action_tokens} batch_size={batch_size}")
    if model.cfg.vocab_size < renderer.vocab_size:
        raise ValueError(f"rollout: model vocab {model.cfg.vocab_size} < tokenizer vocab {renderer.vocab_size}")
    on = next(model.parameters()).device  # the model's device: moving the model is the caller's choice
    if device is not None and torch.device(device).type != on.type:
        raise ValueError(f"rollout: device={device!r} but the model is on {on}; move the model first")
    device = on
    max_pos = model.cfg.max_position_embeddings
    banned = torch.zeros(model.cfg.vocab_size, dtype=torch.bool, device=device)
    banned[renderer.banned_ids] = True
    banned[renderer.vocab_size:] = True  # open models' padded vocabularies have rows no token maps to
    out, todo, eps = [None] * len(tasks), list(range(len(tasks)))[::-1], []  # eps[r] lives in cache row r
    cache = KVCache(model.cfg.num_hidden_layers, device)
    bar = progress_bar(len(tasks), desc, disable=not progress)

    def finish(ep, reward, success, end):
        out[ep["i"]] = {"task": tasks[ep["i"]], "messages": ep["messages"], "reward": float(reward),
                        "success": bool(success), "end": end, "n_invalid": ep["n_invalid"],
                        "action_logps": ep["logps"], "ids": ep["ids"], "mask": ep["mask"]}
        done = [t["reward"] for t in out if t is not None]
        bar.set_postfix(reward=f"{sum(done) / len(done):.3f}", refresh=False)
        bar.update(1)

    def drop(keep_rows):  # finished episodes leave the batch and the cache: later turns cost nothing for them
        nonlocal eps
        if len(keep_rows) < len(eps):
            cache.keep(torch.tensor(keep_rows, dtype=torch.long, device=device))
            eps = [eps[r] for r in keep_rows]

    was_training = model.training
    model.eval()
    try:
        with autocast(device):
            while todo or eps:
                # admit new episodes into free rows; "piece" is the observation not yet fed (mask 0) and
                # "unfed" the previous action's stop token, sampled but not yet fed
                new = []
                while todo and len(eps) + len(new) < batch_size:
                    i = todo.pop()
                    env = make_env()
                    obs = env.reset(tasks[i])
                    new.append({"i": i, "env": env, "messages": [obs], "n_invalid": 0, "logps": [], "ids": [],
                                "mask": [], "unfed": [], "piece": renderer.encode_observation(obs, first=True)})
                eps += new
                cache.add_rows(len(new))
                # an episode whose next turn could pass the model's context ends now, scored 0
                lens = cache.lens.tolist()
                fits = [len(ep["unfed"]) + len(ep["piece"]) + lens[r] + max_action_tokens <= max_pos
                        for r, ep in enumerate(eps)]
                for ep, ok in zip(eps, fits):
                    if not ok:
                        finish(ep, 0.0, False, "context")
                drop([r for r, ok in enumerate(fits) if ok])
                if not eps:
                    continue
                # prefill: every row's observation in one ragged call
                logits = _feed(model, cache, [ep["unfed"] + ep["piece"] for ep in eps], renderer.pad_id, device)
                for ep in eps:
                    ep["ids"] += ep["piece"]
                    ep["mask"] += [0] * len(ep["piece"])
                # decode the actions in lock step; rows that stopped feed nothing (n_new = 0) and wait
                B = len(eps)
                acts, logps, open_ = [[] for _ in range(B)], [[] for _ in range(B)], [True] * B
                for j in range(max_action_tokens + 1):
                    force = renderer.action_end_id if j == max_action_tokens else None
                    tok, lp = _choose(logits, banned, temperature, top_p, generator, force)
                    tok, lp = tok.tolist(), lp.tolist()
                    for r in range(B):
                        if open_[r]:
                            acts[r].append(tok[r])
                            logps[r].append(lp[r])
                            open_[r] = tok[r] not in renderer.stop_ids
                    if not any(open_):
                        break
                    logits = _feed(model, cache, [acts[r][-1:] if open_[r] else [] for r in range(B)],
                                   renderer.pad_id, device)
                # step the environments with the decoded texts
                keep_rows = []
                for r, ep in enumerate(eps):
                    text = renderer.decode_action(acts[r])
                    obs, reward, done, info = ep["env"].step(text)
                    ep["messages"] += [text, obs]
                    ep["ids"] += acts[r]
                    ep["mask"] += [1] * len(acts[r])
                    ep["logps"].append(logps[r])
                    ep["n_invalid"] += not info.get("valid", True)
                    if done:
                        success = info.get("success", reward >= 1.0)
                        finish(ep, reward, success, info.get("end") or ("success" if success else "wrong"))
                    else:
                        ep["unfed"], ep["piece"] = acts[r][-1:], renderer.encode_observation(obs)
                        keep_rows.append(r)
                drop(keep_rows)
    finally:
        model.train(was_training)
        bar.close()
    return out


# -----------------------------------------------------------------------------------------------------------
# Log-probs of action tokens (training and reference scoring)
def collate(seqs, pad_id: int, device=None) -> tuple:
    """[(ids, mask), ...] -> right-padded (ids (B, T) long, mask (B, T) long); padding has mask 0."""
    if not seqs:
        raise ValueError("collate: no sequences given")
    T = max(1, max(len(ids) for ids, _ in seqs))
    ids, mask = torch.full((len(seqs), T), pad_id, dtype=torch.long), torch.zeros(len(seqs), T, dtype=torch.long)
    for b, (s, m) in enumerate(seqs):
        if len(s) != len(m):
            raise ValueError(f"collate: sequence {b} has {len(s)} ids but {len(m)} mask entries")
        ids[b, :len(s)], mask[b, :len(m)] = torch.tensor(s, dtype=torch.long), torch.tensor(m, dtype=torch.long)
    return ids.to(device), mask.to(device)


def sequence_logps(model, ids, mask, obs_mask=None) -> tuple:
    """Summed log-probs of the tokens where mask == 1 (logps (B,), fp32) and how many there are (n_tokens (B,)).
    Token t is predicted from position t-1. Summed, not averaged: log pi(e|u) of a whole trajectory, which is
    what DPO compares. Causal attention makes right padding invisible to the real tokens. With obs_mask (SFT's
    observation term), the same for those tokens too, from the same forward pass: (logps, n, obs_logps, n_obs)."""
    if ids.dim() != 2 or ids.shape != mask.shape:
        raise ValueError(f"sequence_logps: ids {tuple(ids.shape)} and mask {tuple(mask.shape)} must be the same (B, T)")
    h = model.hidden(ids)[:, :-1]  # (B, T-1, D): position t-1 predicts token t
    out = _masked_logps(model, h, ids, mask)
    return out if obs_mask is None else out + _masked_logps(model, h, ids, obs_mask)


def _masked_logps(model, h, ids, mask) -> tuple:
    B = ids.shape[0]
    counted = mask[:, 1:].bool()  # (B, T-1)
    rows = torch.arange(B, device=ids.device)[:, None].expand_as(counted)[counted]  # (N,) sequence of each token
    h, target = h[counted], ids[:, 1:][counted]  # (N, D), (N,): only counted positions ever reach the head
    # The head's (N, V) logits in fp32 are the big tensor for open vocabularies (150k); in chunks, and while
    # training recomputed in the backward pass instead of stored, so memory stays near one chunk.
    def chunk_logps(h_c, target_c):
        return -F.cross_entropy(model.head(h_c).float(), target_c, reduction="none")  # fp32 log-softmax
    step = max(1, 2 ** 24 // model.cfg.vocab_size)
    big = torch.is_grad_enabled() and model.cfg.vocab_size > 8192
    lps = [torch.utils.checkpoint.checkpoint(chunk_logps, h[c:c + step], target[c:c + step], use_reentrant=False)
           if big else chunk_logps(h[c:c + step], target[c:c + step]) for c in range(0, max(len(h), 1), step)]
    logps = torch.zeros(B, device=ids.device).index_add(0, rows, torch.cat(lps))
    return logps, counted.sum(1)


# Padded tokens per forward call in batch_logps: on a CPU, chunks this small stay in cache (measured by
# `python bench.py logps`); a GPU wants big calls, and the chunk cap still keeps padding low there.
CHUNK_TOKENS = {"cpu": 2048, "cuda": 32768}


def chunk_tokens(device) -> int:
    """batch_logps' default chunk size on this device (any other accelerator is treated as a GPU)."""
    return CHUNK_TOKENS.get(torch.device(device or "cpu").type, CHUNK_TOKENS["cuda"])


def length_chunks(lengths: list, max_tokens: int) -> list:
    """Positions into `lengths`, sorted by length and cut into chunks whose padded size (rows x longest) stays
    within max_tokens; a sequence longer than that is a chunk of its own."""
    chunks = []
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if chunks and (len(chunks[-1]) + 1) * lengths[i] <= max_tokens:
            chunks[-1].append(i)
        else:
            chunks.append([i])
    return chunks


def batch_logps(model, seqs, pad_id: int, device=None, with_obs: bool = False, max_tokens: int | None = None) -> tuple:
    """sequence_logps of a list of (ids, mask) sequences of mixed lengths, in their order: (logps, n_tokens) and,
    with_obs, the observation tokens' (obs_logps, n_obs) from the same forward passes. A batch padded to its
    longest sequence spends up to half its compute on padding (a DPO batch holds short experts next to step-capped
    failures), so the sequences run in length-sorted chunks (length_chunks). Gradients flow through every chunk."""
    if not seqs:
        raise ValueError("batch_logps: no sequences given")
    device = torch.device(device or "cpu")
    chunks = length_chunks([len(ids) for ids, _ in seqs], max_tokens or chunk_tokens(device))
    parts = []
    for chunk in chunks:
        ids, mask = collate([seqs[i] for i in chunk], pad_id, device)
        obs = ((ids != pad_id) & (mask == 0)).long() if with_obs else None  # observation: real tokens, not actions
        parts.append(sequence_logps(model, ids, mask, obs))
    inverse = torch.empty(len(seqs), dtype=torch.long)
    inverse[torch.tensor([i for chunk in chunks for i in chunk])] = torch.arange(len(seqs))
    inverse = inverse.to(device)
    return tuple(torch.cat(column)[inverse] for column in zip(*parts))


# -----------------------------------------------------------------------------------------------------------
# Checkpoints: a Hugging Face-layout folder (config.json, model.safetensors, tokenizer.json)
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


def load_checkpoint(path, device="cpu") -> tuple:
    """(model in eval mode, renderer) from a folder written by save_checkpoint. Strict: see _copy_strict."""
    path = Path(path)
    for name in ("config.json", "model.safetensors", "tokenizer.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"checkpoint {path}: missing {name}")
    try:
        meta = json.loads((path / "config.json").read_text())
        extra = meta.get("coevo", {})
        cfg = ModelConfig(**{f.name: meta[f.name] for f in fields(ModelConfig) if f.name in meta},
                          qk_norm=extra.get("qk_norm", False))
    except (ValueError, TypeError, AttributeError) as e:  # bad JSON, unknown or inconsistent fields
        raise ValueError(f"{path / 'config.json'}: not a valid model config ({e})") from e
    try:
        tokenizer = Tokenizer.from_file(str(path / "tokenizer.json"))
    except Exception as e:  # tokenizers raises a bare Exception for unreadable files
        raise ValueError(f"{path / 'tokenizer.json'}: cannot read it ({e})") from e
    renderer = Renderer(tokenizer, extra.get("chat_format", "plain"), extra.get("chat_format_spec"))
    tensors = _read_tensors(path / "model.safetensors")
    # built on the meta device: no time spent on random init, and torch's global RNG is left untouched
    with torch.device("meta"):
        model = Transformer(cfg)
    model = model.to_empty(device="cpu")
    _copy_strict(model, tensors, path / "model.safetensors")
    dtype = getattr(torch, meta.get("torch_dtype") or meta.get("dtype") or "float32")
    return model.to(device=pick_device(str(device)), dtype=dtype).eval(), renderer
