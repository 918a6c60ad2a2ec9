"""Convert torchreid and fast-reid checkpoints into ``reid_models`` checkpoints (``save_checkpoint`` format).

What maps (our zoo model <- their architecture):
- torchreid ``osnet_x1_0``, ``osnet_x0_75``, ``osnet_x0_5``, ``osnet_x0_25``, ``osnet_ibn_x1_0``,
  ``osnet_ain_x1_0`` / ``_x0_75`` / ``_x0_5`` / ``_x0_25`` -> the zoo model of the same name (same keys);
- torchreid ``resnet50`` -> ``resnet50``; ``resnet50_fc512`` -> ``resnet50`` (last_stride=1, fc_dim=512);
- fast-reid BoT-R50 (``configs/<dataset>/bagtricks_R50.yml``: ResNet50, last stride 1, global average
  pooling, BNNeck, no IBN / non-local) -> ``bot_r50``. The eval-mode embedding of both is the BNNeck output.
Refused, in one line naming the first differing keys: torchreid MobileNetV2 (its first inverted residual
keeps a 1x1 expansion conv that neither the pipeline's MobileNetV2 nor any zoo model has) and every other
fast-reid config (IBN, AGW/SBS with non-local blocks and GeM pooling, R101/S50/ResNeSt/... backbones).

A source is a file or, on a machine with internet, a name from ``KNOWN_WEIGHTS`` (torchreid's model zoo
files on the Hugging Face hub), downloaded under a short socket timeout into ``cache_dir()`` and checked
against its sha256 where one is recorded.
"""
from __future__ import annotations

import contextlib
import http.client
import os
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn as nn

from .checkpoint import save_checkpoint
from .common import file_sha256
from .registry import create_model
from .transforms import IMAGENET_MEAN, IMAGENET_STD

FRAMEWORKS = ("torchreid", "fastreid")
DOWNLOAD_TIMEOUT_S = 10.0
INPUT_SIZE = (256, 128)  # (H, W) every torchreid model-zoo file and fast-reid's BoT configs were trained at

HF_OSNET = "https://huggingface.co/kaiyangzhou/osnet/resolve/main/"
_MSMT_ALL = "_msmt17_combineall_256x128_amsgrad_ep150_stp60_lr0.0015_b64_fb10_softmax_labelsmooth_flip_jitter.pth"


class ConversionError(ValueError):
    """A source that cannot be converted; the message is one line naming the problem and the fix."""


@dataclass(frozen=True)
class KnownWeights:
    """A published checkpoint: the torchreid architecture, its URL and (where published) its sha256."""

    arch: str
    url: str
    sha256: str | None = None


#: Names accepted as SRC by ``python -m reid_models.convert --from torchreid NAME``.
KNOWN_WEIGHTS: dict[str, KnownWeights] = {
    **{f"{arch}_msmt17": KnownWeights(arch, f"{HF_OSNET}{arch}{_MSMT_ALL}")
       for arch in ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25")},
    "osnet_ain_x1_0_msmt17": KnownWeights(
        "osnet_ain_x1_0",
        f"{HF_OSNET}osnet_ain_x1_0_msmt17_256x128_amsgrad_ep50_lr0.0015_coslr_b64_fb10_softmax_labsmth_flip_jitter.pth",
        "8a07e8da38946f7cee37f4561617bf8b6d2fe8f3a4027852893ea092e46d919f"),
    **{f"{arch}_imagenet": KnownWeights(arch, f"{HF_OSNET}{arch}_imagenet.pth")
       for arch in ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25")},
}

_OSNET_ARCHS = ("osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0", "osnet_ain_x1_0",
                "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25")
_RESNET_RULES = (("conv1.", "backbone.conv1."), ("bn1.", "backbone.bn1."), ("layer1.", "backbone.layer1."),
                 ("layer2.", "backbone.layer2."), ("layer3.", "backbone.layer3."), ("layer4.", "backbone.layer4."),
                 ("fc.", "fc."), ("classifier.", "classifier."))
#: torchreid architecture -> (zoo model, model kwargs, (their prefix, our prefix) rules).
TORCHREID_ARCHS: dict[str, tuple[str, dict, tuple[tuple[str, str], ...]]] = {
    **{arch: (arch, {}, (("", ""),)) for arch in _OSNET_ARCHS},
    "resnet50": ("resnet50", {}, _RESNET_RULES),
    "resnet50_fc512": ("resnet50", {"last_stride": 1, "fc_dim": 512}, _RESNET_RULES),
}
_FASTREID_RULES = tuple((f"backbone.{p}", f"backbone.{p}") for p in ("conv1.", "bn1.", "layer1.", "layer2.",
                                                                        "layer3.", "layer4.")) + (
    ("heads.bottleneck.0.", "neck.bn."), ("heads.classifier.weight", "classifier.weight"),
    ("heads.weight", "classifier.weight"))
FASTREID_HINT = ("only fast-reid BoT-R50 maps (configs/<dataset>/bagtricks_R50.yml -> bot_r50); IBN, AGW/SBS "
                 "(non-local, GeM) and R101/S50/ResNeSt backbones have no matching zoo model")
MOBILENET_REFUSAL = ("torchreid's mobilenetv2 has no counterpart here: its first inverted residual keeps a 1x1 "
                     "expansion conv that the pipeline's MobileNetV2 and the reid_models zoo lack; convert an "
                     "OSNet or ResNet50 checkpoint instead")
_CLASSIFIER_KEYS = ("classifier.weight", "classifier.bias")


@dataclass(frozen=True)
class Conversion:
    """What ``convert`` wrote: the checkpoint path, our model name and kwargs, their architecture, sizes,
    the source file's sha256 and the RGB mean/std (0..1) the network expects."""

    path: Path
    model: str
    model_kwargs: dict
    source_arch: str
    num_classes: int
    embedding_dim: int
    input_size: tuple[int, int]
    sha256: str
    mean: tuple[float, ...]
    std: tuple[float, ...]


# ----------------------------------------------------------------------------- reading
def _numpy_safe_globals() -> list:
    """numpy scalar types torchreid's checkpoints pickle (e.g. its ``rank1``), allowed for weights-only loading."""
    import numpy as np

    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy < 2
        from numpy.core.multiarray import scalar
    dtypes = {type(np.dtype(t)) for t in ("float64", "float32", "int64", "int32")}
    # pickles written under numpy 1 name the scalar constructor numpy.core.multiarray.scalar
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *dtypes]


def read_torch_file(path: str | Path) -> object:
    """``torch.load`` on CPU, weights only (tensors, containers, numbers, numpy scalars); one-line errors."""
    path = Path(path)
    if not path.is_file():
        raise ConversionError(f"{path}: no such checkpoint file")
    try:
        allowed = getattr(torch.serialization, "safe_globals", None)  # torch >= 2.5
        with allowed(_numpy_safe_globals()) if allowed else contextlib.nullcontext():
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        first = " ".join(str(exc).split())[:160]
        raise ConversionError(f"{path} is not a torch checkpoint file (torch.load weights-only failed: "
                              f"{type(exc).__name__}: {first})") from None


def extract_state_dict(obj: object, source: str) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint: unwraps ``{'state_dict': ...}`` (torchreid) / ``{'model': ...}`` (fast-reid)
    and strips DataParallel's ``module.`` prefix."""
    for key in ("state_dict", "model"):
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        kind = type(obj).__name__ if not isinstance(obj, Mapping) else f"dict with keys {list(obj)[:5]}"
        raise ConversionError(f"{source} holds a {kind}, not a state dict (expected a dict of tensors, "
                              "optionally under 'state_dict' or 'model')")
    return {str(k).removeprefix("module."): v for k, v in obj.items()}


# ----------------------------------------------------------------------------- key mapping
def _translate(state: Mapping[str, torch.Tensor], rules: tuple[tuple[str, str], ...]
               ) -> tuple[dict[str, torch.Tensor], list[str]]:
    """Rename keys by the first matching (their prefix, our prefix) rule; returns (renamed, unmatched keys)."""
    mapped, unmatched = {}, []
    for key, value in state.items():
        for theirs, ours in rules:
            if key.startswith(theirs):
                mapped[ours + key[len(theirs):]] = value
                break
        else:
            unmatched.append(key)
    return mapped, unmatched


def _theirs(key: str, rules: tuple[tuple[str, str], ...]) -> str:
    """Our key in their naming (for error messages)."""
    for theirs, ours in rules:
        if key.startswith(ours):
            return theirs + key[len(ours):]
    return key


def _first(keys: list[str], n: int = 3) -> str:
    return ", ".join(keys[:n]) + (f" (+{len(keys) - n} more)" if len(keys) > n else "")


def fit_state_dict(model: nn.Module, state: Mapping[str, torch.Tensor], *, rules: tuple[tuple[str, str], ...],
                   source: str, what: str, hint: str = "", optional: tuple[str, ...] = _CLASSIFIER_KEYS) -> list[str]:
    """Load ``state`` (their naming) into ``model`` strictly through ``rules``; keys in ``optional`` may be absent.

    Raises ConversionError naming the first missing / unexpected / mis-shaped keys (in their naming).
    Returns the optional keys that were absent (left at the model's initialisation).
    """
    mapped, unexpected = _translate(state, rules)
    own = model.state_dict()
    unexpected += [_theirs(k, rules) for k in mapped if k not in own]
    missing = [k for k in own if k not in mapped and not k.endswith("num_batches_tracked")]
    absent = [k for k in missing if k in optional]
    missing = [_theirs(k, rules) for k in missing if k not in optional]
    shapes = [f"{_theirs(k, rules)} {tuple(mapped[k].shape)} vs {tuple(own[k].shape)}"
              for k in own if k in mapped and k not in absent and tuple(mapped[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        parts = [f"{len(lst)} {label}: {_first(lst)}" for lst, label in
                 ((missing, "missing keys"), (unexpected, "unexpected keys"), (shapes, "shape mismatches")) if lst]
        raise ConversionError(f"{source} does not match {what} ({'; '.join(parts)})" + (f"; {hint}" if hint else ""))
    model.load_state_dict({k: v for k, v in mapped.items() if k in own}, strict=False)
    return absent


# ----------------------------------------------------------------------------- architectures
def detect_torchreid_arch(state: Mapping[str, torch.Tensor], source: str) -> str:
    """torchreid architecture name from a state dict's keys and the stem width."""
    if "conv2.0.dwconv2.conv.weight" in state:
        raise ConversionError(f"{source}: {MOBILENET_REFUSAL}")
    if "layer1.0.conv1.weight" in state and "conv1.weight" in state:
        if "layer3.6.conv1.weight" in state or "layer1.0.conv3.weight" not in state:
            raise ConversionError(f"{source} is a torchreid ResNet other than ResNet50 (no matching zoo model); "
                                  "convert resnet50, resnet50_fc512 or an OSNet")
        return "resnet50_fc512" if "fc.0.weight" in state else "resnet50"
    stem = state.get("conv1.conv.weight")
    if stem is None or stem.ndim != 4 or "conv5.conv.weight" not in state:
        raise ConversionError(f"{source}: not a torchreid OSNet or ResNet50 state dict (first keys: "
                              f"{_first(list(state), 4)}); pass --model to name the architecture")
    width = {64: "x1_0", 48: "x0_75", 32: "x0_5", 16: "x0_25"}.get(int(stem.shape[0]))
    if width is None:
        raise ConversionError(f"{source}: OSNet stem with {stem.shape[0]} channels matches no width "
                              "(64, 48, 32, 16 = x1_0, x0_75, x0_5, x0_25)")
    if "conv2.0.conv2.0.layers.0.conv1.weight" in state:
        return f"osnet_ain_{width}"
    arch = f"osnet_ibn_{width}" if "conv2.0.IN.weight" in state else f"osnet_{width}"
    if arch not in TORCHREID_ARCHS:
        raise ConversionError(f"{source}: looks like {arch}, which torchreid does not define (IBN exists at x1_0 "
                              "only); pass --model to name the architecture")
    return arch


def _num_classes(state: Mapping[str, torch.Tensor], key: str) -> int:
    weight = state.get(key)
    return int(weight.shape[0]) if weight is not None and weight.ndim == 2 else 1


def _torchreid_model(state: dict[str, torch.Tensor], source: str, arch: str | None,
                     input_size: tuple[int, int]) -> tuple[nn.Module, str, dict, str, list[str]]:
    if arch is not None and arch.startswith("mobilenetv2"):
        raise ConversionError(f"{source}: {MOBILENET_REFUSAL}")
    if arch is not None and arch not in TORCHREID_ARCHS:
        raise ConversionError(f"unknown torchreid architecture {arch!r}; choose one of {', '.join(TORCHREID_ARCHS)}")
    hint = ("omit --model to detect the architecture from the keys" if arch is not None
            else "pass --model with the checkpoint's torchreid architecture")
    arch = arch or detect_torchreid_arch(state, source)
    name, kwargs, rules = TORCHREID_ARCHS[arch]
    model = create_model(name, num_classes=_num_classes(state, "classifier.weight"), input_size=input_size, **kwargs)
    absent = fit_state_dict(model, state, rules=rules, source=source, what=f"torchreid {arch}",
                            hint=hint)
    return model, name, kwargs, arch, absent


def _unit_scale(pixels: torch.Tensor | None, imagenet: tuple[float, ...]) -> tuple[float, ...]:
    """fast-reid's 0..255 pixel_mean/pixel_std buffer (1, 3, 1, 1) -> 0..1 per channel; ImageNet's exactly
    when it is ImageNet's up to float32 rounding (or absent)."""
    if pixels is None:
        return imagenet
    values = tuple(float(v) / 255 for v in pixels.flatten())
    return imagenet if all(abs(a - b) < 1e-6 for a, b in zip(values, imagenet)) else values


def _fastreid_model(state: dict[str, torch.Tensor], source: str, model_name: str | None,
                    input_size: tuple[int, int]) -> tuple[nn.Module, str, dict, str, list[str], tuple, tuple]:
    if model_name not in (None, "bot_r50"):
        raise ConversionError(f"fast-reid checkpoints convert to bot_r50 only, not {model_name!r}; {FASTREID_HINT}")
    state = dict(state)
    mean, std = state.pop("pixel_mean", None), state.pop("pixel_std", None)
    key = "heads.weight" if "heads.weight" in state else "heads.classifier.weight"
    model = create_model("bot_r50", num_classes=_num_classes(state, key), input_size=input_size, last_stride=1)
    absent = fit_state_dict(model, state, rules=_FASTREID_RULES, source=source, what="fast-reid BoT-R50 (bot_r50)",
                            hint=FASTREID_HINT, optional=("classifier.weight",))
    mean = _unit_scale(mean, IMAGENET_MEAN)
    std = _unit_scale(std, IMAGENET_STD)
    return model, "bot_r50", {"last_stride": 1}, "bagtricks_R50", absent, mean, std


# ----------------------------------------------------------------------------- downloads
def cache_dir() -> Path:
    """Where downloaded model-zoo files go: ``$REID_MODELS_CACHE`` or ``~/.cache/reid_models``."""
    return Path(os.environ.get("REID_MODELS_CACHE", Path.home() / ".cache" / "reid_models"))


def download_known(name: str, directory: str | Path | None = None) -> Path:
    """Fetch ``KNOWN_WEIGHTS[name]`` (cached), checking its sha256 where recorded; one-line errors, never hangs."""
    entry = KNOWN_WEIGHTS[name]
    target = Path(directory or cache_dir()) / entry.url.rsplit("/", 1)[-1]
    if not target.is_file():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(target.suffix + ".part")
        try:
            with urllib.request.urlopen(entry.url, timeout=DOWNLOAD_TIMEOUT_S) as response, open(partial, "wb") as f:
                for block in iter(lambda: response.read(1 << 20), b""):
                    f.write(block)
        except (OSError, http.client.HTTPException) as exc:  # DNS, refused, timeout, HTTP errors (URLError)
            partial.unlink(missing_ok=True)
            reason = " ".join(str(getattr(exc, "reason", exc)).split())
            raise ConversionError(f"cannot download {name} from {entry.url} ({type(exc).__name__}: {reason}); "
                                  "on a machine without internet fetch that file elsewhere and pass its path") from None
        partial.replace(target)
    if entry.sha256 is not None:
        digest = file_sha256(target)
        if digest != entry.sha256:
            raise ConversionError(f"{target} has sha256 {digest}, expected {entry.sha256} for {name}: "
                                  "delete the file and download again")
    return target


def resolve_source(src: str | Path) -> tuple[Path, str | None]:
    """(file, torchreid architecture or None) for a checkpoint path or a ``KNOWN_WEIGHTS`` name."""
    path = Path(str(src)).expanduser()
    if path.is_file():
        return path, None
    if str(src) in KNOWN_WEIGHTS:
        return download_known(str(src)), KNOWN_WEIGHTS[str(src)].arch
    what = "is a directory, not a checkpoint file" if path.exists() else "is neither a file nor a known model name"
    raise ConversionError(f"{src} {what}; known names: {', '.join(KNOWN_WEIGHTS)}")


# ----------------------------------------------------------------------------- entry points
def convert(framework: str, src: str | Path, out: str | Path, *, model: str | None = None,
            input_size: tuple[int, int] = INPUT_SIZE) -> Conversion:
    """Convert a torchreid / fast-reid checkpoint file (or known name) into a reid_models checkpoint at ``out``.

    model: torchreid architecture name (default: detected from the keys) or, for fast-reid, ``bot_r50``.
    Raises ConversionError (one line) for unknown frameworks, unreadable files and mismatched keys.
    """
    if framework not in FRAMEWORKS:
        raise ConversionError(f"unknown --from {framework!r}; choose one of {', '.join(FRAMEWORKS)}")
    if len(input_size) != 2 or min(input_size) < 32:
        raise ConversionError(f"input size must be two sizes >= 32 (H W), got {list(input_size)}")
    input_size = (int(input_size[0]), int(input_size[1]))
    if framework == "fastreid" and str(src) in KNOWN_WEIGHTS and not Path(src).exists():
        raise ConversionError(f"{src!r} is a torchreid model-zoo name; use --from torchreid")
    path, known_arch = resolve_source(src)
    source = str(path)
    state = extract_state_dict(read_torch_file(path), source)
    mean, std = IMAGENET_MEAN, IMAGENET_STD
    if framework == "torchreid":
        net, name, kwargs, arch, absent = _torchreid_model(state, source, model or known_arch, input_size)
    else:
        net, name, kwargs, arch, absent, mean, std = _fastreid_model(state, source, model, input_size)
    sha = file_sha256(path)
    extra: dict = {"converted_from": {"framework": framework, "architecture": arch, "source": source,
                                      "sha256": sha, "classifier_loaded": not absent}}
    if (tuple(mean), tuple(std)) != (tuple(IMAGENET_MEAN), tuple(IMAGENET_STD)):
        extra["config"] = {"input": {"size": list(input_size), "mean": list(mean), "std": list(std)}}
    num_classes = int(net.classifier.weight.shape[0])
    written = save_checkpoint(out, net, model_name=name, model_kwargs={"input_size": list(input_size), **kwargs},
                              num_classes=num_classes, input_size=input_size, **extra)
    return Conversion(path=written, model=name, model_kwargs=dict(kwargs), source_arch=arch, num_classes=num_classes,
                      embedding_dim=int(net.embedding_dim), input_size=input_size, sha256=sha, mean=tuple(mean),
                      std=tuple(std))


def load_backbone_weights(model: nn.Module, path: str | Path, *, arch: str) -> None:
    """Load a torchreid state dict file of ``arch`` into a zoo model, classifier excluded (ImageNet init)."""
    source = str(path)
    state = extract_state_dict(read_torch_file(path), source)
    state = {k: v for k, v in state.items() if not k.startswith("classifier.")}
    _, _, rules = TORCHREID_ARCHS[arch]
    fit_state_dict(model, state, rules=rules, source=source, what=f"torchreid {arch}")
