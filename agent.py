"""agent.py: what turns the network of model.py into an agent in a text environment, top to bottom: the
tokenizer and the renderer (messages -> token ids and the exact action mask), batched multi-turn rollouts with
one KV cache kept across turns, and the summed log-probs of action tokens that SFT and DPO train on. The renderer
is the single path from text to tokens, so what is trained is exactly what is sampled.

Tensor letters: B rows (episodes or sequences), T tokens, V vocabulary, D hidden size, N counted tokens.
"""
import string
import sys

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
from tqdm import tqdm

from model import KVCache, autocast


def progress_bar(total: int, desc: str, disable: bool = False) -> tqdm:
    """A tqdm bar that redraws 10 times a second on a terminal but every 30 s into a log file (readable logs)."""
    return tqdm(total=total, desc=desc, disable=disable, leave=False, mininterval=0.1 if sys.stderr.isatty() else 30)


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
# Open models' formats (ChatML, Llama-3, Zephyr, Mistral) depend on their tokenizer's BOS/EOS, so loader.py
# fills one in and hands it to the Renderer as `spec`; checkpoints store the spec they were saved with.
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
            batch_size=64, device=None, progress=False, desc="rollout", prefixes=None) -> list:
    """Play every task once; returns trajectories (docs/design.md) in the order of `tasks`.

    Up to batch_size episodes run at once and new ones join as others finish. Each turn feeds only the new
    observation (the transcript stays in the KV cache), then decodes the action token by token until a stop
    token or max_action_tokens (then the stop token is forced). Greedy at temperature 0, else temperature and
    top-p sampling from `generator` (None: torch's global generator). Extras per trajectory: "action_logps"
    (per action, raw-model log-probs of its tokens and stop token) and "ids"/"mask" (the exact tokens fed).
    These equal renderer.render(messages) unless the model spelled a word unusually (e.g. "▁" then "buy" for
    "▁buy"): the env sees the same text either way, and training re-renders it canonically.
    prefixes: for each task, actions to play before the model acts (branching from a state of another episode);
    they are part of the trajectory's messages and steps, and "action_logps" covers the model's actions only."""
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

    def start(i):
        """Episode i, its prefix played: the tokens to feed first ("piece": observations, and any prefix actions,
        which "piece_mask" marks), or None if the prefix already ended it."""
        env = make_env()
        obs = env.reset(tasks[i])
        ep = {"i": i, "env": env, "messages": [obs], "n_invalid": 0, "logps": [], "ids": [], "mask": [], "unfed": [],
              "piece": renderer.encode_observation(obs, first=True)}
        ep["piece_mask"] = [0] * len(ep["piece"])
        for action in prefixes[i] if prefixes else ():
            obs, reward, done, info = env.step(action)
            ep["messages"] += [action, obs]
            ep["n_invalid"] += not info["valid"]
            if done:
                finish(ep, reward, info.get("success", reward >= 1.0), info.get("end") or "wrong")
                return None
            act, seen = renderer.encode_action(action), renderer.encode_observation(obs)
            ep["piece"] += act + seen
            ep["piece_mask"] += [1] * len(act) + [0] * len(seen)
        return ep

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
                    ep = start(todo.pop())
                    new += [ep] if ep is not None else []
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
                    ep["mask"] += ep.pop("piece_mask", None) or [0] * len(ep["piece"])
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
