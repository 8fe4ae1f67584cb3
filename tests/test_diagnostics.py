"""What this teaches: the measurements `python bench.py --why RUN_DIR` makes to explain whether learning from failures
can help (diagnostics.py), each checked on cases whose answer is known by hand: where a failure leaves the expert's
path and how much of it comes after, whether the episode could still be saved from there, how it ended, and pass@k.

Run: python -m pytest -q tests/test_diagnostics.py
"""
import pytest

import coevo
import config
import diagnostics
import envs
from agent import Renderer, build_tokenizer


def test_pass_at_k_is_the_unbiased_estimate_from_n_samples():
    # 8 samples with 1 success: one draw of 1 hits it with chance 1/8; a draw of 4 with 1 - C(7,4)/C(8,4) = 1/2
    assert diagnostics.pass_at_k(8, 1, 1) == pytest.approx(1 / 8)
    assert diagnostics.pass_at_k(8, 1, 4) == pytest.approx(0.5)
    assert diagnostics.pass_at_k(8, 0, 8) == 0.0 and diagnostics.pass_at_k(8, 5, 4) == 1.0


def sql_case():
    task = envs.make_tasks("sql", "train", 1, seed=0)[0]
    expert = envs.oracle(task)                                   # show tables, the gold query, submit
    show, gold, submit = expert["messages"][1::2]
    wrong = gold.replace("select ", "select count(*), ", 1)      # a query that answers something else
    return task, expert, {
        "wrong query, then submit": envs.replay(task, [show, wrong, submit]),
        "submits at once": envs.replay(task, ["submit"]),
        "ten invalid actions": envs.replay(task, ["jump"] * 10)}


def test_where_failures_leave_the_expert_and_whether_they_could_recover():
    task, expert, fails = sql_case()
    renderer = Renderer(build_tokenizer(envs.lexicon("sql") + expert["messages"] + fails["wrong query, then submit"]
                                        ["messages"]))
    tokens = lambda actions: sum(len(renderer.encode_action(a)) for a in actions)
    props = {name: diagnostics.pair_properties([(expert, f)], renderer) for name, f in fails.items()}
    one = props["wrong query, then submit"]
    # it left the expert's path at step 2 (the query); after that only its submit, a tail of that many tokens
    assert one["first wrong step"] == {2: 1}
    assert one["tail share"] == pytest.approx(tokens(["submit"]) / tokens(fails["wrong query, then submit"]
                                                                           ["messages"][1::2]))
    assert one["recoverable"] == 1.0 and one["endings"] == {"wrong final action": 1.0}   # 3 steps used, 7 left
    # the expert's tokens and the failure's first two actions were taken at states the expert data contains
    shared = tokens(expert["messages"][1::2]) + tokens(fails["wrong query, then submit"]["messages"][1:4:2])
    everything = tokens(expert["messages"][1::2]) + tokens(fails["wrong query, then submit"]["messages"][1::2])
    assert one["expert-state share"] == pytest.approx(shared / everything)
    # a submit at once ends the episode: nothing can be saved; ten invalid actions: a loop to the cap, saveable
    assert props["submits at once"]["recoverable"] == 0.0 and props["submits at once"]["first wrong step"] == {1: 1}
    loop = props["ten invalid actions"]
    assert loop["endings"] == {"invalid-action loop": 1.0} and loop["recoverable"] == 1.0
    assert loop["tail share"] == pytest.approx(9 / 10)          # nine of its ten equal actions come after the first


def test_why_prints_every_measure_of_a_finished_run(tmp_path, capsys):
    cfg = coevo.Config(**{**config.PRESETS["smoke"], "preset": "smoke", "out_dir": str(tmp_path), "name": "r"})
    coevo.main(cfg)
    capsys.readouterr()
    diagnostics.why(str(tmp_path / "r"), n=4, device="cpu", samples=2)
    out = capsys.readouterr().out
    for measure in ("(1) step of the first wrong action", "(2) recoverable", "(4) how the rejected trajectory ended",
                    "(5) share of pair tokens", "(3) reachability", "expert vs own failure", "expert vs hard negative"):
        assert measure in out
