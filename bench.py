"""bench.py: how fast is model.py on this machine? Prints, for the default toy model:

  1. rollout throughput (episodes/s, generated tokens/s) of batched, KV-cached multi-turn rollouts;
  2. the speed-up of that cached rollout over the textbook loop that re-runs the whole transcript through the
     model for every new token, on the same episodes (about 200 tokens each), and whether both agree;
  3. training throughput (tokens/s, forward + backward + AdamW step) and the achieved FLOP/s as a fraction of
     a matrix-multiply peak measured in the same run.

    python bench.py                       # CPU, about a minute on 2 cores
    python bench.py --device cuda --batch-size 256
    python bench.py logps --threads 1     # a DPO-sized batch of mixed lengths: padded vs length-sorted chunks
    python bench.py --threads 1           # on a busy shared machine: two threads that wait for each other on
                                          # every small op are often 10x slower than one
    python bench.py --reading runs/shop-compare-seed0    # does a trained agent read? (below)
    python bench.py --failures runs/shop-compare-seed0   # what do its failures get wrong? (below)
    python bench.py --margins runs/shop-compare-seed0    # do its preference pairs carry to new tasks? (below)

--reading RUN_DIR is the reading benchmark (docs/envs.md): the run's SFT checkpoint, greedy, on
its test tasks and on the same tasks relabeled (envs.relabel: fresh ids and names, other orders, same meaning).
With --split train it reads the run's expert tasks instead, the worlds SFT trained on: a gap there is recall.
An agent that reads its observations loses little (goal: under 10% of its reward); one that recalls names
learned in training collapses. --failures RUN_DIR rolls the same checkpoint out on the run's evaluation tasks
and sorts its failures by what went wrong (shop: which constraint the bought product misses, the price miss by how
far its leading digit is from the budget's; lab and sql: how the episode ended), and says where each failure
first left the oracle's path. --margins RUN_DIR asks whether the preference pairs taught anything beyond the
training tasks: each updated checkpoint's DPO margin over the SFT checkpoint on ETO-style pairs of the expert
tasks and of validation tasks. Only these three modes import envs.py (and --margins coevo.py).

Figures are printed, never asserted. The episodes come from a tiny built-in counting game (CountEnv below), so
this file depends on model.py only. The model is untrained: it rarely emits the stop token, so most actions
run to --action-tokens, which makes episode lengths predictable.
"""
import argparse
import os
import shutil
import time

import torch

import agent
import loader
import model as M


class CountEnv:
    """Scripted game: continue the count by three numbers per turn, for five turns. Every observation restates
    the count (about 20 tokens), so with 16-token actions an episode is about 200 tokens."""
    turns, n = 5, 0

    def reset(self, task):
        self.n, self.t, self.right = task["start"], 0, 0
        return self.say("start counting")

    def say(self, head):
        return f"{head} : the count is at {self.n} , so say the next three numbers ."

    def step(self, action):
        want = " , ".join(str(self.n + i) for i in (1, 2, 3))
        self.n, self.t, self.right = self.n + 3, self.t + 1, self.right + (action == want)
        done = self.t == self.turns
        reward = self.right / self.turns if done else 0.0
        return self.say("right" if action == want else "wrong"), reward, done, \
            {"valid": True, "success": reward == 1.0, "end": ("success" if reward == 1.0 else "wrong") if done else None}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t0 = time.perf_counter()
    out = fn()
    sync(device)
    return out, time.perf_counter() - t0


@torch.no_grad()
def naive_rollout(model, renderer, tasks, max_action_tokens, device):
    """Greedy rollouts without a cache: the whole transcript is fed again for every generated token. Same
    batching and same decisions as agent.rollout, so the two must agree token for token."""
    envs = [CountEnv() for _ in tasks]
    seqs = [renderer.encode_observation(env.reset(t), first=True) for env, t in zip(envs, tasks)]
    messages = [[env.reset(t)] for env, t in zip(envs, tasks)]
    banned = torch.zeros(model.cfg.vocab_size, dtype=torch.bool, device=device)
    banned[renderer.banned_ids] = True
    active = list(range(len(tasks)))
    while active:
        acts, open_ = {i: [] for i in active}, list(active)
        for j in range(max_action_tokens + 1):
            ids, _ = agent.collate([(seqs[i], seqs[i]) for i in open_], renderer.pad_id, device)
            with M.autocast(device):
                logits = model(ids)  # (B, T, V): every position of every transcript, again
            last = torch.tensor([len(seqs[i]) - 1 for i in open_], device=device)
            nxt = logits[torch.arange(len(open_), device=device), last].float().masked_fill(banned, float("-inf"))
            nxt = [renderer.action_end_id] * len(open_) if j == max_action_tokens else nxt.argmax(-1).tolist()
            for i, tok in zip(open_, nxt):
                seqs[i].append(tok)
                acts[i].append(tok)
            open_ = [i for i, tok in zip(open_, nxt) if tok not in renderer.stop_ids]
            if not open_:
                break
        for i in list(active):
            text = renderer.decode_action(acts[i])
            obs, reward, done, info = envs[i].step(text)
            messages[i] += [text, obs]
            if done:
                active.remove(i)
            else:
                seqs[i] += renderer.encode_observation(obs)
    return messages


@torch.no_grad()
def transformers_rollout(hf_model, renderer, tasks, max_action_tokens):
    """The same greedy episodes the way a transformers user writes them: one episode at a time, `generate` per
    turn, the DynamicCache passed back in so that earlier turns are not recomputed, banned ids suppressed and the
    action closed by its end token when it hits the token cap (what agent.rollout does)."""
    import transformers
    from transformers import DynamicCache
    cache_arg = "cache" if int(transformers.__version__.split(".")[0]) >= 5 else "past_key_values"  # renamed in v5
    out_messages = []
    for task in tasks:
        env = CountEnv()
        obs = env.reset(task)
        ids, messages, cache, done = renderer.encode_observation(obs, first=True), [obs], DynamicCache(), False
        while not done:
            out = hf_model.generate(torch.tensor([ids]), **{cache_arg: cache}, max_new_tokens=max_action_tokens,
                                    do_sample=False, eos_token_id=sorted(renderer.stop_ids), pad_token_id=renderer.pad_id,
                                    suppress_tokens=renderer.banned_ids or None, return_dict_in_generate=True)
            action = out.sequences[0, len(ids):].tolist()
            cache = getattr(out, cache_arg, None) or cache  # the same DynamicCache, grown by this turn
            if not action or action[-1] not in renderer.stop_ids:
                action.append(renderer.action_end_id)  # the cap: close the action as agent.rollout forces it
            text = renderer.decode_action(action)
            obs, _, done, _ = env.step(text)
            messages += [text, obs]
            ids = ids + action + ([] if done else renderer.encode_observation(obs))
        out_messages.append(messages)
    return out_messages


def versus_transformers(model, renderer, tasks, max_action_tokens, batch_size, device):
    """Our batched cached rollout vs transformers' generate loop, same weights (our checkpoint loads as
    LlamaForCausalLM), same episodes: tokens/s of each, their ratio, and whether the greedy actions agree."""
    try:
        import transformers
    except ImportError:
        print("rollout  (vs transformers): skipped, transformers is not installed (pip install transformers)")
        return
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        loader.save_checkpoint(d, model, renderer)
        hf = transformers.AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).to(device).eval()
    run = lambda: agent.rollout(model, renderer, CountEnv, tasks, batch_size=batch_size, max_action_tokens=max_action_tokens)
    ours, t_ours = timed(run, device)
    theirs, t_theirs = timed(lambda: transformers_rollout(hf, renderer, tasks, max_action_tokens), device)
    gen = sum(len(lp) for t in ours for lp in t["action_logps"])
    same = sum(a["messages"] == b for a, b in zip(ours, theirs))
    print(f"rollout  (ours vs transformers {transformers.__version__} generate + DynamicCache, {len(tasks)} episodes): "
          f"ours {gen / t_ours:8.0f} tokens/s ({t_ours:.2f} s), transformers {gen / t_theirs:8.0f} tokens/s "
          f"({t_theirs:.2f} s): {t_theirs / t_ours:.1f}x; identical greedy episodes {same}/{len(tasks)}")


def matmul_peak(device, dtype, n):
    """Best of a few n x n matmuls: the FLOP/s this machine's BLAS reaches on an ideal problem."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b  # warm-up (thread pools, cuBLAS handles)
    best = min(timed(lambda: a @ b, device)[1] for _ in range(3))
    return 2 * n ** 3 / best


def train_throughput(model, device, batch, seq_len, steps):
    """Tokens/s of a full training step (sequence_logps over every token, backward, AdamW) on random tokens."""
    ids = torch.randint(0, model.cfg.vocab_size, (batch, seq_len), device=device)
    mask = torch.ones_like(ids)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        with M.autocast(device):
            logps, n = agent.sequence_logps(model, ids, mask)
        (-(logps / n).mean()).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    _, seconds = timed(lambda: [step() for _ in range(steps)], device)
    model.eval()
    return batch * seq_len * steps / seconds


def chunked_versus_padded(args, device) -> None:
    """One training step (forward, backward) over a batch of mixed lengths, as a DPO batch of the default shop run
    is (about 90 sequences of 60-300 tokens: short experts beside step-capped failures), scored two ways: padded to
    its longest sequence in one call (sequence_logps) or in length-sorted chunks (batch_logps, what coevo.py
    does). Prints seconds per step of each, their ratio and the largest difference between the two."""
    torch.manual_seed(0)
    model = M.Transformer(M.ModelConfig(vocab_size=256)).to(device).train()
    gen = torch.Generator().manual_seed(0)
    lengths = torch.randint(60, 301, (args.logps_batch,), generator=gen).tolist()
    seqs = [(torch.randint(6, 256, (n,), generator=gen).tolist(), [0] * (n // 2) + [1] * (n - n // 2)) for n in lengths]

    def padded():
        with M.autocast(device):
            return agent.sequence_logps(model, *agent.collate(seqs, 0, device))[0]

    def chunked():
        with M.autocast(device):
            return agent.batch_logps(model, seqs, 0, device)[0]

    results = {}
    for name, fn in (("padded", padded), ("chunked", chunked)):
        fn().sum().backward()  # warm-up
        _, seconds = timed(lambda: [fn().sum().backward() for _ in range(args.train_steps)], device)
        with torch.no_grad():
            results[name] = (fn(), seconds / args.train_steps)
        model.zero_grad(set_to_none=True)
    padding = sum(lengths) / (len(lengths) * max(lengths))
    (a, t_pad), (b, t_chunk) = results["padded"], results["chunked"]
    print(f"logps    (batch of {len(seqs)} sequences of {min(lengths)}-{max(lengths)} tokens, {100 * padding:.0f}% real "
          f"tokens when padded; forward + backward): padded {t_pad:.2f} s/step, length-sorted chunks of "
          f"<= {agent.chunk_tokens(device)} tokens {t_chunk:.2f} s/step, {t_pad / t_chunk:.1f}x; "
          f"largest difference in summed log-probs {(a - b).abs().max().item():.1e}")


def count_pairs(renderer, n: int) -> list:
    """n single-turn preference pairs of the counting game: (prompt, right continuation, wrong continuation)."""
    out = []
    for i in range(n):
        env = CountEnv()
        obs = env.reset({"start": 7 * i})
        right = " , ".join(str(env.n + k) for k in (1, 2, 3))
        wrong = " , ".join(str(env.n + k) for k in (2, 4, 6))
        out.append((obs, right, wrong))
    return out


def our_dpo_epoch(model, ref_path, renderer, pairs, batch, beta, lr, device):
    """One pass of coevo's own DPO update (coevo.update_failure: the failure agent's loss, which is plain DPO at
    failure_sft_coef 0) over the pairs; the reference log-probs come from the checkpoint at ref_path, computed once
    before the update. Returns the mean loss over its steps (with one batch: the loss before any step)."""
    import coevo
    from runs import phase_seed
    cfg = coevo.Config(beta=beta, batch_size=batch, device=str(device), failure_sft_coef=0.0, failure_lr=lr, threads=0)
    pairs = [({"messages": [o, c]}, {"messages": [o, r]}) for o, c, r in pairs]
    return coevo.update_failure(cfg, model, renderer, pairs, ref_path, seed=phase_seed(cfg, "bench/dpo"))["loss"]


def dpo_versus_trl(args, device) -> None:
    """Pairs/s of one DPO update, ours vs TRL's DPOTrainer (same model weights, pairs, beta, batch size and lr),
    and the loss of one batch holding every pair, computed by both before any step."""
    import copy
    import tempfile
    torch.manual_seed(0)
    texts = [CountEnv().say(h) for h in ("start counting", "right", "wrong")] + ["1 , 2 , 3"]
    renderer = agent.Renderer(agent.build_tokenizer(texts))
    model = M.Transformer(M.ModelConfig(vocab_size=renderer.vocab_size)).to(device).eval()
    # a reference that differs from the policy (as after a few updates), so that the loss is not just log 2
    reference = copy.deepcopy(model)
    with torch.no_grad():
        for p in reference.parameters():
            p.add_(0.1 * torch.randn_like(p))
    pairs, beta, lr, batch = count_pairs(renderer, args.dpo_pairs), 0.1, 1e-5, args.train_batch
    d = tempfile.mkdtemp(prefix="coevo_bench_")
    try:
        loader.save_checkpoint(os.path.join(d, "policy"), model, renderer)
        loader.save_checkpoint(os.path.join(d, "reference"), reference, renderer)
        ref_path = os.path.join(d, "reference")
        ours_first = our_dpo_epoch(copy.deepcopy(model), ref_path, renderer, pairs, len(pairs), beta, 0.0, device)
        _, t_ours = timed(lambda: our_dpo_epoch(copy.deepcopy(model), ref_path, renderer, pairs, batch, beta, lr, device), device)
        print(f"dpo      (ours, {len(pairs)} pairs, batch {batch}): {len(pairs) / t_ours:8.1f} pairs/s ({t_ours:.2f} s); "
              f"loss of the all-pairs batch {ours_first:.7f}")
        try:
            import datasets
            import transformers
            import trl
        except ImportError as e:
            print(f"dpo      (vs TRL): skipped, {e.name} is not installed (pip install trl)")
            return
        transformers.logging.set_verbosity_error()
        tok = transformers.PreTrainedTokenizerFast(tokenizer_object=renderer.tokenizer, bos_token="<bos>", eos_token="<eoa>",
                                                   pad_token="<pad>", unk_token="<unk>")
        # TRL tokenizes prompt and prompt + completion and appends the EOS token to each completion: with the plain
        # format's markers written out, its ids are exactly the ones our renderer makes (checked below)
        rows = [{"prompt": "<bos>" + o + "<act>", "chosen": c, "rejected": r} for o, c, r in pairs]
        hf = lambda name: transformers.AutoModelForCausalLM.from_pretrained(os.path.join(d, name), dtype=torch.float32).to(device)

        def trainer(bs, steps_dir):
            cfg = trl.DPOConfig(output_dir=steps_dir, beta=beta, learning_rate=lr, per_device_train_batch_size=bs,
                                num_train_epochs=1, lr_scheduler_type="constant", warmup_steps=0, weight_decay=0.0,
                                max_grad_norm=1.0, report_to=[], save_strategy="no", logging_strategy="no",
                                use_cpu=device.type == "cpu", dataloader_num_workers=0, seed=0, disable_tqdm=True)
            return trl.DPOTrainer(model=hf("policy"), ref_model=hf("reference"), args=cfg, processing_class=tok,
                                  train_dataset=datasets.Dataset.from_list(rows))
        t = trainer(len(pairs), os.path.join(d, "a"))
        ex = t.train_dataset[0]
        same_ids = (ex["prompt_ids"] + ex["chosen_ids"]) == renderer.render([pairs[0][0], pairs[0][1]])[0]
        one = next(iter(t.get_train_dataloader()))
        with torch.no_grad():
            trl_first = t.compute_loss(t.model, one).item()
        print(f"dpo      (TRL {trl.__version__} DPOTrainer): loss of the all-pairs batch {trl_first:.7f}; "
              f"|ours - TRL| = {abs(trl_first - ours_first):.1e}; same token ids as ours: {same_ids}")
        t = trainer(batch, os.path.join(d, "b"))
        _, t_trl = timed(t.train, device)
        print(f"dpo      (TRL, {len(pairs)} pairs, batch {batch}): {len(pairs) / t_trl:8.1f} pairs/s ({t_trl:.2f} s, its "
              f"own reference model forward per batch); ours is {t_trl / t_ours:.1f}x")
    finally:
        shutil.rmtree(d, ignore_errors=True)


def phase_kind(phase: str) -> str:
    step = phase.split("/")[-1]
    if step in ("0_train", "3_update_failure", "6_update_target"):
        return "update"
    return "eval" if step == "7_evaluate" else "rollout"  # explorations and hard negatives


def loop(run_dir: str) -> None:
    """Seconds per phase of a finished run (its timings.jsonl) and the share of rollout / update / evaluation."""
    import json
    import os
    path = os.path.join(run_dir, "timings.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"bench loop: {path} is missing (runs made before timings.jsonl existed have none); "
                         f"run python coevo.py first, or give another --run")
    seconds = {}
    for line in open(path):
        r = json.loads(line)
        seconds[r["phase"]] = r["seconds"]  # a phase redone after a kill: its last time
    total = sum(seconds.values())
    print(f"loop: {run_dir}, {len(seconds)} phases, {total / 60:.1f} min in finished phases")
    for phase, s in seconds.items():
        print(f"  {phase:28s} {s:8.1f} s  {100 * s / total:5.1f}%  ({phase_kind(phase)})")
    for kind in ("rollout", "update", "eval"):
        s = sum(v for p, v in seconds.items() if phase_kind(p) == kind)
        print(f"{kind:8s} {s / 60:6.1f} min  {100 * s / total:5.1f}% of the run")
    by_method = {}
    for p, v in seconds.items():
        by_method[p.split("/")[0]] = by_method.get(p.split("/")[0], 0) + v
    print("per method: " + ", ".join(f"{m} {v / 60:.1f} min" for m, v in by_method.items()))


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", nargs="?", default="all", choices=["all", "rollout", "dpo", "logps", "loop"],
                   help="all (default): rollout and training figures; rollout: ours vs transformers; dpo: one DPO "
                        "update, ours vs TRL; logps: a mixed-length training batch padded vs in length-sorted chunks; "
                        "loop: seconds per phase of a run (give --run)")
    p.add_argument("--run", default="runs/shop-compare-seed0", help="loop: the run directory to read")
    p.add_argument("--dpo-pairs", type=int, default=256, help="dpo: preference pairs in the timed update")
    p.add_argument("--logps-batch", type=int, default=90, help="logps: sequences in the timed batch")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    p.add_argument("--batch-size", type=int, default=64, help="episodes decoded at once in the rollout benchmark")
    p.add_argument("--naive-episodes", type=int, default=16, help="episodes for the cached-vs-naive comparison")
    p.add_argument("--action-tokens", type=int, default=16, help="max tokens per action")
    p.add_argument("--train-batch", type=int, default=16, help="sequences per training step")
    p.add_argument("--train-steps", type=int, default=5, help="timed training steps")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument("--reading", metavar="RUN_DIR", default="", help="run the reading benchmark on this run instead")
    p.add_argument("--failures", metavar="RUN_DIR", default="", help="sort a run's failures by kind instead")
    p.add_argument("--margins", metavar="RUN_DIR", default="", help="the DPO margin of a run's updated checkpoints on "
                   "pairs of its training tasks and of new tasks instead")
    p.add_argument("--why", metavar="RUN_DIR", default="", help="why learning from failures helps or not: the pairs' "
                   "properties and the SFT agent's reachability (diagnostics.py)")
    p.add_argument("--ckpt", default="sft_0_train", help="--reading, --failures: which checkpoint under RUN_DIR/ckpt")
    p.add_argument("--split", default="test", choices=["test", "valid", "train"],
                   help="--reading: test (seen and unseen), valid, or train (the run's expert tasks, which SFT trained on)")
    p.add_argument("--n", type=int, default=0, help="--reading, --failures, --margins: tasks per split (0 = the run's "
                   "n_test; --margins: n_expert); --why: explored tasks for reachability (0 = 300)")
    args = p.parse_args()
    device = M.pick_device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.reading or args.failures or args.margins or args.why:
        import diagnostics  # the diagnostics read run directories: envs, coevo and the rest load only for them
        if args.reading:
            return diagnostics.reading(args.reading, args.ckpt, args.n, device, args.split)
        if args.failures:
            return diagnostics.failures(args.failures, args.ckpt, args.n, device)
        if args.margins:
            return diagnostics.margins(args.margins, args.n, device)
        return diagnostics.why(args.why, args.n, device)
    if args.mode == "loop":
        return loop(args.run)
    if args.mode == "dpo":
        return dpo_versus_trl(args, device)
    if args.mode == "logps":
        return chunked_versus_padded(args, device)
    torch.manual_seed(0)

    texts = [CountEnv().say(h) for h in ("start counting", "right", "wrong")] + ["1 , 2 , 3"]
    renderer = agent.Renderer(agent.build_tokenizer(texts))
    model = M.Transformer(M.ModelConfig(vocab_size=renderer.vocab_size)).to(device).eval()
    cfg = model.cfg
    n_params = sum(p.numel() for p in model.parameters())
    print(f"device {device} ({torch.get_num_threads()} CPU threads), model: {n_params / 1e6:.2f}M parameters, "
          f"{cfg.num_hidden_layers} layers, hidden {cfg.hidden_size}, vocab {cfg.vocab_size}")

    # 1. cached rollout throughput at the requested batch size
    tasks = [{"start": 10 * i} for i in range(args.batch_size)]
    run = lambda ts, bs: agent.rollout(model, renderer, CountEnv, ts, batch_size=bs, max_action_tokens=args.action_tokens)
    run(tasks[:2], 2)  # warm-up
    trajs, seconds = timed(lambda: run(tasks, args.batch_size), device)
    gen = sum(len(lp) for t in trajs for lp in t["action_logps"])
    length = sum(len(t["ids"]) for t in trajs) / len(trajs)
    print(f"rollout  (cached, batch {args.batch_size}): {len(trajs) / seconds:8.1f} episodes/s "
          f"{gen / seconds:9.0f} generated tokens/s   ({len(trajs)} episodes of {length:.0f} tokens, {seconds:.2f} s)")

    # 2. the same episodes without a cache
    few = tasks[:args.naive_episodes]
    cached, t_cached = timed(lambda: run(few, len(few)), device)
    naive, t_naive = timed(lambda: naive_rollout(model, renderer, few, args.action_tokens, device), device)
    same = sum(c["messages"] == n for c, n in zip(cached, naive))
    print(f"rollout  (naive vs cached, {len(few)} episodes): naive {t_naive:.2f} s, cached {t_cached:.2f} s, "
          f"speed-up {t_naive / t_cached:.1f}x; identical trajectories {same}/{len(few)}")
    if args.mode in ("all", "rollout"):
        versus_transformers(model, renderer, tasks, args.action_tokens, args.batch_size, device)
    if args.mode == "rollout":
        return

    # 3. training throughput and model FLOP utilisation against a measured matmul peak
    seq_len = cfg.max_position_embeddings // 2
    tok_s = train_throughput(model, device, args.train_batch, seq_len, args.train_steps)
    # FLOPs per token: 6 per weight in a matmul (forward 2, backward 4); the embedding lookup is no matmul, but a
    # tied embedding is also the head, so it counts once either way; plus the causal attention scores and
    # their weighted sum, 2 x (T/2 keys on average) x hd per head per layer, forward and backward (x3)
    matmul_params = n_params - sum(p.numel() for n, p in model.named_parameters() if "norm" in n)
    attn = 6 * cfg.num_hidden_layers * cfg.num_attention_heads * cfg.hd * seq_len
    flops = (6 * matmul_params + attn) * tok_s
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    peak = matmul_peak(device, dtype, 8192 if device.type == "cuda" else 2048)
    print(f"training (batch {args.train_batch} x {seq_len} tokens): {tok_s:9.0f} tokens/s, "
          f"{flops / 1e9:.1f} GFLOP/s = {100 * flops / peak:.1f}% of the measured "
          f"{str(dtype).removeprefix('torch.')} matmul peak {peak / 1e9:.0f} GFLOP/s")


if __name__ == "__main__":
    main()
