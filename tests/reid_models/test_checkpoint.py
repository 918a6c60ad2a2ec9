"""Checkpoint helpers: the normalisation a checkpoint was trained with travels with it, and a file that is
not a checkpoint is one clear error (exit 2) in every command."""
import pytest
import torch

from reid_models.__main__ import main
from reid_models.checkpoint import CheckpointError, load_model, normalization, read_checkpoint
from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD

from .conftest import train_args


def test_normalization_comes_from_the_recipe_stored_in_the_checkpoint():
    info = {"config": {"input": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]}}}
    assert normalization(info) == ((0.5, 0.5, 0.5), (0.25, 0.25, 0.25))


def test_normalization_defaults_to_imagenet_without_a_recipe():
    assert normalization({}) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))
    assert normalization({"config": None}) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))


def test_normalization_without_a_recipe_is_the_models_registered_one(monkeypatch):
    import reid_models.registry as registry

    info = registry.get_model_info("bot_r50")
    monkeypatch.setitem(registry._INFO, "bot_r50", registry.ModelInfo("bot_r50", mean=(0.5,) * 3, std=(0.2,) * 3))
    assert normalization({"model": "bot_r50"}) == ((0.5,) * 3, (0.2,) * 3)
    monkeypatch.setitem(registry._INFO, "bot_r50", info)
    assert normalization({"model": "bot_r50"}) == (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD))


# ----------------------------------------------------------------------------- foreign files (issue 9)
GOOD_KEYS = {"model": "bot_r50", "model_kwargs": {}, "num_classes": 3, "input_size": [64, 32], "state_dict": {}}
FOREIGN = {
    "int": 3,
    "list": [1, 2, 3],
    "tensor": torch.zeros(2),
    "missing_keys": {"model": "bot_r50", "weights": {}},
    "wrong_type": {**GOOD_KEYS, "num_classes": "three"},
    "state_dict_of_another_net": {**GOOD_KEYS, "state_dict": {"fc.weight": torch.zeros(2, 2)}},
}


def _write(tmp_path, kind: str):
    path = tmp_path / f"{kind}.pt"
    if kind == "text":
        path.write_text("not a torch file\n")
    elif kind == "truncated":
        torch.save(GOOD_KEYS, path)
        path.write_bytes(path.read_bytes()[:40])
    else:
        torch.save(FOREIGN[kind], path)
    return path


@pytest.mark.parametrize("kind", [*FOREIGN, "text", "truncated"])
def test_a_foreign_file_is_not_a_checkpoint(tmp_path, kind):
    """torch.save(3, 'int.pt') used to raise TypeError; every such file is one CheckpointError (a ValueError)."""
    path = _write(tmp_path, kind)
    with pytest.raises(CheckpointError) as excinfo:
        load_model(path)
    message = str(excinfo.value)
    assert message.startswith(str(path)) and "\n" not in message
    assert "is not a reid_models checkpoint" in message or "cannot rebuild" in message
    if kind != "state_dict_of_another_net":
        with pytest.raises(CheckpointError, match="is not a reid_models checkpoint"):
            read_checkpoint(path)


@pytest.mark.parametrize("command", ["evaluate", "export", "train --resume", "train --init"])
def test_every_command_rejects_a_foreign_checkpoint_with_exit_2(command, tmp_path, market_root, capsys):
    path = _write(tmp_path, "int")
    if command == "evaluate":
        argv = ["evaluate", "--checkpoint", str(path), "--data-root", str(market_root), "--dataset", "market1501",
                "--device", "cpu", "--num-workers", "0"]
    elif command == "export":
        argv = ["export", "--checkpoint", str(path), "--output", str(tmp_path / "out" / "m.onnx")]
    else:
        argv = ["train", *train_args(market_root, tmp_path / "run"), command.split()[1], str(path)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {path} is not a reid_models checkpoint: it holds a int") and err.count("\n") == 1
    assert not (tmp_path / "out").exists()
