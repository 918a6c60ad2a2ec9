"""Real small or read-only file systems for fault tests: a tmpfs mounted on a folder.

Mounting needs root (and a container that allows it); tests using these skip with the reason
otherwise. As root, permission bits do not stop writes, so a read-only *mount* is the only real
read-only file for root; other users get ``chmod`` instead (see :func:`read_only_folder`).
"""
from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


def _mount(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["mount", *args], capture_output=True, text=True)


@contextlib.contextmanager
def tiny_fs(folder: Path, size_kb: int) -> Iterator[Path]:
    """``folder`` as a fresh tmpfs of ``size_kb`` KiB (a disk that fills up); unmounted afterwards."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    proc = _mount("-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs", str(folder))
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")
    try:
        yield folder
    finally:
        if subprocess.run(["umount", str(folder)], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)


@contextlib.contextmanager
def read_only_folder(folder: Path, fill=lambda folder: None) -> Iterator[Path]:
    """``folder`` filled by ``fill(folder)`` and then made read-only: a read-only tmpfs for root,
    ``chmod a-w`` (folder and files) for other users. Restored/unmounted afterwards."""
    if os.geteuid() == 0:
        with tiny_fs(folder, 4096):
            fill(folder)
            proc = _mount("-o", "remount,ro", str(folder))
            if proc.returncode != 0:
                pytest.skip(f"cannot remount the tmpfs read-only: {proc.stderr.strip()}")
            yield folder
        return
    folder.mkdir(parents=True, exist_ok=True)
    fill(folder)
    paths = [*folder.rglob("*"), folder]
    for p in paths:
        p.chmod(0o555 if p.is_dir() else 0o444)
    try:
        yield folder
    finally:
        for p in paths:
            p.chmod(0o755 if p.is_dir() else 0o644)
