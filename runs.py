"""runs.py: the plumbing under coevo.py's loop: run directories that resume, and the statistics of its tables.

A run directory holds config.json, metrics.jsonl, state.json (finished phases), one output per phase (JSON or a
checkpoint) and a lock. A phase's outputs are written first, then its metrics, then its name into state.json (each
write atomic), so a run killed anywhere resumes after the last finished phase; every phase seeds itself from (seed,
phase name), which is why a resumed run ends with exactly the numbers of an uninterrupted one.

The tables: mean and 95% Student-t interval over test tasks, and each method minus SFT as the interval of the mean of
per-task differences (paired), since tasks differ far more than methods do.
"""
import dataclasses
import hashlib
import json
import os
import time

import torch
from tqdm import tqdm

import model as M


# -----------------------------------------------------------------------------------------------------------
# Run directories, resumable phases
class RunDir:
    def __init__(self, path: str, cfg, resume: bool):
        self.path, self.cfg = path, cfg
        if resume and not os.path.isfile(os.path.join(path, "state.json")):
            raise SystemExit(f"coevo: --resume {path!r} is not a run directory (no state.json in it)")
        if not resume and os.path.exists(os.path.join(path, "state.json")):
            raise SystemExit(f"coevo: {path!r} already holds a run; use --resume {path} or another --name")
        os.makedirs(path, exist_ok=True)
        self._lock()
        self.done = json.load(open(os.path.join(path, "state.json")))["done"] if resume else []
        self.pending = []  # metric records of the phase in progress
        self.clock = time.time()  # when the phase in progress started (its summary line shows the seconds)
        # drop metric records of phases that never finished (a kill between the two writes)
        records = [json.loads(l) for l in open(self.file("metrics.jsonl"))] if os.path.exists(self.file("metrics.jsonl")) else []
        self._write(self.file("metrics.jsonl"), "".join(json.dumps(r) + "\n" for r in records if r["phase"] in self.done))
        self._write(self.file("config.json"), json.dumps(dataclasses.asdict(cfg), indent=1))
        self._write(self.file("state.json"), json.dumps({"done": self.done}))

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
        if os.path.exists(self.file(".lock")) and open(self.file(".lock")).read().strip() == str(os.getpid()):
            os.remove(self.file(".lock"))

    def file(self, *parts) -> str:
        return os.path.join(self.path, *parts)

    @staticmethod
    def _write(path, text):
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text), f.flush(), os.fsync(f.fileno())
        os.replace(tmp, path)

    def log(self, phase: str, **metrics):
        self.pending.append({"phase": phase, **metrics})

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
        return [json.loads(l) for l in open(self.file("metrics.jsonl"))]


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


def json_phase(run: RunDir, phase: str, compute):
    """Run `compute()` unless `phase` is finished; its JSON-able result is saved and reloaded on resume."""
    path = run.file(phase.replace("/", "_") + ".json")
    if phase in run.done:
        return json.load(open(path))
    torch.manual_seed(phase_seed(run.cfg, phase))
    result = compute()
    run._write(path, json.dumps(result))
    run.finish(phase)
    return result


def model_phase(run: RunDir, phase: str, model, renderer, train) -> None:
    """Train `model` in place with `train()` unless `phase` is finished; its checkpoint is the phase's output."""
    path = run.file("ckpt", phase.replace("/", "_"))
    if phase in run.done:
        load_weights(model, path)
        return
    torch.manual_seed(phase_seed(run.cfg, phase))
    train()
    M.save_checkpoint(path, model, renderer)
    run.finish(phase)


def load_weights(model, path):
    loaded, _ = M.load_checkpoint(path)
    model.load_state_dict(loaded.state_dict())


def fmt(record: dict) -> str:
    """One readable line: floats to 3 decimals, nested dicts (evaluation splits) in braces, lists left out."""
    def one(v):
        return f"{v:.3f}" if isinstance(v, float) else "{" + fmt(v) + "}" if isinstance(v, dict) else f"{v}"
    return ", ".join(f"{k}={one(v)}" for k, v in record.items() if not isinstance(v, list))


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
            if m not in ("sft", base) and base in evals and (base == "sft" or m != "nll"):
                cells = []
                for split, metric, scale in METRICS:  # success in % points, like its column
                    diff = [scale * (a - b) for a, b in zip(per_task(ev, split, metric), per_task(evals[base], split, metric))]
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
