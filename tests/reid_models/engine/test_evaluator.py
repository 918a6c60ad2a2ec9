"""Evaluation CLI: a checkpoint re-evaluated gives the metrics training wrote, on the same files,
and feature extraction with flip averaging."""
from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest
import torch
from PIL import Image

from reid_models.engine.evaluator import extract_features
from reid_models.evaluate import cli, get_args_parser, main
from reid_models.output import ReIDOutput

from ..conftest import REPO, person_image


@pytest.mark.slow
def test_evaluate_cli_reproduces_the_training_metrics(trained_run, market_root, tmp_path):
    out = tmp_path / "eval"
    args = ["--checkpoint", str(trained_run / "last.pt"), "--data-root", str(market_root), "--dataset", "market1501",
            "--device", "cpu", "--output", str(out), "--batch-size", "5", "--num-workers", "0"]
    result = main(get_args_parser().parse_args(args))
    trained = json.loads((trained_run / "metrics.json").read_text())
    written = json.loads((out / "metrics.json").read_text())
    for mode in ("without_rerank", "with_rerank"):
        assert written[mode] == pytest.approx(trained[mode], abs=1e-6)
        assert result[mode] == written[mode]
    assert (written["num_query"], written["num_gallery"], written["epoch"]) == (4, 13, 1)
    for figure in ("cmc.png", "ranked_results.png", "identities.png"):
        assert Image.open(out / figure).size[0] > 100
    no_rr = main(get_args_parser().parse_args([*args, "--no-rerank", "--output", str(tmp_path / "plain")]))
    assert no_rr["with_rerank"] is None and no_rr["without_rerank"] == written["without_rerank"]


@pytest.mark.slow
def test_evaluate_on_a_test_only_dataset(trained_run, tmp_path):
    """Cross-dataset evaluation on Partial-REID's real layout (MFA reports it): query = partial bodies."""
    for folder in ("partial_body_images", "whole_body_images"):
        for pid in (1, 2, 3):
            for index in (1, 2):
                path = tmp_path / "Partial_REID" / folder / f"{pid:03d}_{index:02d}.jpg"
                path.parent.mkdir(parents=True, exist_ok=True)
                pixels = person_image(pid, index + (10 if folder.startswith("whole") else 0))
                Image.fromarray(pixels[: 80] if folder.startswith("partial") else pixels).save(path)
    result = main(get_args_parser().parse_args(
        ["--checkpoint", str(trained_run / "last.pt"), "--data-root", str(tmp_path), "--dataset", "partial_reid",
         "--device", "cpu", "--num-workers", "0", "--output", str(tmp_path / "eval")]))
    assert (result["num_query"], result["num_gallery"], result["dataset"]) == (6, 6, "partial_reid")
    assert 0 <= result["without_rerank"]["mAP"] <= 100


def test_missing_checkpoint_is_one_error_line(tmp_path, market_root, capsys):
    args = ["--checkpoint", str(tmp_path / "best.pt"), "--data-root", str(market_root), "--dataset", "market1501"]
    assert cli(args) == 2
    err = capsys.readouterr().err
    assert re.match(r"^error: checkpoint not found: .*best.pt \(pass the .pt written by", err) and err.count("\n") == 1


def test_same_person_is_for_mot_only_and_checked_in_one_line(tmp_path, market_root, capsys):
    base = ["--checkpoint", "default", "--data-root", str(market_root), "--output", str(tmp_path / "e")]
    assert cli([*base, "--dataset", "market1501", "--same-person", "2=13"]) == 2
    err = capsys.readouterr().err
    assert err == "error: --same-person applies to --dataset mot only, not market1501; drop it\n"
    assert cli([*base, "--dataset", "mot", "--same-person", "2=13", "13=5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --same-person: id 13 is in two same person groups") and err.count("\n") == 1


class _HalfSensitive(torch.nn.Module):
    """Embedding = column means of the left half of the image: changes when the image is mirrored."""

    def forward(self, x: torch.Tensor) -> ReIDOutput:
        return ReIDOutput(embedding=x[..., : x.shape[-1] // 2].mean(dim=(1, 2)))


def test_extract_features_flip_averages_image_and_mirror():
    x = torch.arange(2 * 3 * 4 * 6, dtype=torch.float32).reshape(2, 3, 4, 6)
    batches = [(x, torch.tensor([5, 6]), torch.tensor([0, 1]), ["a.jpg", "b.jpg"])]
    plain = extract_features(_HalfSensitive(), batches, torch.device("cpu"))
    flipped = extract_features(_HalfSensitive(), batches, torch.device("cpu"), flip=True)
    left = x[..., :3].mean(dim=(1, 2))
    right_mirrored = x.flip(3)[..., :3].mean(dim=(1, 2))
    np.testing.assert_allclose(plain.feats, left.numpy())
    np.testing.assert_allclose(flipped.feats, ((left + right_mirrored) / 2).numpy())
    assert plain.pids.tolist() == [5, 6] and plain.camids.tolist() == [0, 1] and plain.paths == ["a.jpg", "b.jpg"]


def test_auto_amp_picks_fp16_where_bf16_is_only_emulated(monkeypatch):
    """A V100/T4 'supports' bf16 only by emulation (torch's default is_bf16_supported() says True):
    auto must pick fp16 there, bf16 only on GPUs with native bf16."""
    from reid_models.runtime import resolve_amp

    def pre_ampere(including_emulation: bool = True) -> bool:
        return including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", pre_ampere)
    assert resolve_amp("auto", torch.device("cuda")) == torch.float16
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)
    assert resolve_amp("auto", torch.device("cuda")) == torch.bfloat16
    assert resolve_amp("auto", torch.device("cpu")) is None and resolve_amp("off", torch.device("cuda")) is None


@pytest.mark.slow
def test_flip_defaults_to_the_recipe_stored_in_the_checkpoint(trained_run, market_root, tmp_path):
    ckpt = torch.load(trained_run / "last.pt", map_location="cpu", weights_only=False)
    ckpt["config"]["eval"]["flip"] = True
    flipped = tmp_path / "flip.pt"
    torch.save(ckpt, flipped)
    args = ["--checkpoint", str(flipped), "--data-root", str(market_root), "--dataset", "market1501",
            "--device", "cpu", "--batch-size", "5", "--num-workers", "0", "--no-rerank"]
    assert main(get_args_parser().parse_args([*args, "--output", str(tmp_path / "a")]))["flip"] is True
    assert main(get_args_parser().parse_args([*args, "--no-flip", "--output", str(tmp_path / "b")]))["flip"] is False


def test_device_option_is_checked_with_a_one_line_error(monkeypatch):
    from reid_models.engine.evaluator import resolve_device
    from reid_models.runtime import DeviceError

    assert resolve_device("cpu") == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    for bad, words in (("cuda", "CUDA is not available"), ("tpu", "unknown device")):
        with pytest.raises(DeviceError) as excinfo:
            resolve_device(bad)
        message = str(excinfo.value)
        assert message.startswith("--device") and words in message and "\n" not in message


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])


@pytest.mark.slow
def test_truncated_query_jpeg_is_one_error_line_with_workers(market_root, tmp_path):
    """Issue 9: with DataLoader workers the error was an 18-line 'Caught ImageReadError in DataLoader worker
    process 0' traceback; now one line naming the file, exit 2, as with --num-workers 0."""
    import shutil
    import subprocess
    import sys

    from reid_models import create_model, save_checkpoint

    data = tmp_path / "data"
    shutil.copytree(market_root, data)
    query = sorted((data / "Market-1501-v15.09.15" / "query").glob("*.jpg"))[0]
    _truncate(query)
    ckpt = save_checkpoint(tmp_path / "bot.pt", create_model("bot_r50", num_classes=6, input_size=(64, 32)),
                           model_name="bot_r50", model_kwargs={"input_size": (64, 32)}, num_classes=6,
                           input_size=(64, 32))
    run = subprocess.run([sys.executable, "-m", "reid_models.evaluate", "--checkpoint", str(ckpt), "--data-root",
                          str(data), "--dataset", "market1501", "--device", "cpu", "--output", str(tmp_path / "eval")],
                         capture_output=True, text=True, cwd=REPO, timeout=300,
                         env={**os.environ, "CAMREID_TRACEBACK": "", "REID_TRACEBACK": ""})
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("query:")]  # tqdm's progress bar
    assert lines == [lines[-1]] and lines[-1].startswith(f"error: cannot decode image {query}"), run.stderr
    assert "Traceback" not in run.stderr and "DataLoader worker" not in run.stderr
