"""`python coevo.py plot RUN_DIR [RUN_DIR ...]` draws a run's figures (matplotlib optional: skipped without it).

What this teaches: the figures are read from the run directories alone (no checkpoint, no re-run), so any run, even a
killed one, can be plotted; the comparison is drawn as paired differences (per task for one run, per seed for
several), never as overlapping columns; and the trajectory mix is a partition (success + failure below 0.6 + hard
negative = 1 of the explored trajectories), the quantity the paper's table reports.
"""
import json
import os
import subprocess
import sys

import pytest

import coevo
import config
import plots

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_trajectory_mix_is_a_partition():
    s, f, h = plots.trajectory_mix({"success_rate": 0.25, "hard_negative_share": 0.4})
    assert (round(s, 6), round(f, 6), round(h, 6)) == (0.25, 0.45, 0.3)  # 40% of the 75% failures are hard


def test_plot_command_writes_pngs_of_a_small_run(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need the optional matplotlib (pip install matplotlib)")
    cfg = coevo.Config(**{**config.PRESETS["smoke"], "preset": "smoke", "out_dir": str(tmp_path), "name": "r",
                          "method": "compare"})
    coevo.main(cfg)
    out = tmp_path / "png"
    done = subprocess.run([sys.executable, os.path.join(ROOT, "coevo.py"), "plot", str(tmp_path / "r"), "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stderr
    for name in ("differences", "curves", "mix", "failures"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name


def test_plot_of_a_folder_without_metrics_says_what_is_wrong(tmp_path):
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        plots.plot_runs([str(tmp_path)])


def test_differences_are_paired_per_task_for_one_run_and_per_seed_for_several(tmp_path):
    # two seeds whose tasks differ wildly but where eto is always SFT + 1 point: the per-seed interval is exactly +1
    def run(name, base):
        d = tmp_path / name
        d.mkdir()
        rewards = {"sft": [base, 0.0, 1.0], "nll": [base, 0.0, 1.0], "eto": [base + 0.01, 0.01, 1.01]}
        lines = []
        for m, rs in rewards.items():
            phase = "sft/7_evaluate" if m == "sft" else f"{m}/1/7_evaluate"
            (d / (phase.replace("/", "_") + ".json")).write_text(json.dumps(
                {s: {"rewards": rs} for s in ("test_seen", "test_unseen")}))
            lines.append(json.dumps({"phase": phase}))
        (d / "metrics.jsonl").write_text("\n".join(lines) + "\n")
        return str(d)
    rows = plots.differences([run("s0", 0.2), run("s1", 0.9)])
    eto_sft = [r for r in rows if r[0] == "eto - sft"]
    assert [r[1] for r in eto_sft] == ["test_seen", "test_unseen"]
    assert all(abs(mean - 1.0) < 1e-9 and half < 1e-6 for _, _, mean, half in eto_sft)
    assert [r[0] for r in rows] == ["nll - sft"] * 2 + ["eto - sft"] * 2 + ["eto - nll"] * 2
