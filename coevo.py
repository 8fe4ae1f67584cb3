"""coevo.py: co-evolving agents (Jung et al., arXiv 2511.22254), with the SFT and ETO baselines, in one loop.

    python coevo.py                                  # CPU teaching run: SFT vs ETO vs co-evolution on ToyShop
    python coevo.py --method coevo --env lab         # one method on one environment
    python coevo.py --seeds 0,1,2                    # the comparison over seeds: mean and spread
    python coevo.py --resume runs/<name>             # continue a killed run after its last finished phase
    python coevo.py plot runs/<name>                 # PNGs of a run's metrics (needs matplotlib; plots.py)

Read top to bottom: the config, then the algorithm (`main`, `run_method`), then one function per step, then data,
reports and the command line. Run directories (resume) and the tables' statistics are in runs.py.
The loop in `run_method` is the algorithm box of docs/coevo.md (from METHOD.md), with the step number on each line:
  0. SFT both agents on the expert trajectories
  for k in 1..K:
  1. explore with the target and the failure agent   2. failure-vs-failure pairs   3. DPO update of the failure agent
  4. sample hard negatives from it   5. target pairs   6. update the target   7. evaluate

Deviations from, and interpretations of, the paper (its equations and hyper-parameters are not public):
  1. Log-probs are summed over action tokens only; the NLL term is a per-token mean (losses.py says why).
  2. ETO explores the training tasks that have an expert trajectory (its pairs need e*); co-evolution explores
     `explore_tasks` training tasks, since failure pairs need no e*; hard negatives are sampled where e* exists.
  3. Failure pairs need a reward gap of `failure_min_gap` (0.1); ties teach nothing.
  4. Each update phase starts a fresh AdamW optimizer; the reference is the agent at the start of the
     iteration (ETO) unless `--reference sft`.
  5. Reference log-probs are computed once per update, before it starts, so no second model is held.
  6. Target pairs of kind (c) (failure vs failure) are off by default (`--ff-coef`), as METHOD.md leaves them optional.
  7. SFT also fits the observation tokens (`--sft-obs-coef 1`): the paper's agents start from a pretrained LLM that
     can read and copy what a page shows; a from-scratch toy model learns that from the observations (measured
     on validation: SFT 8 -> 46 reward on the shop, docs/results.md). The preference losses stay on actions only.
  8. Every DPO-type term weighs 0.02 against the NLL anchor's 1, for ETO too (paper 0.5 / 0.5; ETO pure DPO). DPO
     acts on log-probs summed over about 50 action tokens, the NLL on a per-token mean: at equal weights DPO
     dominates and the toy agent falls 20+ points below SFT. Chosen on validation (docs/results.md). So ETO and
     co-evolution share one loss and differ only in the hard negatives.
  9. The NLL anchor replays every expert trajectory, not only those of the tasks that gave a pair: with the
     paper's subset the agent forgets the rest and falls below SFT (validation, docs/results.md).
  10. One iteration (ETO: K = 3): every variant peaked there on validation, and it keeps the default run in
     minutes. `--preset paper` restores 8-10.
"""
import argparse
import dataclasses
import inspect
import json
import math
import os
import random
import re
import sys
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

import envs
import loader
import losses
import model as M
from runs import (HEADER, METRICS, RunDir, final_evaluations, json_phase, mean_ci, model_phase, over_seeds,
                  paired_gaps, per_task, phase_seed, results_table)


# -----------------------------------------------------------------------------------------------------------
@dataclass
class Config:
    # --- run and system
    method: str = "compare"  # sft | nll | eto | coevo | compare (= eto,coevo), or a comma list such as nll,eto: all from one SFT checkpoint, one table
    name: str = ""  # run directory under out_dir ("" = made from env, method and seed)
    out_dir: str = "runs"  # where run directories go
    seed: int = 0  # one seed drives tasks, initialisation, sampling and shuffling
    seeds: str = ""  # comma list, e.g. 0,1,2: repeat the run per seed and print mean and spread
    device: str = "cpu"  # cpu | cuda (bf16 autocast on cuda)
    threads: int = 2  # torch CPU threads (0 = torch's default); fixed, not "all cores", so a run repeats on any machine; parallel runs: --threads 1 each (2 processes x 2 threads were 5x slower)
    resume: str = ""  # a run directory: continue after its last finished phase (its saved config is used)
    preset: str = ""  # "" | paper (the paper's loss weights and K = 3: deviations 8-10) | smoke (a tiny run for tests, seconds)
    # --- environment and data
    env: str = "shop"  # shop | lab | sql
    n_train: int = 2000  # training tasks generated
    n_expert: int = 1200  # training tasks that carry an expert trajectory (scarce ground truth; chosen on valid, docs/results.md)
    n_test: int = 500  # tasks in each of test_seen and test_unseen (500: a 95% interval of about +-4 reward points)
    eval_on: str = "test"  # test | valid: evaluate on valid_seen and valid_unseen instead (choose settings there; report test)
    # --- model (toy size; ignored with --init-from)
    init_from: str = ""  # Hugging Face-layout folder (Llama/Qwen/Mistral family) to start from; its config and tokenizer replace the toy ones (--hidden-size, --layers, --heads, --context are ignored)
    chat_format: str = ""  # chat format override for --init-from ("" = detect)
    hidden_size: int = 128  # model width
    layers: int = 4  # transformer blocks
    heads: int = 4  # query heads (kv heads = heads // 2)
    context: int = 576  # max tokens of an episode (a step-capped shop episode of the longest pages needs 519)
    # --- SFT (step 0)
    sft_epochs: int = 10  # passes over the expert trajectories (40 with 300 experts: SFT solves all 300, nothing to pair)
    sft_lr: float = 3e-3  # AdamW learning rate, cosine-decayed to 10%
    sft_warmup: float = 0.0  # fraction of the SFT steps over which the rate rises linearly from 0 (0 = none)
    sft_obs_coef: float = 1.0  # weight of the NLL of the observation tokens in SFT (a from-scratch model's stand-in for pretraining); 0 = actions only
    sft_fresh_worlds: bool = False  # each SFT epoch after the first trains on the expert tasks relabeled afresh (oracle there): SFT cannot recall the worlds ETO explores (docs/results.md)
    batch_size: int = 16  # trajectories (SFT) or pairs/groups (DPO) per optimizer step
    # --- exploration (step 1)
    explore_tasks: int = 600  # co-evolution: training tasks both agents explore (the expert tasks first); failure
    #                           pairs need no expert, so tasks without one add failures (<= n_expert: expert tasks only; capped at n_train)
    target_samples: int = 0  # sampled target rollouts per task on top of the one greedy rollout (0 = ETO parity)
    target_temperature: float = 1.0  # for those samples (0 = greedy)
    failure_samples: int = 4  # failure-agent rollouts per task
    failure_temperature: float = 0.7  # failure-agent sampling temperature (at 1.0 the toy model mostly emits invalid actions)
    top_p: float = 1.0  # nucleus sampling for every sampled rollout (1 = off)
    # --- failure agent (steps 2-4)
    failure_agent: str = "coevo"  # coevo (trained on failure pairs) | frozen (the SFT model) | positive (trained toward success)
    failure_min_gap: float = 0.1  # a failure pair needs r(chosen) > r(rejected) + gap
    failure_within_agent: bool = False  # also pair failures of the same agent (default: target x failure agent only)
    failure_lr: float = 5e-5  # failure agent's DPO learning rate
    failure_sft_coef: float = 0.0  # weight of the NLL of each pair's chosen (higher-reward) failure; 0 = plain DPO
    regenerate_hard_negatives: bool = True  # step 4 samples fresh from the updated agent (False: reuse step 1's)
    hn_threshold: float = 0.0  # hard negatives used for training need reward >= this (0 = any failure)
    # --- target agent (steps 5-6)
    dpo_coef: float = 0.02  # weight of DPO on (expert, target's own failure); 0 disables (paper 0.5: deviation 8)
    hn_coef: float = 0.02  # weight of DPO on (expert, hard negative); 0 reduces co-evolution to ETO + NLL
    sft_coef: float = 1.0  # weight of the NLL of the expert trajectory; 0 disables
    eto_dpo_coef: float = 0.02  # ETO's update: weight of DPO on (expert, own failure) (1 with eto_sft_coef 0 = pure DPO, ETO's recipe: --preset paper)
    eto_sft_coef: float = 1.0  # ETO's update: weight of the NLL of the expert (the anchor co-evolution's loss has; 0 = ETO's recipe)
    anchor_all_experts: bool = True  # that NLL term covers every expert trajectory (SFT's data replayed), not only the tasks that gave a pair (the paper's: --no-anchor-all-experts; deviation 9)
    anchor_obs_coef: float = 0.0  # that NLL term also fits the expert's observation tokens, weighted so (as SFT does with --sft-obs-coef); 0 = actions only
    ff_coef: float = 0.0  # weight of DPO on (better, worse) failure pairs of the target; needs target_samples >= 1; 0 off
    listwise: bool = False  # hard-negative term as a listwise softmax over negatives instead of mean pairwise DPO
    beta: float = 0.1  # DPO temperature: larger keeps the policy closer to its reference
    target_lr: float = 5e-5  # target's DPO learning rate (2e-4 collapses the toy target: see README)
    dpo_epochs: int = 1  # passes over the pairs per update
    reference: str = "iteration"  # iteration (each agent at the start of the iteration, ETO) | sft (fixed SFT model)
    eto_truncate_turns: int = 5  # ETO: a rejected trajectory keeps at most the expert's turns + this many
    cut_at_divergence: bool = False  # expert pairs: rejected side cut after its first action unlike the chosen's
    fresh_worlds: bool = False  # explore the training tasks relabeled afresh each iteration (envs.relabel: new ids, names, orders; same meaning), paired with the oracle there: SFT saw each training world 10-15 times and recalls its ids (docs/results.md)
    # --- schedule
    iterations: int = 1  # K: exploration-update rounds after SFT (ETO and the paper: 3; deviation 10)


PRESETS = {
    # the paper's recipe where it differs from the defaults (deviations 8-10): 0.5 DPO / 0.5 NLL, ETO as pure DPO,
    # the NLL on the experts of the paired tasks only, three iterations (about an hour on a 2-core CPU)
    "paper": dict(dpo_coef=0.5, hn_coef=0.5, sft_coef=0.5, eto_dpo_coef=1.0, eto_sft_coef=0.0, anchor_all_experts=False,
                  iterations=3),
    "smoke": dict(n_train=24, n_expert=12, n_test=8, explore_tasks=16, hidden_size=32, layers=1, heads=2, sft_epochs=2,
                  target_samples=1, failure_samples=2, iterations=1, batch_size=4, threads=1),  # tiny: 1 thread is faster
}
METHODS = ("sft", "eto", "coevo", "compare")  # plus "nll" and comma lists: see method_list
LOOP_METHODS = ("nll", "eto", "coevo")  # nll: the loop with the NLL term alone, the parameter-matched control


def run_stem(cfg) -> str:
    """The default run-directory name before its seed: env and methods, e.g. shop-nll+eto."""
    return f"{cfg.env}-{cfg.method.replace(',', '+')}"


def method_list(cfg) -> list:
    """The methods run after SFT, in order: compare = eto, coevo; sft = none; else the comma list."""
    return {"compare": ["eto", "coevo"], "sft": []}.get(cfg.method, cfg.method.split(","))


# -----------------------------------------------------------------------------------------------------------
# The algorithm: step 0 once, then steps 1-7 K times; each step is one function in the next section
def main(cfg: Config) -> str:
    """Step 0 once, then each method from the same SFT checkpoint; returns the results table."""
    check_config(cfg)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    path = cfg.resume or os.path.join(cfg.out_dir, cfg.name or f"{run_stem(cfg)}-seed{cfg.seed}")
    run, t0 = RunDir(path, cfg, resume=bool(cfg.resume)), time.time()
    try:
        data = make_data(cfg)
        renderer = build_renderer(cfg, data)
        torch.manual_seed(phase_seed(cfg, "init"))
        base = new_model(cfg, renderer)
        print(f"coevo: {cfg.env}, evaluated on the {cfg.eval_on} splits, {len(data['train'])} train tasks ({len(data['experts'])} with experts), "
              f"{sum(p.numel() for p in base.parameters()) / 1e6:.2f}M parameters, run dir {path}")
        # 0. SFT: behaviour-clone the expert trajectories; both agents start here
        model_phase(run, "sft/0_train", base, renderer, lambda: sft(cfg, base, renderer, data["experts"], run, "sft/0_train"))
        json_phase(run, "sft/7_evaluate", lambda: logged(run, "sft/7_evaluate", evaluate(cfg, base, renderer, data, "sft eval")))
        sft_path = run.file("ckpt", "sft_0_train")
        del base  # every method reloads the SFT checkpoint; do not hold a third model
        for method in method_list(cfg):
            run_method(cfg, method, run, data, renderer, sft_path)
        table = results_table(final_evaluations(path)) + "\n\n" + exploration_note(run.metrics())
        minutes = (time.time() - t0) / 60
        RunDir._write(run.file("summary.md"), f"# {path}\n\n{table}\n\nAverage reward x100 and success % of greedy "
                      f"decoding on {cfg.n_test} tasks per {cfg.eval_on} split, ± the half-width of the 95% interval over tasks; "
                      f"'X - sft' rows: mean per-task difference on the same tasks [95% interval], * where it excludes "
                      f"0. Wall time of this invocation: {minutes:.1f} min.\n")
        written = [f for f in ("metrics.jsonl", "summary.md", "transcripts.md") if os.path.isfile(run.file(f))]
        print(f"\n{table}\n\n({minutes:.1f} min; details in {path}/{', '.join(written)})")  # transcripts: coevo only
        return table
    finally:
        run.release()


def run_method(cfg: Config, method: str, run: RunDir, data: dict, renderer, sft_path: str) -> None:
    """Steps 1-7 for ETO or co-evolution, K times, starting both agents from the SFT checkpoint. `nll` is ETO's
    loop (same exploration, same expert groups, same optimizer steps) with the NLL term alone: the parameter-matched
    control that tells what the preference pairs add beyond more imitation."""
    target = M.load_checkpoint(sft_path, device=cfg.device)[0]
    failure = M.load_checkpoint(sft_path, device=cfg.device)[0] if method == "coevo" else None
    experts, tasks = data["experts"], [e["task"] for e in data["experts"]]
    # ETO explores where it can pair with e*; co-evolution also explores tasks without one, for failure pairs
    explored = data["train"][:max(cfg.explore_tasks, cfg.n_expert)] if method == "coevo" else tasks
    greedy = lambda trajs: trajs[:len(explored)]  # explore() returns the greedy rollouts first, one per task
    originals = explored
    own = []  # the target's rollouts of the previous iteration
    for k in range(1, cfg.iterations + 1):
        tag = f"{method}/{k}"
        if cfg.fresh_worlds:  # the same tasks in worlds drawn afresh, so that exploring them takes reading, not recall
            explored, experts, tasks = fresh_worlds(originals, len(data["experts"]), k)
        ref_path = sft_path if cfg.reference == "sft" else ""
        # 1. Explore: the target (greedy + optional samples) and the failure agent (samples) on the explored tasks
        def explore_target():  # from iteration 2 on, also what changed task by task since the last iteration
            trajs = explore(cfg, target, renderer, explored, cfg.target_samples, cfg.target_temperature,
                            phase_seed(cfg, f"{tag}/1t"), "target", greedy_too=True)
            churn = greedy_churn(greedy(own), greedy(trajs)) if own else {}
            return logged(run, f"{tag}/1_explore_target", trajs, **churn)
        own = json_phase(run, f"{tag}/1_explore_target", explore_target)
        hard = []
        if method == "coevo":
            fails = json_phase(run, f"{tag}/1_explore_failure", lambda: logged(run, f"{tag}/1_explore_failure", explore(
                cfg, failure, renderer, explored, cfg.failure_samples, cfg.failure_temperature, phase_seed(cfg, f"{tag}/1f"), "failure")))
            if cfg.failure_agent != "frozen":  # frozen: hard negatives come from the untrained SFT model
                # 2. Failure-agent pairs from both agents' failures on the same task (positive: successes too)
                pairs = build_failure_pairs(own, fails, cfg.failure_min_gap, cfg.failure_within_agent,
                                            keep_successes=cfg.failure_agent == "positive")
                # 3. Update the failure agent with DPO on those pairs (reference: itself before the update)
                pool, items = to_pool(pairs, "pairs")
                report_pairs(tag, {"failure_pairs": len(pairs)}, wanted={"failure_pairs": True})
                park(cfg, target, "cpu")  # memory: on a GPU only the agent being updated stays there
                model_phase(run, f"{tag}/3_update_failure", failure, renderer, lambda: preference_update(
                    cfg, failure, renderer, pool, items, failure_loss(cfg), cfg.failure_lr, run, f"{tag}/3_update_failure",
                    ref_path))
                park(cfg, target, cfg.device)
            # 4. Hard negatives: failures sampled from the updated failure agent
            hard = fails if not cfg.regenerate_hard_negatives else json_phase(
                run, f"{tag}/4_hard_negatives", lambda: logged(run, f"{tag}/4_hard_negatives", explore(
                    cfg, failure, renderer, tasks, cfg.failure_samples, cfg.failure_temperature, phase_seed(cfg, f"{tag}/4"), "failure")))
        # 5. Target pairs: (a) expert vs own failure, (b) expert vs hard negative, (c) failure vs failure
        groups = build_target_groups(cfg, experts, own, hard, method)
        if method == "coevo":
            write_transcripts(run.file("transcripts.md"), groups)
        # 6. Update the target: ETO is DPO on (a) (pure by default); co-evolution weighs every term by its coefficient
        coefs = {"eto": (cfg.eto_dpo_coef, 0.0, cfg.eto_sft_coef, 0.0), "nll": (0.0, 0.0, 1.0, 0.0)}.get(
            method, (cfg.dpo_coef, cfg.hn_coef, cfg.sft_coef, cfg.ff_coef))
        pool, items = to_pool(groups, "groups")
        pair_counts = {f"{kind}_pairs": sum(len(g[key]) for g in groups) for kind, key in (("own", "a"), ("hard", "hard"), ("ff", "c"))}
        report_pairs(tag, pair_counts, wanted={"own_pairs": coefs[0] > 0, "hard_pairs": coefs[1] > 0, "ff_pairs": coefs[3] > 0})
        park(cfg, failure, "cpu")  # memory: on a GPU only the agent being updated stays there
        model_phase(run, f"{tag}/6_update_target", target, renderer, lambda: preference_update(
            cfg, target, renderer, pool, items, target_loss(cfg, coefs), cfg.target_lr, run, f"{tag}/6_update_target", ref_path,
            pair_counts, obs_coef=cfg.anchor_obs_coef if coefs[2] > 0 else 0.0))
        park(cfg, failure, cfg.device)
        # 7. Evaluate the target greedily on seen and unseen test tasks
        json_phase(run, f"{tag}/7_evaluate", lambda: logged(run, f"{tag}/7_evaluate", evaluate(
            cfg, target, renderer, data, f"{tag} eval")))


# -----------------------------------------------------------------------------------------------------------
# The steps: 0 SFT, 1 explore, 2 and 5 pairs, 3 and 6 preference updates and their losses, 7 evaluate
def sft(cfg: Config, model, renderer, experts: list, run: RunDir, phase: str) -> None:
    """Step 0: behaviour cloning, NLL of the expert's action tokens only (observations are context, not targets)."""
    def render(trajs):
        seqs = [renderer.render(t["messages"]) for t in trajs]
        too_long = [t["task"]["id"] for t, (ids, _) in zip(trajs, seqs) if len(ids) > model.cfg.max_position_embeddings]
        if too_long:
            raise SystemExit(f"coevo: {len(too_long)} expert trajectories (e.g. {too_long[0]}) are longer than the model's "
                             f"context of {model.cfg.max_position_embeddings} tokens; raise --context or pick another env")
        return seqs
    seqs = render(experts)
    steps = cfg.sft_epochs * math.ceil(len(seqs) / cfg.batch_size)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.sft_lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: sft_lr_factor(s, steps, round(cfg.sft_warmup * steps)))
    rng, model = random.Random(phase_seed(cfg, phase)), model.train()
    bar = M.progress_bar(steps, phase)
    for epoch in range(cfg.sft_epochs):
        if cfg.sft_fresh_worlds and epoch > 0:  # the same tasks, another world each epoch: read, nothing to recall
            seqs = render(fresh_worlds([t["task"] for t in experts], len(experts), 1000 + epoch)[1])
        order = rng.sample(range(len(seqs)), len(seqs))
        for b in range(0, len(order), cfg.batch_size):
            # the observations too (sft_obs_coef): read as language, they teach a from-scratch model to copy what
            # the page shows (an id, a price), the ability the paper's pretrained agents bring with them
            logps, n_tokens, *obs_part = pool_logps(cfg, model, renderer, seqs, order[b:b + cfg.batch_size],
                                                    with_obs=cfg.sft_obs_coef > 0)
            loss = losses.nll_loss(logps, n_tokens).mean()
            if obs_part:
                loss = loss + cfg.sft_obs_coef * losses.nll_loss(*obs_part).mean()
            check_finite(loss, phase, bar.n + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step()
            bar.set_postfix(epoch=epoch, nll=f"{loss.item():.3f}", refresh=False), bar.update()
        run.log(phase, epoch=epoch, nll=loss.item())
    bar.close()
    model.eval()


def sft_lr_factor(step: int, steps: int, warmup: int) -> float:
    """SFT's rate at a step, as a fraction of --sft-lr: an optional linear warmup over `warmup` steps (nanoGPT's
    schedule: Adam's first steps at the full rate can knock a fresh model around), then cosine decay to 10% (the toy
    model overfits 300 trajectories if the rate stays high)."""
    if step < warmup:
        return (step + 1) / warmup
    return 0.1 + 0.45 * (1 + math.cos(math.pi * (step - warmup) / (steps - warmup)))


def fresh_worlds(explored: list, n_expert: int, k: int) -> tuple:
    """--fresh-worlds, iteration k (--sft-fresh-worlds: epoch 1000 + k): the explored tasks relabeled (same instruction and meaning; fresh ids, names and
    orders), the oracle's trajectory in each of the first n_expert of them (the expert tasks), and those tasks."""
    worlds = [envs.relabel(t, seed=k) for t in explored]
    experts = [dict(envs.oracle(t), agent="expert") for t in worlds[:n_expert]]
    return worlds, experts, worlds[:n_expert]


def explore(cfg: Config, agent, renderer, tasks: list, samples: int, temperature: float, seed: int,
            label: str, greedy_too: bool = False) -> list:
    """Step 1 and 4: roll the agent out; a greedy rollout per task (if asked) plus `samples` sampled ones."""
    jobs = [(t, 0.0) for t in tasks] if greedy_too else []
    jobs += [(t, temperature) for t in tasks for _ in range(samples)]
    out, gen = [], torch.Generator(device=cfg.device).manual_seed(seed)
    for temp in sorted({temp for _, temp in jobs}):
        todo = [t for t, tt in jobs if tt == temp]
        out += M.rollout(agent, renderer, lambda: envs.make_env(cfg.env), todo, temperature=temp, top_p=cfg.top_p,
                         generator=gen, device=cfg.device, progress=True, desc=f"{label} T={temp:g}")
    # keep what later phases need (the exact tokens are re-rendered from the messages)
    keep = ("task", "messages", "reward", "success", "end", "n_invalid")
    return [dict({k: t[k] for k in keep}, agent=label) for t in out]


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
                repeated_failures=sum(not x["success"] and not y["success"] and x["messages"][1::2] == y["messages"][1::2]
                                      for x, y in pairs))


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


def cut_at_divergence(chosen: dict, rejected: dict) -> dict:
    """The rejected trajectory up to and including its first action that differs from the chosen one's. The shared
    prefix cancels in DPO anyway; what this removes is everything after the mistake, e.g. the final purchase of a
    near-miss, which is the expert's own last action too, in another state. Unchanged if it never differs."""
    c, r = chosen["messages"], rejected["messages"]
    i = next((i for i in range(1, len(r), 2) if i >= len(c) or r[i] != c[i]), None)
    return rejected if i is None else dict(rejected, messages=r[:i + 1])


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


def build_target_groups(cfg: Config, experts: list, own: list, hard: list, method: str) -> list:
    """Step 5: per expert task, its pairs of the three kinds:
    (a) expert vs the target's own failure (ETO's pair), (b) expert vs the failure agent's hard negatives,
    (c) better vs worse failure of the target (DPO only, never NLL; off unless ff_coef > 0)."""
    own_by, hard_by, groups = by_task(own), by_task(hard), []
    for e in experts:
        tid = e["task"]["id"]
        a = build_eto_pairs(e, own_by.get(tid, []), cfg.eto_truncate_turns)
        if cfg.cut_at_divergence:
            a = [(c, cut_at_divergence(c, r)) for c, r in a]
        if method in ("eto", "nll"):  # ETO (and its NLL-only control): the experts with a pair of kind (a)
            groups += [{"expert": e, "a": a, "hard": [], "c": []}] if a or cfg.anchor_all_experts else []
            continue
        h = [t for t in hard_by.get(tid, []) if not t["success"] and t["reward"] >= cfg.hn_threshold]
        h = [cut_at_divergence(e, t) for t in h] if cfg.cut_at_divergence else h
        fails = [t for t in own_by.get(tid, []) if not t["success"]]
        c = build_failure_pairs(fails, [], cfg.failure_min_gap, within_agent=True) if cfg.ff_coef > 0 else []
        if a or h or c or cfg.anchor_all_experts:  # all: an expert without pairs still gets the NLL anchor
            groups.append({"expert": e, "a": a, "hard": h, "c": c})
    return groups


def pool_logps(cfg: Config, model, renderer, seqs: list, idx: list, with_obs: bool = False):
    """Summed action log-probs (and action-token counts) of seqs[i] for i in idx, in that order (length-sorted
    chunks inside: model.batch_logps); with_obs: the observation tokens' too, from the same forward passes
    (logps, n, obs_logps, n_obs)."""
    with autocast(cfg):
        return M.batch_logps(model, [seqs[i] for i in idx], renderer.pad_id, cfg.device, with_obs)


@torch.no_grad()
def reference_logps(cfg: Config, model, renderer, seqs: list, ref_path: str = ""):
    """Log-probs of every sequence under the frozen reference, computed once before the update starts, so that
    no second model is held during it. The reference is `model` as it is now (the iteration's start, ETO) or the
    SFT checkpoint (`--reference sft`)."""
    ref = M.load_checkpoint(ref_path, device=cfg.device)[0] if ref_path else model
    ref.eval()
    if not seqs:
        return torch.zeros(0, device=cfg.device)
    return pool_logps(cfg, ref, renderer, seqs, list(range(len(seqs))))[0].float()


def preference_update(cfg: Config, model, renderer, pool: list, items: list, loss_fn, lr: float,
                      run: RunDir, phase: str, ref_path: str = "", pair_counts: dict | None = None,
                      obs_coef: float = 0.0) -> None:
    """Steps 3 and 6: DPO-style updates. `pool` holds every trajectory the items refer to (by index);
    `loss_fn(items, policy, ref, n_tokens) -> (loss, stats)` combines the terms for a batch of items.
    `pair_counts` (pairs of each kind) go into the phase's metric record as they are. With obs_coef > 0 the
    loss also gets `obs = (obs_logps, n_obs)` per pool position (the NLL anchor on observations)."""
    seqs = [renderer.render(t["messages"]) for t in pool]
    ref = reference_logps(cfg, model, renderer, seqs, ref_path)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    rng, model, per_step = random.Random(phase_seed(cfg, phase)), model.train(), []
    bar = M.progress_bar(cfg.dpo_epochs * math.ceil(len(items) / cfg.batch_size), phase)
    for epoch in range(cfg.dpo_epochs):
        order = rng.sample(range(len(items)), len(items))
        for b in range(0, len(order), cfg.batch_size):
            batch = [items[i] for i in order[b:b + cfg.batch_size]]
            idx = sorted({i for item in batch for i in item_indices(item)})
            logps, n_tokens, *obs = pool_logps(cfg, model, renderer, seqs, idx, with_obs=obs_coef > 0)
            # scatter into pool-sized tensors so that the loss can index by pool position
            where = torch.tensor(idx, device=logps.device)
            scatter = lambda x: torch.zeros(len(pool), device=logps.device).index_put((where,), x.float())
            policy, counts = scatter(logps), scatter(n_tokens)
            extra = {"obs": tuple(scatter(x) for x in obs)} if obs else {}
            loss, stats = loss_fn(batch, policy, ref, counts, **extra)
            check_finite(loss, phase, bar.n + 1)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            per_step.append(stats)
            bar.set_postfix(loss=f"{loss.item():.3f}", refresh=False), bar.update()
    bar.close()
    model.zero_grad(set_to_none=True)  # memory: gradients (4 bytes a parameter) are not kept between updates
    model.eval()
    run.log(phase, items=len(items), sequences=len(pool), **(pair_counts or {}), **step_means(per_step))


def step_means(per_step: list) -> dict:
    """Each metric's mean over the steps that reported it: a batch without, say, hard negatives has no hard_acc,
    and counting it as 0 would drag the phase's hard_acc down."""
    keys = dict.fromkeys(k for stats in per_step for k in stats)
    return {k: sum(s[k] for s in per_step if k in s) / sum(k in s for s in per_step) for k in keys}


def item_indices(item) -> list:
    if isinstance(item, tuple):  # a (chosen, rejected) pair of pool indices
        return list(item)
    return [item["expert"]] + [i for p in item["a"] + item["c"] for i in p] + item["hard"]


def pair_stats(prefix: str, chosen_r, rejected_r) -> dict:
    """The usual DPO metrics: reward accuracy, margin, and the implicit rewards themselves."""
    if chosen_r.numel() == 0:
        return {}
    return {f"{prefix}_acc": (chosen_r > rejected_r).float().mean().item(),
            f"{prefix}_margin": (chosen_r - rejected_r).mean().item(),
            f"{prefix}_chosen": chosen_r.mean().item(), f"{prefix}_rejected": rejected_r.mean().item()}


def failure_loss(cfg: Config):
    """Step 3: the failure agent's loss is DPO on (higher-reward failure, lower-reward failure) pairs, plus
    failure_sft_coef * NLL of the chosen failure (the same DPO + NLL shape as the target's loss)."""
    def loss_fn(batch, policy, ref, counts):
        c, r = (torch.tensor(x, device=policy.device) for x in zip(*batch))
        l, cr, rr = losses.dpo_loss(policy[c], policy[r], ref[c], ref[r], cfg.beta)
        nll = losses.nll_loss(policy[c], counts[c]).mean()
        loss = l.mean() + cfg.failure_sft_coef * nll
        return loss, {"loss": loss.item(), "nll": nll.item(), **pair_stats("failure", cr, rr)}
    return loss_fn


def target_loss(cfg: Config, coefs: tuple):
    """Step 6: loss = dpo_coef * DPO(a) + hn_coef * HN(b) + sft_coef * NLL(expert) + ff_coef * DPO(c), where
    NLL(expert) covers the action tokens plus anchor_obs_coef times the observation tokens (`obs`, when given)."""
    dpo_coef, hn_coef, sft_coef, ff_coef = coefs
    hn_fn = losses.listwise_hard_negative_loss if cfg.listwise else losses.hard_negative_loss

    def loss_fn(batch, policy, ref, counts, obs=None):
        dev, zero = policy.device, policy.sum() * 0
        e = torch.tensor([g["expert"] for g in batch], device=dev)
        a = [p for g in batch for p in g["a"]]
        c = [p for g in batch for p in g["c"]]
        # (a) expert vs own failure: plain DPO per pair
        ac, ar = (torch.tensor(x, device=dev, dtype=torch.long) for x in (zip(*a) if a else ([], [])))
        l_a, a_cr, a_rr = losses.dpo_loss(policy[ac], policy[ar], ref[ac], ref[ar], cfg.beta)
        # (b) expert vs its K hard negatives, padded to the batch's largest K with a mask
        K = max(len(g["hard"]) for g in batch)
        hard = torch.tensor([g["hard"] + [0] * (K - len(g["hard"])) for g in batch], device=dev, dtype=torch.long).view(len(batch), K)
        hmask = torch.tensor([[k < len(g["hard"]) for k in range(K)] for g in batch], device=dev, dtype=torch.bool).view(len(batch), K)
        l_b, b_cr, b_rr = hn_fn(policy[e], policy[hard], ref[e], ref[hard], hmask, cfg.beta)
        has_b = hmask.any(1)
        # (c) better vs worse failure of the target
        cc, cr_ = (torch.tensor(x, device=dev, dtype=torch.long) for x in (zip(*c) if c else ([], [])))
        l_c, c_cr, c_rr = losses.dpo_loss(policy[cc], policy[cr_], ref[cc], ref[cr_], cfg.beta)
        l_sft = losses.nll_loss(policy[e], counts[e])
        if obs is not None:  # the anchor fits the expert's observations too, as SFT did (deviation 7)
            l_sft = l_sft + cfg.anchor_obs_coef * losses.nll_loss(obs[0][e], obs[1][e])
        mean = lambda x: x.mean() if x.numel() else zero  # a term with no pairs in this batch contributes 0
        loss = dpo_coef * mean(l_a) + hn_coef * mean(l_b[has_b]) + sft_coef * mean(l_sft) + ff_coef * mean(l_c)
        stats = {"loss": loss.item(), "nll": mean(l_sft).item(), **pair_stats("own", a_cr, a_rr),
                 **pair_stats("hard", b_cr[has_b].unsqueeze(1).expand_as(b_rr[has_b])[hmask[has_b]], b_rr[has_b][hmask[has_b]]),
                 **pair_stats("ff", c_cr, c_rr)}
        return loss, stats
    return loss_fn


def to_pool(groups_or_pairs: list, kind: str):
    """Replace trajectories by indices into one pool, so each sequence is rendered and scored once."""
    pool, index = [], {}

    def ix(t):
        key = id(t)
        if key not in index:
            index[key] = len(pool)
            pool.append(t)
        return index[key]
    if kind == "pairs":
        return pool, [(ix(c), ix(r)) for c, r in groups_or_pairs]
    return pool, [{"expert": ix(g["expert"]), "a": [(ix(c), ix(r)) for c, r in g["a"]],
                   "hard": [ix(h) for h in g["hard"]], "c": [(ix(c), ix(r)) for c, r in g["c"]]} for g in groups_or_pairs]


def evaluate(cfg: Config, model, renderer, data: dict, label: str) -> dict:
    """Step 7: greedy rollouts on test_seen and test_unseen; average reward x100, success rate, the share of
    invalid actions and of episodes that ran out of steps (in shop and sql a timeout scores 0, below any wrong
    purchase or query). Also the oracle's trajectories on the same tasks, teacher-forced: `expert_nll`, the
    per-token NLL of their actions. Reward moves in jumps (one argmax flip can break every episode); this moves
    smoothly, so a preference update that pushes the expert's own tokens down (DPO's likelihood displacement) shows."""
    out = {}
    for split in ("test_seen", "test_unseen"):
        trajs = M.rollout(model, renderer, lambda: envs.make_env(cfg.env), data[split], temperature=0.0,
                          device=cfg.device, progress=True, desc=f"{label} {split.replace('test', cfg.eval_on)}")
        stats, rewards = exploration_stats(trajs), [t["reward"] for t in trajs]
        (reward, reward_ci), (success, success_ci) = mean_ci(rewards), mean_ci([float(t["success"]) for t in trajs])
        out[split] = {"reward": 100 * reward, "reward_ci": 100 * reward_ci, "success": success, "success_ci": success_ci,
                      "invalid_rate": stats["invalid_rate"], "timeout_rate": stats["timeout_rate"],
                      "expert_nll": expert_nll(cfg, model, renderer, [envs.oracle(t) for t in data[split]]),
                      "rewards": rewards}  # per task, in the order of data[split]: paired differences need them
    return out


@torch.no_grad()
def expert_nll(cfg: Config, model, renderer, trajs: list) -> float:
    """Per-token NLL of the action tokens of `trajs` under `model` (all tokens pooled, as in SFT's loss)."""
    seqs = [renderer.render(t["messages"]) for t in trajs]
    if not seqs:
        return 0.0
    logps, n = pool_logps(cfg, model, renderer, seqs, list(range(len(seqs))))
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
        return loader.renderer_from_hf(cfg.init_from, chat_format=cfg.chat_format or None)
    texts = envs.lexicon(cfg.env) + [m for t in data["experts"] for m in t["messages"]]
    return M.Renderer(M.build_tokenizer(texts))


def new_model(cfg: Config, renderer):
    """A fresh toy model sized by the model flags, or with --init-from the checkpoint's model: its config.json
    decides every size (the toy flags are ignored). Weights are fp32 either way: they are the master copy that
    AdamW updates, and on cuda the matmuls run in bf16 under `autocast` (docs/checkpoints.md: memory)."""
    if cfg.init_from:
        return loader.load_pretrained(cfg.init_from, device=cfg.device, chat_format=cfg.chat_format or None)[0]
    mcfg = M.ModelConfig(vocab_size=renderer.vocab_size, hidden_size=cfg.hidden_size, num_hidden_layers=cfg.layers,
                         num_attention_heads=cfg.heads, num_key_value_heads=max(1, cfg.heads // 2),
                         intermediate_size=3 * cfg.hidden_size, max_position_embeddings=cfg.context)
    return M.Transformer(mcfg).to(cfg.device)


def park(cfg: Config, agent, where: str) -> None:
    """Memory: only the agent being updated needs GPU room for its gradients and AdamW state (16 bytes a
    parameter in all), so the idle agent waits in CPU memory (where="cpu") and comes back (where=cfg.device) for
    exploration. On CPU, or with no second agent (ETO), nothing moves."""
    if agent is not None and torch.device(cfg.device).type == "cuda":
        agent.to(where)  # in place: parameters (and any gradients) move, the module object stays the same


def autocast(cfg: Config):
    return M.autocast(cfg.device)  # bf16 on GPU; log-softmax stays fp32 inside model.sequence_logps


def check_finite(loss, phase: str, step: int):
    if not torch.isfinite(loss):
        raise SystemExit(f"coevo: non-finite loss in phase {phase} at step {step}; stopping. The last good checkpoint "
                         f"is kept (this phase's is never written); lower the learning rate or beta and --resume.")


# -----------------------------------------------------------------------------------------------------------
# Reports and seeds (run directories and the statistics are in runs.py)
def report_pairs(tag: str, counts: dict, wanted: dict) -> None:
    """Print how many pairs of each kind an update gets, and warn when a kind its loss uses has none: that term
    then teaches nothing this iteration (e.g. SFT solves every explored task, so ETO has no failures to pair)."""
    tqdm.write(f"{tag} pairs: " + ", ".join(f"{k[:-6]} {v}" for k, v in counts.items()))
    for k, v in counts.items():
        if wanted.get(k) and v == 0:
            tqdm.write(f"{tag} warning: no {k[:-6]} pairs this iteration; that loss term does nothing")


def logged(run: RunDir, phase: str, result, **extra):
    """Record a phase's result (exploration statistics or evaluation, and any extra figures) in metrics.jsonl
    and pass it on."""
    if isinstance(result, list):
        run.log(phase, **exploration_stats(result), **extra)
    else:  # an evaluation: per-task rewards stay in the phase's JSON file, not in metrics.jsonl
        run.log(phase, **{k: {m: x for m, x in v.items() if not isinstance(x, list)} for k, v in result.items()})
    return result


def exploration_note(records: list) -> str:
    """What SFT left to learn from: its greedy success on the tasks each method explores (iteration 1), and the
    pairs each update had (a preference step with no pairs cannot move the agent)."""
    out = []
    for r in records:
        method, _, rest = r["phase"].partition("/")
        if rest == "1/1_explore_target":
            out.append(f"{method}: SFT solves {100 * r['success_rate']:.1f}% of the {r['n']} exploration rollouts")
        if rest.endswith("6_update_target"):
            out.append(f"{method} iteration {rest.split('/')[0]}: " + ", ".join(
                f"{r.get(k, 0)} {k[:-6]} pairs" for k in ("own_pairs", "hard_pairs", "ff_pairs")))
    return "\n".join(out)


def write_transcripts(path: str, groups: list, n: int = 3) -> None:
    """transcripts.md: expert, target failure and hard negative on the same training task, side by side."""
    rows = ["# Expert vs the target's failure vs the failure agent's hard negative\n"]
    picked = [g for g in groups if g["a"] and g["hard"]][:n]
    for g in picked:
        e, f, h = g["expert"], g["a"][0][1], max(g["hard"], key=lambda t: t["reward"])
        rows.append(f"## {e['task']['id']}\n\n{e['messages'][0]}\n")
        rows.append(f"| turn | expert (r={e['reward']:.2f}) | target failure (r={f['reward']:.2f}) | hard negative (r={h['reward']:.2f}) |")
        rows.append("|---|---|---|---|")
        for i in range(max(len(t["messages"]) // 2 for t in (e, f, h))):
            cell = lambda t: t["messages"][2 * i + 1].replace("|", "\\|") if 2 * i + 1 < len(t["messages"]) else ""
            rows.append(f"| {i + 1} | {cell(e)} | {cell(f)} | {cell(h)} |")
        rows.append("")
    if not picked:
        rows.append("(no training task had both a target failure and a hard negative in this iteration)")
    RunDir._write(path, "\n".join(rows) + "\n")


def sweep(cfg: Config) -> None:
    """--seeds: the same run per seed, then each method's final numbers over seeds (mean ± sample std and the 95%
    t-interval over seeds), and each method minus SFT seed by seed (the paired comparison)."""
    results = {}
    for s in [int(x) for x in cfg.seeds.split(",")]:
        c = dataclasses.replace(cfg, seed=s, seeds="", name=f"{cfg.name or run_stem(cfg)}-seed{s}")
        path = os.path.join(c.out_dir, c.name)
        if os.path.isfile(os.path.join(path, "state.json")):  # a seed already (partly) run: continue it, do not redo it
            c = dataclasses.replace(c, resume=path)
        main(c)
        for m, ev in final_evaluations(os.path.join(c.out_dir, c.name)).items():
            results.setdefault(m, []).append([sc * mean_ci(per_task(ev, split, metric))[0] for split, metric, sc in METRICS])
    print(f"\nover seeds {cfg.seeds}: mean ± std [95% interval over seeds]\n{HEADER}")
    for m, rows in results.items():
        print(f"| {m} | " + " | ".join(over_seeds(c) for c in zip(*rows)) + " |")
    cell = lambda xs: over_seeds(xs, difference=True)  # * where the interval over seeds excludes 0
    if len(results) > 1:
        print(f"\nminus SFT on the same seed (the seed's tasks and initialisation cancel): mean ± std [95% interval], * where "
              f"it excludes 0; an interval that holds 0 is no measurable difference\n{HEADER}")
        for m, rows in paired_gaps(results).items():
            print(f"| {m} - sft | " + " | ".join(cell(c) for c in zip(*rows)) + " |")
    # what the preference pairs add beyond the same updates' imitation; what the hard negatives add beyond ETO
    for base, label in (("nll", "the nll control"), ("eto", "ETO")):
        gaps = {m: rows for m, rows in paired_gaps(results, base).items() if m != "nll"} if base in results else {}
        if gaps:
            print(f"\nminus {label} on the same seed: mean ± std [95% interval], * where it excludes 0\n{HEADER}")
            for m, rows in gaps.items():
                print(f"| {m} - {base} | " + " | ".join(cell(c) for c in zip(*rows)) + " |")


# -----------------------------------------------------------------------------------------------------------
# Command line
def parse_config(argv=None) -> Config:
    """argparse generated from Config: one flag per field (dashes), help from the field's comment."""
    helps = {k: v.replace("%", "%%") for k, v in  # argparse formats help strings with %
             re.findall(r"^\s+(\w+): [^=]+= .*?#\s*(.*)$", inspect.getsource(Config), re.M)}
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    for f in dataclasses.fields(Config):
        flag, kind = "--" + f.name.replace("_", "-"), type(f.default)
        if kind is bool:
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS, help=helps.get(f.name))
        else:
            p.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(), help=helps.get(f.name, "") + f" (default: {f.default})")
    p.add_argument("--compare", action="store_const", const="compare", dest="method", default=argparse.SUPPRESS,
                   help="same as --method compare")
    given = vars(p.parse_args(argv))
    preset = given.get("preset", "")
    if preset and preset not in PRESETS:
        sys.exit(f"coevo: unknown --preset {preset!r}; choose from {sorted(PRESETS)}")
    return Config(**{**PRESETS.get(preset, {}), **given})


def check_config(cfg: Config) -> None:
    """Every bad setting gets a clear message before any work starts."""
    problems = []
    if cfg.method not in METHODS and not (cfg.method and set(method_list(cfg)) <= set(LOOP_METHODS)):
        problems.append(f"--method {cfg.method!r} is not one of {METHODS} nor a comma list of {LOOP_METHODS}")
    if cfg.eval_on not in ("test", "valid"): problems.append(f"--eval-on {cfg.eval_on!r} is not test or valid")
    if cfg.env not in envs.ENV_NAMES: problems.append(f"--env {cfg.env!r} is not one of {envs.ENV_NAMES}")
    if cfg.failure_agent not in ("coevo", "frozen", "positive"): problems.append(f"--failure-agent {cfg.failure_agent!r} is not coevo, frozen or positive")
    if cfg.reference not in ("iteration", "sft"): problems.append(f"--reference {cfg.reference!r} is not iteration or sft")
    if not 0 < cfg.n_expert <= cfg.n_train: problems.append(f"--n-expert {cfg.n_expert} must be in 1..n_train ({cfg.n_train})")
    if cfg.n_test < 1: problems.append(f"--n-test {cfg.n_test} must be at least 1")
    for name in ("target_temperature", "failure_temperature"):
        if not 0 <= getattr(cfg, name) <= 5: problems.append(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be in [0, 5]")
    if not 0 <= cfg.sft_warmup < 1: problems.append(f"--sft-warmup {cfg.sft_warmup} must be in [0, 1) (a fraction of the SFT steps)")
    if not 0 < cfg.top_p <= 1: problems.append(f"--top-p {cfg.top_p} must be in (0, 1]")
    for name in ("dpo_coef", "hn_coef", "sft_coef", "ff_coef", "failure_sft_coef", "sft_obs_coef", "anchor_obs_coef", "eto_dpo_coef", "eto_sft_coef"):
        if not 0 <= getattr(cfg, name) <= 100: problems.append(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be in [0, 100]")
    for name in ("failure_min_gap", "hn_threshold"):  # rewards lie in [0, 1]: above 1 nothing would ever qualify
        if not 0 <= getattr(cfg, name) < 1: problems.append(f"--{name.replace('_', '-')} {getattr(cfg, name)} must be in [0, 1)")
    for name in ("beta", "sft_lr", "target_lr", "failure_lr"):
        if not getattr(cfg, name) > 0: problems.append(f"--{name.replace('_', '-')} must be > 0")
    for name in ("iterations", "batch_size", "hidden_size", "layers", "heads", "context"):
        if getattr(cfg, name) < 1: problems.append(f"--{name.replace('_', '-')} must be at least 1")
    if cfg.ff_coef > 0 and cfg.target_samples < 1:  # one greedy rollout per task: at most one failure, no pair
        problems.append(f"--ff-coef {cfg.ff_coef} needs --target-samples >= 1 (failure-vs-failure pairs are two of the "
                        "target's failures on one task; its greedy rollout alone gives at most one)")
    if cfg.failure_samples < 1 and "coevo" in method_list(cfg): problems.append("--failure-samples must be at least 1 for co-evolution")
    if cfg.init_from and not os.path.isdir(cfg.init_from): problems.append(f"--init-from {cfg.init_from!r} is not a directory")
    if problems:
        raise SystemExit("coevo: bad configuration:\n  " + "\n  ".join(problems))


if __name__ == "__main__":
    if sys.argv[1:2] == ["plot"]:  # python coevo.py plot RUN_DIR [--out DIR]: figures from a run's metrics
        import plots
        sys.exit(plots.main(sys.argv[2:]))
    config = parse_config()
    if config.resume:  # the saved configuration wins: a resumed run must be the same run
        if not os.path.isfile(os.path.join(config.resume, "config.json")):
            sys.exit(f"coevo: --resume {config.resume!r} is not a run directory (no config.json in it)")
        saved = json.load(open(os.path.join(config.resume, "config.json")))
        config = Config(**{**saved, "resume": config.resume})
    sweep(config) if config.seeds else main(config)
