"""benchmarks/gpu.sh in its CPU dry run: every step runs with the flags it passes and writes its files."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_unknown_argument_is_one_line_and_exit_2():
    proc = subprocess.run(["bash", str(REPO / "benchmarks" / "gpu.sh"), "--bogus"], capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == ("error: benchmarks/gpu.sh: unknown argument --bogus "
                                                             "(use --device cuda|cpu and --quick)")


@pytest.mark.slow
def test_cpu_quick_dry_run_writes_every_figure(tmp_path):
    env = dict(os.environ, OUT=str(tmp_path), PYTHON=sys.executable, PYTHONPATH=str(REPO))
    proc = subprocess.run(["bash", "benchmarks/gpu.sh", "--device", "cpu", "--quick"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reid = json.loads((tmp_path / "reid_models.json").read_text())
    assert {(r["model"], r["batch"], r["dtype"]) for r in reid["results"]} == {
        (m, b, "fp32") for m in ("bot_r50", "sa_r50") for b in (1, 8)}
    assert all(r["crops_per_s"] > 0 for r in reid["results"])
    assert (tmp_path / "reid_models.md").read_text().startswith("| model | params (M) |")
    one = json.loads((tmp_path / "pipeline" / "speed.json").read_text())
    assert [(r["cameras"], r["workers"], r["frames"]) for r in one["rows"]] == [(1, 1, 3), (2, 1, 6)]
    groups = json.loads((tmp_path / "workers" / "speed.json").read_text())
    assert [(r["cameras"], r["workers"]) for r in groups["rows"]] == [(2, 2)]
    assert all(r["frames_per_s"] > 0 and r["stage_ms"]["detect"] > 0 for r in one["rows"] + groups["rows"])
    md = (tmp_path / "gpu_bench.md").read_text()
    assert md.count("## ") == 3 and "pipeline bench, 2 worker groups" in md and "frames/s" in md
