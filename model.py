"""model.py: a small Llama-family transformer, top to bottom: blocks, config, model, and the KV cache that
rollouts keep across turns. Nothing else: turning text into tokens, playing episodes and scoring log-probs is
agent.py; saving and loading checkpoints (ours and open Hugging Face ones) is loader.py. This file imports no
project module.

Tensor letters used in shape comments: B rows (episodes or sequences), T tokens fed in one call, S cached key
positions, V vocabulary, D hidden size, H query heads, KV key/value heads, hd head dimension.

Parameter names are exactly Hugging Face's Llama names, so our checkpoints load as `LlamaForCausalLM` and open
Llama-family checkpoints load here with a config translation only.
"""
import math
from contextlib import nullcontext
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


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
