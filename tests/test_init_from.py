"""`coevo.py --init-from PATH`: the whole loop (SFT, exploration, both DPO updates, evaluation) starting from an open
checkpoint instead of a fresh toy model, run here on tiny committed Hugging Face-layout fixtures, on CPU.

What these tests teach:
- the checkpoint's tokenizer, chat format and sizes replace the toy ones (the toy size flags are ignored), and its
  weights are read exactly once (the renderer comes from the tokenizer files alone);
- two co-evolution iterations run with every logged loss finite, and learning shows: the SFT loss falls across
  epochs, and the expert trajectories' NLL is lower under the SFT model and the final target than under the
  checkpoint they started from;
- every saved agent reloads in its open chat format (chatml for Qwen2, Llama-3 headers with BOS for Llama 3).
A random tiny model never succeeds in the environment, so the failure agent gets few or no pairs; the target
still gets ETO pairs (expert vs its own failures), so the DPO path runs.

Run: .venv/bin/python -m pytest -q tests/test_init_from.py   (about 20 s on one CPU thread)
"""
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

import coevo
import config
import agent
import loader
import model as M

FIXTURES = Path(__file__).parent / "fixtures"




def floats(record):
    """Every number in a metrics record, however nested (histograms are lists, evaluations dicts)."""
    if isinstance(record, dict):
        return [x for v in record.values() for x in floats(v)]
    if isinstance(record, list):
        return [x for v in record for x in floats(v)]
    return [float(record)] if isinstance(record, (int, float)) and not isinstance(record, bool) else []


def expert_nll(model, renderer, experts):
    """Mean per-token NLL of the expert actions: the SFT objective, measured the same way for every model."""
    ids, mask = agent.collate([renderer.render(e["messages"]) for e in experts], renderer.pad_id)
    with torch.no_grad():
        logps, n_tokens = agent.sequence_logps(model, ids, mask)
    return (-logps.sum() / n_tokens.sum()).item()


# (fixture, chat format it must keep, its end-of-turn token)
CASES = [("qwen2", "chatml", "<|im_end|>"), ("llama3", "llama3", "<|eot_id|>")]


@pytest.mark.parametrize("name, fmt, end", CASES)
def test_two_coevolution_iterations_from_an_open_checkpoint(tmp_path, monkeypatch, name, fmt, end):
    # count weight loads: build_renderer must read only the tokenizer files, new_model the weights once
    loads, real = [], loader.load_hf_weights_
    monkeypatch.setattr(loader, "load_hf_weights_", lambda *a: loads.append(1) or real(*a))
    # smoke sizes; hidden_size/layers/heads are set to nonsense on purpose: --init-from must ignore them.
    # sql: its expert transcripts fit the fixtures' 256-token context
    cfg = coevo.Config(**{**config.PRESETS["smoke"], "hidden_size": 8, "layers": 9, "heads": 1, "iterations": 2,
                          "sft_epochs": 3, "sft_lr": 1e-3, "n_test": 4, "init_from": str(FIXTURES / name)},
                       preset="smoke", env="sql", method="coevo", out_dir=str(tmp_path), name="run")
    coevo.main(cfg)
    run = tmp_path / "run"
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    assert len(loads) == 1

    # every number logged anywhere (losses, margins, rewards) is finite
    assert all(math.isfinite(x) for r in records for x in floats(r))
    # the SFT loss falls across epochs
    sft = [r["nll"] for r in records if r["phase"] == "sft/0_train"]
    assert len(sft) == 3 and sft[-1] < sft[0]
    # both iterations ran both updates; the target had preference pairs (its own failures vs the expert)
    for k in (1, 2):
        target = next(r for r in records if r["phase"] == f"coevo/{k}/6_update_target")
        assert target["items"] > 0 and math.isfinite(target["loss"])
        assert any(r["phase"] == f"coevo/{k}/3_update_failure" for r in records)

    # both agents' checkpoints reload with the checkpoint's own sizes and chat format (not the toy ones)
    checkpoint, start_renderer = loader.load_pretrained(FIXTURES / name)
    for ckpt in ("coevo_2_6_update_target", "coevo_2_3_update_failure", "sft_0_train"):
        model, renderer = loader.load_checkpoint(run / "ckpt" / ckpt)
        # (config.json always spells head_dim out; the loader leaves it None when it is hidden_size // heads)
        spelled = lambda c: dataclasses.replace(c, head_dim=c.hd)
        assert spelled(model.cfg) == spelled(checkpoint.cfg)
        assert renderer.chat_format == fmt and renderer.spec == start_renderer.spec
        assert renderer.action_end_id == renderer.tokenizer.token_to_id(end)

    # learning: the experts' NLL falls from the checkpoint to SFT, and the co-evolved target stays below the start
    experts = coevo.make_data(cfg)["experts"]
    nll = {ckpt: expert_nll(loader.load_checkpoint(run / "ckpt" / ckpt)[0], start_renderer, experts)
           for ckpt in ("sft_0_train", "coevo_2_6_update_target")}
    start = expert_nll(checkpoint, start_renderer, experts)
    assert nll["sft_0_train"] < start and nll["coevo_2_6_update_target"] < start
