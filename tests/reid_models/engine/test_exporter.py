"""ONNX export of a trained checkpoint: onnxruntime matches PyTorch."""
from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from reid_models.export import cli, get_args_parser, main


@pytest.mark.slow
def test_onnx_export_matches_pytorch(trained_run, tmp_path, capsys):
    path = tmp_path / "bot_r50.onnx"
    diff = main(get_args_parser().parse_args(["--checkpoint", str(trained_run / "last.pt"), "--format", "onnx",
                                              "--output", str(path), "--dynamic-batch", "--batch-size", "2"]))
    assert diff < 1e-3
    printed = capsys.readouterr().out
    assert "max abs difference" in printed and "OK" in printed
    meta = {p.key: p.value for p in onnx.load(str(path)).metadata_props}
    assert meta["model"] == "bot_r50" and json.loads(meta["input_size"]) == [64, 32] and meta["embedding_dim"] == "2048"
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (emb,) = session.run(None, {"images": np.zeros((5, 3, 64, 32), np.float32)})  # dynamic batch
    assert emb.shape == (5, 2048) and np.isfinite(emb).all()


@pytest.mark.slow
def test_parity_above_tolerance_exits_non_zero(trained_run, tmp_path, capsys):
    out = tmp_path / "new" / "m.onnx"
    assert cli(["--checkpoint", str(trained_run / "last.pt"), "--output", str(out), "--batch-size", "1",
                "--tolerance", "-1"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ExportParityError: onnxruntime differs from PyTorch") and err.count("\n") == 1
    assert not (tmp_path / "new").exists()  # a failed export leaves no file and no folder


def test_uneven_pcb_stripes_export_exactly(tmp_path):
    """PCB's 6 stripes of an 8-row map (convnext_ap at 256x128) export and match PyTorch.

    (PCBPool's equality with adaptive pooling is checked in test_layers.py.)"""
    import torch

    from reid_models.engine.exporter import export_onnx, onnx_max_abs_diff
    from reid_models.layers import PCBPool
    from reid_models.output import ReIDOutput

    class Stripes(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.pool = torch.nn.Conv2d(3, 4, 3, stride=4, padding=1), PCBPool(6)

        def forward(self, x):
            return ReIDOutput(embedding=self.pool(self.conv(x)).flatten(1))

    model = Stripes().eval()
    path = export_onnx(model, (32, 16), tmp_path / "stripes.onnx")
    assert onnx_max_abs_diff(path, model, torch.randn(1, 3, 32, 16)) < 1e-5
