"""plots.py: figures for a slide, from finished (or partial) runs.

    python coevo.py plot RUN_DIR [RUN_DIR ...] [--out DIR]     # PNGs into DIR (default: the first RUN_DIR/plots)

1. differences.png  each method minus SFT and minus the nll control, reward on seen and unseen tasks, with 95%
                    intervals and a zero line: over seeds when several runs (seeds) are given, paired seed by seed;
                    over the test tasks of the one run otherwise (paired task by task)
2. curves.png       learning curves of the first run's updates over their optimizer steps: each loss term, and per
                    pair kind the DPO margin and accuracy (each measured on its batch just before that step)
3. mix.png          what each agent's rollouts are: success, failure below 0.6, hard negative >= 0.6 (the paper's table)
4. failures.png     the rewards of the failures each agent made, the near-miss band [0.6, 1) shaded

matplotlib is optional (only this module needs it); without it the command says how to install it.
"""
import json
import os
import sys

import runs

HARD_BAND = (0.6, 1.0)  # the paper's analysis threshold for a hard negative: a failure with reward >= 0.6
COLORS = {"sft": "#7f7f7f", "nll": "#9467bd", "rft": "#8c564b", "eto": "#1f77b4", "coevo": "#d62728"}
KINDS = {"own": "expert vs own failure", "hard": "expert vs hard negative", "ff": "better vs worse failure",
         "failure": "failure agent's pairs"}


def read_metrics(run_dir: str) -> list:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"plot: {run_dir!r} has no metrics.jsonl; give a run directory written by coevo.py")
    return [json.loads(line) for line in open(path) if line.strip()]


def by_phase(records: list) -> dict:
    """{phase name: its last record}."""
    return {r["phase"]: r for r in records}


def order(methods) -> list:
    return sorted(methods, key=lambda m: list(COLORS).index(m) if m in COLORS else 99)


# -----------------------------------------------------------------------------------------------------------
# 1. The comparison: paired differences with their intervals
def differences(run_dirs: list) -> list:
    """[(label, split, mean, half-width)] of each method minus SFT and minus nll (reward x100): over seeds (one run
    per seed) when several runs are given, else over the one run's test tasks."""
    evals = [runs.final_evaluations(d) for d in run_dirs]
    methods = order(set.intersection(*(set(e) for e in evals)) - {"sft"})
    out = []
    for base in ("sft", "nll"):
        for m in [m for m in methods if m != base and base in evals[0]]:
            for split in ("test_seen", "test_unseen"):
                per = [[a - b for a, b in zip(runs.per_task(e[m], split, "reward"), runs.per_task(e[base], split,
                                                                                               "reward"))]
                       for e in evals]
                xs = per[0] if len(per) == 1 else [sum(p) / len(p) for p in per]  # tasks, or one mean per seed
                out.append((f"{m} - {base}", split, *runs.mean_ci(xs)))
    return out


def plot_differences(plt, run_dirs: list, path: str) -> None:
    rows = differences(run_dirs)
    if not rows:
        return
    labels = list(dict.fromkeys(label for label, *_ in rows))
    tasks = "validation" if runs.saved_config(run_dirs[0]).eval_on == "valid" else "test"
    fig, axes = plt.subplots(1, 2, figsize=(10, 0.55 * len(labels) + 1.8), sharey=True, sharex=True)
    for ax, split in zip(axes, ("test_seen", "test_unseen")):
        for y, label in enumerate(labels):
            _, _, mean, half = next(r for r in rows if r[0] == label and r[1] == split)
            color = COLORS.get(label.split(" - ")[0])
            ax.errorbar(mean, y, xerr=[[half], [half]] if half == half else None, fmt="o", color=color, capsize=4)
            if half == half and (mean - half > 0 or mean + half < 0):  # the interval excludes 0
                ax.annotate("*", (mean, y), textcoords="offset points", xytext=(0, 4), ha="center", fontsize=14)
        ax.axvline(0, color="black", linewidth=1)
        ax.set_title({"test_seen": f"seen {tasks} tasks", "test_unseen": f"unseen {tasks} tasks"}[split])
        ax.set_xlabel("difference in average reward x100, 95% interval")
        ax.grid(axis="x", alpha=0.3)
    axes[0].set_yticks(range(len(labels)), labels)
    axes[0].invert_yaxis()
    over = f"over {len(run_dirs)} seeds, paired seed by seed" if len(run_dirs) > 1 else \
        "one run, paired task by task"
    fig.suptitle(f"Each method minus SFT and minus the nll control ({over}): an interval across 0 is no "
                 "measurable difference; * marks one that excludes 0", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# -----------------------------------------------------------------------------------------------------------
# 2. Learning curves of the updates
def update_phases(phases: dict) -> list:
    """The update phases of the first iteration that kept per-step figures, the failure agent's last."""
    names = [p for p, r in phases.items() if p.endswith(("6_update_target", "3_update_failure")) and r.get("steps")
             and p.split("/")[1] == "1"]
    return sorted(names, key=lambda p: (p.endswith("3_update_failure"), order([p.split("/")[0]])))


def plot_curves(plt, phases: dict, path: str) -> None:
    names = update_phases(phases)
    if not names:
        return
    fig, axes = plt.subplots(len(names), 3, figsize=(12, 2.6 * len(names) + 0.6), squeeze=False)
    for row, name in zip(axes, names):
        steps = phases[name]["steps"]
        x = range(1, len(steps) + 1)
        nll = "NLL of the chosen failures" if name.endswith("3_update_failure") else "NLL of the experts"
        terms = [("nll", nll)] + [(f"{k}_loss", f"DPO: {v}") for k, v in KINDS.items()]
        weights = phases[name].get("weights", {})
        for key, label in terms + [("loss", "the weighted sum (what is minimised)")]:
            weight = weights.get(key.removesuffix("_loss"))
            if any(key in s for s in steps):
                label += f" (weight {weight:g})" if weight is not None else ""
                row[0].plot(x, [s.get(key, float("nan")) for s in steps], label=label,
                            linestyle="--" if key == "loss" else "-", alpha=0.9)
        for kind, label in KINDS.items():
            if any(f"{kind}_margin" in s for s in steps):
                row[1].plot(x, [s.get(f"{kind}_margin", float("nan")) for s in steps], label=label)
                row[2].plot(x, [s.get(f"{kind}_acc", float("nan")) for s in steps], label=label)
        method = name.split("/")[0]
        who = "the failure agent's update" if name.endswith("3_update_failure") else f"{method}: the target's update"
        row[0].set_ylabel(f"{who}\nloss (nats)", fontsize=9)
        row[1].set_ylabel("margin", fontsize=9)
        row[2].set_ylabel("accuracy", fontsize=9)
        for ax, title in zip(row, ("loss terms before their weights", "DPO margin (implicit-reward gap)",
                                   "DPO accuracy (chosen above rejected)")):
            ax.set_title(title, fontsize=9)
            ax.grid(alpha=0.3)
            if ax.lines:
                ax.legend(fontsize=7, framealpha=0.6)
        row[2].set_ylim(-0.05, 1.3)  # headroom above 1 for the legend
    for ax in axes[-1]:
        ax.set_xlabel("optimizer step")
    fig.suptitle("Learning curves of iteration 1's updates, step by step (each figure on its batch, before the step)",
                 fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


# -----------------------------------------------------------------------------------------------------------
# 3. and 4. What the agents' rollouts are
def trajectory_mix(rec: dict) -> tuple:
    """(success, failure below 0.6, hard negative) shares of all the trajectories an exploration produced."""
    s = rec.get("success_rate") or 0.0
    h = (rec.get("hard_negative_share") or 0.0) * (1 - s)
    return s, 1 - s - h, h


def explorations(phases: dict) -> list:
    """[(label, record)] of iteration 1's explorations: the target's; the failure agent's before and after its
    update."""
    method = next((m for m in ("coevo", "eto", "rft", "nll") if f"{m}/1/1_explore_target" in phases), None)
    found = [("target (greedy)", phases.get(f"{method}/1/1_explore_target")),
             ("failure agent, before its update", phases.get(f"{method}/1/1_explore_failure")),
             ("failure agent, after (the hard negatives)", phases.get(f"{method}/1/4_hard_negatives"))]
    return [(label, rec) for label, rec in found if rec]


def plot_mix(plt, phases: dict, path: str) -> None:
    bars = explorations(phases)
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(9, 1.0 * len(bars) + 1.8))
    left = [0.0] * len(bars)
    for j, (label, color) in enumerate((("success", "#2ca02c"), ("failure, reward < 0.6", "#9e9e9e"),
                                        ("near miss, 0.6 <= reward < 1", "#ffbf00"))):
        widths = [100 * trajectory_mix(rec)[j] for _, rec in bars]
        ax.barh(range(len(bars)), widths, left=left, color=color, label=label)
        left = [a + w for a, w in zip(left, widths)]
    ax.set_yticks(range(len(bars)), [f"{label}\n{rec['n']} rollouts" for label, rec in bars])
    ax.invert_yaxis()
    ax.set_xlim(0, 100)
    ax.set_xlabel("% of the agent's rollouts in iteration 1")
    ax.set_title("What each agent's rollouts are in iteration 1\n(the paper expects a larger near-miss share from "
                 "the failure agent)", fontsize=10)
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncol=3, frameon=False)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_failures(plt, phases: dict, path: str) -> None:
    bars = [(label, rec) for label, rec in explorations(phases) if rec.get("failure_histogram")]
    if not bars:
        return
    fig, ax = plt.subplots(figsize=(8, 3.8))
    edges, width = [i / 10 for i in range(10)], 0.09 / len(bars)
    ax.axvspan(*HARD_BAND, color="#ffbf00", alpha=0.15, zorder=0, label="near-miss band (the paper's hard negatives)")
    for i, ((label, rec), color) in enumerate(zip(bars, ("#1f77b4", "#ff7f0e", "#d62728"))):
        counts = rec["failure_histogram"]
        total = max(1, sum(counts))
        ax.bar([e + 0.005 + width * i for e in edges], [100 * c / total for c in counts], width=width, align="edge",
               color=color, label=f"{label} ({sum(counts)} failures)")
    ax.set_xlim(0, 1)
    ax.set_xlabel("reward of a failed rollout (0 = nothing right, 1 would be success)")
    ax.set_ylabel("% of that agent's failures")
    ax.set_title("Rewards of the failures each agent makes in iteration 1: near misses sit in the shaded band",
                 fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)


def plot_runs(run_dirs: list, out_dir: str = "") -> list:
    """Write the PNGs; returns their paths (a figure a run has no data for, e.g. curves before any update, is
    left out)."""
    phases = by_phase(read_metrics(run_dirs[0]))  # the folder first: a wrong path is the likelier mistake
    for d in run_dirs[1:]:
        read_metrics(d)
    if not phases:
        raise SystemExit(f"plot: {run_dirs[0]!r} has no finished phase yet; nothing to plot")
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot: matplotlib is not installed (it is optional, only plots need it): "
                         "pip install matplotlib")
    out_dir = out_dir or os.path.join(run_dirs[0], "plots")
    os.makedirs(out_dir, exist_ok=True)
    finished = [d for d in run_dirs if "sft" in runs.final_evaluations(d)]
    figures = (("differences", lambda p: plot_differences(plt, finished, p) if finished else None),
               ("curves", lambda p: plot_curves(plt, phases, p)), ("mix", lambda p: plot_mix(plt, phases, p)),
               ("failures", lambda p: plot_failures(plt, phases, p)))
    paths = []
    for name, draw in figures:
        path = os.path.join(out_dir, f"{name}.png")
        if os.path.exists(path):
            os.remove(path)  # a stale figure from an earlier run must not pass for this one
        draw(path)
        paths += [path] if os.path.exists(path) else []
    return paths


def main(argv: list) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1])
        return
    out = argv[argv.index("--out") + 1] if "--out" in argv[:-1] else ""
    dirs = [a for i, a in enumerate(argv) if a != "--out" and (i == 0 or argv[i - 1] != "--out")]
    for p in plot_runs(dirs, out):
        print(f"wrote {p}")


if __name__ == "__main__":
    main(sys.argv[1:])
