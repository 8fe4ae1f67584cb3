"""coevo.py: co-evolving agents (Jung et al., arXiv 2511.22254), with SFT, ETO and the nll control, in one loop.

The algorithm, as `run_method` runs it (each step's function on the right; losses in losses.py):

    0. SFT: pi_t, pi_f <- minimise NLL(e*) on the expert trajectories                          sft
    for k = 1..K:
    1. explore: pi_t greedily, pi_f by sampling (T = 0.7), on the training tasks               explore
    2. failure pairs (e+, e-): failures of both agents on one task, r(e+) > r(e-) + gap        build_failure_pairs
    3. update pi_f: L_f = DPO(e+, e-), reference = pi_f at the start of the iteration         update_failure
    4. hard negatives: failures sampled afresh from the updated pi_f on the expert tasks       explore
    5. target pairs: (a) e* vs own failure, (b) e* vs hard negatives, (c) better vs worse       build_target_groups
    6. update pi_t: L_t = dpo * DPO(a) + hn * HN(b) + nll * NLL(e*) + ff * DPO(c)              update_target
    7. evaluate pi_t greedily on the seen and unseen test tasks                                evaluate
    where
    log pi(e)   = sum of the log-probs of e's action tokens (observations are context)        agent.sequence_logps
    DPO(e+, e-) = -log sigmoid(beta * [(log pi(e+) - log ref(e+)) - (log pi(e-) - log ref(e-))])   losses.dpo_loss
    HN(b)       = mean over e*'s hard negatives e- of DPO(e*, e-)                             losses.hard_negative_loss
    NLL(e*)     = -log pi(e*) / (number of action tokens of e*)                               losses.nll_loss
    L_f, L_t    = the weighted sums above                            losses.failure_loss, losses.target_loss

Baselines, from the same SFT checkpoint: SFT (step 0 only); ETO (steps 1, 5a and 6 without HN); nll (ETO's loop
with the NLL term alone: what the pairs add beyond more imitation); rft (that NLL also on the agent's own successes).
Read on: `main` and `run_method`, then one function per step, then the pairs, the updates, evaluation and data.
Settings and the command line: config.py; run directories, reports and statistics: runs.py.

Deviations from, and interpretations of, the paper (its equations and hyper-parameters are not public):
  1. Log-probs are summed over action tokens only; the NLL term is a per-token mean (losses.py says why).
  2. ETO explores the training tasks that have an expert trajectory (its pairs need e*); co-evolution explores
     `explore_tasks` training tasks, since failure pairs need no e*; hard negatives are sampled where e* exists.
  3. Failure pairs need a reward gap of `failure_min_gap` (0.1); ties teach nothing.
  4. Each update starts a fresh AdamW optimizer; the reference is the agent at the start of the iteration (ETO)
     unless `--reference sft`.
  5. Reference log-probs are computed once per update, before it starts, so no second model is held.
  6. Target pairs of kind (c) (failure vs failure) are off by default (`--ff-coef`): the paper leaves them optional.
  7. Both agents start from the toy's pretrained base (base/, pretrain.py), as the paper's start from a pretrained
     LLM: a language model of the environments' text, no expert, no reward. `--preset scratch` starts from scratch,
     where SFT also fits the observation tokens (`--sft-obs-coef 1`) as its stand-in for pretraining.
  8. Every DPO-type term weighs 0.02 against the NLL anchor's 1, for ETO too (paper 0.5 / 0.5; ETO pure DPO): DPO
     acts on log-probs summed over about 50 action tokens, the NLL on a per-token mean, so at equal weights DPO
     dominates and the from-scratch agent fell 20+ points below SFT (validation). ETO and co-evolution share a loss.
  9. The NLL anchor replays every expert trajectory, not only those of the tasks that gave a pair: with the
     paper's subset the agent forgets the rest and falls below SFT (validation, docs/log.md).
  10. One iteration (ETO: K = 3): every variant peaked there on validation. `--preset paper` restores 8-10.
"""
import math
import os
import random
import sys
import time

import torch

import agent
import envs
import loader
import losses
import model as M
import runs
from config import Config, check_config, checkpoint_path, method_list, parse_config, run_path
from losses import Coefs
from runs import RunDir


# -----------------------------------------------------------------------------------------------------------
# The algorithm: step 0 once, then steps 1-7 K times for each method
def main(cfg: Config) -> str:
    """Step 0 once, then each method from the same SFT checkpoint; returns the results table."""
    check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    t0, data = time.time(), make_data(cfg)
    renderer = build_renderer(cfg, data)
    run = RunDir(run_path(cfg), cfg, resume=bool(cfg.resume), renderer=renderer)
    try:
        torch.manual_seed(runs.phase_seed(cfg, "init"))
        base = new_model(cfg, renderer)
        print(f"coevo: {cfg.env}, evaluated on the {cfg.eval_on} splits, {len(data['train'])} train tasks "
              f"({len(data['experts'])} with experts), {sum(p.numel() for p in base.parameters()) / 1e6:.2f}M "
              f"parameters, run dir {run.path}")
        # 0. SFT: behaviour-clone the expert trajectories; both agents start from this checkpoint
        run.cached("sft/0_train", sft, cfg, base, renderer, data["experts"], saves=base)
        run.cached("sft/7_evaluate", evaluate, cfg, base, renderer, data)
        del base  # every method reloads the SFT checkpoint; do not hold a third model
        for method in method_list(cfg):
            run_method(cfg, method, run, data, renderer)
        table = runs.write_summary(run, (time.time() - t0) / 60)
        written = [f for f in ("metrics.jsonl", "summary.md", "transcripts.md") if os.path.isfile(run.file(f))]
        print(f"\n{table}\n\n({(time.time() - t0) / 60:.1f} min; details in {run.path}/{', '.join(written)})")
        return table
    finally:
        run.release()


def run_method(cfg: Config, method: str, run: RunDir, data: dict, renderer) -> None:
    """Steps 1-7, K times, for `method` (nll, rft, eto or coevo), both agents starting from the SFT checkpoint."""
    sft_path = run.file("ckpt", "sft_0_train")
    target = loader.load_checkpoint(sft_path, device=cfg.device)[0]
    failure = loader.load_checkpoint(sft_path, device=cfg.device)[0] if method == "coevo" else None
    experts = data["experts"]
    tasks = [e["task"] for e in experts]
    explored = data["train"][:max(cfg.explore_tasks, cfg.n_expert)] if method == "coevo" else tasks  # deviation 2
    ref = sft_path if cfg.reference == "sft" else ""  # "": each agent as it is at the start of the iteration
    coefs = method_coefs(cfg, method)
    own, hard = [], []
    for k in range(1, cfg.iterations + 1):
        it = f"{method}/{k}"
        # 1. Explore: the target greedily (+ target_samples samples), the failure agent by sampling
        own = run.cached(f"{it}/1_explore_target", explore, cfg, target, renderer, explored, "target", before=own)
        if method == "coevo":
            fails = run.cached(f"{it}/1_explore_failure", explore, cfg, failure, renderer, explored, "failure")
            if cfg.failure_agent != "frozen":  # frozen: the hard negatives come from the SFT model itself
                # 2. Failure pairs: both agents' failures on one task, the higher reward chosen
                pairs = build_failure_pairs(own, fails, cfg.failure_min_gap, cfg.failure_within_agent,
                                            keep_successes=cfg.failure_agent == "positive")
                # 3. Update the failure agent: DPO toward the failure closer to success
                run.cached(f"{it}/3_update_failure", update_failure, cfg, failure, renderer, pairs, ref,
                           saves=failure, idle=target)
            # 4. Hard negatives: failures sampled afresh from the updated failure agent, on the expert tasks
            hard = fails if not cfg.regenerate_hard_negatives else run.cached(
                f"{it}/4_hard_negatives", explore, cfg, failure, renderer, tasks, "failure")
        # 5. Target pairs: (a) expert vs own failure (or --pairs own | branch), (b) expert vs hard negatives, (c) ...
        branches = run.cached(f"{it}/5_branch", branch, cfg, target, renderer, own[:len(tasks)], experts) if (
            cfg.pairs == "branch" and coefs.dpo) else []
        a = build_own_pairs(cfg.pairs, experts, own, branches, cfg.eto_truncate_turns, cfg.failure_min_gap)
        groups = build_target_groups(experts, a, own, hard, cfg.hn_threshold, cfg.failure_min_gap if coefs.ff else None,
                                     imitate=method == "rft", anchor_all=cfg.anchor_all_experts)
        if method == "coevo":
            runs.write_transcripts(run.file("transcripts.md"), groups)
        # 6. Update the target: L = dpo * DPO(a) + hn * HN(b) + nll * NLL(e*) + ff * DPO(c)
        run.cached(f"{it}/6_update_target", update_target, cfg, target, renderer, groups, coefs, ref,
                   saves=target, idle=failure)
        # 7. Evaluate the target greedily on the seen and unseen test tasks
        run.cached(f"{it}/7_evaluate", evaluate, cfg, target, renderer, data)


def method_coefs(cfg: Config, method: str) -> Coefs:
    """The target loss's weights for a method: co-evolution uses every term; ETO the same loss less HN (its own
    recipe, pure DPO, is --eto-dpo-coef 1 --eto-sft-coef 0); nll the NLL anchor alone (the control); rft the same NLL,
    also on the target's own successes (the groups carry them)."""
    if method == "eto":
        return Coefs(dpo=cfg.eto_dpo_coef, hn=0.0, nll=cfg.eto_sft_coef, ff=0.0)
    if method in ("nll", "rft"):
        return Coefs(dpo=0.0, hn=0.0, nll=1.0, ff=0.0)
    return Coefs(dpo=cfg.dpo_coef, hn=cfg.hn_coef, nll=cfg.sft_coef, ff=cfg.ff_coef)


# -----------------------------------------------------------------------------------------------------------
# Step 0: SFT
def sft(cfg: Config, model, renderer, experts: list, seed: int) -> list:
    """Step 0: behaviour cloning, the NLL of the expert's action tokens (plus sft_obs_coef times that of the
    observation tokens: deviation 7). Trains `model` in place; returns one metric record per epoch."""
    seqs = [renderer.render(t["messages"]) for t in experts]
    too_long = [t["task"]["id"] for t, (ids, _) in zip(experts, seqs) if len(ids) > model.cfg.max_position_embeddings]
    if too_long:
        raise SystemExit(f"coevo: {len(too_long)} expert trajectories (e.g. {too_long[0]}) are longer than the "
                         f"model's context of {model.cfg.max_position_embeddings} tokens; raise --context")
    steps = cfg.sft_epochs * math.ceil(len(seqs) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: sft_lr_factor(step, steps))
    rng, model, records = random.Random(seed), model.train(), []
    bar = agent.progress_bar(steps, "SFT")
    for epoch in range(cfg.sft_epochs):
        order = rng.sample(range(len(seqs)), len(seqs))
        for b in range(0, len(order), cfg.batch_size):
            # the observations too: read as language, they teach a from-scratch model to copy what the page shows
            # (an id, a price), the ability the paper's pretrained agents bring with them
            logps, n_tokens, *obs = pool_logps(cfg, model, renderer, seqs, order[b:b + cfg.batch_size],
                                               with_obs=cfg.sft_obs_coef > 0)
            loss = losses.nll_loss(logps, n_tokens).mean()
            if obs:
                loss = loss + cfg.sft_obs_coef * losses.nll_loss(*obs).mean()
            optimizer_step(opt, model, loss, bar.n + 1)
            sched.step()
            bar.set_postfix(epoch=epoch, nll=f"{loss.item():.3f}", refresh=False), bar.update()
        records.append({"epoch": epoch, "nll": loss.item()})
    bar.close()
    model.eval()
    return records


def sft_lr_factor(step: int, steps: int) -> float:
    """SFT's rate at a step, as a fraction of --sft-lr: cosine decay from 1 to 10% (the toy model overfits a few
    hundred trajectories if the rate stays high)."""
    return 0.1 + 0.45 * (1 + math.cos(math.pi * step / steps))


# -----------------------------------------------------------------------------------------------------------
# Steps 1 and 4: exploration
KEEP = ("task", "messages", "reward", "success", "end", "n_invalid")  # what later phases read of a rollout (tokens
#                                                                     are re-rendered from the messages)


def explore(cfg: Config, policy, renderer, tasks: list, who: str, seed: int, before: list = ()) -> tuple:
    """Steps 1 and 4: roll an agent out on `tasks`. The target ("target") plays each task greedily, then
    target_samples times at target_temperature; the failure agent ("failure") failure_samples times at
    failure_temperature. Returns (trajectories, metrics); with `before` (the target's rollouts of the previous
    iteration) the metrics also say what changed task by task."""
    greedy = who == "target"
    samples, temperature = (cfg.target_samples, cfg.target_temperature) if greedy else (
        cfg.failure_samples, cfg.failure_temperature)
    jobs = [(t, 0.0) for t in tasks] if greedy else []
    jobs += [(t, temperature) for t in tasks for _ in range(samples)]
    out, gen = [], torch.Generator(device=cfg.device).manual_seed(seed)
    for temp in sorted({temp for _, temp in jobs}):  # the greedy rollouts first, one per task
        todo = [t for t, tt in jobs if tt == temp]
        out += agent.rollout(policy, renderer, lambda: envs.make_env(cfg.env), todo, temperature=temp, top_p=cfg.top_p,
                             generator=gen, device=cfg.device, progress=True, desc=f"{who} T={temp:g}")
    trajs = [dict({k: t[k] for k in KEEP}, agent=who) for t in out]
    churn = greedy_churn(before[:len(tasks)], trajs[:len(tasks)]) if before else {}
    return trajs, {**exploration_stats(trajs), **churn}


def branch(cfg: Config, policy, renderer, greedy: list, experts: list, seed: int) -> tuple:
    """Step 5 under --pairs branch: from each failed greedy rollout of an expert task, the state where it first left
    the expert's path and the branch_states - 1 states after it; from each, branch_samples continuations sampled at
    target_temperature (agent.rollout with that prefix), each marked with its prefix length (`branched_at`). The
    failure itself continues from each of those states too, so it joins every one of its states' groups."""
    jobs, out = [], []
    for e, t in zip(experts, greedy):
        i = None if t["success"] else first_difference(e, t)
        actions = t["messages"][1::2]
        for k in range((i - 1) // 2, min((i - 1) // 2 + cfg.branch_states, len(actions))) if i is not None else ():
            jobs += [(t["task"], actions[:k])] * cfg.branch_samples
            out.append(dict(t, branched_at=k))
    gen = torch.Generator(device=cfg.device).manual_seed(seed)
    sampled = agent.rollout(policy, renderer, lambda: envs.make_env(cfg.env), [task for task, _ in jobs],
                            temperature=cfg.target_temperature, top_p=cfg.top_p, generator=gen, device=cfg.device,
                            progress=True, desc="branch", prefixes=[prefix for _, prefix in jobs])
    out += [dict({k: t[k] for k in KEEP}, agent="target", branched_at=len(prefix)) for t, (_, prefix) in
            zip(sampled, jobs)]
    return out, {**exploration_stats(out), "states": len(jobs) // max(cfg.branch_samples, 1)}


def exploration_stats(trajs: list) -> dict:
    """Success rate, failure rewards and their histogram, invalid-action and timeout rates."""
    if not trajs:
        return {"n": 0}
    fails = [t["reward"] for t in trajs if not t["success"]]
    n_actions = sum(len(t["messages"]) // 2 for t in trajs)
    return dict(n=len(trajs), success_rate=sum(t["success"] for t in trajs) / len(trajs),
                mean_reward=sum(t["reward"] for t in trajs) / len(trajs),
                mean_failure_reward=sum(fails) / len(fails) if fails else None,
                hard_negative_share=sum(0.6 <= r < 1 for r in fails) / len(fails) if fails else None,
                failure_histogram=[sum(i / 10 <= r < (i + 1) / 10 for r in fails) for i in range(10)],
                invalid_rate=sum(t["n_invalid"] for t in trajs) / max(1, n_actions),
                timeout_rate=sum(t["end"] == "timeout" for t in trajs) / len(trajs))


def greedy_churn(before: list, after: list) -> dict:
    """Task by task, the target's greedy rollouts of two consecutive iterations: failures it now solves, successes it
    lost, and failures it repeats action for action (where the preference update did not change its decisions)."""
    prev = {t["task"]["id"]: t for t in before}
    pairs = [(prev[t["task"]["id"]], t) for t in after if t["task"]["id"] in prev]
    return dict(solved_since_last=sum(not x["success"] and y["success"] for x, y in pairs),
                broken_since_last=sum(x["success"] and not y["success"] for x, y in pairs),
                repeated_failures=sum(not x["success"] and not y["success"]
                                      and x["messages"][1::2] == y["messages"][1::2] for x, y in pairs))


# -----------------------------------------------------------------------------------------------------------
# Steps 2 and 5: the pairs, every kind built here, from trajectories, with plain arguments
def by_task(trajs: list) -> dict:
    """Group trajectories by task id, dropping repeats of the same action sequence (they add nothing)."""
    groups, seen = {}, set()
    for t in trajs:
        key = (t["task"]["id"], tuple(t["messages"][1::2]))
        if key not in seen:
            seen.add(key)
            groups.setdefault(t["task"]["id"], []).append(t)
    return groups


def truncate(traj: dict, n_turns: int) -> dict:
    """ETO: a rejected trajectory keeps at most n_turns actions (and the observations before them)."""
    return dict(traj, messages=traj["messages"][:2 * n_turns + 1])


def build_eto_pairs(expert: dict, trajs: list, truncate_turns: int) -> list:
    """Pairs (a): expert vs the target's own trajectory, ETO's rules. Ties are dropped (no preference to learn),
    the pair is flipped when the agent beats the expert, and the rejected side is truncated to the expert's
    length + truncate_turns turns (a long wandering failure would otherwise dominate the summed log-prob)."""
    pairs, limit = [], len(expert["messages"]) // 2 + truncate_turns
    for t in trajs:
        if t["reward"] == expert["reward"]:
            continue
        chosen, rejected = (expert, t) if expert["reward"] > t["reward"] else (t, expert)
        pairs.append((chosen, truncate(rejected, limit)))
    return pairs


def build_failure_pairs(target_trajs: list, failure_trajs: list, min_gap: float, within_agent: bool,
                        keep_successes: bool = False) -> list:
    """Step 2: pairs of failures on the same task, the higher reward chosen, across the two agents (and within
    each agent if asked). Successes are dropped: the failure agent models failures only. The positive-agent
    ablation keeps them, which trains the second agent toward success instead."""
    tgt, fail, pairs = by_task(target_trajs), by_task(failure_trajs), []
    for task_id in sorted(set(tgt) | set(fail)):
        a = [t for t in tgt.get(task_id, []) if keep_successes or not t["success"]]
        b = [t for t in fail.get(task_id, []) if keep_successes or not t["success"]]
        cand = [(x, y) for x in a for y in b]
        if within_agent:
            cand += [(x, y) for side in (a, b) for i, x in enumerate(side) for y in side[i + 1:]]
        for x, y in cand:
            if abs(x["reward"] - y["reward"]) > min_gap:
                pairs.append((x, y) if x["reward"] > y["reward"] else (y, x))
    return pairs


def first_difference(chosen: dict, rejected: dict):
    """The message index of the rejected trajectory's first action that differs from the chosen one's (acting past
    the chosen side's end counts), or None if it never differs. Everything before it is a prefix the two share,
    which cancels in DPO's margin; in a deterministic environment it is where a failure leaves the expert's path."""
    c, r = chosen["messages"], rejected["messages"]
    return next((i for i in range(1, len(r), 2) if i >= len(c) or r[i] != c[i]), None)


def build_own_pairs(kind: str, experts: list, own: list, branches: list, truncate_turns: int, min_gap: float) -> dict:
    """Kind (a) per expert task id, from one of three sources (--pairs):
    eto: e* vs each of the target's own rollouts, ETO's rules (build_eto_pairs);
    own: the target's higher- vs lower-reward rollout of the task, no expert needed (Iterative RPO, Pang et al. 2024);
    branch: higher- vs lower-reward continuation from one state of the target's own failure, sharing that prefix
    (per-step credit: Setlur et al. 2024); after the first wrong action that is recovery, which no expert shows."""
    own_by = by_task(own)
    if kind == "eto":
        return {e["task"]["id"]: build_eto_pairs(e, own_by.get(e["task"]["id"], []), truncate_turns) for e in experts}
    if kind == "own":
        return {tid: build_failure_pairs(trajs, [], min_gap, within_agent=True, keep_successes=True)
                for tid, trajs in own_by.items()}
    at_state = {}
    for t in branches:  # continuations grouped by the state they started from: (task, prefix length)
        at_state.setdefault((t["task"]["id"], t["branched_at"]), []).append(t)
    pairs = {}
    for (tid, _), trajs in sorted(at_state.items()):
        pairs.setdefault(tid, []).extend(build_failure_pairs(trajs, [], min_gap, within_agent=True,
                                                             keep_successes=True))
    return pairs


def build_target_groups(experts: list, a_by_task: dict, own: list, hard: list, hn_threshold: float = 0.0,
                        ff_gap: float | None = None, imitate: bool = False, anchor_all: bool = True) -> list:
    """Step 5: per expert task e*, a group of its pairs of the three kinds: (a) from a_by_task (build_own_pairs),
    (b) e* vs the hard negatives (failures with reward >= hn_threshold), (c) with ff_gap, the target's better vs
    worse failure; imitate (RFT): the target's own successes that differ from e*, for the NLL term. anchor_all:
    every expert gets a group, also with no pair (the NLL anchor replays it)."""
    own_by, hard_by, groups = by_task(own), by_task(hard), []
    for e in experts:
        tid = e["task"]["id"]
        a = a_by_task.get(tid, [])
        b = [t for t in hard_by.get(tid, []) if not t["success"] and t["reward"] >= hn_threshold]
        fails = [t for t in own_by.get(tid, []) if not t["success"]]
        c = [] if ff_gap is None else build_failure_pairs(fails, [], ff_gap, within_agent=True)
        wins = [t for t in own_by.get(tid, []) if imitate and t["success"] and first_difference(e, t) is not None]
        if a or b or c or wins or anchor_all:
            groups.append({"expert": e, "a": a, "hard": b, "c": c, "imitate": wins})
    return groups


def to_pool(pairs_or_groups: list):
    """Each trajectory once in a pool, and the pairs (or groups) as positions in it: each sequence is rendered and
    scored once per step even when several pairs share it (an expert with many negatives)."""
    pool, index = [], {}

    def ix(t):
        if id(t) not in index:
            index[id(t)] = len(pool)
            pool.append(t)
        return index[id(t)]
    if pairs_or_groups and isinstance(pairs_or_groups[0], tuple):
        return pool, [(ix(c), ix(r)) for c, r in pairs_or_groups]
    return pool, [{"expert": ix(g["expert"]), "a": [(ix(c), ix(r)) for c, r in g["a"]],
                   "hard": [ix(h) for h in g["hard"]], "c": [(ix(c), ix(r)) for c, r in g["c"]],
                   "imitate": [ix(t) for t in g.get("imitate", [])]} for g in pairs_or_groups]


def target_pairs(batch: list, device) -> losses.TargetPairs:
    """A batch of pooled groups as the tensors of positions target_loss takes; hard negatives padded to the
    batch's largest count K with a mask."""
    def two_rows(pairs):  # [(chosen, rejected), ...] -> (2, N)
        return torch.tensor(pairs, dtype=torch.long, device=device).view(-1, 2).T
    K = max(len(g["hard"]) for g in batch)
    hard = [g["hard"] + [0] * (K - len(g["hard"])) for g in batch]
    mask = [[k < len(g["hard"]) for k in range(K)] for g in batch]
    return losses.TargetPairs(
        expert=torch.tensor([g["expert"] for g in batch], device=device),
        own=two_rows([p for g in batch for p in g["a"]]), ff=two_rows([p for g in batch for p in g["c"]]),
        hard=torch.tensor(hard, dtype=torch.long, device=device).view(len(batch), K),
        hard_mask=torch.tensor(mask, dtype=torch.bool, device=device).view(len(batch), K),
        imitate=torch.tensor([i for g in batch for i in g["imitate"]], dtype=torch.long, device=device))


# -----------------------------------------------------------------------------------------------------------
# Steps 3 and 6: the preference updates
def update_failure(cfg: Config, policy, renderer, pairs: list, ref_path: str, seed: int) -> dict:
    """Step 3: DPO on the failure pairs (+ failure_sft_coef * NLL of the chosen failure): losses.failure_loss."""
    pool, items = to_pool(pairs)
    runs.report_pairs({"failure_pairs": len(pairs)}, used={"failure_pairs": True})

    def loss(batch, pi, ref, n_tokens):
        positions = torch.tensor(batch, dtype=torch.long, device=pi.device).view(-1, 2).T
        return losses.failure_loss(pi, ref, n_tokens, positions, cfg.beta, cfg.failure_sft_coef)
    weights = {"weights": {"failure": 1.0, "nll": cfg.failure_sft_coef}}  # what the loss weighs (plots read it)
    return preference_update(cfg, policy, renderer, pool, items, loss, cfg.failure_lr, ref_path, seed, weights)


def update_target(cfg: Config, policy, renderer, groups: list, coefs: Coefs, ref_path: str, seed: int) -> dict:
    """Step 6: the target's loss over the groups of pairs: losses.target_loss, weighted by `coefs`."""
    pool, items = to_pool(groups)
    counts = {f"{kind}_pairs": sum(len(g[key]) for g in groups) for kind, key in
              (("own", "a"), ("hard", "hard"), ("ff", "c"))}
    if any(g.get("imitate") for g in groups):  # RFT: how many of its own successes the NLL term also fits
        counts["own_successes"] = sum(len(g["imitate"]) for g in groups)
    runs.report_pairs(counts, used={"own_pairs": coefs.dpo > 0, "hard_pairs": coefs.hn > 0, "ff_pairs": coefs.ff > 0})

    def loss(batch, pi, ref, n_tokens):
        return losses.target_loss(pi, ref, n_tokens, target_pairs(batch, pi.device), coefs, cfg.beta, cfg.listwise)
    counts["weights"] = {"own": coefs.dpo, "hard": coefs.hn, "nll": coefs.nll, "ff": coefs.ff}  # (plots read it)
    return preference_update(cfg, policy, renderer, pool, items, loss, cfg.target_lr, ref_path, seed, counts)


def preference_update(cfg: Config, policy, renderer, pool: list, items: list, loss_fn, lr: float, ref_path: str,
                      seed: int, counts: dict | None = None) -> dict:
    """Steps 3 and 6: dpo_epochs passes over `items` (pairs or groups of positions in `pool`) in batches of
    batch_size, each step `loss_fn(batch, pi, ref, n_tokens)` on pool-sized tensors of summed log-probs (only the
    batch's positions filled). Trains `policy` in place; returns the phase's metric record."""
    seqs = [renderer.render(t["messages"]) for t in pool]
    ref = reference_logps(cfg, policy, renderer, seqs, ref_path)
    opt = torch.optim.AdamW(policy.parameters(), lr=lr, weight_decay=0.0)
    rng, policy, per_step = random.Random(seed), policy.train(), []
    bar = agent.progress_bar(cfg.dpo_epochs * math.ceil(len(items) / cfg.batch_size), "update")
    for epoch in range(cfg.dpo_epochs):
        order = rng.sample(range(len(items)), len(items))
        for b in range(0, len(order), cfg.batch_size):
            batch = [items[i] for i in order[b:b + cfg.batch_size]]
            idx = sorted({i for item in batch for i in item_positions(item)})
            logps, n_tokens = pool_logps(cfg, policy, renderer, seqs, idx)
            where = torch.tensor(idx, device=logps.device)  # scattered to pool size: the loss indexes by position
            pi, counted = (torch.zeros(len(pool), device=logps.device).index_put((where,), x.float())
                           for x in (logps, n_tokens))
            loss, stats = loss_fn(batch, pi, ref, counted)
            optimizer_step(opt, policy, loss, bar.n + 1)
            per_step.append(stats)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False), bar.update()
    bar.close()
    policy.zero_grad(set_to_none=True)  # memory: gradients (4 bytes a parameter) are not kept between updates
    policy.eval()
    # the means summarise the phase; "steps" keeps every step's figures for the learning curves (plots.py)
    return {"items": len(items), "sequences": len(pool), **(counts or {}), **step_means(per_step), "steps": per_step}


@torch.no_grad()
def reference_logps(cfg: Config, policy, renderer, seqs: list, ref_path: str = ""):
    """Log-probs of every sequence under the frozen reference, computed once before the update starts, so that
    no second model is held during it: `policy` as it is now (the iteration's start, ETO) or the SFT checkpoint
    (`--reference sft`)."""
    ref = loader.load_checkpoint(ref_path, device=cfg.device)[0] if ref_path else policy
    ref.eval()
    if not seqs:
        return torch.zeros(0, device=cfg.device)
    return pool_logps(cfg, ref, renderer, seqs, list(range(len(seqs))))[0].float()


def optimizer_step(opt, model, loss, step: int) -> None:
    """One AdamW step on `loss`, gradients clipped to norm 1; a non-finite loss stops the phase (runs.RunDir.cached
    then names it) before it can write a broken checkpoint."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"at step {step}")
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()


def step_means(per_step: list) -> dict:
    """Each metric's mean over the steps that reported it: a batch without, say, hard negatives has no hard_acc,
    and counting it as 0 would drag the phase's hard_acc down."""
    keys = dict.fromkeys(k for stats in per_step for k in stats)
    return {k: sum(s[k] for s in per_step if k in s) / sum(k in s for s in per_step) for k in keys}


def item_positions(item) -> list:
    if isinstance(item, tuple):  # a (chosen, rejected) pair of pool positions
        return list(item)
    return [item["expert"]] + [i for p in item["a"] + item["c"] for i in p] + item["hard"] + item["imitate"]


def pool_logps(cfg: Config, policy, renderer, seqs: list, idx: list, with_obs: bool = False):
    """Summed action log-probs (and action-token counts) of seqs[i] for i in idx, in that order (length-sorted
    chunks inside: agent.batch_logps); with_obs, the observation tokens' too (logps, n, obs_logps, n_obs)."""
    with M.autocast(cfg.device):  # bf16 on a GPU; the log-softmax stays fp32 inside agent.sequence_logps
        return agent.batch_logps(policy, [seqs[i] for i in idx], renderer.pad_id, cfg.device, with_obs)


# -----------------------------------------------------------------------------------------------------------
# Step 7: evaluation
def evaluate(cfg: Config, policy, renderer, data: dict) -> tuple:
    """Step 7: greedy rollouts on test_seen and test_unseen: average reward x100, success rate, the share of
    invalid actions and of episodes that ran out of steps (in shop and sql a timeout scores 0, below any wrong
    purchase or query). Also `expert_nll`, the oracle's trajectories on the same tasks teacher-forced: reward moves
    in jumps, this moves smoothly, so an update that pushes the expert's own tokens down shows. Returns
    (evaluation with per-task rewards for paired differences, its metrics without them)."""
    out = {}
    for split in ("test_seen", "test_unseen"):
        trajs = agent.rollout(policy, renderer, lambda: envs.make_env(cfg.env), data[split], temperature=0.0,
                              device=cfg.device, progress=True, desc=f"evaluate {split.replace('test', cfg.eval_on)}")
        stats, rewards = exploration_stats(trajs), [t["reward"] for t in trajs]
        (reward, reward_ci), (success, success_ci) = runs.mean_ci(rewards), runs.mean_ci(
            [float(t["success"]) for t in trajs])
        out[split] = {"reward": 100 * reward, "reward_ci": 100 * reward_ci, "success": success,
                      "success_ci": success_ci,
                      "invalid_rate": stats["invalid_rate"], "timeout_rate": stats["timeout_rate"],
                      "expert_nll": expert_nll(cfg, policy, renderer, [envs.oracle(t) for t in data[split]]),
                      "rewards": rewards}  # per task, in the order of data[split]: paired differences need them
    return out, {split: {k: v for k, v in ev.items() if k != "rewards"} for split, ev in out.items()}


@torch.no_grad()
def expert_nll(cfg: Config, policy, renderer, trajs: list) -> float:
    """Per-token NLL of the action tokens of `trajs` under `policy` (all tokens pooled, as in SFT's loss)."""
    seqs = [renderer.render(t["messages"]) for t in trajs]
    if not seqs:
        return 0.0
    logps, n = pool_logps(cfg, policy, renderer, seqs, list(range(len(seqs))))
    return -logps.float().sum().item() / max(n.sum().item(), 1)


# -----------------------------------------------------------------------------------------------------------
# Data and models
def make_data(cfg: Config) -> dict:
    """Tasks of every split, and the oracle's trajectory for the first n_expert training tasks (scarce e*). With
    --eval-on valid, "test_seen" and "test_unseen" hold the validation splits' tasks (the rest is unchanged)."""
    data = {split: envs.make_tasks(cfg.env, split.replace("test", cfg.eval_on), n, cfg.seed)
            for split, n in (("train", cfg.n_train), ("test_seen", cfg.n_test), ("test_unseen", cfg.n_test))}
    data["experts"] = [dict(envs.oracle(t), agent="expert") for t in data["train"][:cfg.n_expert]]
    return data


def build_renderer(cfg: Config, data: dict):
    """The toy tokenizer is built from the environment's closed lexicon and the expert transcripts. With
    --init-from the checkpoint's own tokenizer and chat format replace it (read without touching the weights)."""
    if cfg.init_from:
        return loader.load_renderer(checkpoint_path(cfg.init_from), chat_format=cfg.chat_format or None)
    texts = envs.lexicon(cfg.env) + [m for t in data["experts"] for m in t["messages"]]
    return agent.Renderer(agent.build_tokenizer(texts))


def new_model(cfg: Config, renderer):
    """A fresh toy model sized by the model flags, or with --init-from the checkpoint's model: its config.json
    decides every size (the toy flags are ignored). Weights are fp32 either way: they are the master copy that
    AdamW updates, and on cuda the matmuls run in bf16 under autocast (docs/checkpoints.md: memory)."""
    if cfg.init_from:
        path = checkpoint_path(cfg.init_from)
        return loader.load_model(path, device=cfg.device, chat_format=cfg.chat_format or None)[0]
    mcfg = M.ModelConfig(vocab_size=renderer.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
                         num_attention_heads=cfg.heads, num_key_value_heads=max(1, cfg.heads // 2),
                         intermediate_size=3 * cfg.hidden_size, max_position_embeddings=cfg.context)
    return M.Transformer(mcfg).to(cfg.device)


if __name__ == "__main__":
    if sys.argv[1:2] == ["plot"]:  # python coevo.py plot RUN_DIR [--out DIR]: figures from a run's metrics
        import plots
        sys.exit(plots.main(sys.argv[2:]))
    config = parse_config()
    if config.resume:  # the saved configuration wins: a resumed run must be the same run
        config = runs.saved_config(config.resume)
    runs.sweep(config, main) if config.seeds else main(config)
