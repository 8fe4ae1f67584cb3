"""What the toy environments in envs.py promise, checked on hundreds of generated tasks.

Teaches: the oracle reaches reward 1.0 on every task of every split while acting only on the transcript; a
random agent scores near 0; each scripted near-miss lands in its reward band (docs/envs.md), and the
bands give at least 5 distinct failure levels per environment (so failure-vs-failure pairs with a 0.1 gap
exist); the rewards are the benchmarks' formulas (WebShop's attribute/option/price fraction, ScienceWorld's
ordered subgoals + optional bonus with ETO's best-score rule, InterCode's multiset IoU x Kendall tau);
train and test never share an (instruction, world) pair and only test_unseen holds the held-out
compositions; the same seed gives the same episodes in another process (hashlib, not the salted hash());
bad input (empty, overlong, non-ASCII, SQL that writes, ATTACHes a file, loops forever or cross-joins to
millions of rows) costs a step and never raises, writes nothing and never outlives the step cap; whole
step-capped episodes fit the model context (576 tokens by default); every word the env prints is in its lexicon;
a refused action says why in info["why"] only (the observation stays "nothing happens."); `--play` echoes piped
actions, counts steps and ends with the reward's parts; `--near-miss` shows only failures with 0 < reward < 1.

Run:  .venv/bin/python -m pytest -q tests/test_envs.py     (from the repository root; about 10 seconds)
"""
import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tempfile
import time

import pytest

import envs
from envs import ENV_NAMES, FAILURE_BANDS, SPLITS

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def digest(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()


# ------------------------------------------------------------------------------------------ oracle, random
@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_oracle_reaches_reward_one_on_every_task(env_name):
    for split in SPLITS:
        for task in envs.make_tasks(env_name, split, 300, seed=1):
            traj = envs.oracle(task)
            assert (traj["reward"], traj["success"], traj["end"], traj["n_invalid"]) == (1.0, True, "success", 0), \
                (task["id"], traj["messages"])
            assert len(traj["messages"]) % 2 == 1 and json.loads(json.dumps(traj)) == traj   # JSON-able


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_random_agent_scores_near_zero(env_name):
    rng = random.Random(0)
    tasks = envs.make_tasks(env_name, "train", 200, seed=0)
    rewards = [envs.replay(t, [envs.random_action(env_name, rng) for _ in range(20)])["reward"] for t in tasks]
    assert sum(rewards) / len(rewards) < 0.1


# ------------------------------------------------------------------------------------------ reward bands
@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_each_near_miss_lands_in_its_band_with_five_distinct_levels(env_name):
    seen, levels = set(), set()
    for task in envs.make_tasks(env_name, "train", 150, seed=2) + envs.make_tasks(env_name, "test_unseen", 50, seed=2):
        for name, actions in envs.scripted_failures(task).items():
            traj = envs.replay(task, actions)
            lo, hi, _ = FAILURE_BANDS[env_name][name]
            assert lo <= traj["reward"] <= hi and not traj["success"], (name, traj["reward"], traj["messages"])
            seen.add(name)
            levels.add(round(traj["reward"], 3))
    assert seen == set(FAILURE_BANDS[env_name])      # every near-miss of the table is reachable
    assert len(levels) >= 5, levels


def test_rewards_follow_the_benchmark_formulas():
    # WebShop: r_type * (attrs + options + price) / (|attrs| + |options| + 1); an unclicked option is a miss
    goal = {"type": "soap", "attrs": ["organic", "vegan"], "options": {"scent": "mint", "size": "large"}, "budget": 30}
    soap = {"type": "soap", "attrs": ["organic", "fresh"], "price": 25, "options": {}}
    assert envs.shop_reward(goal, soap, {"scent": "mint"})[0] == round((1 + 1 + 1) / 5, 4)
    lotion = dict(soap, type="lotion", attrs=["organic", "vegan"])
    assert envs.shop_reward(goal, lotion, {"scent": "mint", "size": "large"})[0] == 0.5   # same category: half
    # InterCode: multiset IoU, times Kendall tau (clamped at 0) only when the gold query orders
    gold = [("a",), ("b",), ("c",)]
    assert envs.sql_reward(gold, gold + [("d",)], ordered=True)[0] == 0.75
    assert envs.sql_reward(gold, gold[::-1], ordered=True)[0] == 0.0
    assert envs.sql_reward(gold, gold[::-1], ordered=False)[0] == 1.0
    assert envs.sql_reward(gold + gold, gold, ordered=False)[0] == 0.5    # multisets: duplicates count
    assert envs.sql_reward(gold, None, ordered=False)[0] == 0.0           # an SQL error scores 0


def test_lab_score_is_ordered_subgoals_plus_optional_bonus_and_keeps_the_best():
    task = next(t for t in envs.make_tasks("lab", "train", 100, seed=0) if t["slots"]["task"] == "mix")
    fails = envs.scripted_failures(task)
    # read recipe (optional), both paints in the bowl, mixed, but no final focus: 3/4 + 1/5 * 1/1
    assert envs.replay(task, fails["no_final_focus"])["reward"] == 0.95
    # ETO keeps the best score reached; reward="final" scores the end (0 after focusing on a wrong object)
    assert envs.replay(task, fails["wrong_paint"])["reward"] == 0.45
    assert envs.replay(task, fails["wrong_paint"], reward="final")["reward"] == 0.0
    # a lower optional weight spreads the near-misses that cluster above 0.6
    assert envs.replay(task, fails["skip_mix"], optional_weight=0.05)["reward"] == 0.55


# ------------------------------------------------------------------------------------------ splits, seeds
@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_no_train_instruction_world_pair_appears_in_a_test_split(env_name):
    def keys(tasks):   # the whole world (canonical JSON of the slots) and what the agent first reads
        return {digest(t["slots"]) for t in tasks} | {digest(envs.make_env(env_name).reset(t)) for t in tasks}
    train = keys(envs.make_tasks(env_name, "train", 2000, seed=0))
    others = {split: keys(envs.make_tasks(env_name, split, 200, seed=0)) for split in SPLITS[1:]}
    for split in SPLITS[1:]:
        assert not train & others[split], split
    assert not others["valid_seen"] & others["test_seen"] and not others["valid_unseen"] & others["test_unseen"]


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_the_split_is_decided_on_what_the_agent_first_reads(env_name):
    # make_tasks files a seen task under train, valid or test by the first observation its env's draw returns;
    # were that not the text reset shows, two splits could share what the agent actually reads
    spec = envs.ENVS[env_name]
    for i in range(60):
        slots, first = spec.draw(random.Random(i), i % 2 == 1)
        assert first == envs.make_env(env_name).reset({"slots": slots}), i


def held_out(task) -> bool:
    s = task["slots"]
    if task["env"] == "shop":
        g = s["goal"]
        return any((g["type"], x) in envs.SHOP_HELD_OUT for x in g["attrs"] + list(g["options"].values()))
    if task["env"] == "lab":
        return (s["task"], s["target"]) in envs.LAB_HELD_OUT
    return s["table"] == "cars" or (s["template"], s["table"]) in envs.SQL_HELD_OUT


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_only_unseen_tasks_contain_a_held_out_composition(env_name):
    for split in SPLITS:
        tasks = envs.make_tasks(env_name, split, 300, seed=3)
        assert all(held_out(t) == split.endswith("_unseen") for t in tasks), split
    # and the held-out words still occur in training worlds (the composition is new, not the words)
    train = json.dumps([t["slots"] for t in envs.make_tasks(env_name, "train", 300, seed=3)])
    for word in {"shop": ["cotton", "wool", "mint"], "lab": ["juice", "wax", "moss", "oil"], "sql": ["year", "city"]}[env_name]:
        assert f'"{word}' in train or f" {word}" in train, word


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_same_seed_same_episodes_different_seed_different(env_name):
    a, b = envs.make_tasks(env_name, "train", 50, seed=7), envs.make_tasks(env_name, "train", 50, seed=7)
    assert a == b and [envs.oracle(t)["messages"] for t in a] == [envs.oracle(t)["messages"] for t in b]
    assert digest(a) != digest(envs.make_tasks(env_name, "train", 50, seed=8))


def test_same_seed_same_tasks_in_another_process():
    # Python salts hash() of strings per process; a generator that used it would differ right here
    code = ("import envs, json, hashlib; print(hashlib.sha256(json.dumps([envs.make_tasks(e, s, 30, 5) for e in "
            "envs.ENV_NAMES for s in envs.SPLITS], sort_keys=True).encode()).hexdigest())")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True,
                         env=dict(os.environ, PYTHONHASHSEED="12345"))
    assert out.stdout.strip() == digest([envs.make_tasks(e, s, 30, 5) for e in ENV_NAMES for s in SPLITS])


def test_bad_arguments_get_clear_errors():
    with pytest.raises(ValueError, match="unknown environment"):
        envs.make_env("chess")
    with pytest.raises(ValueError, match="split"):
        envs.make_tasks("shop", "validation", 3, 0)
    with pytest.raises(ValueError, match="count"):
        envs.make_tasks("shop", "train", -1, 0)


# ------------------------------------------------------------------------------------------ bad input, fuzz
ADVERSARIAL = {
    "shop": ["search[]", "search[" + "wool " * 40 + "]", "click[]", "click[[next >]]", "click[buy now]",
             "click[back]", "click[< prev]", "click[zz]", "buy", "search[wool!]"],
    "lab": ["go to", "go to go to kitchen", "put in in in", "take stove", "put wax in wax", "focus on",
            "use thermometer on wax", "mix bowl", "deactivate stove", "take bowl"],
    "sql": ["execute[drop table pets]", "execute[delete from pets]", "execute[update pets set age = 1]",
            "execute[insert into pets values (1, 2, 3, 4)]", "execute[create table x (a)]",
            "execute[attach database 'fuzz.db' as x]", "execute[vacuum into 'fuzz2.db']",
            "execute[pragma table_info(pets)]", "execute[pragma writable_schema = 1]",
            "execute[select 1; drop table pets]", "execute[select * from pets; select * from pets]",
            "execute[with recursive c(x) as (select 1 union all select x + 1 from c) select x from c]",
            "execute[select count(*) from pets a, pets b, pets c, pets d, pets e, pets f, pets g]",
            "execute[select * from pets a, pets b, pets c, pets d]",
            "execute[select * from pets a, pets b, pets c, pets d, pets e order by 1]",
            "execute[select randomblob(1000000000)]", "execute[select zeroblob(1000000000)]",
            "execute[select printf('%.*c', 1000000000, 'x')]", "execute[select load_extension('x')]",
            "execute[select * from sqlite_master]", "execute[select name || 'zzz' from pets]",
            "execute[select 9223372036854775807 + 1]", "execute[select 1e308 * 10]", "execute[select '" + "x" * 150 + "']"],
}
COMMON = ["", " ", "\t", "\n", "look\n", "x" * 10_000, "search[caf\u00e9]", "go to k\u00fcche", "\u6d4b\u8bd5",
          "execute[" + "a" * 10_000 + "]", None, 42, b"look", "submit\x00"]


def fuzz_actions(env_name, rng, n):
    words = sorted(envs._lexicon_words(env_name))
    out = []
    for _ in range(n):
        kind = rng.randrange(5)
        if kind == 0:      # printable junk of any length, some past the 200-character cap
            out.append("".join(rng.choice(" []<>;'*()=,.-_%" + "abcdefghijklmnopqrstuvwxyz0123456789")
                               for _ in range(rng.randrange(0, 260))))
        elif kind == 1:    # any code point, non-ASCII included
            out.append("".join(chr(rng.randrange(1, 0x3000)) for _ in range(rng.randrange(1, 30))))
        elif kind == 2:    # word soup from the env's own lexicon
            out.append(" ".join(rng.choice(words) for _ in range(rng.randrange(1, 8))))
        else:              # plausible actions
            out.append(envs.random_action(env_name, rng))
    return out


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_fuzz_never_raises_writes_nothing_and_stops_at_the_cap(env_name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)                       # a relative ATTACH or VACUUM INTO would land here
    outside = os.path.join(tempfile.gettempdir(), f"coevo_fuzz_{os.getpid()}.db")
    rng = random.Random(11)
    actions = ADVERSARIAL[env_name] + COMMON + [f"execute[attach '{outside}' as y]"] + fuzz_actions(env_name, rng, 2500)
    tasks = envs.make_tasks(env_name, "train", 20, seed=4)
    env, i, episodes = envs.make_env(env_name), 0, 0
    while i < len(actions):
        env.reset(tasks[episodes % len(tasks)])
        episodes += 1
        for step in range(1, env.max_steps + 1):
            start = time.perf_counter()
            action = actions[i]
            if env_name == "sql" and isinstance(action, str):   # aim the attacks at the episode's own table
                action = action.replace("pets", env.s["name"])
            obs, reward, done, info = env.step(action)
            assert time.perf_counter() - start < 2.0, actions[i]    # nothing hangs an episode
            i += 1
            assert isinstance(obs, str) and obs.isascii() and 0.0 <= reward <= 1.0
            assert info["valid"] or (obs == envs.INVALID and info["why"])   # a reason, never in the observation
            if done or i == len(actions):
                break
        assert done or i == len(actions) or step < env.max_steps
        assert step <= env.max_steps
    assert list(tmp_path.iterdir()) == [] and not os.path.exists(outside)
    # empty, whitespace, newline, overlong, non-ASCII, non-text: each costs a step and gets the fixed message
    env.reset(tasks[0])
    for n, bad in enumerate(COMMON, 1):
        obs, _, done, info = env.step(bad)
        assert (obs, info["valid"], env.t) == (envs.INVALID, False, n), repr(bad)
        if done:
            assert info["end"] == "timeout" and n == env.max_steps
            break


def test_sql_refuses_writes_and_the_table_stays_intact():
    task = next(t for t in envs.make_tasks("sql", "train", 50, seed=0) if t["slots"]["table"] == "pets")
    env, name = envs.make_env("sql", max_steps=50), task["slots"]["name"]   # the episode's own table name
    env.reset(task)
    for sql in ADVERSARIAL["sql"][:12]:
        obs, _, _, info = env.step(sql.replace("pets", name))
        assert obs.startswith("error:") and info["valid"], (sql, obs)
    assert env.step(f"execute[select count(*) from {name}]")[0] == "12"
    assert env.step(f"execute[select * from {name} a, {name} b, {name} c, {name} d]")[0] == "error: too many rows"


def world_actions(task) -> list:
    """Every verb on every object this task's world names, the env's own words only: what a sampling agent
    produces, and what reaches states that random strings never do (an object used up, moved or mixed away,
    then named again)."""
    s = task["slots"]
    if task["env"] == "shop":
        words = sorted({w for p in s["products"] for w in p["attrs"] + [p["type"]]})
        values = sorted({v for p in s["products"] for vs in p["options"].values() for v in vs})
        return ([f"click[{p['id']}]" for p in s["products"]] + [f"click[{v}]" for v in values] +
                [f"search[{w}]" for w in words] + ["click[next >]", "click[< prev]", "click[back]", "click[buy now]"])
    if task["env"] == "lab":
        objs = sorted({o for objs in s["rooms"].values() for o in objs} | {"thermometer"} |
                      {f"{p} paint" for p in envs.PAINTS + tuple(envs.MIXES.values()) + ("brown",)})
        return ([f"{v} {o}" for v in ("take", "focus on", "use thermometer on") for o in objs] +
                [f"put {o} in {c}" for o in objs for c in envs.CONTAINERS] + [f"go to {r}" for r in envs.ROOMS] +
                ["mix bowl", "read recipe", "activate stove", "deactivate stove", "look", "wait"])
    name, cols = s["name"], envs.SQL_SCHEMAS[s["table"]]
    return ([f"execute[select {c} from {name}]" for c in cols] + [f"execute[select count(*) from {name} where {c} > 3]"
            for c in cols] + [f"execute[desc {name}]", "execute[show tables]", "submit", f"execute[{s['gold']}]"])


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_plausible_action_sequences_over_the_worlds_own_objects_never_raise(env_name):
    # regression: lab raised KeyError when the thermometer, mixed away in the bowl, was used again
    rng = random.Random(12)
    for task in envs.make_tasks(env_name, "train", 60, seed=12):
        actions, env = world_actions(task), envs.make_env(env_name, max_steps=60)
        for _ in range(5):
            env.reset(task)
            for a in [rng.choice(actions) for _ in range(60)]:
                obs, reward, done, info = env.step(a)
                assert isinstance(obs, str) and 0.0 <= reward <= 1.0 and (info["valid"] or info["why"])
                if done:
                    break
    lab = next(t for t in envs.make_tasks("lab", "train", 50, seed=0) if t["slots"]["task"] == "measure")
    acts = ["go to workshop", "take thermometer", "go to studio", "put thermometer in bowl", "mix bowl",
            "use thermometer on bowl"]
    assert envs.replay(lab, acts)["end"] == "timeout"           # ran through without raising


# ------------------------------------------------------------------------------------------ reading
@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_relabeling_a_world_keeps_the_oracle_and_every_near_miss_reward(env_name):
    # a relabeled world means the same (fresh ids, other names for uninvolved objects, other orders), so an
    # agent that reads scores the same on it; this is the env half of the reading benchmark
    for task in envs.make_tasks(env_name, "train", 100, seed=13) + envs.make_tasks(env_name, "test_unseen", 50, seed=13):
        other = envs.relabel(task, seed=1)
        assert other["slots"] != task["slots"] and envs.oracle(other)["reward"] == 1.0
        before = {k: envs.replay(task, a)["reward"] for k, a in envs.scripted_failures(task).items()}
        after = {k: envs.replay(other, a)["reward"] for k, a in envs.scripted_failures(other).items()}
        assert before == after, task["id"]


def test_shop_ids_name_no_product_across_episodes():
    # WebShop's 1.18M products cannot be bought by a remembered id; here each episode draws its own shop, so
    # the same id stands for unrelated products in different episodes and the oracle must read to click
    meaning = {}
    for task in envs.make_tasks("shop", "train", 300, seed=14):
        for p in task["slots"]["products"]:
            meaning.setdefault(p["id"], set()).add((p["type"], tuple(sorted(p["attrs"])), p["price"]))
    assert all(len(m) > 100 for m in meaning.values())              # every letter names 100+ different products
    # and one instruction, met in several episodes, is answered by clicking a different id each time
    clicked = {}
    for task in envs.make_tasks("shop", "train", 2000, seed=14):
        traj = envs.oracle(task)
        clicked.setdefault(traj["messages"][0], []).append(traj["messages"][1::2][-4])   # click[id], 2 options, buy
    repeats = [ids for ids in clicked.values() if len(ids) > 1]
    same = sum(len(set(ids)) == 1 for ids in repeats)               # by chance about 1 in 26 for a pair
    assert len(repeats) > 20 and same < 0.15 * len(repeats), (same, len(repeats))


# ------------------------------------------------------------------------------------------ context, text
LONG_ACTIONS = {"shop": "search[waterproof leather sneakers lavender medium large]",
                "lab": "put yellow paint in blue box",
                "sql": "execute[select title from books where genre = 'history' and city = 'paris']"}


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_whole_episodes_fit_the_context(env_name):
    tok = envs.count_tokens
    tasks = [t for s in SPLITS for t in envs.make_tasks(env_name, s, 150, seed=6)]
    rng, first, obs, act, oracle_max = random.Random(6), 0, 0, tok(LONG_ACTIONS[env_name]), 0
    for task in tasks:
        expert = envs.oracle(task)
        oracle_max = max(oracle_max, sum(map(tok, expert["messages"])))
        trajs = [expert] + [envs.replay(task, a) for a in envs.scripted_failures(task).values()]
        trajs.append(envs.replay(task, [envs.random_action(env_name, rng) for _ in range(30)]))
        first = max(first, tok(expert["messages"][0]))
        obs = max([obs] + [tok(m) for t in trajs for m in t["messages"][2::2]])
        act = max([act] + [tok(m) for t in trajs[:-1] for m in t["messages"][1::2]])
    # worst case: the longest first observation, then every step a long action and the longest observation
    worst = first + envs.make_env(env_name).max_steps * (act + obs)
    # in the project's rough token count; tests/test_coevo.py checks the real tokens against coevo's context
    assert worst <= 470 and oracle_max <= 230, (worst, oracle_max)


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_every_printed_word_is_in_the_lexicon_and_text_is_clean(env_name):
    words, rng = envs._lexicon_words(env_name), random.Random(9)
    for task in envs.make_tasks(env_name, "train", 100, seed=9) + envs.make_tasks(env_name, "test_unseen", 100, seed=9):
        trajs = [envs.oracle(task)] + [envs.replay(task, a) for a in envs.scripted_failures(task).values()]
        trajs.append(envs.replay(task, [envs.random_action(env_name, rng) for _ in range(30)]))
        for traj in trajs:
            for text in traj["messages"]:
                assert set(re.findall(r"[a-z]+", text)) <= words, text
                assert text.isascii() and "\t" not in text and "  " not in text and text == text.lower()
                assert all(line == line.strip() and line for line in text.split("\n")), repr(text)


def test_make_tasks_and_oracle_are_fast():
    for env_name in ENV_NAMES:
        start = time.perf_counter()
        tasks = envs.make_tasks(env_name, "train", 2000, seed=10)
        [envs.oracle(t) for t in tasks[:300]]
        assert time.perf_counter() - start < 10.0, env_name   # about 1 s on one core; slack for shared CPUs


def test_step_after_the_end_and_replay_that_runs_out():
    task = envs.make_tasks("shop", "train", 1, seed=0)[0]
    env = envs.make_env("shop")
    env.reset(task)
    for action in envs.oracle(task)["messages"][1::2]:
        env.step(action)
    assert env.step("click[buy now]")[:3] == (envs.INVALID, 0.0, True)
    short = envs.replay(task, ["search[nothing]"] * 2)   # the actions end first: closed as a timeout
    assert (short["reward"], short["end"], len(short["messages"])) == (0.0, "timeout", 5)
    capped = envs.replay(task, ["search[wool]"] * 30)
    assert capped["end"] == "timeout" and len(capped["messages"]) == 2 * env.max_steps + 1


def test_command_line(capsys, monkeypatch):
    envs.main(["shop", "--show", "1", "--split", "test_unseen"])
    assert "reward 1.0" in capsys.readouterr().out
    envs.main(["lab", "--show", "1", "--near-miss"])  # docs/envs.md's transcripts: the oracle, then the closest failure
    heads = [l for l in capsys.readouterr().out.splitlines() if l.startswith("--- ")]
    assert "oracle  reward 1.0" in heads[0] and float(heads[1].split("reward ")[1].split()[0]) < 1.0
    envs.main(["--bands", "--n", "3"])
    assert "| env | failure mode |" in capsys.readouterr().out

    def eof(prompt):
        raise EOFError
    monkeypatch.setattr("builtins.input", eof)
    envs.main(["lab", "--play"])
    assert "bye" in capsys.readouterr().out


REFUSED = {  # env -> (actions that set the scene, a refused action, the reason info["why"] gives)
    "shop": [([], "jump", "unknown verb 'jump'"), ([], "search[shirt 2]", "search takes words of letters only"),
             (["search[waterproof jacket]"], "click[q]", "no product 'q' on this page"),
             (["search[waterproof jacket]"], "click[buy now]", "click[buy now] needs an open product")],
    "lab": [([], "go to attic", "no room 'attic'"), ([], "take stove", "the stove cannot be carried"),
            ([], "focus on moss", "no moss here"),
            ([], "use thermometer on butter", "you do not hold the thermometer")],
    "sql": [([], "select 1", "a query goes inside execute[...]"), ([], "run[select 1]", "unknown verb 'run'")]}


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_a_refused_action_gets_its_reason_in_info_never_in_the_observation(env_name):
    # the agent must read exactly what it read before the reasons existed ("nothing happens."), or training runs
    # would see other observations; the reason is an extra info key, for a person playing (--play prints it)
    task = envs.make_tasks(env_name, "train", 1, seed=0)[0]
    for before, bad, why in REFUSED[env_name]:
        env = envs.make_env(env_name)
        env.reset(task)
        for action in before:
            assert env.step(action)[3]["valid"]
        obs, reward, done, info = env.step(bad)
        assert (obs, reward, done, info["valid"], info["scores"]) == (envs.INVALID, 0.0, False, False, {}), bad
        assert why in info["why"], (bad, info["why"])
    env.reset(task)
    assert "why" not in env.step(envs.oracle(task)["messages"][1])[3]   # a valid action has no reason
    assert envs.make_env(env_name).step("look")[3]["why"] == "the episode is over"   # nothing was reset


def play(capsys, monkeypatch, env_name, actions, task=0) -> list:
    """The lines `python envs.py ENV --play --task N` prints with `actions` piped in (stdin is no terminal)."""
    monkeypatch.setattr("sys.stdin", io.StringIO("".join(a + "\n" for a in actions)))
    envs.main([env_name, "--play", "--task", str(task)])
    return capsys.readouterr().out.splitlines()


def test_play_echoes_piped_actions_counts_steps_and_says_why_an_action_was_refused(capsys, monkeypatch):
    # shop-train-0000: the oracle searches, pages on, opens [e]; a mistyped verb and a missing id cost a step each
    out = play(capsys, monkeypatch, "shop", ["jump", "search[waterproof jacket]", "click[q]", "click[next >]"])
    assert out[out.index("buy waterproof jacket, color green, size large, under $70.") + 1:][:3] == [
        "step 1/10 > jump", envs.INVALID, "(why: unknown verb 'jump': expected search[words] or click[...])"]
    assert "step 2/10 > search[waterproof jacket]" in out and "step 4/10 > click[next >]" in out
    assert out[out.index("step 3/10 > click[q]") + 1:][:2] == [envs.INVALID, "(why: no product 'q' on this page)"]
    assert out[-1] == "bye."                                     # the input ran out before the episode ended


@pytest.mark.parametrize("env_name, task, parts", [
    ("shop", 0, "reward 0.75 = type 1 x (attributes 1/1 + options 1/2 + price 1/1) / 4"),   # option_wrong
    ("lab", 0, "reward 0.9167 = subgoals 2/3 + 0.25 x optional 1/1 (capped at 1"),          # wrong_box
    ("sql", 1, "reward 0.6667 = rows in common (IoU) 0.6667 x order 1")])                   # limit_k_plus_1
def test_play_ends_with_the_reward_and_the_parts_it_is_made_of(capsys, monkeypatch, env_name, task, parts):
    # the near-miss of docs/envs.md, typed by hand: the last lines say how the episode ended and what the reward
    # counts (WebShop's matched parts, ScienceWorld's subgoals, InterCode's row overlap and order)
    t = envs.make_tasks(env_name, "train", task + 1, seed=0)[task]
    name, actions = max(((k, a) for k, a in envs.scripted_failures(t).items() if envs.replay(t, a)["reward"] < 1),
                        key=lambda ka: envs.replay(t, ka[1])["reward"])
    out = play(capsys, monkeypatch, env_name, actions, task)
    assert out[-2] == "[episode over: wrong]" and out[-1].startswith(parts), (name, out[-2:])
    assert play(capsys, monkeypatch, "sql", ["execute[show tables]"] * 10)[-2:] == [
        "[episode over: timeout]", "reward 0.0: never submitted, so there are no parts to score"]


@pytest.mark.parametrize("env_name", ENV_NAMES)
def test_near_miss_shows_a_true_near_miss_or_says_there_is_none(capsys, env_name):
    # a "near-miss" of reward 0 is no hard negative: --near-miss shows the best failure with 0 < reward < 1, or
    # says the task has none (sql count, max and group questions: every scripted failure of theirs scores 0)
    tasks = envs.make_tasks(env_name, "train", 20, seed=0)
    envs.main([env_name, "--show", "20", "--near-miss"])
    heads = [line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("--- ")]
    assert [h[1] for h in heads] == [t["id"] for t in tasks for _ in range(2)]   # oracle, then near-miss or none
    for task, head in zip(tasks, heads[1::2]):
        rewards = [envs.replay(task, a)["reward"] for a in envs.scripted_failures(task).values()]
        if " ".join(head[2:]) == envs.NO_NEAR_MISS:
            assert not any(0 < r < 1 for r in rewards), task["id"]
        else:
            assert float(head[4]) == max(r for r in rewards if r < 1) and 0 < float(head[4]) < 1, head
    assert (env_name == "sql") == any(" ".join(h[2:]) == envs.NO_NEAR_MISS for h in heads)   # sql-train-0000


# ------------------------------------------------------------------------------------------ failure diagnosis
def test_failure_diagnosis_names_each_scripted_near_miss():
    """bench.py --failures sorts an agent's failures by what went wrong; on the shop's scripted near-misses it must
    name the one constraint each misses (a buyer of the over-budget twin missed the price, and so on)."""
    bench = pytest.importorskip("diagnostics")  # imports torch and the project (coevo.py and below)
    expected = {"sibling": "attrs", "other_type": "type", "option_wrong": "options", "option_unclicked": "options",
                "options_unclicked": "options", "no_purchase": "no purchase (timeout)"}
    seen = set()
    for task in envs.make_tasks("shop", "train", 40, seed=0):
        oracle = envs.oracle(task)
        assert bench.failure_kind(oracle) == "" and bench.first_departure(oracle) == "done -> stopped"
        for name, actions in envs.scripted_failures(task).items():
            kind = bench.failure_kind(envs.replay(task, actions))
            seen.add(name)
            if name == "over_budget":
                budget, bought = task["slots"]["goal"]["budget"], next(
                    p for p in task["slots"]["products"] if f"click[{p['id']}]" in actions)
                assert kind == f"price +{bought['price'] // 10 - budget // 10}", (task["id"], kind)
            elif name == "other_category":
                assert kind.startswith("type"), (task["id"], kind)
            else:
                assert kind == expected[name], (task["id"], name, kind)
    assert seen >= set(expected) | {"over_budget", "other_category"}
    lab = envs.make_tasks("lab", "train", 1, seed=0)[0]
    assert bench.failure_kind(envs.replay(lab, [])) == "timeout"  # lab and sql: how the episode ended


def test_the_episodes_in_docs_envs_md_are_what_the_cli_prints(capsys):
    # docs/envs.md shows one oracle episode and its closest near-miss per env, to read before the code; pin them
    # to the code, or a change to the world (the shop's ids became bracketed letters) leaves transcripts that no
    # episode ever printed
    doc = open(os.path.join(ROOT, "docs", "envs.md")).read().split("## One episode each")[1].split("\n## ")[0]
    blocks = re.findall(r"```\n(---.*?)```", doc, re.S)
    assert [b.split()[1].split("-")[0] for b in blocks] == ["shop", "lab", "sql"]
    for block in blocks:
        env_name, split, index = block.split()[1].split("-")
        envs.main([env_name, "--split", split, "--show", str(int(index) + 1), "--near-miss"])
        assert block in capsys.readouterr().out
