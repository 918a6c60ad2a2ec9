"""reid_models.cli and ``python -m reid_models``: one error line, exit 2 for the user's input, 1 for an internal
failure, 130 for Ctrl-C, the traceback switch, DataLoader worker errors unwrapped, and no import cycle."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch

from reid_models.__main__ import main
from reid_models.cli import run_cli, unwrap_worker_error
from reid_models.common import ImageReadError
from reid_models.config import ConfigError
from reid_models.data import ImageDataset

from .conftest import REPO


def _raiser(exc: BaseException):
    def fn(argv):
        raise exc
    return fn


@pytest.mark.parametrize("exc, code, line", [
    (ConfigError("bot.yaml: optimizer.lr: expected a number"), 2, "error: bot.yaml: optimizer.lr: expected a number"),
    (FileNotFoundError("checkpoint not found: x.pt"), 2, "error: checkpoint not found: x.pt"),
    (KeyError("unknown model 'resnet'"), 1, "error: KeyError: unknown model 'resnet' (set CAMREID_TRACEBACK=1"),
    (RuntimeError("CUDA error:\n  device-side assert"), 1,
     "error: RuntimeError: CUDA error: device-side assert (set CAMREID_TRACEBACK=1 for details)"),
    (KeyboardInterrupt(), 130, "error: interrupted"),
])
def test_run_cli_maps_errors_to_one_line_and_an_exit_code(exc, code, line, capsys, monkeypatch):
    for name in ("CAMREID_TRACEBACK", "REID_TRACEBACK", "PIPELINE_TRACEBACK"):
        monkeypatch.delenv(name, raising=False)
    assert run_cli(_raiser(exc), []) == code
    err = capsys.readouterr().err
    assert err.startswith(line) and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize("env", ["CAMREID_TRACEBACK", "REID_TRACEBACK", "PIPELINE_TRACEBACK"])
def test_traceback_switch_prints_the_stack_and_keeps_the_exit_code(env, capsys, monkeypatch):
    monkeypatch.setenv(env, "1")
    assert run_cli(_raiser(ValueError("bad value")), []) == 2
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().endswith("error: bad value")


def test_run_cli_returns_the_functions_exit_code():
    assert run_cli(lambda argv: None, []) == 0 and run_cli(lambda argv: 3, []) == 3
    assert run_cli(lambda argv: {"mAP": 1.0}, []) == 0


def test_dataloader_worker_error_is_unwrapped(tmp_path):
    """torch re-raises a worker's ImageReadError with the worker's whole traceback as its message."""
    bad = tmp_path / "0002_c1s1_000001_01.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    loader = torch.utils.data.DataLoader(ImageDataset([(str(bad), 0, 0)]), num_workers=1, collate_fn=list)
    with pytest.raises(ImageReadError) as excinfo:
        next(iter(loader))
    assert "DataLoader worker process 0" in str(excinfo.value) and "Traceback" in str(excinfo.value)
    plain = unwrap_worker_error(excinfo.value)
    assert isinstance(plain, ImageReadError) and "\n" not in str(plain)
    assert str(plain).startswith(f"cannot decode image {bad}") and "corrupt or truncated" in str(plain)
    other = ValueError("plain message")
    assert unwrap_worker_error(other) is other


def test_argument_errors_are_one_line_with_exit_2(capsys):
    with pytest.raises(SystemExit) as excinfo:
        main(["list", "--num-classes", "many"])
    assert excinfo.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: python -m reid_models list: argument --num-classes") and err.count("\n") == 1
    with pytest.raises(SystemExit) as excinfo:
        main(["fly"])
    assert excinfo.value.code == 2


def test_bad_device_and_unknown_model_exit_2_in_bench(capsys):
    assert main(["bench", "--models", "resnet", "--device", "cpu"]) == 2
    assert capsys.readouterr().err.startswith("error: unknown model 'resnet'; choose from bot_r50")
    assert main(["bench", "--device", "tpu"]) == 2
    assert capsys.readouterr().err.startswith("error: --device: unknown device 'tpu'")


def _imported_modules(path: Path, package_root: Path) -> set[str]:
    """Absolute dotted names a file imports (``from . import x`` counts as importing module ``pkg.x``)."""
    rel = path.relative_to(package_root.parent).with_suffix("")
    package = rel.parts[:-1]  # the package a relative import starts from (for __init__ too)
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = list(package[: len(package) - node.level + 1]) if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            found |= {module} | {f"{module}.{a.name}" for a in node.names}
    return found


def test_no_module_imports_a_command_module():
    """The engine and the library never import the commands (the old train <-> evaluate cycle)."""
    root = REPO / "reid_models"
    commands = {f"reid_models.{name}" for name in ("train", "evaluate", "export", "bench", "__main__")}
    offenders = {str(path.relative_to(root)): sorted(_imported_modules(path, root) & commands)
                 for path in root.rglob("*.py") if path.name != "__main__.py"}
    assert not {k: v for k, v in offenders.items() if v}
    assert {"reid_models.train", "reid_models.evaluate"} <= _imported_modules(root / "__main__.py", root)
