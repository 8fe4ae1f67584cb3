"""Kill a run with SIGKILL at random moments, resume it each time, and check that it ends exactly as an
uninterrupted run of the same configuration (tests/test_coevo.py does this at two fixed points, in process).

    python scripts/kill_resume.py                         # smoke preset, a little larger, 5 kills
    python scripts/kill_resume.py --kills 8 -- --n-expert 100 --n-train 200 --n-test 50 --explore-tasks 100 \\
        --sft-epochs 2 --iterations 2                     # a larger run: any coevo.py flags after --

First the uninterrupted run (its wall time sets the range of the kill moments), then a second run in another
directory that is killed at uniform random moments in that range (each kill lands in whatever phase is running:
mid-SFT, mid-rollout, mid-update, between two writes), resumed with `--resume`, until it finishes. Each kill comes
15-70% of the uninterrupted wall time after the (re)start, so every life finishes some phases. Compares
metrics.jsonl (every number of every phase) and the final table. Exits 1 on any difference.
"""
import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def coevo(args, **kw):
    return subprocess.Popen([sys.executable, os.path.join(ROOT, "coevo.py")] + args, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kw)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--kills", type=int, default=5)
    p.add_argument("--seed", type=int, default=0, help="seed of the kill moments (the run's own seed is a coevo flag)")
    p.add_argument("flags", nargs="*", help="coevo.py flags after -- (default: the smoke preset, a little larger)")
    args = p.parse_args()
    flags = args.flags or ["--preset", "smoke", "--n-train", "80", "--n-expert", "40", "--n-test", "30",
                           "--explore-tasks", "60", "--iterations", "3", "--sft-epochs", "4"]
    out = tempfile.mkdtemp(prefix="coevo_kill_")
    try:
        base = flags + ["--out-dir", out, "--method", "compare"]
        t0 = time.time()
        if coevo(base + ["--name", "whole"]).wait() != 0:
            sys.exit("kill_resume: the uninterrupted run failed; run it by hand to see why")
        whole_s = time.time() - t0
        rng, killed, proc = random.Random(args.seed), 0, coevo(base + ["--name", "killed"])
        resume = ["--resume", os.path.join(out, "killed")]
        while killed < args.kills:
            time.sleep(rng.uniform(0.15, 0.7) * whole_s)  # from this (re)start: each life gets some phases done
            if proc.poll() is not None:  # it finished before this kill: nothing left to interrupt
                break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed += 1
            state = os.path.join(out, "killed", "state.json")
            done = json.load(open(state))["done"] if os.path.exists(state) else []
            print(f"kill {killed}: {len(done)} phases finished, the last {done[-1] if done else '-'}")
            proc = coevo(resume if os.path.exists(os.path.join(out, "killed", "state.json")) else base + ["--name", "killed"])
        if proc.wait() != 0:
            sys.exit("kill_resume: the resumed run failed")
        same = [open(os.path.join(out, n, "metrics.jsonl")).read() for n in ("whole", "killed")]
        tables = [open(os.path.join(out, n, "summary.md")).read().split("\n\n")[1] for n in ("whole", "killed")]
        ok = same[0] == same[1] and tables[0] == tables[1]
        print(f"{killed} kills; uninterrupted run {whole_s:.0f} s; metrics.jsonl and the final table "
              f"{'identical' if ok else 'DIFFER'}")
        sys.exit(0 if ok else 1)
    finally:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
