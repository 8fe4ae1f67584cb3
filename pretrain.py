"""pretrain.py: the toy's base model, a language model of the three environments, trained before any expert is seen.

    python pretrain.py --out base            # the shipped base (base/README.md: its command and minutes; 26 here)
    python pretrain.py --check base          # what a base can and cannot do, printed per environment

Why: the paper's agents (and ETO's) fine-tune a pretrained LLM, which can already read a page, copy what it shows and
write a well-formed action before it sees one expert trajectory; a model trained from scratch must learn all of that
from the experts, and how fast it does turns on the seed. This base learns exactly that, and nothing about the tasks:
plain next-token loss on every token of episodes played by an undirected policy (`envs.undirected_episode`: at each
step a random action among those the current observation makes well-formed, wanting nothing) in training-split worlds
of all three environments. No expert or oracle trajectory, no validation or test world, no reward filtering. Its
tokenizer (every word the three environments can print or accept) is fixed and saved with it.

--check measures, on validation worlds, what the base must show: it writes well-formed actions (the share the env
accepts when sampled at 0.7, the failure agent's temperature: goal >= 90%), it copies what it was shown (an id on the
page, an object in the room, the table's name), and it does not solve tasks (its reward is near the undirected
policy's).
"""
import argparse
import math
import os
import random
import re
import subprocess
import sys
import time

import torch

import agent
import envs
import loader
import model as M

ENVS = envs.ENV_NAMES
CORPUS_SEED = 1000  # the task seed of the corpus's worlds (training split) and of --check's (validation split)


# -----------------------------------------------------------------------------------------------------------
# The corpus and the tokenizer
def corpus(split: str, n: int, seed: int) -> list:
    """n undirected episodes per environment in `split`'s worlds (their messages), the environments interleaved."""
    rng, per_env = random.Random(seed), []
    for env_name in ENVS:
        tasks = envs.make_tasks(env_name, split, n, seed)
        per_env.append([envs.undirected_episode(t, rng)["messages"] for t in tasks])
    return [episode for group in zip(*per_env) for episode in group]


def base_tokenizer(episodes: list):
    """Word-level, from every word the three environments can print or accept (their lexicons) and the corpus."""
    texts = [t for env_name in ENVS for t in envs.lexicon(env_name)] + [m for ep in episodes for m in ep]
    return agent.build_tokenizer(texts)


def every_token(renderer, messages: list) -> tuple:
    """(ids, mask) of a whole episode, its last observation included, with every token after the first counted:
    a language model's loss. Rendered as SFT renders it (each observation ends in the prompt for an action)."""
    ids = []
    for i, text in enumerate(messages):
        ids += renderer.encode_observation(text, first=i == 0) if i % 2 == 0 else renderer.encode_action(text)
    return ids, [0] + [1] * (len(ids) - 1)


# -----------------------------------------------------------------------------------------------------------
# Training
def mean_nll(model, renderer, seqs: list, device) -> float:
    """Per-token NLL of `seqs` (every counted token pooled)."""
    with torch.no_grad():
        logps, n = agent.batch_logps(model.eval(), seqs, renderer.pad_id, device)
    return -logps.sum().item() / n.sum().item()


def pretrain(args) -> tuple:
    """The corpus, the tokenizer, then AdamW on the next-token loss; returns (model, renderer, log lines)."""
    t0 = time.time()
    train = corpus("train", args.episodes, CORPUS_SEED)
    valid = corpus("valid_seen", args.valid_episodes, CORPUS_SEED)
    renderer = agent.Renderer(base_tokenizer(train))
    seqs, valid_seqs = [every_token(renderer, ep) for ep in train], [every_token(renderer, ep) for ep in valid]
    longest = max(len(ids) for ids, _ in seqs + valid_seqs)
    if longest > args.context:
        raise SystemExit(f"pretrain: an episode of {longest} tokens does not fit --context {args.context}")
    torch.manual_seed(args.seed)
    cfg = M.ModelConfig(vocab_size=renderer.vocab_size, hidden_size=args.hidden_size, num_hidden_layers=args.layers,
                        num_attention_heads=args.heads, num_key_value_heads=max(1, args.heads // 2),
                        intermediate_size=3 * args.hidden_size, max_position_embeddings=args.context)
    model = M.Transformer(cfg).to(args.device)
    steps = args.epochs * math.ceil(len(seqs) / args.batch_size)
    warmup = max(1, steps // 50)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.0)
    # linear warm-up over the first 2% of the steps, then cosine decay to 10%: the usual language-model schedule
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: (s + 1) / warmup if s < warmup else
                                              0.1 + 0.45 * (1 + math.cos(math.pi * (s - warmup) / (steps - warmup))))
    log = [f"corpus: {len(train)} train episodes ({args.episodes} per environment), "
           f"{sum(len(ids) for ids, _ in seqs):,} tokens; {len(valid)} validation episodes; "
           f"vocabulary {renderer.vocab_size}; {sum(p.numel() for p in model.parameters()) / 1e6:.2f}M parameters"]
    print(log[-1])
    rng, bar = random.Random(args.seed), agent.progress_bar(steps, "pretrain")
    for epoch in range(args.epochs):
        model.train()
        order = rng.sample(range(len(seqs)), len(seqs))
        for b in range(0, len(order), args.batch_size):
            with M.autocast(args.device):
                logps, n = agent.batch_logps(model, [seqs[i] for i in order[b:b + args.batch_size]],
                                             renderer.pad_id, args.device)
            loss = -logps.sum() / n.sum()
            if not torch.isfinite(loss):
                raise SystemExit(f"pretrain: non-finite loss at step {bar.n + 1}; lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step(), sched.step()
            bar.set_postfix(epoch=epoch, nll=f"{loss.item():.3f}", refresh=False), bar.update()
        log.append(f"epoch {epoch}: train nll {loss.item():.4f} (last batch), validation nll "
                   f"{mean_nll(model, renderer, valid_seqs, args.device):.4f} ({(time.time() - t0) / 60:.1f} min)")
        bar.write(log[-1])
    bar.close()
    return model.eval(), renderer, log


# -----------------------------------------------------------------------------------------------------------
# What a base can and cannot do
def copies(traj: dict) -> tuple:
    """(actions that name something, how many named something the transcript had shown): a product id on the
    results page in the shop, an object of the room (or held) in the lab, the table's name in sql once shown."""
    env, named, right = envs.make_env(traj["task"]["env"]), 0, 0
    env.reset(traj["task"])
    shown_table = None
    for i, action in enumerate(traj["messages"][1::2]):
        kind = traj["task"]["env"]
        if kind == "shop" and env.item is None and (m := re.fullmatch(r"click\[([a-z])\]", action)):
            named, right = named + 1, right + (m[1] in [p["id"] for p in env.visible()])
        elif kind == "lab" and (m := re.fullmatch(r"(?:take|focus on) (.+)", action)):
            named, right = named + 1, right + env._visible(m[1])
        elif kind == "sql" and shown_table and (m := re.search(r"\bfrom (\w+)", action)):
            named, right = named + 1, right + (m[1] == shown_table)
        env.step(action)
        if kind == "sql" and action == "execute[show tables]":
            shown_table = traj["messages"][2 * i + 2]
    return named, right


def check(path: str, n: int, device: str) -> str:
    """A markdown table, per environment, of what the base at `path` does on n valid_seen tasks."""
    model, renderer = loader.load_checkpoint(path, device=device)
    gen = torch.Generator(device=device).manual_seed(0)
    rows = ["| env | well-formed actions at T=0.7 | copies what it was shown (T=0.7) | reward greedy | "
            "reward at T=0.7 | reward at T=1 | undirected policy's reward |", "|---" * 7 + "|"]
    for env_name in ENVS:
        tasks = envs.make_tasks(env_name, "valid_seen", n, CORPUS_SEED)

        def play(temperature):
            return agent.rollout(model, renderer, lambda: envs.make_env(env_name), tasks, temperature=temperature,
                                 generator=gen, device=device)
        greedy, warm, hot = play(0.0), play(0.7), play(1.0)
        rng = random.Random(0)
        undirected = [envs.undirected_episode(t, rng) for t in tasks]
        steps = sum(len(t["messages"]) // 2 for t in warm)
        named, right = map(sum, zip(*(copies(t) for t in warm)))
        reward = lambda trajs: f"{100 * sum(t['reward'] for t in trajs) / len(trajs):.1f}"
        rows.append(f"| {env_name} | {100 * (1 - sum(t['n_invalid'] for t in warm) / steps):.1f}% | "
                    f"{100 * right / max(named, 1):.1f}% of {named} | {reward(greedy)} | {reward(warm)} | "
                    f"{reward(hot)} | {reward(undirected)} |")
    return "\n".join(rows)


def write_readme(path: str, argv: list, check_n: int, log: list, table: str, minutes: float) -> None:
    revision = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    command = "python pretrain.py " + " ".join(argv)
    text = f"""# The toy's base model

A language model of the three environments (shop, lab, sql), pretrained by `pretrain.py` on episodes of an
undirected policy in training-split worlds, every token with plain next-token loss: no expert, no oracle, no
validation or test world, no reward. `python coevo.py` starts SFT from it (`--init-from ""` starts from scratch).
Hugging Face layout (config.json, model.safetensors, tokenizer.json); `loader.load_checkpoint` reads it.

Made by `{command}` at revision {revision} (the working tree of that commit), in {minutes:.1f} minutes on a
2-core CPU, torch {torch.__version__}:
```
{chr(10).join(log)}
```
What it can and cannot do (`python pretrain.py --check {path} --check-n {check_n}`), on validation worlds:

{table}
"""
    open(os.path.join(path, "README.md"), "w").write(text)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description="Pretrain the toy's base model on undirected episodes of all three "
                                "environments, or --check what a base can do.")
    p.add_argument("--out", default="", help="folder to write the base into (Hugging Face layout)")
    p.add_argument("--check", default="", metavar="DIR", help="only measure the base in DIR, print the table")
    p.add_argument("--episodes", type=int, default=20000, help="undirected training episodes per environment")
    p.add_argument("--valid-episodes", type=int, default=200, help="validation episodes per environment")
    p.add_argument("--epochs", type=int, default=2, help="passes over the corpus")
    p.add_argument("--lr", type=float, default=3e-3, help="AdamW peak learning rate (2%% warm-up, cosine to 10%%)")
    p.add_argument("--batch-size", type=int, default=16, help="episodes per step")
    p.add_argument("--hidden-size", type=int, default=128, help="model width")
    p.add_argument("--layers", type=int, default=4, help="transformer blocks")
    p.add_argument("--heads", type=int, default=4, help="query heads (key/value heads = heads // 2)")
    p.add_argument("--context", type=int, default=576, help="max tokens of an episode")
    p.add_argument("--seed", type=int, default=0, help="initialisation and batch order")
    p.add_argument("--check-n", type=int, default=200, help="--check: valid_seen tasks per environment")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--device", default="cpu", help="cpu | cuda")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    bad = [f"--{k.replace('_', '-')} {v} must be at least 1" for k, v in vars(args).items()
           if k in ("episodes", "valid_episodes", "epochs", "batch_size", "hidden_size", "layers", "heads",
                    "check_n") and v < 1]
    if not args.out and not args.check or bad or not args.lr > 0:
        p.error("; ".join(bad) or ("--lr must be > 0" if args.out or args.check else "give --out DIR or --check DIR"))
    torch.set_num_threads(args.threads)
    if args.check:
        print(check(args.check, args.check_n, args.device))
        return
    if os.path.exists(os.path.join(args.out, "model.safetensors")):
        raise SystemExit(f"pretrain: {args.out} already holds a base; give another --out or remove it")
    t0 = time.time()
    model, renderer, log = pretrain(args)
    loader.save_checkpoint(args.out, model, renderer)
    minutes = (time.time() - t0) / 60
    table = check(args.out, args.check_n, args.device)
    print(table)
    write_readme(args.out, argv, args.check_n, log, table, minutes)
    print(f"pretrain: {args.out} written ({minutes:.1f} min)")


if __name__ == "__main__":
    main()
