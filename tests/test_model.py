"""What model.py must get right, one trap per test:

- the KV-cache path computes exactly what the plain forward pass computes, also for ragged batches;
- batched rollouts (ragged observations, episodes joining and leaving the batch) equal one-at-a-time rollouts;
- log-probs recorded while sampling equal log-probs recomputed by a forward pass; a seed replays a rollout;
- the action mask covers exactly the action tokens; the tokenizer round-trips text losslessly;
- checkpoints reload bit-exactly, and every kind of corrupt checkpoint fails with a message naming the culprit;
- the model can overfit a few trajectories (and then replays them in the environment);
- RoPE scaling, GQA interleaving and the Qwen-style switches do what their Hugging Face counterparts do.

Run: .venv/bin/python -m pytest -q tests/test_model.py   (about 6 s on one CPU thread; the transformers parity
test runs only where transformers is importable, e.g. PYTHONPATH=/tmp/hfsite)
"""
import os
import random
import sys

import pytest
import torch
from safetensors.torch import load_file, save_file

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import agent  # noqa: E402
import loader  # noqa: E402
import model as M  # noqa: E402

WORDS = ["red", "green", "blue", "mug", "lamp", "soap", "buy", "click", "north", "south"]


class EchoEnv:
    """Scripted test environment: the first observation lists the task's words (so its length varies per task);
    the agent must say them one per step. Reward = fraction said right, given at the end."""
    def reset(self, task):
        self.task, self.t, self.right = task, 0, 0
        return f"episode {task['id']} : say " + " , ".join(task["words"]) + " in order ."

    def step(self, action):
        want = self.task["words"][self.t]
        self.t, self.right = self.t + 1, self.right + (action == want)
        done = self.t == len(self.task["words"])
        reward = self.right / len(self.task["words"]) if done else 0.0
        end = ("success" if reward == 1.0 else "wrong") if done else None
        return ("ok ." if action == want else "wrong ."), reward, done, \
            {"valid": action in WORDS, "success": reward == 1.0, "end": end}


def make_tasks(n, seed=0):
    rng = random.Random(seed)
    return [{"id": i, "words": rng.choices(WORDS, k=rng.randint(1, 4))} for i in range(n)]


def oracle(task):
    env, messages = EchoEnv(), []
    messages.append(env.reset(task))
    for w in task["words"]:
        messages += [w, env.step(w)[0]]
    return messages




@pytest.fixture(scope="module")
def renderer():
    texts = WORDS + [m for t in make_tasks(20) for m in oracle(t)] + ["ok . wrong ."]
    return agent.Renderer(agent.build_tokenizer(texts))


def tiny(vocab, **kw):
    args = dict(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                intermediate_size=64, max_position_embeddings=256)
    torch.manual_seed(0)
    return M.Transformer(M.ModelConfig(**{**args, **kw})).eval()


def perturb(model):  # random norms and biases: a mapping bug on a weight still at 1 or 0 would go unseen
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.endswith(("norm.weight", ".bias")):
                p.add_(0.3 * torch.randn_like(p))
    return model


# -----------------------------------------------------------------------------------------------------------
def test_cached_decoding_equals_full_forward_on_ragged_batches():
    model = perturb(tiny(50, qk_norm=True, attention_bias=True))
    g = torch.Generator().manual_seed(1)
    seqs = [torch.randint(0, 50, (n,), generator=g).tolist() for n in (9, 14, 4)]
    chunks = [[2, 5, 1, 1], [6, 1, 1, 6], [1, 0, 3, 0]]  # tokens fed per row per call: ragged, some rows idle
    cache, fed, worst = M.KVCache(2, "cpu"), [0, 0, 0], 0.0
    cache.add_rows(3)
    with torch.no_grad():
        full = [model(torch.tensor([s]))[0] for s in seqs]  # (T, V) each, no cache
        for c in range(4):
            feed = [seqs[r][fed[r]:fed[r] + chunks[r][c]] for r in range(3)]
            T = max(map(len, feed))
            ids = torch.tensor([f + [7] * (T - len(f)) for f in feed])  # padded with a real token id on purpose
            logits = model(ids, cache, torch.tensor([len(f) for f in feed]))
            for r, f in enumerate(feed):
                if f:
                    worst = max(worst, (logits[r, :len(f)] - full[r][fed[r]:fed[r] + len(f)]).abs().max().item())
                fed[r] += len(f)
    assert fed == [9, 14, 4] and worst < 1e-5


def test_batched_rollouts_equal_one_episode_at_a_time(renderer):
    model, tasks = tiny(renderer.vocab_size), make_tasks(7)
    # batch 3 < 7 tasks: episodes join as others finish, so rows of very different lengths share the cache
    batched = agent.rollout(model, renderer, EchoEnv, tasks, batch_size=3, max_action_tokens=5)
    single = [agent.rollout(model, renderer, EchoEnv, [t], batch_size=1, max_action_tokens=5)[0] for t in tasks]
    for b, s, task in zip(batched, single, tasks):
        assert b["task"] is task and b["messages"] == s["messages"] and b["ids"] == s["ids"]
        assert len(b["messages"]) == 2 * len(task["words"]) + 1  # every episode ran to its end
        for lb, ls in zip(b["action_logps"], s["action_logps"]):
            assert lb == pytest.approx(ls, abs=1e-4)
        # each action is at most 5 tokens plus its stop token, which is forced when the model did not stop
        assert all(len(lp) <= 6 for lp in b["action_logps"])
        assert b["ids"][-1] == renderer.action_end_id and len(b["ids"]) == len(b["mask"])


def test_a_rollout_from_a_given_start_continues_as_if_the_model_had_played_it(renderer):
    # branching (--pairs branch): an episode replays a prefix of actions, then the model continues from that state.
    # Its own greedy start fed at once must lead where feeding it turn by turn led: the same trajectory after it.
    # a model half-trained on the oracle writes words (spelled as the renderer spells them) and still makes mistakes
    model, tasks = tiny(renderer.vocab_size).train(), [t for t in make_tasks(40, seed=3) if len(t["words"]) >= 3]
    ids, mask = agent.collate([renderer.render(oracle(t)) for t in make_tasks(8, seed=1)], renderer.pad_id)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(40):
        logps, n_tokens = agent.sequence_logps(model, ids, mask)
        opt.zero_grad(), (-(logps / n_tokens).mean()).backward(), opt.step()
    model.eval()
    whole = agent.rollout(model, renderer, EchoEnv, tasks, max_action_tokens=5)
    kept = [(t, w) for t, w in zip(tasks, whole) if (w["ids"], w["mask"]) == renderer.render(w["messages"])]
    tasks, whole = [t for t, _ in kept], [w for _, w in kept]
    assert len(tasks) >= 4 and len({w["reward"] for w in whole}) > 1   # canonical episodes, not all alike
    starts = [t["messages"][1:4:2] for t in whole]                      # its first two actions
    branched = agent.rollout(model, renderer, EchoEnv, tasks, max_action_tokens=5, prefixes=starts)
    for w, b in zip(whole, branched):
        assert b["messages"] == w["messages"] and b["reward"] == w["reward"] and b["ids"] == w["ids"]
        assert len(b["action_logps"]) == len(w["action_logps"]) - 2     # the prefix was played, not sampled
        assert b["mask"] == w["mask"]                                   # prefix actions are marked as actions
    # another start (the oracle's first word) is followed by the model's own actions from there
    oracle_start = [[t["words"][0]] for t in tasks]
    after = agent.rollout(model, renderer, EchoEnv, tasks, max_action_tokens=5, prefixes=oracle_start)
    assert all(a["messages"][1] == t["words"][0] and a["messages"][2] == "ok ." for a, t in zip(after, tasks))
    # a start that already ends the episode comes back finished, with nothing sampled
    done = agent.rollout(model, renderer, EchoEnv, tasks[:1], prefixes=[tasks[0]["words"]])[0]
    assert done["reward"] == 1.0 and done["action_logps"] == [] and len(done["messages"]) == 2 * len(tasks[0]["words"]) + 1


def test_sampled_logps_match_recomputed_logps_and_seed_replays(renderer):
    model, tasks = tiny(renderer.vocab_size), make_tasks(6)
    model.train()  # rollout must switch to eval and back
    run = lambda seed, **kw: agent.rollout(model, renderer, EchoEnv, tasks, temperature=1.0, batch_size=4,
                                       max_action_tokens=5, generator=torch.Generator().manual_seed(seed), **kw)
    a, b, c = run(3), run(3), run(4)
    assert model.training
    assert [t["messages"] for t in a] == [t["messages"] for t in b]  # same seed, same episodes
    assert [t["messages"] for t in a] != [t["messages"] for t in c]
    ids, mask = agent.collate([(t["ids"], t["mask"]) for t in a], renderer.pad_id)
    model.eval()
    with torch.no_grad():
        logps, n_tokens = agent.sequence_logps(model, ids, mask)
    recorded = torch.tensor([sum(map(sum, t["action_logps"])) for t in a])
    assert torch.allclose(logps, recorded, atol=1e-4)
    assert n_tokens.tolist() == [sum(map(len, t["action_logps"])) for t in a]
    # nucleus sampling with a vanishing top_p keeps only the top token: it is greedy decoding
    greedy = agent.rollout(model, renderer, EchoEnv, tasks, max_action_tokens=5)
    assert [t["messages"] for t in run(5, top_p=1e-9)] == [t["messages"] for t in greedy]


def test_action_mask_covers_exactly_the_action_tokens():
    r = agent.Renderer(agent.build_tokenizer(["look around", "go north", "you see a mug", "take mug", "done"]))
    ids, mask = r.render(["look around", "go north", "you see a mug", "take mug", "done"])
    expected = [("<bos>", 0), ("look", 0), ("▁around", 0), ("<act>", 0),  # the <act> prompt is context
                ("go", 1), ("▁north", 1), ("<eoa>", 1),  # the action and its stop token are trained on
                ("you", 0), ("▁see", 0), ("▁a", 0), ("▁mug", 0), ("<act>", 0),
                ("take", 1), ("▁mug", 1), ("<eoa>", 1)]  # the final observation "done" is dropped
    assert ids == [r.tokenizer.token_to_id(t) for t, _ in expected] and mask == [m for _, m in expected]
    assert r.decode_action(r.encode_action("take mug")) == "take mug"
    with pytest.raises(ValueError, match="chatml"):
        agent.Renderer(r.tokenizer, chat_format="chatml")


def test_tokenizer_round_trip_is_lossless_and_deterministic():
    words = ["buy", "soap", "size", "large", "under", "click", "search", "price", "you", "see"]
    rng = random.Random(0)
    texts = []
    for _ in range(300):  # words, digits and punctuation joined by one space, a newline or (not two words) nothing
        pieces = [rng.choice(words + list("0123456789") + list("$.,:;[]()|>-'\"?!/")) for _ in range(rng.randint(1, 12))]
        text = pieces[0]
        for a, b in zip(pieces, pieces[1:]):
            glue = ["", " ", " ", "\n"] if not (a in words and b in words) else [" ", "\n"]
            text += rng.choice(glue) + b
        texts.append(text)
    tok = agent.build_tokenizer(words)  # only the bare words: spacing, digits and symbols must still round-trip
    for text in texts:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert tok.token_to_id("<unk>") not in ids and tok.decode(ids, skip_special_tokens=False) == text
    assert agent.build_tokenizer(texts).get_vocab() == agent.build_tokenizer(texts[::-1]).get_vocab()
    assert [tok.id_to_token(i) for i in range(6)] == agent.SPECIAL_TOKENS


def test_sequence_logps_ignore_padding():
    model = tiny(40)
    seq = ([1, 5, 6, 7, 8, 9], [0, 0, 1, 1, 0, 1])
    with torch.no_grad():
        alone = agent.sequence_logps(model, *agent.collate([seq], pad_id=0))
        # batched with a longer sequence, so seq is right-padded (pad id 3 is a real token on purpose)
        batch = agent.sequence_logps(model, *agent.collate([seq, ([2] * 11, [1] * 11)], pad_id=3))
    assert alone[1].tolist() == [3] and batch[1].tolist() == [3, 10]
    assert torch.allclose(alone[0], batch[0][:1], atol=1e-6)
    # SFT's observation term: the complementary mask in the same forward pass equals a call of its own
    ids, mask = agent.collate([seq], pad_id=0)
    with torch.no_grad():
        both = agent.sequence_logps(model, ids, mask, 1 - mask)
        obs = agent.sequence_logps(model, ids, 1 - mask)
    assert torch.equal(both[0], alone[0]) and both[3].tolist() == [2] and torch.allclose(both[2], obs[0])


def test_batch_logps_in_length_chunks_equal_one_padded_batch():
    # Training scores a DPO batch (short experts, long step-capped failures) in length-sorted chunks to skip the
    # padding. The chunking must be invisible: same numbers, in the caller's order, same gradients.
    torch.manual_seed(0)
    model = tiny(40)
    rng = random.Random(0)
    seqs = []
    for n in (30, 5, 17, 5, 29, 8, 12, 30, 2):
        ids = [rng.randrange(6, 40) for _ in range(n)]
        seqs.append((ids, [int(i > 0 and rng.random() < 0.5) for i in range(n)]))
    chunks = agent.length_chunks([len(s[0]) for s in seqs], max_tokens=40)
    assert sorted(i for c in chunks for i in c) == list(range(len(seqs)))
    assert all(len(c) * max(len(seqs[i][0]) for i in c) <= 40 or len(c) == 1 for c in chunks)
    # lengths 2, 5, 5, 8 fill 4 x 8 = 32 padded tokens; 12 and 17 make 34; 29 and 30 only fit alone
    assert chunks == [[8, 1, 3, 5], [6, 2], [4], [0], [7]]
    ids, mask = agent.collate(seqs, pad_id=3)
    whole = agent.sequence_logps(model, ids, mask, ((ids != 3) & (mask == 0)).long())
    parts = agent.batch_logps(model, seqs, pad_id=3, with_obs=True, max_tokens=40)
    for a, b in zip(whole, parts):
        assert a.dtype == b.dtype and torch.allclose(a, b, atol=1e-5)
    grads = []
    for logps in (whole[0], parts[0]):
        model.zero_grad()
        (logps * torch.arange(1.0, 10.0)).sum().backward()  # order matters: a permuted result changes the gradient
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.allclose(g, h, atol=1e-4) for g, h in zip(*grads))
    with pytest.raises(ValueError, match="no sequences"):
        agent.batch_logps(model, [], pad_id=3)


def test_context_limit_ends_episodes(renderer):
    model = tiny(renderer.vocab_size, max_position_embeddings=40)
    tasks = [{"id": i, "words": ["red", "mug", "lamp", "soap"]} for i in range(3)]  # 4 turns never fit in 40
    trajs = agent.rollout(model, renderer, EchoEnv, tasks, max_action_tokens=8)
    assert {t["end"] for t in trajs} == {"context"} and all(t["reward"] == 0.0 for t in trajs)
    assert all(len(t["ids"]) <= 40 for t in trajs)


def test_save_load_is_bit_exact_and_replaces_atomically(tmp_path, renderer):
    model = perturb(tiny(renderer.vocab_size, tie_word_embeddings=False, attention_bias=True))
    loader.save_checkpoint(tmp_path / "ckpt", model, renderer)
    loader.save_checkpoint(tmp_path / "ckpt", model, renderer)  # replacing a checkpoint leaves no debris
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    rng_before = torch.get_rng_state()
    loaded, r2 = loader.load_checkpoint(tmp_path / "ckpt")
    assert torch.equal(torch.get_rng_state(), rng_before)  # loading does not consume training randomness
    a, b = model.state_dict(), loaded.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    ids = torch.tensor([renderer.render(oracle(make_tasks(1)[0]))[0]])
    with torch.no_grad():
        assert torch.equal(model(ids), loaded(ids))
    assert r2.tokenizer.get_vocab() == renderer.tokenizer.get_vocab() and r2.chat_format == "plain"


def test_a_custom_chat_format_travels_with_the_checkpoint(tmp_path, renderer):
    # a format that is in no registry (as the loader makes for open tokenizers): the checkpoint must carry it
    spec = {"first": "<bos>{text}<act>", "observation": "<eos>{text}<act>", "action": "{text}<eoa>", "stop": ["<eoa>"]}
    custom = agent.Renderer(renderer.tokenizer, "custom", spec)
    loader.save_checkpoint(tmp_path / "ckpt", tiny(renderer.vocab_size), custom)
    _, loaded = loader.load_checkpoint(tmp_path / "ckpt")
    messages = oracle(make_tasks(1)[0])
    assert loaded.chat_format == "custom" and loaded.render(messages) == custom.render(messages) != renderer.render(messages)
    with pytest.raises(ValueError, match="text"):
        agent.Renderer(renderer.tokenizer, "broken", {**spec, "observation": "<act>"})


def _corrupt_missing_file(d):
    (d / "tokenizer.json").unlink()
    return "tokenizer.json"


def _corrupt_truncated(d):
    data = (d / "model.safetensors").read_bytes()
    (d / "model.safetensors").write_bytes(data[:len(data) // 2])
    return "model.safetensors"


def _edit_tensors(d, fn):
    tensors = load_file(d / "model.safetensors")
    fn(tensors)
    save_file(tensors, d / "model.safetensors")


def _corrupt_missing_tensor(d):
    _edit_tensors(d, lambda t: t.pop("model.layers.1.mlp.up_proj.weight"))
    return "model.layers.1.mlp.up_proj.weight"


def _corrupt_unexpected_tensor(d):  # a tied model must not carry a separate lm_head
    _edit_tensors(d, lambda t: t.update({"lm_head.weight": t["model.embed_tokens.weight"].clone()}))
    return "lm_head.weight"


def _corrupt_wrong_shape(d):
    _edit_tensors(d, lambda t: t.update({"model.norm.weight": torch.ones(31)}))
    return "model.norm.weight"


@pytest.mark.parametrize("corrupt", [_corrupt_missing_file, _corrupt_truncated, _corrupt_missing_tensor,
                                     _corrupt_unexpected_tensor, _corrupt_wrong_shape])
def test_corrupt_checkpoints_fail_naming_the_culprit(tmp_path, renderer, corrupt):
    loader.save_checkpoint(tmp_path / "ckpt", tiny(renderer.vocab_size), renderer)
    culprit = corrupt(tmp_path / "ckpt")
    with pytest.raises((ValueError, FileNotFoundError)) as err:
        loader.load_checkpoint(tmp_path / "ckpt")
    assert culprit in str(err.value)


def test_overfits_a_few_trajectories_then_replays_them(renderer):
    tasks = make_tasks(4, seed=1)
    model = tiny(renderer.vocab_size).train()
    ids, mask = agent.collate([renderer.render(oracle(t)) for t in tasks], renderer.pad_id)
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for step in range(300):
        logps, n_tokens = agent.sequence_logps(model, ids, mask)
        loss = -(logps / n_tokens).mean()  # per-token NLL of the action tokens
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.02
    trajs = agent.rollout(model, renderer, EchoEnv, tasks)
    assert all(t["success"] and t["end"] == "success" for t in trajs)
    assert all(t["messages"] == oracle(task) for t, task in zip(trajs, tasks))
    # rollouts and training share one rendering: the tokens fed while playing are the tokens trained on
    assert all((t["ids"], t["mask"]) == renderer.render(t["messages"]) for t in trajs)


def test_llama3_scaling_changes_only_low_frequencies():
    base = M.ModelConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1)  # hd = 32
    scaled = M.ModelConfig(hidden_size=64, num_attention_heads=2, num_key_value_heads=1, rope_scaling={
        "rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
        "original_max_position_embeddings": 64})
    f0, f1 = M.rope_inv_freq(base), M.rope_inv_freq(scaled)
    wavelen = 2 * torch.pi / f0
    short, long = wavelen < 64 / 4, wavelen > 64 / 1  # inside the original context's resolution, and beyond it
    assert short.any() and long.any() and (~short & ~long).any()
    assert torch.equal(f1[short], f0[short]) and torch.allclose(f1[long], f0[long] / 8)
    mid = ~short & ~long  # blended: between the two
    assert ((f1[mid] < f0[mid]) & (f1[mid] > f0[mid] / 8)).all()
    # casting the model to bf16 must not round the frequencies (angles at position 500 would be off)
    model = M.Transformer(scaled).to(torch.bfloat16)
    assert model.rotary.inv_freq.dtype == torch.float32 and torch.equal(model.rotary.inv_freq, f1)


def test_gqa_interleaves_kv_heads():
    gqa = perturb(tiny(30, num_attention_heads=4, num_key_value_heads=2))
    mha = tiny(30, num_attention_heads=4, num_key_value_heads=4)
    ids = torch.randint(0, 30, (2, 9), generator=torch.Generator().manual_seed(0))
    outs = []
    for expand in ("interleave", "tile"):
        state = dict(gqa.state_dict())
        for k in list(state):
            if k.endswith(("k_proj.weight", "v_proj.weight")):
                w = state[k].view(2, 8, 32)  # (KV, hd, D)
                w = w.repeat_interleave(2, 0) if expand == "interleave" else w.repeat(2, 1, 1)
                state[k] = w.reshape(32, 32)  # kv head j copied to query heads 2j and 2j+1 (or tiled)
        mha.load_state_dict(state)
        with torch.no_grad():
            outs.append(mha(ids))
    with torch.no_grad():
        ref = gqa(ids)
    assert torch.allclose(outs[0], ref, atol=1e-5)  # key/value head j serves query heads 2j, 2j+1
    assert not torch.allclose(outs[1], ref, atol=1e-2)  # tiling (repeat) is the classic silent bug


def test_switches_produce_hugging_face_parameter_names():
    def shapes(**kw):
        return {k: tuple(v.shape) for k, v in tiny(30, **kw).state_dict().items() if ".layers.0." in k or "layers" not in k}
    plain = shapes()
    assert set(plain) == {"model.embed_tokens.weight", "model.norm.weight", "model.layers.0.input_layernorm.weight",
                          "model.layers.0.post_attention_layernorm.weight"} | \
        {f"model.layers.0.self_attn.{p}_proj.weight" for p in "qkvo"} | \
        {f"model.layers.0.mlp.{p}_proj.weight" for p in ("gate", "up", "down")}
    bias = shapes(attention_bias=True)
    assert set(bias) - set(plain) == {f"model.layers.0.self_attn.{p}_proj.bias" for p in "qkv"}  # never o_proj
    qk = shapes(qk_norm=True, head_dim=16)  # explicit head_dim: 4 heads x 16 != hidden 32
    assert qk["model.layers.0.self_attn.q_norm.weight"] == (16,) and qk["model.layers.0.self_attn.k_norm.weight"] == (16,)
    assert qk["model.layers.0.self_attn.q_proj.weight"] == (64, 32) and qk["model.layers.0.self_attn.o_proj.weight"] == (32, 64)
    assert shapes(tie_word_embeddings=False)["lm_head.weight"] == (30, 32)
    with pytest.raises(ValueError, match="num_key_value_heads"):
        M.ModelConfig(num_attention_heads=4, num_key_value_heads=3)
    if not torch.cuda.is_available():  # asking for a GPU that is not there is an error, not a silent CPU run
        with pytest.raises(ValueError, match="cuda"):
            M.pick_device("cuda")


@pytest.mark.parametrize("kw", [{}, {"tie_word_embeddings": False, "head_dim": 16, "rope_scaling": {
    "rope_type": "llama3", "factor": 4.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0,
    "original_max_position_embeddings": 32}}, {"attention_bias": True}, {"qk_norm": True}])
def test_checkpoint_loads_in_transformers_with_equal_logits(tmp_path, renderer, kw):
    transformers = pytest.importorskip("transformers")
    model = perturb(tiny(renderer.vocab_size, **kw))
    loader.save_checkpoint(tmp_path / "ckpt", model, renderer)
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "ckpt").float().eval()
    ids = torch.tensor([renderer.render(oracle(t))[0][:40] for t in make_tasks(8) if len(renderer.render(oracle(t))[0]) >= 40][:2])
    with torch.no_grad():
        assert torch.allclose(hf(ids).logits, model(ids), atol=1e-4)
