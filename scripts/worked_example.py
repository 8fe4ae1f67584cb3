"""Write docs/worked_example.md from a finished run: one DPO pair, by the numbers, so the page stays true to the code.

    python scripts/worked_example.py runs/shop-compare-seed0 > docs/worked_example.md

It takes, from the run's iteration 1, an expert trajectory and a near miss of the same task (the failure agent's hard
negative with the highest reward below 1; without one, the target's own best failure), and prints: the two side by
side; the per-token log-probs of the first action where they differ, under the SFT model (the update's reference)
and under the updated target; the pair's DPO margin and sigmoid weight; and the gradient that the DPO term and the
NLL anchor each put on the log-prob of those tokens, with the run's own coefficients.
"""
import argparse
import json
import math
import os
import subprocess
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import coevo  # noqa: E402
import loader  # noqa: E402
import runs  # noqa: E402


@torch.no_grad()
def token_logps(model, renderer, messages: list) -> list:
    """[(token text, log-prob)] of every action token of the last action in `messages` (ending with that action)."""
    ids, mask = renderer.render(messages)
    logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), -1)
    last = max(i for i, m in enumerate(mask) if m) + 1
    start = next(i for i in range(last - 1, -1, -1) if not mask[i]) + 1
    return [(renderer.tokenizer.id_to_token(ids[t]), logp[t - 1, ids[t]].item()) for t in range(start, last)]


@torch.no_grad()
def summed(model, renderer, traj: dict) -> tuple:
    ids, mask = renderer.render(traj["messages"])
    logp = torch.log_softmax(model(torch.tensor([ids]))[0].float(), -1)
    picked = [logp[t - 1, ids[t]].item() for t in range(1, len(ids)) if mask[t]]
    return sum(picked), len(picked)


def ratio(coefs, beta: float, n: int, rows_b: float, a_per_row: float) -> str:
    """The NLL's pull over the preference terms' push on one expert token at the start of the update (weight 0.5),
    after the batch means: for an expert with hard negatives only, and for one that also has a kind (a) pair."""
    nll = coefs.nll / n
    hn = coefs.hn * beta * 0.5 / max(rows_b, 1e-9)
    own = coefs.dpo * beta * 0.5 / max(a_per_row, 1e-9)
    parts = []
    if hn:
        parts.append(f"{nll / hn:.0f} times the hard negatives' push for an expert that has only those")
    if own:
        parts.append(f"{nll / (own + hn):.0f} times for one that also has an own-failure pair")
    return ("Counted so, the NLL's pull on an expert token is " + ", and ".join(parts) + ".") if parts else ""


def pick_pair(run_dir: str, cfg) -> tuple:
    """(method, expert, near miss) from iteration 1 of the run."""
    experts = {e["task"]["id"]: e for e in coevo.make_data(cfg)["experts"]}
    for method, phase in (("coevo", "coevo_1_4_hard_negatives"), ("coevo", "coevo_1_1_explore_target"),
                          ("eto", "eto_1_1_explore_target")):
        path = os.path.join(run_dir, phase + ".json")
        if not os.path.isfile(path) or not os.path.isdir(os.path.join(run_dir, "ckpt", f"{method}_1_6_update_target")):
            continue
        fails = [t for t in json.load(open(path)) if not t["success"] and t["task"]["id"] in experts
                 and coevo.first_difference(experts[t["task"]["id"]], t) is not None]
        if fails:
            best = max(fails, key=lambda t: (t["reward"], -len(t["messages"])))
            return method, phase, experts[best["task"]["id"]], best
    raise SystemExit(f"worked_example: {run_dir} has no finished iteration with a failure on an expert task")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("run", help="a finished run directory (iteration 1 of eto or coevo)")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    cfg = runs.saved_config(args.run)
    method, phase, expert, miss = pick_pair(args.run, cfg)
    sft, renderer = loader.load_checkpoint(os.path.join(args.run, "ckpt", "sft_0_train"))
    target = loader.load_checkpoint(os.path.join(args.run, "ckpt", f"{method}_1_6_update_target"))[0]
    coefs = coevo.method_coefs(cfg, method)
    weight = coefs.hn if phase.endswith("hard_negatives") else coefs.dpo
    # how the update's means share the gradient out: kind (a) pairs per row, rows with hard negatives, this row's K
    update = next(json.loads(line) for line in open(os.path.join(args.run, "metrics.jsonl"))
                  if json.loads(line)["phase"] == f"{method}/1/6_update_target")
    hard = coevo.by_task(json.load(open(os.path.join(args.run, "coevo_1_4_hard_negatives.json")))) if (
        method == "coevo") else {}
    negatives = {tid: [t for t in ts if not t["success"] and t["reward"] >= cfg.hn_threshold] for tid, ts in hard.items()}
    rows_b = sum(bool(negatives.get(e["task"]["id"])) for e in coevo.make_data(cfg)["experts"]) / update["items"]
    k = max(1, len(negatives.get(expert["task"]["id"], []))) if phase.endswith("hard_negatives") else 1
    a_per_row = update["own_pairs"] / update["items"]
    i = coevo.first_difference(expert, miss)
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    out = [f"# A worked example: one DPO pair, by the numbers\n",
           f"Generated by `python scripts/worked_example.py {args.run}` at revision {revision} from that run "
           f"({cfg.env}, seed {cfg.seed}); do not edit by hand. The pair: the expert trajectory of task "
           f"`{expert['task']['id']}` (reward {expert['reward']:.2f}) against the {'failure agent' if 'hard' in phase else 'target'}'s "
           f"near miss of the same task (reward {miss['reward']:.3f}), from `{phase}.json`.\n",
           f"**The task:** {expert['messages'][0]}\n", "| turn | expert | near miss |", "|---|---|---|"]
    for t in range(max(len(expert["messages"]), len(miss["messages"])) // 2):
        cell = lambda tr: runs.cell(tr["messages"][2 * t + 1]) if 2 * t + 1 < len(tr["messages"]) else ""
        mark = " **<- first difference**" if 2 * t + 1 == i else ""
        out.append(f"| {t + 1} | {cell(expert)} | {cell(miss)}{mark} |")
    out += ["", f"Everything before turn {(i + 1) // 2} is a prefix the two share: its log-probs appear on both sides "
            "of DPO's margin and cancel. At the first difference the same state (the same prefix) continues with two "
            "different actions; these are their tokens' log-probs (natural log), under the SFT model, which is the "
            f"update's reference, and under the target after its update (`{method}_1_6_update_target`):\n",
            "| side | token | log-prob under SFT (reference) | after the update | change |", "|---|---|---|---|---|"]
    for side, traj in (("expert", expert), ("near miss", miss)):
        before, after = token_logps(sft, renderer, traj["messages"][:i + 1]), token_logps(target, renderer,
                                                                                          traj["messages"][:i + 1])
        for (tok, a), (_, b) in zip(before, after):
            out.append(f"| {side} | `{tok}` | {a:+.4f} | {b:+.4f} | {b - a:+.4f} |")
    (pc, n_expert), (pr, _) = summed(target, renderer, expert), summed(target, renderer, miss)
    (rc, _), (rr, _) = summed(sft, renderer, expert), summed(sft, renderer, miss)
    margin = cfg.beta * ((pc - rc) - (pr - rr))
    sig = 1 / (1 + math.exp(margin))  # sigmoid(-margin): how much the pair still pulls
    out += ["", "The pair's DPO margin sums over all action tokens of both trajectories (log pi = summed log-probs):",
            "```",
            f"margin = beta * [(log pi(e*) - log ref(e*)) - (log pi(e-) - log ref(e-))]",
            f"       = {cfg.beta} * [({pc:.3f} - {rc:.3f}) - ({pr:.3f} - {rr:.3f})] = {margin:+.4f}",
            f"loss   = -log sigmoid(margin) = {math.log1p(math.exp(-margin)):.4f}   (log 2 = 0.6931 at the reference)",
            f"weight = sigmoid(-margin) = {sig:.4f}   (0.5 at the reference: every pair starts equal)",
            "```",
            "The gradient each term puts on the log-prob of one action token (d loss / d log pi(token)) of this pair's "
            "row, before the batch's means; the update moves the logits along it. DPO's is the same for every token "
            "of a side: minus beta * weight on the expert's, plus on the near miss's, times the term's coefficient; "
            f"a row with K hard negatives (here K = {k}) gives each of them 1/K of it, so together they push the "
            "expert's tokens as one pair would. The NLL anchor's is minus its coefficient over the expert's "
            "action-token count (a per-token mean), on the expert's tokens only:\n",
            "| term | coefficient | on an expert token | on a near-miss token |", "|---|---|---|---|",
            f"| DPO at the start of the update (weight 0.5) | {weight} | {-weight * cfg.beta * 0.5:+.5f} | "
            f"{weight * cfg.beta * 0.5 / k:+.5f} |",
            f"| DPO after the update (weight {sig:.3f}) | {weight} | {-weight * cfg.beta * sig:+.5f} | "
            f"{weight * cfg.beta * sig / k:+.5f} |",
            f"| NLL anchor on the expert ({n_expert} action tokens) | {coefs.nll} | {-coefs.nll / n_expert:+.5f} | 0 |",
            "", ("After the update this pair is ranked the wrong way round (margin below 0): the pair's own push was "
                 "outweighed by what the other pairs and the NLL anchor did to the shared weights. "
                 if margin < 0 else "After the update the pair is ranked the right way round (margin above 0). ")
            + f"Per row, the NLL anchor's pull on an expert token is "
            f"{(coefs.nll / n_expert) / max(weight * cfg.beta * 0.5, 1e-12):.0f} times this pair's DPO push at the start "
            "of the update. In a batch each term is a mean over its own items: the NLL over all rows, the hard "
            f"negatives over the rows that have any ({100 * rows_b:.0f}% of them here), kind (a) over its pairs "
            f"({a_per_row:.2f} a row), so a row's push weighs 1 / (its share) more. " + ratio(coefs, cfg.beta, n_expert,
                                                                                       rows_b, a_per_row)
            + " This is one reason the preference terms move the agent so little here (docs/when_failures_help.md; "
            "the paper's 0.5 / 0.5 weights, `--preset paper`, change that ratio)."]
    print("\n".join(out))


if __name__ == "__main__":
    main()
