"""What this teaches: the base model is pretrained the way a language model is, on environment text only. Its corpus
comes from an undirected policy that acts only on what the page shows (every action well-formed, no goal, no
expert), in training-split worlds; every token is a target; the tokenizer covers every word of all three
environments, so the base reads any of them; and `pretrain.py` at tiny size writes a base that coevo.py starts from.

Run: python -m pytest -q tests/test_pretrain.py
"""
import json
import random

import pytest

import coevo
import config
import envs
import loader
import pretrain
from agent import Renderer


@pytest.mark.parametrize("env_name", envs.ENV_NAMES)
def test_the_undirected_policy_acts_only_on_what_it_was_shown_and_wants_nothing(env_name):
    # every action it takes is well-formed here and now (the env accepts it), and it scores near 0: no goal
    rng = random.Random(0)
    episodes = [envs.undirected_episode(t, rng) for t in envs.make_tasks(env_name, "train", 60, seed=5)]
    assert all(e["n_invalid"] == 0 for e in episodes)
    assert sum(e["reward"] for e in episodes) / len(episodes) < 0.2
    assert sum(e["success"] for e in episodes) <= 1
    assert sum(len(e["messages"]) // 2 for e in episodes) / len(episodes) >= 3  # episodes show more than one page


def test_every_token_is_a_target_and_the_last_observation_is_kept():
    episode = envs.undirected_episode(envs.make_tasks("shop", "train", 1, seed=0)[0], random.Random(0))
    renderer = Renderer(pretrain.base_tokenizer([episode["messages"]]))
    ids, mask = pretrain.every_token(renderer, episode["messages"])
    assert mask == [0] + [1] * (len(ids) - 1)              # a language model's loss: all but the first token
    last = renderer.encode_observation(episode["messages"][-1])
    assert ids[-len(last):] == last                         # what the env said last is text to learn too


def test_the_corpus_is_training_worlds_only_and_the_tokenizer_covers_every_environment():
    corpus = pretrain.corpus("train", 3, seed=pretrain.CORPUS_SEED)
    assert len(corpus) == 9                                  # three episodes of each environment, interleaved
    renderer = Renderer(pretrain.base_tokenizer(corpus))
    unk = renderer.tokenizer.token_to_id("<unk>")
    for env_name in envs.ENV_NAMES:                          # experts and test pages of any env tokenize without <unk>
        for task in envs.make_tasks(env_name, "test_unseen", 20, seed=0):
            assert unk not in renderer.render(envs.oracle(task)["messages"])[0], (env_name, task["id"])


def test_a_tiny_pretraining_writes_a_base_that_coevo_starts_from(tmp_path, capsys):
    out = tmp_path / "base"
    pretrain.main(["--out", str(out), "--episodes", "6", "--valid-episodes", "2", "--epochs", "2", "--hidden-size",
                   "16", "--layers", "1", "--heads", "2", "--check-n", "2", "--threads", "1"])
    text = capsys.readouterr().out
    nll = [float(line.split("validation nll ")[1].split()[0]) for line in text.splitlines() if "validation nll" in line]
    assert len(nll) == 2 and nll[1] < nll[0]                 # it learned something about the environments' text
    assert loader.is_ours(out) and "python pretrain.py --out" in (out / "README.md").read_text()
    assert "well-formed actions" in (out / "README.md").read_text()
    cfg = coevo.Config(**{**config.PRESETS["smoke"], "preset": "smoke", "init_from": str(out), "out_dir": str(tmp_path),
                          "name": "r", "method": "sft"})
    coevo.main(cfg)
    sft = json.loads((tmp_path / "r" / "ckpt" / "sft_0_train" / "config.json").read_text())
    assert sft["hidden_size"] == 16                           # the base's size, not the smoke preset's 32
    with pytest.raises(SystemExit, match="already holds a base"):
        pretrain.main(["--out", str(out), "--episodes", "2"])
