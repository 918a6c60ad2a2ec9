"""Throughput benchmark CLI prints crops/s per model and batch size."""
from __future__ import annotations

import pytest

from reid_models.bench import get_args_parser, main
from reid_models.common import UserError


def test_bench_prints_crops_per_second(capsys):
    results = main(get_args_parser().parse_args(["--models", "bot_r50", "--batch-sizes", "1", "2", "--iters", "1",
                                                 "--warmup", "0", "--input-size", "64", "32", "--device", "cpu"]))
    assert [(r.model, r.batch, r.dtype) for r in results] == [("bot_r50", 1, "fp32"), ("bot_r50", 2, "fp32")]
    assert all(r.crops_per_s > 0 and r.ms_per_batch > 0 for r in results)
    out = capsys.readouterr().out
    assert "bot_r50 64x32 batch 2 fp32: " in out and "crops/s" in out
    assert "| model | params (M) | batch | dtype | ms/batch | crops/s |" in out
    assert "| bot_r50 | 25.05 | 1 | fp32 |" in out


def test_bench_writes_its_results_as_json(tmp_path, capsys):
    import json

    path = tmp_path / "sub" / "reid.json"
    main(get_args_parser().parse_args(["--models", "bot_r50", "--batch-sizes", "1", "--iters", "1", "--warmup", "0",
                                       "--input-size", "64", "32", "--device", "cpu", "--json", str(path)]))
    saved = json.loads(path.read_text())
    assert saved["device"].startswith("CPU, ") and [r["model"] for r in saved["results"]] == ["bot_r50"]
    assert saved["results"][0]["crops_per_s"] > 0 and saved["results"][0]["dtype"] == "fp32"
    assert f"wrote {path}" in capsys.readouterr().out


def test_bench_rejects_half_precision_on_cpu():
    with pytest.raises(UserError, match="fp16/bf16 are measured on CUDA only"):
        main(get_args_parser().parse_args(["--models", "bot_r50", "--device", "cpu", "--dtypes", "fp16"]))
