"""Fork a run: a copy of a run directory that keeps some finished phases (an SFT checkpoint, an exploration) and
forgets the rest, with some settings changed; `python coevo.py --resume DST` then computes the forgotten phases
under the new settings. Two forks of one run differ only in what the flags change: the same SFT checkpoint, the
same explored trajectories, the same evaluation tasks, so their difference is paired (docs/results.md uses this).

    python scripts/fork_run.py runs/pc20c-seed15 runs/w10-seed15 \\
        --keep sft/0_train,nll/1/1_explore_target,nll/1/6_update_target,eto/1/1_explore_target \\
        --set eval_on=valid eto_dpo_coef=0.2
    python coevo.py --resume runs/w10-seed15

A kept phase is not recomputed, so it keeps what the old settings made: keep only phases that the changed settings
do not affect (eval_on changes only the evaluation tasks; a loss weight only the updates). The
run's name becomes DST's folder name, so `python coevo.py --seeds ... --name PREFIX` reads forks named PREFIX-seedS.
"""
import argparse
import dataclasses
import json
import os
import shutil
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import config  # noqa: E402
import runs  # noqa: E402


def parse_value(field: dataclasses.Field, text: str):
    """A --set value as the Config field's type: true/false for flags, numbers for numbers."""
    if field.type in (bool, "bool"):
        if text.lower() not in ("true", "false"):
            raise SystemExit(f"fork_run: {field.name} is true or false, got {text!r}")
        return text.lower() == "true"
    kind = {"int": int, "float": float, "str": str}.get(field.type, field.type)
    try:
        return kind(text)
    except ValueError:
        raise SystemExit(f"fork_run: {field.name} needs a {kind.__name__}, got {text!r}")


def fork(src: str, dst: str, keep: list, changes: dict) -> None:
    if not os.path.isfile(os.path.join(src, "state.json")):
        raise SystemExit(f"fork_run: {src!r} is not a run directory (no state.json in it)")
    if os.path.exists(dst):
        raise SystemExit(f"fork_run: {dst!r} exists; give a new folder")
    done = json.load(open(os.path.join(src, "state.json")))["done"]
    missing = [p for p in keep if p not in done]
    if missing:
        raise SystemExit(f"fork_run: {src} has not finished {missing}; its finished phases: {done}")
    fields = {f.name: f for f in dataclasses.fields(config.Config)}
    unknown = [k for k in changes if k not in fields or k in ("resume", "seeds")]
    if unknown:
        raise SystemExit(f"fork_run: cannot --set {unknown}; settings are the Config fields (python coevo.py --help)")
    kept = [p for p in done if p in keep]        # in the order they ran
    dropped = {p.replace("/", "_") for p in done if p not in keep}
    shutil.copytree(src, dst, ignore=lambda folder, names: [n for n in names if n == ".lock" or n.endswith(".tmp")
                                                             or os.path.splitext(n)[0] in dropped])
    timings = os.path.join(dst, "timings.jsonl")     # metrics.jsonl: the resume drops the forgotten phases' records
    if os.path.exists(timings):
        records = [json.loads(line) for line in open(timings)]
        open(timings, "w").write("".join(json.dumps(r) + "\n" for r in records if r["phase"] in kept))
    for stale in ("summary.md", "transcripts.md"):
        if os.path.exists(os.path.join(dst, stale)):
            os.remove(os.path.join(dst, stale))
    cfg = runs.saved_config(src, **{k: parse_value(fields[k], v) for k, v in changes.items()},
                            name=os.path.basename(os.path.normpath(dst)), resume="")
    config.check_config(cfg)
    open(os.path.join(dst, "config.json"), "w").write(json.dumps(dataclasses.asdict(cfg), indent=1))
    open(os.path.join(dst, "state.json"), "w").write(json.dumps({"done": kept}))
    print(f"fork_run: {dst} keeps {kept}; continue it with: python coevo.py --resume {dst}")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Copy a run directory, keep some finished phases, change settings.")
    p.add_argument("src", help="a run directory")
    p.add_argument("dst", help="the fork's folder (must not exist)")
    p.add_argument("--keep", required=True, help="comma list of finished phases to keep, e.g. sft/0_train")
    p.add_argument("--set", nargs="*", default=[], metavar="FIELD=VALUE", help="settings to change (Config fields)")
    args = p.parse_args(argv)
    bad = [s for s in args.set if "=" not in s]
    if bad:
        raise SystemExit(f"fork_run: --set takes FIELD=VALUE, got {bad}")
    fork(args.src, args.dst, [k for k in args.keep.split(",") if k], dict(s.split("=", 1) for s in args.set))


if __name__ == "__main__":
    main()
