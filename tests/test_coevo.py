"""What this teaches: how the co-evolution loop builds its preference pairs (ETO's rules, the failure agent's
pairs), that an update moves the policy but never the reference, and that a run is reproducible: the same
seed gives the same metrics, and a run killed anywhere and resumed ends exactly where an uninterrupted run ends.

Run: python -m pytest -q tests/test_coevo.py   (tiny "smoke" runs; about a minute on 2 CPU cores)
"""
import dataclasses
import json
import os

import pytest
import torch

import coevo
import config
import diagnostics
import envs
import loader
import losses
import runs


def traj(task_id, reward, actions=("a",), success=None):
    """A hand-made trajectory record: only what pair construction looks at."""
    msgs = ["obs"]
    for a in actions:
        msgs += [a, "obs"]
    return {"task": {"id": task_id}, "messages": msgs, "reward": reward,
            "success": reward == 1.0 if success is None else success, "end": "wrong", "n_invalid": 0}


# ---------------------------------------------------------------------------------------------- pair rules
def test_eto_pairs_drop_ties_flip_and_truncate():
    expert = traj("t", 1.0, actions=("x", "y"))
    tie = traj("t", 1.0, actions=("z",))                      # agent also succeeds: no preference, dropped
    long_fail = traj("t", 0.3, actions=[f"a{i}" for i in range(10)])
    pairs = coevo.build_eto_pairs(expert, [tie, long_fail], truncate_turns=5)
    assert len(pairs) == 1
    chosen, rejected = pairs[0]
    assert chosen is expert and len(rejected["messages"][1::2]) == 2 + 5   # expert's 2 turns + 5
    # an imperfect expert beaten by the agent: the pair is flipped, the expert becomes the rejected side
    weak_expert, better = traj("t", 0.5), traj("t", 0.8)
    (c, r), = coevo.build_eto_pairs(weak_expert, [better], truncate_turns=5)
    assert c is better and r["reward"] == 0.5


def test_a_rejected_trajectory_leaves_the_experts_path_at_its_first_different_action():
    # the diagnostics (bench.py --margins) find where a failure first departs from the expert: before that point
    # the two share a prefix, whose log-probs cancel in DPO's margin; after it lies the failure's tail
    expert = traj("t", 1.0, actions=("search[x]", "click[a1]", "click[red]", "click[buy now]"))
    near_miss = traj("t", 0.75, actions=("search[x]", "click[a1]", "click[blue]", "click[buy now]"))
    assert coevo.first_difference(expert, near_miss) == 5 and near_miss["messages"][5] == "click[blue]"
    longer = traj("t", 0.0, actions=("search[x]", "click[a1]", "click[red]", "click[buy now]", "click[back]"))
    assert longer["messages"][coevo.first_difference(expert, longer)] == "click[back]"  # acting past the end
    assert coevo.first_difference(expert, traj("t", 0.0, actions=("search[x]",))) is None  # never differs


def test_failure_pairs_gap_successes_and_tasks():
    tgt = [traj("u", 0.5, ("a",)), traj("u", 1.0, ("s",)), traj("v", 0.2, ("b",))]
    fail = [traj("u", 0.8, ("c",)), traj("u", 0.55, ("d",)), traj("v", 0.9, ("e",)), traj("w", 0.7, ("f",))]
    pairs = coevo.build_failure_pairs(tgt, fail, min_gap=0.1, within_agent=False)
    rewards = sorted((c["reward"], r["reward"]) for c, r in pairs)
    # u: 0.8>0.5 kept, 0.55 vs 0.5 below the gap; v: 0.9>0.2; successes (1.0) never appear; w has no partner
    assert rewards == [(0.8, 0.5), (0.9, 0.2)]
    assert all(c["task"]["id"] == r["task"]["id"] for c, r in pairs)
    assert all(c["reward"] > r["reward"] + 0.1 for c, r in pairs)
    # the positive-agent ablation keeps successes as chosen
    pos = coevo.build_failure_pairs(tgt, fail, min_gap=0.1, within_agent=False, keep_successes=True)
    assert any(c["success"] for c, _ in pos)
    # within-agent pairs add (0.8, 0.55) from the failure agent's own failures
    within = coevo.build_failure_pairs(tgt, fail, min_gap=0.1, within_agent=True)
    assert (0.8, 0.55) in [(c["reward"], r["reward"]) for c, r in within]


def test_target_groups_kinds():
    expert = dict(traj("u", 1.0, ("x",)), agent="expert")
    own = [traj("u", 0.3, ("a",)), traj("u", 0.7, ("b",))]
    hard = [traj("u", 0.9, ("c",)), traj("u", 0.4, ("d",)), traj("u", 1.0, ("e",))]
    eto = coevo.build_own_pairs("eto", [expert], own, [], truncate_turns=5, min_gap=0.1)
    (g,) = coevo.build_target_groups([expert], eto, own, hard, hn_threshold=0.6, ff_gap=0.1)
    assert [r["reward"] for _, r in g["a"]] == [0.3, 0.7]
    assert [h["reward"] for h in g["hard"]] == [0.9]            # below threshold and the success are dropped
    assert [(c["reward"], r["reward"]) for c, r in g["c"]] == [(0.7, 0.3)]
    (g,) = coevo.build_target_groups([expert], eto, own, [])
    assert g["hard"] == [] and g["c"] == []                     # ETO: no hard negatives, no (c): pairs (a) only
    # the method decides only the loss weights: ETO is co-evolution's loss less HN, nll the anchor alone
    cfg = coevo.Config()
    assert coevo.method_coefs(cfg, "eto") == losses.Coefs(dpo=cfg.eto_dpo_coef, hn=0.0, nll=cfg.eto_sft_coef, ff=0.0)
    assert coevo.method_coefs(cfg, "nll") == (0.0, 0.0, 1.0, 0.0)



def test_own_pairs_rank_the_agents_own_rollouts_without_an_expert():
    # --pairs own (Iterative RPO): several rollouts of one task, the higher reward chosen, successes included, no e*
    expert = dict(traj("u", 1.0, ("x", "y")), agent="expert")
    own = [traj("u", 1.0, ("x", "z")), traj("u", 0.4, ("a",)), traj("u", 0.45, ("b",)), traj("v", 0.2, ("c",))]
    pairs = coevo.build_own_pairs("own", [expert], own, [], truncate_turns=5, min_gap=0.1)
    assert sorted((c["reward"], r["reward"]) for c, r in pairs["u"]) == [(1.0, 0.4), (1.0, 0.45)]  # 0.45 vs 0.4: a tie
    assert all(expert not in pair for pairs_ in pairs.values() for pair in pairs_) and pairs["v"] == []


def test_branch_pairs_share_the_state_they_branched_from():
    # --pairs branch: continuations of one failure from one of its states are paired only with each other, so every
    # pair shares its prefix (the step credit lands on what differs after it)
    mk = lambda reward, actions, at: dict(traj("u", reward, actions), branched_at=at)
    branches = [mk(0.2, ("s", "bad", "buy"), 1), mk(1.0, ("s", "good", "buy"), 1), mk(0.5, ("s", "bad", "fix"), 2),
                mk(0.2, ("s", "bad", "buy"), 2)]
    pairs = coevo.build_own_pairs("branch", [], [], branches, truncate_turns=5, min_gap=0.1)
    assert [(c["reward"], r["reward"], c["branched_at"]) for c, r in pairs["u"]] == [(1.0, 0.2, 1), (0.5, 0.2, 2)]
    assert all(c["messages"][:2 * c["branched_at"] + 1] == r["messages"][:2 * r["branched_at"] + 1]
               for c, r in pairs["u"])


def test_branch_starts_at_the_first_wrong_action_and_the_states_after_it(tmp_path, monkeypatch):
    # the first state branched from is the one where the failure left the expert's path (the state before its
    # first wrong action), then the next branch_states - 1; a success is never branched from
    expert = dict(traj("u", 1.0, ("search", "click", "buy")), agent="expert")
    failed = traj("u", 0.3, ("search", "wrong", "back", "buy"))
    calls = []
    monkeypatch.setattr(coevo.agent, "rollout", lambda model, renderer, env, tasks, prefixes, **kw: calls.append(
        prefixes) or [traj("u", 0.0, ("z",)) for _ in tasks])
    cfg = coevo.Config(branch_states=2, branch_samples=3)
    out, stats = coevo.branch(cfg, None, None, [failed, traj("w", 1.0)], [expert, expert], seed=0)
    assert calls == [[["search"]] * 3 + [["search", "wrong"]] * 3]
    assert sorted(t["branched_at"] for t in out) == [1, 1, 1, 1, 2, 2, 2, 2] and stats["states"] == 2
    assert [t["branched_at"] for t in out if t is not None and t["messages"] == failed["messages"]] == [1, 2]


def test_rft_imitates_its_own_successes_that_differ_from_the_expert():
    expert = dict(traj("u", 1.0, ("x", "y")), agent="expert")
    own = [traj("u", 1.0, ("x", "y")), traj("u", 1.0, ("x", "z")), traj("u", 0.3, ("a",))]
    (g,) = coevo.build_target_groups([expert], {}, own, [], imitate=True)
    assert [t["messages"][1::2] for t in g["imitate"]] == [["x", "z"]]  # the copy of e* would only double its weight
    (g,) = coevo.build_target_groups([expert], {}, own, [], imitate=False)
    assert g["imitate"] == []


def test_anchor_all_experts_keeps_experts_the_target_already_solves():
    # the paper's NLL anchor sees only the experts of tasks that gave a pair: the target's failures, a skewed
    # subset of what SFT fit; --anchor-all-experts (the default) replays every expert, the solved tasks' with no pair
    solved, failed = dict(traj("s", 1.0, ("x",)), agent="expert"), dict(traj("f", 1.0, ("y",)), agent="expert")
    own = [traj("s", 1.0, ("x",)), traj("f", 0.4, ("z",))]
    eto = coevo.build_own_pairs("eto", [solved, failed], own, [], truncate_turns=5, min_gap=0.1)
    paired = coevo.build_target_groups([solved, failed], eto, own, [], anchor_all=False)
    assert [g["expert"]["task"]["id"] for g in paired] == ["f"]
    everyone = coevo.build_target_groups([solved, failed], eto, own, [], anchor_all=True)
    assert [g["expert"]["task"]["id"] for g in everyone] == ["s", "f"]
    assert everyone[0]["a"] == everyone[0]["hard"] == everyone[0]["c"] == [] and len(everyone[1]["a"]) == 1


# ---------------------------------------------------------------------------------------------- one update
def test_target_update_moves_policy_not_reference_and_its_margin_is_the_dpo_loss(tmp_path):
    cfg = coevo.Config(preset="smoke", **config.PRESETS["smoke"], out_dir=str(tmp_path), env="shop")
    data = coevo.make_data(cfg)
    renderer = coevo.build_renderer(cfg, data)
    torch.manual_seed(0)
    policy = coevo.new_model(cfg, renderer)
    e = data["experts"][0]
    fail = envs.replay(e["task"], ["search[nothing]"] * 2)
    groups = [{"expert": e, "a": [(e, fail)], "hard": [], "c": []}]
    pool, items = coevo.to_pool(groups)
    assert items == [{"expert": 0, "a": [(0, 1)], "hard": [], "c": [], "imitate": []}]  # the expert pooled once
    seqs = [renderer.render(t["messages"]) for t in pool]
    loader.save_checkpoint(str(tmp_path / "ref"), policy, renderer)
    ref_before = coevo.reference_logps(cfg, policy, renderer, seqs)
    coevo.update_target(dataclasses.replace(cfg, dpo_epochs=3, target_lr=1e-2), policy, renderer, groups,
                        losses.Coefs(dpo=1.0, hn=0.0, nll=0.0, ff=0.0), str(tmp_path / "ref"), seed=0)
    after = coevo.reference_logps(cfg, policy, renderer, seqs)
    ref_model = loader.load_checkpoint(str(tmp_path / "ref"))[0]
    # the policy's margin (chosen - rejected) grew; the saved reference still scores exactly as before
    assert (after[0] - after[1]) > (ref_before[0] - ref_before[1])
    assert torch.equal(coevo.reference_logps(cfg, ref_model, renderer, seqs), ref_before)
    # bench.py --margins reads the same thing on any pairs: the implicit-reward margin, whose -log sigmoid is the
    # pair's DPO loss; the reference against itself has margin 0, and a swapped pair the opposite margin
    pairs = [(e, fail), (fail, e)]
    ref_pairs = diagnostics.pair_logps(cfg, ref_model, renderer, pairs)
    margin, chosen, rejected = diagnostics.pair_margins(cfg.beta, diagnostics.pair_logps(cfg, policy, renderer, pairs), ref_pairs)
    loss, _, _ = losses.dpo_loss(after[:1], after[1:], ref_before[:1], ref_before[1:], cfg.beta)
    assert margin[0] > 0 and margin[1].item() == pytest.approx(-margin[0].item(), rel=1e-6)
    assert chosen[0].item() == pytest.approx(rejected[1].item(), rel=1e-6)
    assert torch.nn.functional.softplus(-margin[0]).item() == pytest.approx(loss.item(), rel=1e-4)
    assert torch.equal(diagnostics.pair_margins(cfg.beta, ref_pairs, ref_pairs)[0], torch.zeros(2, dtype=torch.float64))


def test_expert_nll_is_the_pooled_action_token_nll_and_sft_lowers_it(tmp_path):
    # evaluate()'s smooth companion to reward: the oracle's test trajectories, teacher-forced
    cfg = coevo.Config(preset="smoke", **config.PRESETS["smoke"], out_dir=str(tmp_path), env="shop")
    data = coevo.make_data(cfg)
    renderer = coevo.build_renderer(cfg, data)
    torch.manual_seed(0)
    policy = coevo.new_model(cfg, renderer).eval()
    oracle = [envs.oracle(t) for t in data["test_seen"]]
    by_hand, count = 0.0, 0
    for t in oracle:  # token t is predicted at position t - 1; only action tokens (and their stop token) count
        ids, mask = renderer.render(t["messages"])
        logp = torch.log_softmax(policy(torch.tensor([ids]))[0].float(), -1)
        for i in range(1, len(ids)):
            if mask[i]:
                by_hand, count = by_hand - logp[i - 1, ids[i]].item(), count + 1
    before = coevo.expert_nll(cfg, policy, renderer, oracle)
    assert before == pytest.approx(by_hand / count, rel=1e-5)
    coevo.sft(dataclasses.replace(cfg, sft_epochs=20), policy, renderer, data["experts"], seed=0)
    assert coevo.expert_nll(cfg, policy, renderer, oracle) < before - 0.5  # imitation transfers to test tasks


def test_sft_schedule_decays_from_the_full_rate_to_a_tenth():
    # the first step runs at --sft-lr, the rate falls along a half cosine, and the last step is near 10% of it
    steps = 100
    rates = [coevo.sft_lr_factor(s, steps) for s in range(steps)]
    assert rates[0] == pytest.approx(1.0) and rates[50] == pytest.approx(0.55) and 0.1 <= rates[-1] < 0.11
    assert all(a >= b for a, b in zip(rates, rates[1:]))


# ---------------------------------------------------------------------------------------------- whole runs
def smoke(tmp_path, name, **kw):
    return coevo.Config(**{**config.PRESETS["smoke"], "preset": "smoke", "out_dir": str(tmp_path), "name": name, **kw})


@pytest.mark.parametrize("kw", [
    dict(method="sft"), dict(method="eto", iterations=2), dict(method="coevo"),
    dict(method="coevo", failure_agent="frozen"), dict(method="coevo", failure_agent="positive"),
    dict(method="coevo", hn_coef=0.0), dict(method="coevo", ff_coef=0.5, listwise=True, failure_sft_coef=0.5),
    dict(method="coevo", reference="sft", regenerate_hard_negatives=False, hn_threshold=0.5, failure_within_agent=True),
    dict(method="coevo", env="lab"), dict(method="coevo", env="sql"), dict(method="sft", sft_obs_coef=0.0),
    dict(method="nll,eto", eto_dpo_coef=0.02, eto_sft_coef=1.0), dict(method="eto,coevo", iterations=2,
                                                                       anchor_all_experts=False),
])
def test_every_method_and_ablation_runs(tmp_path, kw, capsys):
    cfg = smoke(tmp_path, "r", **kw)
    table = coevo.main(cfg)
    run = tmp_path / "r"
    # the closing line points at the files this run wrote, and only those (transcripts.md: co-evolution runs)
    named = capsys.readouterr().out.rstrip().rsplit("details in ", 1)[1].rstrip(")").split("/")[-1].split(", ")
    assert named and all((run / f).is_file() for f in named) and ("transcripts.md" in named) == ("coevo" in cfg.method)
    records = [json.loads(l) for l in open(run / "metrics.jsonl")]
    assert "sft" in table and any(r["phase"].endswith("7_evaluate") for r in records)
    evaluation = next(r for r in records if r["phase"].endswith("7_evaluate"))["test_unseen"]
    assert evaluation.keys() == {"reward", "reward_ci", "success", "success_ci", "invalid_rate", "timeout_rate", "expert_nll"}
    assert len(runs.final_evaluations(str(run))["sft"]["test_unseen"]["rewards"]) == cfg.n_test   # per task, for pairing
    assert (run / "summary.md").exists() and not (run / ".lock").exists()
    if cfg.method == "coevo":
        assert (run / "transcripts.md").exists()
        assert (run / "ckpt" / "coevo_1_6_update_target" / "model.safetensors").exists()
        assert any(r["phase"] == "coevo/1/1_explore_failure" and "hard_negative_share" in r for r in records)
        update = next(r for r in records if r["phase"] == "coevo/1/6_update_target")
        assert {"own_pairs", "hard_pairs", "ff_pairs"} <= update.keys()  # how many pairs of each kind it learned from
        assert (update["ff_pairs"] > 0) == ("ff_acc" in update)  # a kind's DPO metrics appear exactly when it had pairs
    if cfg.method == "nll,eto":  # the control and the method from one SFT checkpoint, and the pairs' own effect
        assert "| eto - nll |" in table and "| nll - sft |" in table
        nll, eto = (next(r for r in records if r["phase"] == f"{m}/1/6_update_target") for m in ("nll", "eto"))
        assert abs(nll["loss"] - nll["nll"]) < 1e-6  # the control's loss is the NLL alone (its pairs are only logged)
        assert abs(eto["loss"] - eto["nll"]) > 1e-4  # ETO's has the DPO term on top
    if cfg.method in ("eto", "coevo") and cfg.iterations > 1:
        assert "repeated_failures" in next(r for r in records if r["phase"] == f"{cfg.method}/2/1_explore_target")


def test_same_seed_same_metrics(tmp_path, capsys):
    for name in ("a", "b"):
        coevo.main(smoke(tmp_path, name, method="compare"))
    assert open(tmp_path / "a" / "metrics.jsonl").read() == open(tmp_path / "b" / "metrics.jsonl").read()
    # wall time goes to the screen only (it differs run to run): one line per finished phase, with its seconds
    lines = [l for l in capsys.readouterr().out.splitlines() if l.startswith("[")]
    assert [l.split("]")[0][1:] for l in lines] == json.load(open(tmp_path / "b" / "state.json"))["done"] * 2
    assert all(l.endswith(" s)") for l in lines)


def test_a_fork_keeps_its_phases_bit_for_bit_and_recomputes_the_rest_under_new_settings(tmp_path, capsys):
    # scripts/fork_run.py: two settings compared on the same SFT checkpoint and the same exploration (paired)
    from scripts import fork_run
    coevo.main(smoke(tmp_path, "base", method="nll,eto"))
    kept = ["sft/0_train", "nll/1/1_explore_target", "nll/1/6_update_target", "eto/1/1_explore_target"]
    fork_run.main([str(tmp_path / "base"), str(tmp_path / "cut"), "--keep", ",".join(kept),
                   "--set", "eto_dpo_coef=0.5", "eval_on=valid"])
    assert json.load(open(tmp_path / "cut" / "state.json"))["done"] == kept
    assert not (tmp_path / "cut" / "ckpt" / "eto_1_6_update_target").exists()   # forgotten: recomputed on resume
    coevo.main(runs.saved_config(str(tmp_path / "cut")))
    base, cut = (json.load(open(tmp_path / r / "config.json")) for r in ("base", "cut"))
    assert cut["eto_dpo_coef"] == 0.5 and cut["eval_on"] == "valid" and cut["name"] == "cut" and base["eval_on"] == "test"
    weights = lambda run, phase: (tmp_path / run / "ckpt" / phase / "model.safetensors").read_bytes()
    assert weights("base", "sft_0_train") == weights("cut", "sft_0_train")       # the same SFT, untouched
    assert weights("base", "eto_1_6_update_target") != weights("cut", "eto_1_6_update_target")  # other weight
    records = [json.loads(l) for l in open(tmp_path / "cut" / "metrics.jsonl")]
    assert [r["phase"] for r in records if r["phase"] == "eto/1/6_update_target"] == ["eto/1/6_update_target"]
    # what cannot be forked says why: an unfinished phase, an unknown setting, a folder that exists
    for argv, says in ([str(tmp_path / "base"), str(tmp_path / "x"), "--keep", "eto/2/1_explore_target"], "not finished"),\
                      ([str(tmp_path / "base"), str(tmp_path / "x"), "--keep", "sft/0_train", "--set", "lr=1"], "cannot --set"),\
                      ([str(tmp_path / "base"), str(tmp_path / "cut"), "--keep", "sft/0_train"], "exists"):
        with pytest.raises(SystemExit, match=says):
            fork_run.main(argv)


class Killed(Exception):
    pass


@pytest.mark.parametrize("kill_at", ["finish:3", "finish:8", "dpo:2"])
def test_kill_and_resume_equals_uninterrupted(tmp_path, monkeypatch, kill_at):
    """A kill after a phase is written (finish:N) or in the middle of an update (dpo:N) loses nothing."""
    coevo.main(smoke(tmp_path, "whole", method="compare", iterations=2))  # iteration 2 reads iteration 1 back
    where, n = kill_at.split(":")
    calls = {"n": 0}
    target = (runs.RunDir, "finish") if where == "finish" else (losses, "dpo_loss")
    original = getattr(*target)

    def dying(*a, **kw):
        calls["n"] += 1
        if calls["n"] > int(n):
            raise Killed
        return original(*a, **kw)
    monkeypatch.setattr(*target, dying)
    with pytest.raises(Killed):
        coevo.main(smoke(tmp_path, "killed", method="compare", iterations=2))
    monkeypatch.setattr(*target, original)
    (tmp_path / "killed" / ".lock").write_text("999999999")   # a real kill leaves its lock behind (stale pid)
    coevo.main(runs.saved_config(str(tmp_path / "killed")))
    assert open(tmp_path / "killed" / "metrics.jsonl").read() == open(tmp_path / "whole" / "metrics.jsonl").read()


def test_lock_refuses_a_second_writer(tmp_path):
    cfg = smoke(tmp_path, "r")
    first = runs.RunDir(str(tmp_path / "r"), cfg, resume=False)
    with pytest.raises(SystemExit, match="another process"):
        runs.RunDir(str(tmp_path / "r"), cfg, resume=True)
    first.release()


def test_bad_configuration_is_refused_before_work(tmp_path):
    for kw, msg in [(dict(env="chess"), "--env"), (dict(method="ppo"), "--method"), (dict(n_expert=10**6), "--n-expert"),
                    (dict(failure_temperature=-1.0), "--failure-temperature"), (dict(hn_coef=-0.5), "--hn-coef"),
                    (dict(failure_agent="twin"), "--failure-agent"), (dict(reference="base"), "--reference"),
                    (dict(eto_sft_coef=-1.0), "--eto-sft-coef"), (dict(method="nll,ppo"), "nor a comma list"),
                    (dict(ff_coef=0.5, target_samples=0), "--ff-coef .* needs --target-samples"),
                    (dict(hn_threshold=1.5), r"--hn-threshold 1.5 must be in \[0, 1\)"),
                    (dict(n_train=-5), "--n-train -5 must be at least 1"),
                    (dict(sft_epochs=-1), "--sft-epochs -1 must be at least 1"),
                    (dict(seeds="0,x"), "--seeds '0,x' must be a comma list"),
                    (dict(init_from=str(tmp_path)), "has no config.json: it must be a Hugging Face-layout")]:
        with pytest.raises(SystemExit, match=msg):
            coevo.main(smoke(tmp_path, "bad", **kw))
        assert not (tmp_path / "bad").exists()  # refused before any work: nothing left that blocks the name
    with pytest.raises(SystemExit, match="not a run directory"):
        coevo.main(smoke(tmp_path, "x", resume=str(tmp_path)))
    with pytest.raises(SystemExit, match="not a run directory"):
        runs.saved_config(str(tmp_path))


def test_a_run_that_fails_before_its_first_phase_leaves_nothing_behind(tmp_path, monkeypatch):
    # a crash while loading or building the model (here: any error in new_model) must not leave a directory that
    # then refuses the same --name ("already holds a run")
    monkeypatch.setattr(coevo, "new_model", lambda cfg, renderer: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        coevo.main(smoke(tmp_path, "r", method="sft"))
    assert not (tmp_path / "r").exists()
    monkeypatch.undo()
    coevo.main(smoke(tmp_path, "r", method="sft"))  # the name is free
    assert (tmp_path / "r" / "summary.md").exists()


def test_non_finite_loss_stops_naming_the_phase(tmp_path, monkeypatch):
    monkeypatch.setattr(losses, "nll_loss", lambda logps, n: logps * float("nan"))
    with pytest.raises(SystemExit, match="sft/0_train at step 1;"):
        coevo.main(smoke(tmp_path, "nan", method="sft"))
    assert not (tmp_path / "nan" / "ckpt" / "sft_0_train").exists()


def test_a_run_directory_is_never_overwritten_and_unknown_flags_are_named(tmp_path, capsys):
    coevo.main(smoke(tmp_path, "r", method="sft"))
    before = (tmp_path / "r" / "metrics.jsonl").read_text()
    with pytest.raises(SystemExit, match="already holds a run; use --resume"):
        coevo.main(smoke(tmp_path, "r", method="eto", hn_coef=0.0))  # another config, same directory
    assert (tmp_path / "r" / "metrics.jsonl").read_text() == before
    with pytest.raises(SystemExit):
        config.parse_config(["--hn-coeff", "0"])  # a typo must not silently run the default
    assert "unrecognized arguments: --hn-coeff" in capsys.readouterr().err


def test_cli_flags_come_from_the_config(capsys):
    cfg = config.parse_config(["--env", "lab", "--hn-coef", "0", "--listwise", "--preset", "smoke", "--iterations", "2"])
    assert (cfg.env, cfg.hn_coef, cfg.listwise, cfg.iterations, cfg.n_train) == (
        "lab", 0.0, True, 2, config.PRESETS["smoke"]["n_train"])
    assert config.parse_config(["--compare"]).method == "compare"
    # a preset's run never takes the default run's directory (a student's next plain run is not refused)
    assert config.run_path(cfg) != config.run_path(config.Config()) == "runs/shop-compare-seed0"
    # --help: one group per Config section, each flag's help one line, the plot command and the presets named
    with pytest.raises(SystemExit):
        config.parse_config(["--help"])
    text = capsys.readouterr().out
    for title, names in config.sections():
        assert f"{title}:" in text and all("--" + n.replace("_", "-") in text for n in names)
    assert "python coevo.py plot" in text and all(f"  {p} " in text for p in config.PRESETS)


def test_paper_preset_is_the_papers_recipe_and_flags_still_win():
    # the defaults deviate from the paper (coevo.py, deviations 8-10); --preset paper puts its recipe back:
    # 0.5 DPO + 0.5 NLL for co-evolution, pure DPO for ETO, the anchor on the paired tasks' experts, K = 3
    paper = config.parse_config(["--preset", "paper"])
    assert (paper.dpo_coef, paper.hn_coef, paper.sft_coef) == (0.5, 0.5, 0.5)
    assert (paper.eto_dpo_coef, paper.eto_sft_coef, paper.anchor_all_experts, paper.iterations) == (1.0, 0.0, False, 3)
    default = coevo.Config()
    assert (default.eto_dpo_coef, default.eto_sft_coef) == (default.dpo_coef, default.sft_coef)  # ETO = coevo - HN
    assert config.parse_config(["--preset", "paper", "--iterations", "1"]).iterations == 1


@pytest.mark.parametrize("env_name", envs.ENV_NAMES)
def test_step_capped_failures_fit_the_model_context_after_tokenization(env_name):
    """The rollout stops an episode that outgrows the context (reward 0, end="context"): that must never happen to
    a real episode. Worst case, in real tokens of the tokenizer coevo builds: the longest first observation, then
    at the step cap every turn the longest action and the longest observation seen."""
    cfg = coevo.Config(env=env_name, n_train=200, n_expert=100)
    data = coevo.make_data(cfg)
    renderer = coevo.build_renderer(cfg, data)
    rng, first, obs, act = __import__("random").Random(0), 0, 0, 0
    for task in data["train"][:40] + data["test_seen"][:40] + data["test_unseen"][:40]:
        trajs = [envs.oracle(task)] + [envs.replay(task, a) for a in envs.scripted_failures(task).values()]
        trajs.append(envs.replay(task, [envs.random_action(env_name, rng) for _ in range(30)]))  # runs to the cap
        for t in trajs:
            assert len(renderer.render(t["messages"])[0]) <= cfg.context
            first = max(first, len(renderer.encode_observation(t["messages"][0], first=True)))
            obs = max([obs] + [len(renderer.encode_observation(m)) for m in t["messages"][2::2]])
            act = max([act] + [len(renderer.encode_action(m)) for m in t["messages"][1::2]])
    worst = first + envs.make_env(env_name).max_steps * (act + obs)
    assert worst <= cfg.context, (env_name, first, act, obs, worst)


def test_spread_over_seeds_is_the_sample_standard_deviation():
    # 79.7, 83.4, 82.7: mean 81.93; deviations -2.23, 1.47, 0.77; sum of squares 7.73; / (3 - 1) -> std 1.97
    assert runs.mean_std([79.7, 83.4, 82.7]) == "81.9 ± 2.0"
    assert runs.mean_std([5.0]) == "5.0 ± 0.0"


def test_columns_over_seeds_mark_differences_whose_interval_excludes_zero():
    # five seeds of ETO - SFT: mean 1.7, std sqrt(11.24 / 4) = 1.68, t(4) = 2.776 -> half-width 2.08: holds 0, no *
    assert runs.over_seeds([1.0, 0.2, 2.6, 0.5, 4.2], difference=True) == "+1.7 ± 1.7 [-0.4, +3.8]"
    assert runs.over_seeds([2.0, 2.2, 1.8, 2.1, 1.9], difference=True).endswith("] *")   # steady +2: above 0
    assert runs.over_seeds([43.0, 45.0]) == "44.0 ± 1.4 [31.3, 56.7]"                     # a method: no signs


def test_paired_gaps_subtract_sft_seed_by_seed():
    # two seeds far apart (80 vs 60) hide a steady +1 in the mean ± std columns; the paired gap shows it
    results = {"sft": [[80.0, 40.0], [60.0, 30.0]], "eto": [[81.0, 39.0], [61.0, 31.0]]}
    assert runs.paired_gaps(results) == {"eto": [[1.0, -1.0], [1.0, 1.0]]}
    assert runs.mean_std([r[0] for r in runs.paired_gaps(results)["eto"]]) == "1.0 ± 0.0"


def test_intervals_are_student_t_and_paired_differences_see_what_overlap_hides():
    # n = 5, sd 1: t(4) = 2.776, half-width 2.776 / sqrt(5) = 1.241
    mean, half = runs.mean_ci([1.0, 3.0, 1.0, 3.0, 2.0])
    assert abs(mean - 2.0) < 1e-12 and abs(half - 2.776 / 5 ** 0.5) < 1e-3
    assert abs(runs.t95(499) - 1.9647) < 1e-3 and runs.t95(1) == 12.706
    # two methods on the same 6 tasks: task difficulty spreads each column, the per-task gain is a steady +0.1
    sft = [0.2, 0.9, 0.5, 0.0, 0.7, 0.3]
    evals = {"sft": {s: {"rewards": sft} for s in ("test_seen", "test_unseen")},
             "eto": {s: {"rewards": [r + 0.1 for r in sft]} for s in ("test_seen", "test_unseen")}}
    table = runs.results_table(evals)
    assert "| eto - sft | +10.0 [+10.0, +10.0] * | +10.0 [+10.0, +10.0] * |" in table   # paired: no spread, above 0
    # success differences are in % points like the success columns: one more success in 6 tasks is +16.7 points
    evals["eto"]["test_seen"]["rewards"][1] = 1.0
    assert runs.results_table(evals).splitlines()[-1].split(" | ")[3].startswith("+16.7 ")
    # co-evolution in the run: minus SFT, and minus ETO (the paper's comparison; nll is never compared to ETO)
    evals["coevo"] = {s: {"rewards": [r + 0.2 for r in sft]} for s in ("test_seen", "test_unseen")}
    rows = [line.split(" | ")[0] for line in runs.results_table(evals).splitlines()[2:]]
    assert rows == ["| sft", "| eto", "| coevo", "| eto - sft", "| coevo - sft", "| coevo - eto"]
    _, half = runs.mean_ci([100 * r for r in sft])
    assert half > 10                                                     # unpaired: the columns' intervals overlap
    assert runs.fmt_interval(1.0, 2.0) == "+1.0 [-1.0, +3.0]"           # an interval that holds 0 gets no *


def test_greedy_churn_counts_what_changed_task_by_task():
    def traj(tid, success, actions):
        return {"task": {"id": tid}, "success": success, "messages": ["goal"] + [m for a in actions for m in (a, "obs")]}
    before = [traj("a", False, ["x"]), traj("b", False, ["x"]), traj("c", True, ["y"]), traj("d", False, ["x"])]
    after = [traj("a", True, ["y"]), traj("b", False, ["x"]), traj("c", False, ["x"]), traj("d", False, ["z"])]
    # a: fixed; b: the same failure, action for action; c: lost; d: failed differently (neither repeated nor fixed)
    assert coevo.greedy_churn(before, after) == {"solved_since_last": 1, "broken_since_last": 1, "repeated_failures": 1}


def test_update_metrics_average_only_the_steps_that_had_that_pair_kind():
    # step 2's batch held no hard negative: its hard_acc is absent, not 0, so the phase's hard_acc stays 1.0
    steps = [{"loss": 0.6, "own_acc": 0.5, "hard_acc": 1.0}, {"loss": 0.4, "own_acc": 1.0}]
    assert coevo.step_means(steps) == {"loss": 0.5, "own_acc": 0.75, "hard_acc": 1.0}
    assert coevo.step_means([]) == {}


def test_phase_summary_line_rounds_nested_evaluation_results():
    # evaluate() returns one dict per split; the one-line summary must not print 86.12500000000001
    line = runs.fmt({"test_seen": {"reward": 86.12500000000001, "success": 0.695}, "items": 3, "histogram": [1, 2]})
    assert line == "test_seen={reward=86.125, success=0.695}, items=3"


def test_sweep_prints_spread_and_paired_gaps(tmp_path, capsys):
    runs.sweep(smoke(tmp_path, "sw", method="eto,coevo", seeds="0,1"), coevo.main)
    out = capsys.readouterr().out
    assert (tmp_path / "sw-seed0" / "summary.md").exists() and (tmp_path / "sw-seed1" / "summary.md").exists()
    assert "over seeds 0,1: mean ± std" in out and "| eto - sft |" in out and "| coevo - sft |" in out
    # the paper's comparison, seed by seed: co-evolution against ETO (no nll here, so no table against it)
    assert "minus ETO on the same seed" in out and "| coevo - eto |" in out and "- nll |" not in out
    gap = out.split("| eto - sft | ")[-1].split(" | ")[0]             # the table over seeds: signed, with its interval
    assert gap[0] in "+-" and " ± " in gap and (gap.endswith("]") or gap.endswith("] *"))
    # run again: the finished seeds are read back, not redone (a killed sweep continues where it stopped)
    before = (tmp_path / "sw-seed1" / "metrics.jsonl").read_text()
    runs.sweep(smoke(tmp_path, "sw", method="eto,coevo", seeds="0,1"), coevo.main)
    assert (tmp_path / "sw-seed1" / "metrics.jsonl").read_text() == before and "| eto - sft |" in capsys.readouterr().out


def test_transcripts_stay_a_table_whatever_the_agent_wrote(tmp_path):
    # a sampled action may hold a newline or a | (the toy model writes anything): each row keeps its five cells
    expert = dict(traj("u", 1.0, ("search[x]", "click[a]")), agent="expert")
    weird = traj("u", 0.2, ("search[x]\nclick[b] | buy",))
    hard = traj("u", 0.7, ("a|b", "c\n"))
    runs.write_transcripts(str(tmp_path / "t.md"), [{"expert": expert, "a": [(expert, weird)], "hard": [hard], "c": []}])
    rows = [line for line in (tmp_path / "t.md").read_text().splitlines() if line.startswith("| ") and "turn" not in line]
    assert len(rows) == 2 and all(line.replace("\\|", "").count("|") == 5 for line in rows)
    assert "search[x]\\nclick[b] \\| buy" in rows[0]
