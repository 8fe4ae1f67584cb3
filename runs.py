"""runs.py: the plumbing under coevo.py's loop: run directories that resume, the reports a run prints and writes,
and the statistics of its tables.

A run directory holds config.json, metrics.jsonl, state.json (finished phases), one output per phase (JSON or a
checkpoint) and a lock. `RunDir.cached` runs one step of the algorithm as a named phase: it seeds torch from (seed,
phase), writes the phase's output first, then its metrics, then its name into state.json (each write atomic), so a
run killed anywhere resumes after the last finished phase and ends with exactly the numbers of an uninterrupted one.

The tables: mean and 95% Student-t interval over test tasks, and each method minus SFT as the interval of the mean of
per-task differences (paired), since tasks differ far more than methods do; over seeds, the same seed by seed.
"""
import dataclasses
import hashlib
import inspect
import json
import os
import shutil
import time

import torch
from tqdm import tqdm

import loader
from config import Config, run_stem


# -----------------------------------------------------------------------------------------------------------
# Run directories, resumable phases
class RunDir:
    def __init__(self, path: str, cfg, resume: bool, renderer=None):
        self.path, self.cfg, self.renderer = path, cfg, renderer  # the renderer goes into every checkpoint
        if resume and not os.path.isfile(os.path.join(path, "state.json")):
            raise SystemExit(f"coevo: --resume {path!r} is not a run directory (no state.json in it)")
        if not resume and finished_phases(path):  # a run that failed before its first phase blocks nothing
            raise SystemExit(f"coevo: {path!r} already holds a run; use --resume {path} or another --name")
        os.makedirs(path, exist_ok=True)
        self._lock()
        self.done = finished_phases(path) if resume else []
        self.pending = []  # metric records of the phase in progress
        self.clock = time.time()  # when the phase in progress started (its summary line shows the seconds)
        # drop metric records of phases that never finished (a kill between the two writes)
        metrics = self.file("metrics.jsonl")
        records = [json.loads(line) for line in open(metrics)] if os.path.exists(metrics) else []
        self._write(metrics, "".join(json.dumps(r) + "\n" for r in records if r["phase"] in self.done))
        self._write(self.file("config.json"), json.dumps(dataclasses.asdict(cfg), indent=1))
        self._write(self.file("state.json"), json.dumps({"done": self.done}))

    def cached(self, phase: str, fn, *args, saves=None, idle=None, **kwargs):
        """One step of the algorithm as the phase `phase`, computed once: `fn(*args, **kwargs)` runs unless the phase
        finished before, and its output is saved and read back on resume.
        - saves=agent: fn trains that agent in place and returns its metrics; the agent's checkpoint is the output.
        - otherwise fn returns (output, metrics) and the output (trajectories, an evaluation) is saved as JSON.
        Metrics, a record or a list of records, go to metrics.jsonl. Around the call: torch is seeded from (seed,
        phase); fn gets `seed` too if it takes one (its own generators); on a GPU the `idle` agent waits in CPU memory
        (only the agent being updated needs room there for gradients and optimizer state)."""
        path = self.file("ckpt", phase.replace("/", "_")) if saves is not None else self.file(
            phase.replace("/", "_") + ".json")
        if phase in self.done:
            return load_weights(saves, path) if saves is not None else json.load(open(path))
        torch.manual_seed(phase_seed(self.cfg, phase))
        if "seed" in inspect.signature(fn).parameters:
            kwargs["seed"] = step_seed(self.cfg, phase)
        park(idle, "cpu", self.cfg.device)
        try:
            result = fn(*args, **kwargs)
        except FloatingPointError as e:  # check_finite: stop, keeping the last good checkpoint (this one is unwritten)
            raise SystemExit(f"coevo: non-finite loss in phase {phase} {e}; stopping. The last good checkpoint is kept "
                             f"(this phase's is never written); lower the learning rate or beta and --resume.")
        finally:
            park(idle, self.cfg.device, self.cfg.device)
        output, metrics = (None, result) if saves is not None else result
        if saves is not None:
            loader.save_checkpoint(path, saves, self.renderer)
        else:
            self._write(path, json.dumps(output))
        self.pending += [{"phase": phase, **r} for r in (metrics if isinstance(metrics, list) else [metrics])]
        self.finish(phase)
        return output

    def _lock(self):
        lock = self.file(".lock")
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            text = open(lock).read().strip()
            pid = int(text) if text.isdigit() else 0  # an empty or garbled lock counts as stale
            if pid and pid_alive(pid):
                raise SystemExit(f"coevo: another process (pid {pid}) is writing into {self.path}; "
                                 f"wait for it or stop it (remove {lock} only if that process is gone)")
            os.remove(lock)  # stale lock of a killed run
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        os.write(fd, str(os.getpid()).encode()), os.close(fd)

    def release(self):
        """Unlock; a run that failed before its first phase leaves no directory behind (nothing was lost)."""
        if os.path.exists(self.file(".lock")) and open(self.file(".lock")).read().strip() == str(os.getpid()):
            os.remove(self.file(".lock"))
        if not self.done and not self.cfg.resume and os.path.isdir(self.path):
            shutil.rmtree(self.path, ignore_errors=True)

    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    @staticmethod
    def _write(path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text), f.flush(), os.fsync(f.fileno())
        os.replace(tmp, path)

    def finish(self, phase: str):
        """The phase's one summary line (its last metric record and wall time), then its records and its name."""
        last = {k: v for k, v in (self.pending[-1] if self.pending else {}).items() if k != "phase"}
        seconds = time.time() - self.clock
        tqdm.write(f"[{phase}] {fmt(last)} ({seconds:.0f} s)")
        with open(self.file("metrics.jsonl"), "a") as f:
            f.write("".join(json.dumps(r) + "\n" for r in self.pending))
        # wall times go to their own file: metrics.jsonl stays identical run to run (python bench.py loop reads these)
        with open(self.file("timings.jsonl"), "a") as f:
            f.write(json.dumps({"phase": phase, "seconds": round(seconds, 2)}) + "\n")
        self.pending, self.clock = [], time.time()
        self.done.append(phase)
        self._write(self.file("state.json"), json.dumps({"done": self.done}))

    def metrics(self) -> list[dict]:
        return [json.loads(line) for line in open(self.file("metrics.jsonl"))]


# Exploration generators were seeded under these short names before the phases got their present names; kept, so
# that runs repeat bit for bit across that rename (a phase's other randomness is seeded by its full name).
SEED_NAMES = {"1_explore_target": "1t", "1_explore_failure": "1f", "4_hard_negatives": "4"}


def saved_config(path: str, **changes) -> Config:
    """The Config a run directory was made with (a resumed run must be the same run), with `changes` on top. A
    setting this revision no longer has is dropped if it was at its old default; otherwise the run cannot be
    continued here, and the message says which revision can."""
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise SystemExit(f"coevo: {path!r} is not a run directory (no config.json in it)")
    saved = json.load(open(os.path.join(path, "config.json")))
    known = {f.name for f in dataclasses.fields(Config)}
    used = {k: v for k, v in saved.items() if k not in known and v not in (False, 0, 0.0, "")}
    if used:
        raise SystemExit(f"coevo: {path} was made with settings this revision removed ({used}); "
                         f"check out revision 0ac5a82 or earlier to continue it")
    return Config(**{**{k: v for k, v in saved.items() if k in known}, "resume": path, **changes})


def finished_phases(path: str) -> list:
    state = os.path.join(path, "state.json")
    return json.load(open(state)).get("done", []) if os.path.isfile(state) else []


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True


def phase_seed(cfg, phase: str) -> int:
    """A seed per (run seed, phase): phases can be re-run alone and give the same numbers."""
    return int(hashlib.sha256(f"{cfg.seed}/{phase}".encode()).hexdigest()[:8], 16)


def step_seed(cfg, phase: str) -> int:
    """The seed a phase's own generators use: phase_seed of its name, or of its old short name (SEED_NAMES)."""
    head, _, step = phase.rpartition("/")
    return phase_seed(cfg, f"{head}/{SEED_NAMES[step]}" if step in SEED_NAMES else phase)


def park(agent, where: str, device: str) -> None:
    """Memory: on a GPU run (device cuda), move an agent to `where` (cpu or back to cuda) in place: parameters and
    any gradients move, the module object stays the same. On a CPU run, or with no agent, nothing moves."""
    if agent is not None and torch.device(device).type == "cuda":
        agent.to(where)


def load_weights(model, path):
    loaded, _ = loader.load_checkpoint(path)
    model.load_state_dict(loaded.state_dict())


def fmt(record: dict) -> str:
    """One readable line: floats to 3 decimals, nested dicts (evaluation splits) in braces, lists left out."""
    def one(v):
        return f"{v:.3f}" if isinstance(v, float) else "{" + fmt(v) + "}" if isinstance(v, dict) else f"{v}"
    return ", ".join(f"{k}={one(v)}" for k, v in record.items() if not isinstance(v, list))


# -----------------------------------------------------------------------------------------------------------
# Reports: what a run prints and writes besides its metrics
def report_pairs(counts: dict, used: dict) -> None:
    """Print how many pairs of each kind an update gets, and warn when a kind its loss uses has none: that term
    then teaches nothing this iteration (e.g. SFT solves every explored task, so ETO has no failures to pair)."""
    tqdm.write("pairs: " + ", ".join(f"{k.removesuffix('_pairs')} {v}" for k, v in counts.items()))
    for k, v in counts.items():
        if used.get(k) and v == 0:
            tqdm.write(f"warning: no {k.removesuffix('_pairs')} pairs this iteration; that loss term does nothing")


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
                f"{r.get(k, 0)} {k.removesuffix('_pairs')} pairs" for k in ("own_pairs", "hard_pairs", "ff_pairs")))
    return "\n".join(out)


def write_summary(run: RunDir, minutes: float) -> str:
    """summary.md: the results table, what SFT left to learn from, and how to read them; returns the table."""
    cfg, table = run.cfg, results_table(final_evaluations(run.path)) + "\n\n" + exploration_note(run.metrics())
    RunDir._write(run.file("summary.md"), f"# {run.path}\n\n{table}\n\nAverage reward x100 and success % of "
                  f"greedy decoding on {cfg.n_test} tasks per {cfg.eval_on} split, ± the half-width of the 95% "
                  "interval over tasks; 'X - Y' rows: mean per-task difference on the same tasks [95% interval], * "
                  f"where it excludes 0. Wall time of this invocation: {minutes:.1f} min.\n")
    return table


def cell(text: str) -> str:
    """A message as one markdown table cell: | escaped, a sampled newline shown as a visible \\n."""
    return text.replace("|", "\\|").replace("\n", "\\n")


def write_transcripts(path: str, groups: list, n: int = 3) -> None:
    """transcripts.md: expert, target failure and hard negative on the same training task, side by side."""
    rows = ["# Expert vs the target's failure vs the failure agent's hard negative\n"]
    picked = [g for g in groups if g["a"] and g["hard"]][:n]
    for g in picked:
        e, f, h = g["expert"], g["a"][0][1], max(g["hard"], key=lambda t: t["reward"])
        rows.append(f"## {e['task']['id']}\n\n{e['messages'][0]}\n")
        rows.append(f"| turn | expert (r={e['reward']:.2f}) | target failure (r={f['reward']:.2f}) | "
                    f"hard negative (r={h['reward']:.2f}) |")
        rows.append("|---|---|---|---|")
        for i in range(max(len(t["messages"]) // 2 for t in (e, f, h))):
            turn = [cell(t["messages"][2 * i + 1]) if 2 * i + 1 < len(t["messages"]) else "" for t in (e, f, h)]
            rows.append(f"| {i + 1} | " + " | ".join(turn) + " |")
        rows.append("")
    if not picked:
        rows.append("(no training task had both a target failure and a hard negative in this iteration)")
    RunDir._write(path, "\n".join(rows) + "\n")


def sweep(cfg, main) -> None:
    """--seeds: `main` once per seed (a seed already run is read back, a half-run one continued), then each method's
    final numbers over seeds (mean ± sample std and the 95% t-interval over seeds), and each method minus SFT, minus
    the nll control and minus ETO seed by seed (the paired comparisons)."""
    results = {}
    for s in [int(x) for x in cfg.seeds.split(",")]:
        c = dataclasses.replace(cfg, seed=s, seeds="", name=f"{cfg.name or run_stem(cfg)}-seed{s}")
        path = os.path.join(c.out_dir, c.name)
        if finished_phases(path):  # a seed already (partly) run: continue it as it was made, do not redo it
            saved = saved_config(path)
            changed = sorted(k for k, v in dataclasses.asdict(c).items() if k not in ("resume", "threads")
                             and getattr(saved, k) != v)
            if changed:
                print(f"coevo: {path} was made with other settings ({', '.join(changed)}); continuing it as it was "
                      f"made (another --name starts new runs)")
            c = saved
        main(c)
        for m, ev in final_evaluations(path).items():
            results.setdefault(m, []).append([sc * mean_ci(per_task(ev, split, metric))[0]
                                              for split, metric, sc in METRICS])
    print(f"\nover seeds {cfg.seeds}: mean ± std [95% interval over seeds]\n{HEADER}")
    for m, rows in results.items():
        print(f"| {m} | " + " | ".join(over_seeds(c) for c in zip(*rows)) + " |")
    # what the preference pairs add beyond the same updates' imitation; what the hard negatives add beyond ETO
    for base, label in (("sft", "SFT"), ("nll", "the nll control"), ("eto", "ETO")):
        gaps = {m: rows for m, rows in paired_gaps(results, base).items() if base != "eto" or m == "coevo"} if (
            base in results) else {}
        if gaps:
            print(f"\nminus {label} on the same seed (the seed's tasks and initialisation cancel): mean ± std [95% "
                  f"interval], * where it excludes 0; an interval that holds 0 is no measurable difference\n{HEADER}")
            for m, rows in gaps.items():
                print(f"| {m} - {base} | " + " | ".join(over_seeds(c, difference=True) for c in zip(*rows)) + " |")


# -----------------------------------------------------------------------------------------------------------
# Statistics of the results tables
T95 = (12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145, 2.131,
       2.120, 2.110, 2.101, 2.093, 2.086, 2.080, 2.074, 2.069, 2.064, 2.060, 2.056, 2.052, 2.048, 2.045, 2.042)


def t95(df: int) -> float:
    """Two-sided 95% quantile of Student's t with df degrees of freedom (table to 30, then 1.96 + 2.4 / df,
    within 0.001 of the exact value)."""
    return T95[df - 1] if df <= len(T95) else 1.96 + 2.4 / df


def mean_ci(xs) -> tuple:
    """(mean, half-width of its 95% t-interval). One value has no spread: the half-width is nan."""
    n = len(xs)
    mean = sum(xs) / n
    if n < 2:
        return mean, float("nan")
    sd = (sum((x - mean) ** 2 for x in xs) / (n - 1)) ** 0.5
    return mean, t95(n - 1) * sd / n ** 0.5


METRICS = (("test_seen", "reward", 1), ("test_unseen", "reward", 1), ("test_seen", "success", 100),
           ("test_unseen", "success", 100))
HEADER = "| method | seen reward | unseen reward | seen success % | unseen success % |\n|---|---|---|---|---|"


def final_evaluations(path: str) -> dict:
    """method -> its last evaluation (sft's, then each method's after its last iteration), per-task rewards
    included, read back from the run directory."""
    last = {}
    for r in (json.loads(l) for l in open(os.path.join(path, "metrics.jsonl"))):
        if r["phase"].endswith("7_evaluate"):
            last[r["phase"].split("/")[0]] = r["phase"]
    return {m: json.load(open(os.path.join(path, phase.replace("/", "_") + ".json"))) for m, phase in last.items()}


def per_task(ev: dict, split: str, metric: str) -> list:
    """Per-task values of one metric (reward x100 or success 0/1) of an evaluation."""
    return [100 * r if metric == "reward" else float(r == 1.0) for r in ev[split]["rewards"]]


def results_table(evals: dict) -> str:
    """Each method's final numbers with 95% intervals over the test tasks, then each method minus SFT on the
    same tasks: the interval of the mean of per-task differences (a paired t-interval). Differences between
    methods are far smaller than differences between tasks, so only the paired interval can show them. With the
    `nll` control in the run, each preference method minus it too: what the pairs add beyond more imitation; with
    ETO in the run, co-evolution minus ETO: what the hard negatives add."""
    lines = [HEADER]
    for m, ev in evals.items():
        lines.append(f"| {m} | " + " | ".join(f"{v:.1f} ± {h:.1f}" for v, h in (
            (s * c for c in mean_ci(per_task(ev, split, metric))) for split, metric, s in METRICS)) + " |")
    for base in ("sft", "nll", "eto"):  # eto: co-evolution minus ETO, the paper's comparison
        for m, ev in evals.items():
            if m not in ("sft", base) and base in evals and (base != "eto" or m == "coevo"):
                cells = []
                for split, metric, scale in METRICS:  # success in % points, like its column
                    pairs = zip(per_task(ev, split, metric), per_task(evals[base], split, metric))
                    diff = [scale * (a - b) for a, b in pairs]
                    cells.append(fmt_interval(*mean_ci(diff)))
                lines.append(f"| {m} - {base} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def fmt_interval(mean: float, half: float, std: float | None = None) -> str:
    """'+1.2 [+0.3, +2.1]': a difference and its 95% interval ('+1.2 ± 0.8 [+0.3, +2.1]' with the spread over
    seeds); ' *' marks an interval that excludes 0."""
    mark = " *" if half == half and (mean - half > 0 or mean + half < 0) else ""
    spread = "" if std is None else f" ± {std:.1f}"
    return f"{mean:+.1f}{spread} [{mean - half:+.1f}, {mean + half:+.1f}]{mark}"


def over_seeds(xs, difference: bool = False) -> str:
    """A column over seeds: 'mean ± std [95% interval]'. A paired difference gets signs and, like the single-run
    table, * where its interval excludes 0: '+1.7 ± 1.6 [-0.3, +3.6]'."""
    (mean, half), std = mean_ci(xs), sample_std(xs)
    if difference:
        return fmt_interval(mean, half, std)
    return f"{mean:.1f} ± {std:.1f} [{mean - half:.1f}, {mean + half:.1f}]"


def sample_std(xs) -> float:
    """Sample standard deviation (n - 1 in the denominator: a few seeds are a sample, not the population)."""
    mean = sum(xs) / len(xs)
    return (sum((x - mean) ** 2 for x in xs) / max(1, len(xs) - 1)) ** 0.5


def mean_std(xs) -> str:
    """'mean ± sample standard deviation'."""
    return f"{sum(xs) / len(xs):.1f} ± {sample_std(xs):.1f}"


def paired_gaps(results: dict, base: str = "sft") -> dict:
    """Each method's numbers minus `base`'s (SFT, or the nll control) on the same seed. Seeds differ by far more
    than the methods do (other tasks, other initialisation), so a method's effect is read from these paired
    differences, not from the overlap of two mean ± std columns."""
    return {m: [[a - b for a, b in zip(row, ref)] for row, ref in zip(rows, results[base])]
            for m, rows in results.items() if m not in ("sft", base)}
