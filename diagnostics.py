"""diagnostics.py: what a run's agents learned, and why a variant helps or not. Each mode reads a finished run
directory (its config, checkpoints and saved explorations), computes, and prints a table; nothing is asserted.

    python bench.py --reading RUN_DIR   # does the SFT agent read? its reward on the same tasks relabeled
    python bench.py --failures RUN_DIR  # what its failures get wrong, and where they leave the oracle's path
    python bench.py --margins RUN_DIR   # do the updates' preference margins carry to new tasks?
    python bench.py --why RUN_DIR       # why learning from failures helps here or not (below)

--why measures, per pair kind the run's target updates trained on (expert vs own failure; expert vs hard negative),
the properties that known results tie to whether negatives can help (docs/when_failures_help.md):
(1) where rejected trajectories leave the expert's path, and the share of their action tokens after that point (the
    tail, in states the expert never visits: what DPO's margin mostly pushes down);
(2) recoverability: the share of failures from whose state just after the first wrong action the oracle's own
    actions still succeed within the remaining steps (a lower bound: the oracle is replayed, not re-planned);
(3) reachability: the SFT agent's greedy pass@1 against pass@4 and pass@8 at temperature 1 on the explored tasks
    (negatives shift mass only toward behaviour the agent can already sample: Tajwar et al. 2024);
(4) how failures end: a wrong final action, the step cap, or a loop of invalid actions until the cap;
(5) the share of pair tokens at states the expert data contains against states only the agent reached.
"""
import json
import math
import os
import random
from collections import Counter

import torch

import agent
import coevo
import config
import envs
import loader
import runs


def reading(run_dir: str, ckpt: str, n: int, device, splits: str = "test") -> None:
    """Greedy reward of a run's checkpoint on its test tasks (or valid, or its expert training tasks: the worlds
    SFT trained on and ETO explores), original vs relabeled, per split."""

    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    model, renderer = loader.load_checkpoint(os.path.join(run_dir, "ckpt", ckpt), device=device)
    n = n or (cfg["n_expert"] if splits == "train" else cfg["n_test"])
    print(f"reading benchmark: {cfg['env']}, checkpoint {ckpt} of {run_dir}, {n} tasks per split, greedy")
    for split in ("train",) if splits == "train" else (f"{splits}_seen", f"{splits}_unseen"):
        tasks = (envs.make_tasks(cfg["env"], split, cfg["n_train"], cfg["seed"])[:min(n, cfg["n_expert"])]
                 if split == "train" else envs.make_tasks(cfg["env"], split, n, cfg["seed"]))
        n = len(tasks)
        scores = []
        for ts in (tasks, [envs.relabel(t, seed=0) for t in tasks]):
            trajs = agent.rollout(model, renderer, lambda: envs.make_env(cfg["env"]), ts)
            scores.append((100 * sum(t["reward"] for t in trajs) / n, 100 * sum(t["success"] for t in trajs) / n))
        (r0, s0), (r1, s1) = scores
        loss = 100 * (r0 - r1) / r0 if r0 else float("nan")
        print(f"{split:12s} reward x100 original {r0:5.1f}  relabeled {r1:5.1f}  (loses {loss:5.1f}% of it);"
              f"  success % {s0:5.1f} -> {s1:5.1f}")


def failures(run_dir: str, ckpt: str, n: int, device) -> None:
    """What a run's checkpoint gets wrong on its evaluation tasks: one count per kind of failure, per split."""

    cfg = json.load(open(os.path.join(run_dir, "config.json")))
    model, renderer = loader.load_checkpoint(os.path.join(run_dir, "ckpt", ckpt), device=device)
    n, split_name = n or cfg["n_test"], cfg.get("eval_on", "test")
    print(f"failures: {cfg['env']}, checkpoint {ckpt} of {run_dir}, {n} {split_name} tasks per split, greedy")
    for split in ("seen", "unseen"):
        tasks = envs.make_tasks(cfg["env"], f"{split_name}_{split}", n, cfg["seed"])
        trajs = [t for t in agent.rollout(model, renderer, lambda: envs.make_env(cfg["env"]), tasks)
                 if not t["success"]]
        kinds = Counter(failure_kind(t) for t in trajs)
        left = Counter(first_departure(t) for t in trajs)
        print(f"{split_name}_{split}: {len(trajs)} failures of {n} episodes")
        for name, counts in (("what went wrong", kinds),
                             ("first action off the oracle's path (oracle -> agent)", left)):
            print(f"  {name}:")
            for k, c in counts.most_common():
                print(f"    {k:40s} {c:5d}  {100 * c / max(len(trajs), 1):5.1f}%")


@torch.no_grad()
def margins(run_dir: str, n: int, device) -> None:
    """Does what the preference pairs taught carry to new tasks? ETO-style pairs (the oracle's trajectory vs the
    SFT agent's greedy failure, build_eto_pairs' rules) on the run's expert tasks, where the update trained, and
    on its validation tasks, where it did not; each updated checkpoint's DPO margin against the SFT checkpoint,
    beta * ((pi - sft)(chosen) - (pi - sft)(rejected)): the implicit reward gap that DPO raises. The nll control
    gets the same numbers, so ETO minus nll is what the preference term itself moved."""
    cfg = runs.saved_config(run_dir, device=str(device))
    sft, renderer = loader.load_checkpoint(os.path.join(run_dir, "ckpt", "sft_0_train"), device=device)
    names = [m for m in config.LOOP_METHODS
             if os.path.isdir(os.path.join(run_dir, "ckpt", f"{m}_{cfg.iterations}_6_update_target"))]
    models = {"sft": sft} | {m: loader.load_checkpoint(os.path.join(run_dir, "ckpt",
                                                                  f"{m}_{cfg.iterations}_6_update_target"),
                                                  device=device)[0] for m in names}
    print(f"margins: {cfg.env}, {run_dir}, checkpoints {', '.join(names)} against sft_0_train, beta {cfg.beta}; "
          f"pairs = oracle vs SFT's greedy failure, up to {n or cfg.n_expert} tasks per split")
    print("| split | pairs | method | margin | accuracy % | chosen (nats) | rejected (nats) |\n" + "|---" * 7 + "|")
    decisions = []
    for split in ("train", "valid_seen", "valid_unseen"):
        count = cfg.n_train if split == "train" else (n or cfg.n_expert)
        tasks = envs.make_tasks(cfg.env, split, count, cfg.seed)[:n or cfg.n_expert]   # train: the expert tasks
        trajs = agent.rollout(sft, renderer, lambda: envs.make_env(cfg.env), tasks, device=device)
        pairs = [p for t, tr in zip(tasks, trajs) if not tr["success"]
                 for p in coevo.build_eto_pairs(envs.oracle(t), [tr], cfg.eto_truncate_turns)]
        logps = {m: pair_logps(cfg, model, renderer, pairs) for m, model in models.items()}   # each model once
        base = {}
        for m in names:
            margin, chosen, rejected = pair_margins(cfg.beta, logps[m], logps["sft"])
            base[m] = margin.tolist()
            mean, ci = runs.mean_ci(base[m])
            print(f"| {split} | {len(pairs)} | {m} | {mean:+.3f} ± {ci:.3f} | "
                  f"{100 * (margin > 0).double().mean():.1f} | "
                  f"{chosen.mean().item():+.2f} | {rejected.mean().item():+.2f} |")
        for m in [m for m in names if m != "nll" and "nll" in base]:
            mean, ci = runs.mean_ci([a - b for a, b in zip(base[m], base["nll"])])
            print(f"| {split} | {len(pairs)} | {m} - nll | {mean:+.3f} [{mean - ci:+.3f}, {mean + ci:+.3f}] | | | |")
        # greedy reward turns on the first decision where the agent left the expert's path, not on the sum: both
        # sides cut just after it (the shared prefix cancels), log pi(expert's action) - log pi(agent's action)
        first = [(dict(c, messages=c["messages"][:i + 1]), dict(r, messages=r["messages"][:i + 1])) for c, r in pairs
                 for i in [coevo.first_difference(c, r)] if i is not None and i < len(c["messages"])]
        for m, model in models.items():
            chosen, rejected = pair_logps(cfg, model, renderer, first)
            gap = chosen - rejected
            decisions.append(f"| {split} | {len(first)} | {m} | {100 * (gap > 0).double().mean():.1f} | "
                             f"{gap.mean().item():+.2f} |")
    print("\nat the first action off the expert's path: log pi(expert's action) - log pi(SFT agent's action)\n"
          "| split | decisions | checkpoint | expert's action more likely % | mean gap (nats) |\n|---|---|---|---|---|")
    print("\n".join(decisions))


@torch.no_grad()
def pair_logps(cfg, model, renderer, pairs: list) -> tuple:
    """Summed action log-probs of the chosen and of the rejected sides of (chosen, rejected) pairs, float64."""
    seqs = [renderer.render(x["messages"]) for pair in pairs for x in pair]   # chosen, rejected, chosen, ...
    logps = coevo.pool_logps(cfg, model.eval(), renderer, seqs, list(range(len(seqs))))[0].double()
    return logps[0::2], logps[1::2]


def pair_margins(beta: float, policy: tuple, reference: tuple) -> tuple:
    """Per pair, from pair_logps of the policy and of the reference: DPO's margin beta * ((policy - reference)(chosen)
    - (policy - reference)(rejected)) (-log sigmoid of it is the pair's DPO loss), and the two log-ratios in nats."""
    chosen, rejected = policy[0] - reference[0], policy[1] - reference[1]
    return beta * (chosen - rejected), chosen, rejected


def failure_kind(traj: dict) -> str:
    """shop: the constraints the bought product misses (type, attrs, price: +k when its tens digit is k above the
    budget's, options), or how the episode ended without a purchase; lab and sql: how the episode ended."""
    task = traj["task"]
    if task["env"] != "shop":
        return traj["end"]
    env, bought = envs.make_env("shop"), None
    env.reset(task)
    for action in traj["messages"][1::2]:
        product, chosen = env.item, dict(env.chosen)
        *_, done, _ = env.step(action)
        if done:
            bought = product if action == "click[buy now]" else None
            break
    if bought is None:
        return f"no purchase ({traj['end']})"
    goal, missed = task["slots"]["goal"], []
    if bought["type"] != goal["type"]:
        missed.append("type")
    if not set(goal["attrs"]) <= set(bought["attrs"]):
        missed.append("attrs")
    if bought["price"] >= goal["budget"]:
        missed.append(f"price +{bought['price'] // 10 - goal['budget'] // 10}")
    if any(chosen.get(dim) != value for dim, value in goal["options"].items()):
        missed.append("options")
    return " & ".join(missed)


def first_departure(traj: dict) -> str:
    """The kind of the oracle's action where the agent first did something else, and the kind of what it did."""
    def kind(a):  # shop: search, page, buy, click id (ids are one letter), click option; lab, sql: the first word
        if a in ("click[next >]", "click[< prev]", "click[buy now]", "click[back]"):
            return a[6:-1].strip("<> ")
        if a.startswith("click["):
            return "click id" if len(a) == 8 else "click option"
        return a.split("[")[0] if "[" in a else (a.split() or ["(empty)"])[0]
    ours, oracle = traj["messages"][1::2], envs.oracle(traj["task"])["messages"][1::2]
    k = next((i for i, (a, b) in enumerate(zip(ours, oracle)) if a != b), min(len(ours), len(oracle)))
    return f"{kind(oracle[k]) if k < len(oracle) else 'done'} -> {kind(ours[k]) if k < len(ours) else 'stopped'}"


# -----------------------------------------------------------------------------------------------------------
# --why: the properties that say whether a pair can teach anything
def pass_at_k(n: int, c: int, k: int) -> float:
    """The chance that at least one of k samples succeeds, estimated without bias from n samples with c successes
    (Chen et al. 2021): 1 - C(n - c, k) / C(n, k)."""
    return 1.0 if n - c < k else 1.0 - math.comb(n - c, k) / math.comb(n, k)


def ending(traj: dict) -> str:
    """How a failure ended: a wrong final action (a purchase, answer or focus), the step cap with mostly invalid
    actions (a loop the agent could not leave), the step cap otherwise, or the model's context."""
    if traj["end"] == "timeout":
        steps = len(traj["messages"]) // 2
        return "invalid-action loop" if traj["n_invalid"] >= steps / 2 else "step cap"
    return {"wrong": "wrong final action"}.get(traj["end"], traj["end"])


def recoverable(expert: dict, failure: dict) -> bool:
    """Whether the oracle's own actions, played from the failure's state just after its first wrong action, still
    succeed within the remaining steps (a lower bound on what a better policy could do from there)."""
    i = coevo.first_difference(expert, failure)
    if i is None:
        return False
    prefix = failure["messages"][1:i + 1:2]
    return envs.replay(failure["task"], prefix + expert["messages"][1::2])["success"]


def pair_properties(pairs: list, renderer) -> dict:
    """(1), (2), (4), (5) over (expert, rejected) pairs: the step of the first wrong action, the share of the
    rejected side's action tokens after it, recoverability, endings, and the share of pair tokens at expert states."""
    steps, tail, rejected_tokens, expert_state, pair_tokens, saved = Counter(), 0, 0, 0, 0, 0
    endings = Counter()
    for e, r in pairs:
        i = coevo.first_difference(e, r)
        lengths = [len(renderer.encode_action(a)) for a in r["messages"][1::2]]
        k = len(lengths) if i is None else (i - 1) // 2  # actions before the first wrong one
        steps[k + 1 if i is not None else "never"] += 1
        tail += sum(lengths[k + 1:])
        rejected_tokens += sum(lengths)
        chosen = sum(len(renderer.encode_action(a)) for a in e["messages"][1::2])
        expert_state += chosen + sum(lengths[:k + 1])  # the first wrong action is still taken at an expert state
        pair_tokens += chosen + sum(lengths)
        saved += recoverable(e, r)
        endings[ending(r)] += 1
    n = max(len(pairs), 1)
    return {"pairs": len(pairs), "first wrong step": dict(sorted(steps.items(), key=str)),
            "tail share": tail / max(rejected_tokens, 1), "recoverable": saved / n,
            "endings": {k: v / n for k, v in endings.most_common()}, "expert-state share": expert_state /
            max(pair_tokens, 1)}


@torch.no_grad()
def reachability(policy, renderer, env_name: str, tasks: list, samples: int, device) -> dict:
    """(3): greedy pass@1 against pass@k at temperature 1 (k = 1, 4, 8 of `samples` samples a task)."""
    greedy = agent.rollout(policy, renderer, lambda: envs.make_env(env_name), tasks, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    sampled = agent.rollout(policy, renderer, lambda: envs.make_env(env_name), [t for t in tasks for _ in
                            range(samples)], temperature=1.0, generator=gen, device=device)
    wins = [sum(t["success"] for t in sampled[j * samples:(j + 1) * samples]) for j in range(len(tasks))]
    out = {"greedy pass@1": sum(t["success"] for t in greedy) / len(tasks)}
    out.update({f"T=1 pass@{k}": sum(pass_at_k(samples, c, k) for c in wins) / len(tasks)
                for k in (1, 4, 8) if k <= samples})
    return out


def why(run_dir: str, n: int, device, samples: int = 8) -> None:
    """The --why tables of a finished run (its iteration-1 explorations and its SFT checkpoint)."""
    cfg = runs.saved_config(run_dir, device=str(device))
    experts = coevo.make_data(cfg)["experts"]
    sft, renderer = loader.load_checkpoint(os.path.join(run_dir, "ckpt", "sft_0_train"), device=device)
    read = lambda phase: json.load(open(os.path.join(run_dir, phase + ".json"))) if os.path.isfile(
        os.path.join(run_dir, phase + ".json")) else None
    own = next((x for m in ("eto", "nll", "rft", "coevo") if (x := read(f"{m}_1_1_explore_target"))), None)
    hard = read("coevo_1_4_hard_negatives")
    if own is None:
        raise SystemExit(f"why: {run_dir} has no finished exploration (run a loop method first: --method nll,eto)")
    own_by = coevo.by_task(own)
    kinds = {"expert vs own failure": [p for e in experts for p in coevo.build_eto_pairs(
        e, own_by.get(e["task"]["id"], []), cfg.eto_truncate_turns) if p[0] is e]}
    if hard is not None:
        by_task = coevo.by_task(hard)
        kinds["expert vs hard negative"] = [(e, t) for e in experts for t in by_task.get(e["task"]["id"], [])
                                            if not t["success"] and t["reward"] >= cfg.hn_threshold]
    print(f"why: {run_dir} ({cfg.env}, {len(experts)} expert tasks, iteration 1)\n")
    print("| measures | " + " | ".join(kinds) + " |\n|---" * 1 + "|---" * len(kinds) + "|")
    props = {k: pair_properties(v, renderer) for k, v in kinds.items()}
    rows = [("pairs (expert, rejected)", "pairs"), ("(1) step of the first wrong action: pairs per step",
                                                    "first wrong step"),
            ("(1) share of the rejected side's action tokens after it (the tail)", "tail share"),
            ("(2) recoverable: the oracle still succeeds from just after the first wrong action", "recoverable"),
            ("(4) how the rejected trajectory ended (share of pairs)", "endings"),
            ("(5) share of pair tokens at states in the expert data", "expert-state share")]
    for label, key in rows:
        cells = [props[k][key] for k in kinds]
        fmt = lambda v: (f"{v:.2f}" if isinstance(v, float) else ", ".join(f"{a}: {b:.2f}" if isinstance(b, float)
                         else f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else str(v))
        print(f"| {label} | " + " | ".join(fmt(c) for c in cells) + " |")
    tasks = [e["task"] for e in experts][:n or 300]
    reach = reachability(sft, renderer, cfg.env, tasks, samples, device)
    print(f"\n(3) reachability of the SFT agent on {len(tasks)} explored tasks (success rates): " +
          ", ".join(f"{k} {v:.3f}" for k, v in reach.items()))
