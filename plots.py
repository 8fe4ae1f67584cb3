"""plots.py: figures of a finished (or partial) run, from its metrics.jsonl alone.

    python coevo.py plot RUN_DIR [--out DIR]     # writes four PNGs (default: RUN_DIR/plots)

1. reward.png      reward x100 after each iteration, per method and split, with the 95% interval over tasks
2. failures.png    reward histogram of the failures the target explored vs the failure agent's hard negatives, per
                   iteration, the hard-negative band [0.6, 1) shaded: the paper's claim 2 is that the right bars are taller
3. mix.png         trajectory mix per iteration (success / failure below 0.6 / hard negative), as the paper's table
4. preferences.png DPO accuracy and margin per pair kind and iteration (own failures, hard negatives, failure pairs)

matplotlib is optional (only this module needs it); without it the command says how to install it.
"""
import json
import os
import sys

HARD_BAND = (0.6, 1.0)  # the paper's analysis threshold for a hard negative: a failure with reward >= 0.6
COLORS = {"sft": "#7f7f7f", "eto": "#1f77b4", "coevo": "#d62728"}


def read_metrics(run_dir: str) -> list:
    path = os.path.join(run_dir, "metrics.jsonl")
    if not os.path.isfile(path):
        raise SystemExit(f"plot: {run_dir!r} has no metrics.jsonl; give a run directory written by coevo.py")
    return [json.loads(line) for line in open(path) if line.strip()]


def by_phase(records: list) -> dict:
    """{(method, iteration, step): last record of that phase}; SFT's evaluation counts as iteration 0 of every method."""
    out = {}
    for r in records:
        parts = r["phase"].split("/")
        if parts[0] == "sft":
            out[("sft", 0, parts[1])] = r
        elif len(parts) == 3:
            out[(parts[0], int(parts[1]), parts[2])] = r
    return out


def methods_in(phases: dict) -> list:
    return sorted({m for m, _, _ in phases if m != "sft"}, key=lambda m: list(COLORS).index(m) if m in COLORS else 9)


def iterations_of(phases: dict, method: str, step: str) -> list:
    return sorted(k for m, k, s in phases if m == method and s == step)


def plot_reward(plt, phases: dict, path: str) -> None:
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    splits = ("test_seen", "test_unseen")
    for ax, split in zip(axes, splits):
        for method in methods_in(phases) or ["sft"]:
            ks = ([0] if ("sft", 0, "7_evaluate") in phases else []) + iterations_of(phases, method, "7_evaluate")
            evs = [phases[("sft", 0, "7_evaluate")] if k == 0 else phases[(method, k, "7_evaluate")] for k in ks]
            ys = [e[split]["reward"] for e in evs]
            errs = [e[split].get("reward_ci", 0) for e in evs]
            ax.errorbar(ks, ys, yerr=errs, marker="o", capsize=3, label=method, color=COLORS.get(method))
        ax.set_title({"test_seen": "seen tasks", "test_unseen": "unseen tasks"}[split])
        ax.set_xlabel("iteration (0 = SFT)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("average reward x100 (greedy), 95% interval")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_failures(plt, phases: dict, path: str) -> None:
    ks = iterations_of(phases, "coevo", "1_explore_target")
    if not ks:  # an ETO-only run: the target's own failures alone
        ks = iterations_of(phases, "eto", "1_explore_target")
    fig, axes = plt.subplots(1, max(1, len(ks)), figsize=(4.2 * max(1, len(ks)), 3.6), squeeze=False)
    edges = [i / 10 for i in range(10)]
    for ax, k in zip(axes[0], ks):
        method = "coevo" if ("coevo", k, "1_explore_target") in phases else "eto"
        sources = [("target's failures", phases.get((method, k, "1_explore_target")), "#1f77b4")]
        hard = phases.get((method, k, "4_hard_negatives")) or phases.get((method, k, "1_explore_failure"))
        if hard:
            sources.append(("failure agent's failures", hard, "#d62728"))
        for i, (label, rec, color) in enumerate(sources):
            counts = rec.get("failure_histogram") or [0] * 10
            total = max(1, sum(counts))
            ax.bar([e + 0.02 + 0.04 * i for e in edges], [c / total for c in counts], width=0.04, align="edge",
                   color=color, label=f"{label} (n={sum(counts)})")
        ax.axvspan(*HARD_BAND, color="#ffbf00", alpha=0.15, label="hard negative band", zorder=0)
        ax.set_title(f"{method} iteration {k}")
        ax.set_xlabel("reward of a failed trajectory")
        ax.set_xlim(0, 1)
    axes[0][0].set_ylabel("share of the failures")
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def trajectory_mix(rec: dict) -> tuple:
    """(success, failure below 0.6, hard negative) shares of all the trajectories an exploration produced."""
    s = rec.get("success_rate") or 0.0
    h = (rec.get("hard_negative_share") or 0.0) * (1 - s)
    return s, 1 - s - h, h


def plot_mix(plt, phases: dict, path: str) -> None:
    bars = []  # (label, record)
    for method in methods_in(phases):
        for k in iterations_of(phases, method, "1_explore_target"):
            bars.append((f"{method} {k}\ntarget", phases[(method, k, "1_explore_target")]))
            hard = phases.get((method, k, "4_hard_negatives")) or phases.get((method, k, "1_explore_failure"))
            if hard:
                bars.append((f"{method} {k}\nfailure agent", hard))
    fig, ax = plt.subplots(figsize=(max(5, 1.1 * len(bars)), 3.8))
    bottoms = [0.0] * len(bars)
    for j, (label, color) in enumerate((("success", "#2ca02c"), ("failure < 0.6", "#9e9e9e"), ("hard negative >= 0.6", "#ffbf00"))):
        heights = [100 * trajectory_mix(rec)[j] for _, rec in bars]
        ax.bar(range(len(bars)), heights, bottom=bottoms, color=color, label=label)
        bottoms = [b + h for b, h in zip(bottoms, heights)]
    ax.set_xticks(range(len(bars)), [b[0] for b in bars], fontsize=7)
    ax.set_ylabel("% of explored trajectories")
    ax.set_title("trajectory mix per iteration (the paper's success / failure / hard-negative table)")
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_preferences(plt, phases: dict, path: str) -> None:
    kinds = (("own", "6_update_target", "expert vs own failure"), ("hard", "6_update_target", "expert vs hard negative"),
             ("ff", "6_update_target", "failure vs failure (target)"), ("failure", "3_update_failure", "failure agent's pairs"))
    fig, (acc_ax, margin_ax) = plt.subplots(1, 2, figsize=(10, 3.8))
    for method in methods_in(phases):
        for kind, step, label in kinds:
            ks = [k for k in iterations_of(phases, method, step) if f"{kind}_acc" in phases[(method, k, step)]]
            if not ks:
                continue
            style = dict(marker="o", label=f"{method}: {label}", color=COLORS.get(method),
                         linestyle={"own": "-", "hard": "--", "ff": ":", "failure": "-."}[kind])
            acc_ax.plot(ks, [phases[(method, k, step)][f"{kind}_acc"] for k in ks], **style)
            margin_ax.plot(ks, [phases[(method, k, step)][f"{kind}_margin"] for k in ks], **style)
    acc_ax.set_ylabel("DPO accuracy (chosen's implicit reward higher)")
    margin_ax.set_ylabel("DPO margin (mean implicit-reward gap)")
    for ax in (acc_ax, margin_ax):
        ax.set_xlabel("iteration")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
    acc_ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_run(run_dir: str, out_dir: str = "") -> list:
    """Write the four PNGs of a run; returns their paths."""
    phases = by_phase(read_metrics(run_dir))  # the folder first: a wrong path is the likelier mistake
    if not phases:
        raise SystemExit(f"plot: {run_dir!r} has no finished phase yet; nothing to plot")
    try:
        import matplotlib
        matplotlib.use("Agg")  # files only, no display needed
        import matplotlib.pyplot as plt
    except ImportError:
        raise SystemExit("plot: matplotlib is not installed (it is optional, only plots need it): pip install matplotlib")
    out_dir = out_dir or os.path.join(run_dir, "plots")
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    for name, fn in (("reward", plot_reward), ("failures", plot_failures), ("mix", plot_mix), ("preferences", plot_preferences)):
        paths.append(os.path.join(out_dir, f"{name}.png"))
        fn(plt, phases, paths[-1])
    return paths


def main(argv: list) -> None:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.split("\n\n")[1] if len(__doc__.split("\n\n")) > 1 else __doc__)
        return
    out = argv[argv.index("--out") + 1] if "--out" in argv[:-1] else ""
    for p in plot_run(argv[0], out):
        print(f"wrote {p}")


if __name__ == "__main__":
    main(sys.argv[1:])
