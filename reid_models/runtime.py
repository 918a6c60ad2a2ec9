"""Shared runtime of every network (re-ID training/evaluation, the pipeline's detector and embedder):
the compute device and the autocast (AMP) dtype, each chosen and checked once, here."""
from __future__ import annotations


class DeviceError(ValueError):
    """The requested device is unknown or not present on this machine."""


def resolve_device(device: object = "auto") -> str:
    """Checked device name: 'auto' | None -> 'cuda:0' when CUDA is available else 'cpu'.

    Accepts 'cpu', 'mps', 'cuda', 'cuda:N', a bare index N (-> 'cuda:N') or a ``torch.device``.
    'cuda' -> 'cuda:0'. A CUDA device that is not present raises :class:`DeviceError`.
    """
    import torch

    dev = "auto" if device is None else str(device).strip().lower()
    if dev == "auto":
        return "cuda:0" if torch.cuda.is_available() else "cpu"
    if dev.isdigit():
        dev = f"cuda:{dev}"
    if dev == "cuda":
        dev = "cuda:0"
    if dev.startswith("cuda:") and dev[5:].isdigit():
        if not torch.cuda.is_available():
            raise DeviceError(f"device {device!r} requested but CUDA is not available (no CUDA GPU is visible): "
                              f"use device 'cpu' or 'auto'")
        if int(dev[5:]) >= torch.cuda.device_count():
            raise DeviceError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) present")
        return dev
    if dev in ("cpu", "mps"):
        return dev
    raise DeviceError(f"unknown device {device!r}: use 'auto', 'cpu', 'cuda' or 'cuda:N'")


def resolve_amp(name: str, device):
    """Autocast dtype for ``name`` in off|auto|fp16|bf16 on a ``torch.device``: ``auto`` = bf16 on CUDA
    GPUs with native bf16 (Ampere or newer), else fp16 on CUDA (pre-Ampere GPUs such as V100/T4 only
    emulate bf16, far slower); None (no autocast) on CPU or with ``off``."""
    import torch

    if device.type != "cuda" or name == "off":
        return None
    if name == "auto":
        return torch.bfloat16 if torch.cuda.is_bf16_supported(including_emulation=False) else torch.float16
    return {"bf16": torch.bfloat16, "fp16": torch.float16}[name]
