"""The long fuzz run of the environments (tests/test_envs.py runs a few hundred episodes of the same kinds).

    python scripts/fuzz_envs.py                  # 10,000 episodes per environment (a few minutes on 2 cores)
    python scripts/fuzz_envs.py --episodes 500   # quicker

Each episode draws a task and a mix of actions, in random order:
  plausible  every verb on every object of the task's own world (objects used up, moved or mixed away included),
  noisy      the oracle's actions with some dropped, repeated or replaced by plausible ones,
  random     junk strings, any code points, word soup from the env's lexicon,
  adversarial very long strings, control characters, empty, non-text, huge numbers, SQL that writes, ATTACHes,
             PRAGMAs, runs recursive CTEs that never end or cross-joins to billions of rows.
Checks per step: no exception, an ASCII observation, a reward in [0, 1], under 2 s; per episode: it ends by its
step cap; at the end: no file was created (the run happens in an empty temporary working directory). Prints the
counts and exits 1 on any failure, naming the env, task, and action.
"""
import argparse
import os
import random
import sys
import tempfile
import time
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path[:0] = [ROOT, os.path.join(ROOT, "tests")]
import envs  # noqa: E402
from test_envs import ADVERSARIAL, COMMON, fuzz_actions, world_actions  # noqa: E402  (the suite's generators)


def episode_actions(task, rng, cap):
    kind = rng.choice(["plausible", "noisy", "random", "adversarial"])
    plausible = world_actions(task)
    if kind == "plausible":
        return kind, [rng.choice(plausible) for _ in range(cap)]
    if kind == "noisy":
        out = []
        for a in envs.oracle(task)["messages"][1::2]:
            r = rng.random()
            out += [] if r < 0.15 else [a, a] if r < 0.3 else [rng.choice(plausible)] if r < 0.5 else [a]
        return kind, out + [rng.choice(plausible) for _ in range(cap)]
    if kind == "random":
        return kind, fuzz_actions(task["env"], rng, cap)
    name = task["slots"].get("name", "pets")
    pool = [a.replace("pets", name) if isinstance(a, str) else a for a in ADVERSARIAL[task["env"]] + COMMON]
    return kind, [rng.choice(pool) for _ in range(cap)]


def fuzz(env_name, episodes, seed):
    rng, tasks = random.Random(seed), []
    for split in ("train", "test_seen", "test_unseen"):
        tasks += envs.make_tasks(env_name, split, 200, seed=seed)
    counts, slowest, t0 = {}, 0.0, time.time()
    for e in range(episodes):
        task, env = rng.choice(tasks), envs.make_env(env_name)
        kind, actions = episode_actions(task, rng, env.max_steps + 5)
        counts[kind] = counts.get(kind, 0) + 1
        env.reset(task)
        done, steps = False, 0
        for a in actions:
            start = time.perf_counter()
            try:
                obs, reward, done, info = env.step(a)
            except Exception:
                sys.exit(f"FAIL {env_name} task {task['id']} ({kind}) action {a!r:.120}:\n{traceback.format_exc()}")
            slowest = max(slowest, time.perf_counter() - start)
            steps += 1
            if not (isinstance(obs, str) and obs.isascii() and 0.0 <= reward <= 1.0) or slowest > 2.0:
                sys.exit(f"FAIL {env_name} task {task['id']} ({kind}) action {a!r:.120}: obs {obs!r:.80}, reward "
                         f"{reward}, slowest step {slowest:.2f} s")
            if done:
                break
        if not done or steps > env.max_steps:
            sys.exit(f"FAIL {env_name} task {task['id']} ({kind}): {steps} steps, done={done}, cap {env.max_steps}")
    print(f"{env_name:5s} {episodes} episodes ({', '.join(f'{k} {v}' for k, v in sorted(counts.items()))}): "
          f"0 exceptions, all ended by the cap, slowest step {1000 * slowest:.0f} ms, {time.time() - t0:.0f} s")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--episodes", type=int, default=10_000, help="episodes per environment")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--env", default="", help="one environment only (default: all)")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as cwd:
        os.chdir(cwd)  # a relative ATTACH or VACUUM INTO would write here
        outside = set(os.listdir(tempfile.gettempdir()))
        for name in [args.env] if args.env else envs.ENV_NAMES:
            fuzz(name, args.episodes, args.seed)
        created = os.listdir(cwd)
        new_tmp = [f for f in set(os.listdir(tempfile.gettempdir())) - outside if not f.startswith(("tmp", "pymp"))]
        if created:
            sys.exit(f"FAIL files created in the working directory: {created}")
        print(f"no file created in the working directory{'' if not new_tmp else f' (new in the temp dir: {new_tmp})'}")


if __name__ == "__main__":
    main()
