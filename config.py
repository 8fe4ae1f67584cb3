"""config.py: every setting of a run, its presets and the command line, kept out of the way of the algorithm.

`Config` is one dataclass grouped by phase; each field's comment is its `--help` line (one line; the details are in
docs/coevo.md). `parse_config` builds argparse from it (dashes on the command line, underscores in code), one
argument group per section, and `check_config` refuses a bad setting with a message naming the flag and its range
before any work starts.
"""
import argparse
import dataclasses
import inspect
import os
import re
import sys
from dataclasses import dataclass

import envs

ROOT = os.path.dirname(os.path.abspath(__file__))


@dataclass
class Config:
    # --- run
    method: str = "compare"  # sft | nll | rft | eto | coevo, or a comma list such as nll,eto; compare = nll,eto,coevo
    name: str = ""  # run directory under out_dir ("" = made from env, method, preset and seed)
    out_dir: str = "runs"  # where run directories go
    seed: int = 0  # one seed drives tasks, initialisation, sampling and shuffling
    seeds: str = ""  # comma list, e.g. 0,1,2: the run once per seed, then mean, spread and paired differences
    device: str = "cpu"  # cpu | cuda (bf16 autocast on cuda)
    threads: int = 2  # torch CPU threads (0 = torch's choice); parallel runs on 2 cores: --threads 1 each
    resume: str = ""  # a run directory: continue after its last finished phase (with its saved config)
    preset: str = ""  # a named set of defaults: paper | scratch | lab | smoke (end of --help); flags given win
    # --- data
    env: str = "shop"  # shop | lab | sql
    n_train: int = 2000  # training tasks generated
    n_expert: int = 600  # training tasks that carry an expert trajectory (scarce ground truth)
    n_test: int = 500  # tasks in each of test_seen and test_unseen (500: a 95% interval of about +-4 reward)
    eval_on: str = "test"  # test | valid: evaluate on the validation splits (choose settings there, report test)
    # --- model (sizes of a model from scratch, --init-from ""; a checkpoint brings its own)
    init_from: str = "base"  # checkpoint to start from: the shipped base, a run's, an open HF one; "" = from scratch
    chat_format: str = ""  # chat format for --init-from ("" = detect from the tokenizer)
    hidden_size: int = 128  # model width
    layers: int = 4  # transformer blocks
    heads: int = 4  # query heads (key/value heads = heads // 2)
    context: int = 576  # max tokens of an episode (a step-capped shop episode of the longest pages needs 519)
    # --- SFT (step 0)
    sft_epochs: int = 2  # passes over the expert trajectories
    sft_lr: float = 1e-3  # AdamW learning rate, cosine-decayed to 10%
    sft_obs_coef: float = 0.0  # weight of the observations' NLL in SFT (from scratch: 1, its stand-in for pretraining)
    batch_size: int = 16  # trajectories (SFT) or pairs/groups (DPO) per optimizer step
    # --- exploration (steps 1 and 4)
    explore_tasks: int = 600  # co-evolution: training tasks both agents explore, expert tasks first (>= n_expert)
    target_samples: int = 0  # sampled target rollouts per task on top of the greedy one (0 = ETO parity)
    target_temperature: float = 1.0  # temperature of those samples
    failure_samples: int = 4  # failure-agent rollouts per task
    failure_temperature: float = 0.7  # failure-agent sampling temperature (at 1.0 the toy mostly emits invalid actions)
    top_p: float = 1.0  # nucleus sampling for every sampled rollout (1 = off)
    # --- failure agent (steps 2-4)
    failure_agent: str = "coevo"  # coevo (DPO on failure pairs) | frozen (the SFT model) | positive (toward success)
    failure_min_gap: float = 0.1  # a failure pair needs r(chosen) > r(rejected) + gap
    failure_within_agent: bool = False  # also pair failures of one agent, not only target x failure agent
    failure_lr: float = 5e-5  # failure agent's DPO learning rate
    failure_sft_coef: float = 0.0  # weight of the NLL of each pair's chosen (higher-reward) failure; 0 = plain DPO
    regenerate_hard_negatives: bool = True  # step 4 samples afresh from the updated agent (off: reuse step 1's)
    hn_threshold: float = 0.0  # hard negatives used for training need reward >= this (0 = any failure)
    # --- target agent (steps 5-6)
    dpo_coef: float = 0.02  # weight of DPO on (expert, own failure); paper 0.5 (deviation 8)
    hn_coef: float = 0.02  # weight of DPO on (expert, hard negative); 0 reduces co-evolution to ETO
    sft_coef: float = 1.0  # weight of the NLL anchor on the expert trajectories
    ff_coef: float = 0.0  # weight of DPO on the target's (better, worse) failures; needs --target-samples >= 1
    eto_dpo_coef: float = 0.02  # ETO's weight of DPO on (expert, own failure) (ETO's own recipe: 1)
    eto_sft_coef: float = 1.0  # ETO's weight of the NLL anchor (ETO's own recipe: 0, pure DPO)
    anchor_all_experts: bool = True  # the NLL anchor replays every expert, not only paired tasks' (deviation 9)
    listwise: bool = False  # hard negatives in one softmax (S-DPO) instead of the mean of pairwise DPO terms
    beta: float = 0.1  # DPO temperature: larger keeps the policy closer to its reference
    target_lr: float = 5e-5  # target's learning rate in its preference update (2e-4 collapsed the toy target)
    dpo_epochs: int = 1  # passes over the pairs per update
    reference: str = "iteration"  # iteration (each agent at the start of the iteration, ETO) | sft (the SFT model)
    eto_truncate_turns: int = 5  # ETO: a rejected trajectory keeps at most the expert's turns + this many
    pairs: str = "eto"  # kind (a): eto (expert vs own rollout) | own (own better vs worse) | branch (from own failures)
    branch_states: int = 2  # --pairs branch: states of a failure to branch from: the first wrong action's, then on
    branch_samples: int = 4  # --pairs branch: continuations sampled from each state at target_temperature
    # --- schedule
    iterations: int = 1  # K: exploration-update rounds after SFT (ETO and the paper: 3; deviation 10)


PRESETS = {
    # the paper's recipe where it differs from the defaults (deviations 8-10): 0.5 DPO / 0.5 NLL, ETO as pure DPO,
    # the NLL on the experts of the paired tasks only, three iterations (about an hour on a 2-core CPU)
    "paper": dict(dpo_coef=0.5, hn_coef=0.5, sft_coef=0.5, eto_dpo_coef=1.0, eto_sft_coef=0.0,
                  anchor_all_experts=False, iterations=3),
    # the toy from scratch, as it ran before the pretrained base (docs/log.md): no base, 1,200 experts x 10 epochs,
    # the observations in SFT's loss as its stand-in for pretraining
    "scratch": dict(init_from="", n_expert=1200, sft_epochs=10, sft_lr=3e-3, sft_obs_coef=1.0),
    # a class's lab: the default's loop at a third of the size, under a minute on a 2-core CPU (43 s here)
    "lab": dict(n_train=600, n_expert=250, n_test=200, explore_tasks=250, failure_samples=2),
    # a tiny run that exercises every step in seconds and learns nothing (tests use it); 1 thread is faster here
    "smoke": dict(n_train=24, n_expert=12, n_test=8, explore_tasks=16, init_from="", hidden_size=32, layers=1,
                  heads=2, sft_epochs=2, target_samples=1, failure_samples=2, iterations=1, batch_size=4, threads=1),
}
PRESET_HELP = {"paper": "the paper's loss weights, ETO as pure DPO, the anchor on paired tasks, K = 3",
               "scratch": "the toy from scratch, without the pretrained base (1,200 experts x 10 epochs)",
               "lab": "a class's lab: the default loop at a third of the size (250 experts, 200 + 200 test tasks)",
               "smoke": "a tiny run of every step in seconds, for tests (it learns nothing)"}
METHODS = ("sft", "compare")  # plus any comma list of LOOP_METHODS
LOOP_METHODS = ("nll", "rft", "eto", "coevo")  # nll: ETO's loop with the NLL term alone, the matched control
COMMANDS = """commands:
  python coevo.py [flags]                 a run: SFT, then each --method from that SFT checkpoint, and the table
  python coevo.py --seeds 0,1,2,3,4       the same run per seed: mean, spread and paired differences over seeds
  python coevo.py --resume runs/NAME      continue a killed run after its last finished phase
  python coevo.py plot runs/NAME [--out DIR]   figures of a run's metrics.jsonl (needs matplotlib)
presets (--preset NAME):
""" + "\n".join(f"  {k:<8}{v}" for k, v in PRESET_HELP.items())


def method_list(cfg) -> list:
    """The methods run after SFT, in order: compare = nll, eto, coevo (the control first); sft = none; else the
    comma list."""
    return {"compare": ["nll", "eto", "coevo"], "sft": []}.get(cfg.method, cfg.method.split(","))


def run_stem(cfg) -> str:
    """The default run-directory name before its seed: env, methods and preset, e.g. shop-nll+eto or
    shop-compare-smoke (a preset's run never takes the default run's name)."""
    return f"{cfg.env}-{cfg.method.replace(',', '+')}" + (f"-{cfg.preset}" if cfg.preset else "")


def checkpoint_path(path: str) -> str:
    """--init-from as given, or, if no such folder is here, the project's own (the shipped `base` from anywhere)."""
    return path if os.path.isdir(path) or not os.path.isdir(os.path.join(ROOT, path)) else os.path.join(ROOT, path)


def run_path(cfg) -> str:
    return cfg.resume or os.path.join(cfg.out_dir, cfg.name or f"{run_stem(cfg)}-seed{cfg.seed}")


def sections() -> list:
    """[(section title, [field names])] in the order of Config, from its '# --- title' comments."""
    out = []
    for line in inspect.getsource(Config).splitlines():
        if line.strip().startswith("# ---"):
            out.append((line.strip()[5:].strip(), []))
        elif (m := re.match(r"\s+(\w+): ", line)) and out:
            out[-1][1].append(m.group(1))
    return out


def parse_config(argv=None) -> Config:
    """argparse generated from Config: one flag per field (dashes), help from the field's comment."""
    helps = {k: v.replace("%", "%%") for k, v in  # argparse formats help strings with %
             re.findall(r"^\s+(\w+): [^=]+= .*?#\s*(.*)$", inspect.getsource(Config), re.M)}
    p = argparse.ArgumentParser(description="Co-evolving agents (arXiv 2511.22254) with SFT, ETO and the nll "
                                "control, in one loop.", epilog=COMMANDS,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = {f.name: f.default for f in dataclasses.fields(Config)}
    for title, names in sections():
        group = p.add_argument_group(title)
        for name in names:
            flag, kind = "--" + name.replace("_", "-"), type(defaults[name])
            if kind is bool:
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=argparse.SUPPRESS,
                                   help=helps[name] + f" (default: {defaults[name]})")
            else:
                group.add_argument(flag, type=kind, default=argparse.SUPPRESS, metavar=kind.__name__.upper(),
                                   help=helps[name] + f" (default: {defaults[name]})")
    p.add_argument("--compare", action="store_const", const="compare", dest="method", default=argparse.SUPPRESS,
                   help="same as --method compare")
    given = vars(p.parse_args(argv))
    preset = given.get("preset", "")
    if preset and preset not in PRESETS:
        sys.exit(f"coevo: unknown --preset {preset!r}; choose from {', '.join(sorted(PRESETS))}")
    return Config(**{**PRESETS.get(preset, {}), **given})


def check_config(cfg: Config) -> None:
    """Every bad setting gets a message naming its flag and the allowed range before any work starts."""
    problems = []

    def need(ok: bool, message: str):
        if not ok:
            problems.append(message)

    def flag(name):
        return "--" + name.replace("_", "-")
    need(cfg.method in METHODS or bool(cfg.method) and set(method_list(cfg)) <= set(LOOP_METHODS),
         f"--method {cfg.method!r} is not one of {METHODS} nor a comma list of {LOOP_METHODS}")
    for name, allowed in (("eval_on", ("test", "valid")), ("env", envs.ENV_NAMES), ("pairs", ("eto", "own", "branch")),
                          ("failure_agent", ("coevo", "frozen", "positive")), ("reference", ("iteration", "sft"))):
        need(getattr(cfg, name) in allowed, f"{flag(name)} {getattr(cfg, name)!r} is not one of {', '.join(allowed)}")
    need(cfg.preset in ("", *PRESETS), f"--preset {cfg.preset!r} is not one of {', '.join(sorted(PRESETS))}")
    for name, low in (("n_train", 1), ("n_test", 1), ("sft_epochs", 1), ("batch_size", 1), ("dpo_epochs", 1),
                      ("iterations", 1), ("hidden_size", 1), ("layers", 1), ("heads", 1), ("context", 16),
                      ("explore_tasks", 0), ("target_samples", 0), ("failure_samples", 0),
                      ("eto_truncate_turns", 0), ("threads", 0), ("seed", 0), ("branch_states", 1),
                      ("branch_samples", 1)):
        need(getattr(cfg, name) >= low, f"{flag(name)} {getattr(cfg, name)} must be at least {low}")
    need(0 < cfg.n_expert <= max(cfg.n_train, 1), f"--n-expert {cfg.n_expert} must be in 1..{cfg.n_train} (--n-train)")
    for name in ("target_temperature", "failure_temperature"):
        need(0 <= getattr(cfg, name) <= 5, f"{flag(name)} {getattr(cfg, name)} must be in [0, 5]")
    need(0 < cfg.top_p <= 1, f"--top-p {cfg.top_p} must be in (0, 1]")
    for name in ("dpo_coef", "hn_coef", "sft_coef", "ff_coef", "failure_sft_coef", "sft_obs_coef", "eto_dpo_coef",
                 "eto_sft_coef"):
        need(0 <= getattr(cfg, name) <= 100, f"{flag(name)} {getattr(cfg, name)} must be in [0, 100]")
    for name in ("failure_min_gap", "hn_threshold"):  # rewards lie in [0, 1]: above 1 nothing would ever qualify
        need(0 <= getattr(cfg, name) < 1, f"{flag(name)} {getattr(cfg, name)} must be in [0, 1)")
    for name in ("beta", "sft_lr", "target_lr", "failure_lr"):
        need(0 < getattr(cfg, name) <= 10, f"{flag(name)} {getattr(cfg, name)} must be in (0, 10]")
    need(not (cfg.ff_coef > 0 and cfg.target_samples < 1),  # one greedy rollout per task: at most one failure
         f"--ff-coef {cfg.ff_coef} needs --target-samples >= 1 (failure-vs-failure pairs are two of the target's "
         "failures on one task; its greedy rollout alone gives at most one)")
    need(cfg.pairs != "own" or cfg.target_samples >= 1, "--pairs own needs --target-samples >= 1 (pairs of the "
         "target's own rollouts of one task: its greedy rollout alone is one)")
    need(cfg.failure_samples >= 1 or "coevo" not in method_list(cfg),
         "--failure-samples must be at least 1 for co-evolution")
    need(not cfg.seeds or all(s.strip().isdigit() for s in cfg.seeds.split(",")),
         f"--seeds {cfg.seeds!r} must be a comma list of whole numbers >= 0, e.g. 0,1,2,3,4")
    if cfg.init_from:
        folder = checkpoint_path(cfg.init_from)
        need(os.path.isdir(folder), f"--init-from {cfg.init_from!r} is not a directory (\"\" starts from scratch)")
        need(not os.path.isdir(folder) or os.path.isfile(os.path.join(folder, "config.json")),
             f"--init-from {cfg.init_from!r} has no config.json: it must be a Hugging Face-layout model folder "
             "(config.json, model.safetensors, tokenizer.json)")
    if problems:
        raise SystemExit("coevo: bad configuration:\n  " + "\n  ".join(problems))
