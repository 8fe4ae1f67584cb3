"""`python coevo.py plot RUN_DIR` turns a run's metrics.jsonl into four PNGs (matplotlib optional: skipped without it).

What this teaches: the figures are read from the log alone (no checkpoint, no re-run), so any run, even a killed
one, can be plotted; and the trajectory mix is a partition (success + failure below 0.6 + hard negative = 1 of the
explored trajectories), the quantity the paper's table reports.
"""
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
    for name in ("reward", "failures", "mix", "preferences"):
        png = out / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 5000, name


def test_plot_of_a_folder_without_metrics_says_what_is_wrong(tmp_path):
    with pytest.raises(SystemExit, match="no metrics.jsonl"):
        plots.plot_run(str(tmp_path))
