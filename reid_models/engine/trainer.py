"""The re-ID training engine (torchvision-references style): the flat loop ``main(args)``, the
optimizer and lr schedule, resume and ``--init``, and the model/criterion built from a recipe.

``main`` takes the parsed arguments of ``python -m reid_models train`` (see reid_models/train.py
for them). Every epoch writes ``last.pt`` (model, optimizer, scheduler, scaler, epoch, RNG states:
``--resume`` continues with the augmentation an uninterrupted run would draw) and, after
each evaluation, ``best.pt`` (highest mAP without re-ranking), ``metrics.json``, ``cmc.png`` and
``ranked_results.png``; ``log.jsonl`` has one line per epoch. On CUDA: autocast (bf16, or fp16
with a GradScaler) and channels_last. Bad input raises an error of the ValueError family
(ConfigError, DatasetLayoutError, CheckpointError, UserError ...), never SystemExit.
"""
from __future__ import annotations

import argparse
import bisect
import json
import math
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from ..checkpoint import CheckpointError, read_checkpoint, save_checkpoint
from ..common import UserError, one_line
from ..config import ConfigError, TrainConfig, config_from_dict, config_to_dict, load_config, override
from ..output import ReIDOutput
from ..registry import create_model
from ..runtime import resolve_amp
from .evaluator import evaluate, format_metrics, resolve_device

__all__ = ["LRFactor", "build_loss_optimizer", "build_model", "build_optimizer", "build_scheduler", "epoch_seed",
           "feature_dims", "init_weights", "load_dataset", "main", "model_kwargs_for", "param_groups",
           "restore_rng_state", "restore_scheduler", "rng_state", "train_one_epoch"]


class LRFactor:
    """Per-epoch lr multiplier: linear warm-up, then step decay or cosine annealing.

    Called with the 0-based epoch index; picklable (LambdaLR stores it in its state dict).
    """

    def __init__(self, epochs: int, warmup_epochs: int, warmup_factor: float, kind: str,
                 milestones: tuple[int, ...], gamma: float, min_factor: float) -> None:
        self.epochs, self.warmup_epochs, self.warmup_factor = epochs, warmup_epochs, warmup_factor
        self.kind, self.milestones, self.gamma, self.min_factor = kind, sorted(milestones), gamma, min_factor

    def __call__(self, epoch: int) -> float:
        if epoch < self.warmup_epochs:
            return self.warmup_factor + (1.0 - self.warmup_factor) * epoch / self.warmup_epochs
        if self.kind == "cosine":
            span = max(1, self.epochs - self.warmup_epochs)
            t = min(1.0, (epoch - self.warmup_epochs) / span)
            return self.min_factor + (1.0 - self.min_factor) * 0.5 * (1.0 + math.cos(math.pi * t))
        return self.gamma ** bisect.bisect_right(self.milestones, epoch)


def param_groups(model: nn.Module, cfg: TrainConfig) -> list[dict[str, Any]]:
    """The optimizer's parameter groups, each ``{"name", "params", "lr", "weight_decay"}``.

    A parameter's group is (backbone?, bias?, no decay?): ``backbone.*`` parameters get
    ``lr * backbone_lr_factor`` (split off only when the factor is not 1), biases ``lr * bias_lr_factor``,
    and with ``no_decay_norm_bias`` every 1-d parameter (norms, biases, GeM p) gets no weight decay.
    Head weights come first (``param_groups[0]["lr"]`` is the base lr); with the default optimizer
    settings the groups are (weights, biases) as in checkpoints of earlier versions.
    """
    opt = cfg.optimizer
    split_backbone = opt.backbone_lr_factor != 1.0
    if split_backbone and not isinstance(getattr(model, "backbone", None), nn.Module):
        raise ConfigError(f"optimizer.backbone_lr_factor: {cfg.model.name} has no 'backbone' submodule to train "
                          f"at {opt.backbone_lr_factor} x lr; leave the factor at 1.0 for this model")
    groups: dict[tuple[bool, bool, bool], list[nn.Parameter]] = {}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        key = (split_backbone and name.startswith("backbone."), name.endswith(".bias"),
               opt.no_decay_norm_bias and param.ndim <= 1)
        groups.setdefault(key, []).append(param)
    out = []
    for (backbone, bias, no_decay), params in sorted(groups.items()):
        lr = opt.lr * (opt.backbone_lr_factor if backbone else 1.0) * (opt.bias_lr_factor if bias else 1.0)
        name = "_".join(["backbone" if backbone else "head"] * split_backbone + ["biases" if bias else "weights"]
                        + ["no_decay"] * no_decay)
        out.append({"name": name, "params": params, "lr": lr, "weight_decay": 0.0 if no_decay else opt.weight_decay})
    return out


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD/Adam/AdamW over the model's :func:`param_groups` (per-group lr and weight decay)."""
    opt = cfg.optimizer
    groups = param_groups(model, cfg)
    if opt.name == "sgd":
        return torch.optim.SGD(groups, lr=opt.lr, momentum=opt.momentum, weight_decay=opt.weight_decay)
    if opt.name == "adam":
        return torch.optim.Adam(groups, lr=opt.lr, weight_decay=opt.weight_decay)
    return torch.optim.AdamW(groups, lr=opt.lr, weight_decay=opt.weight_decay)


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """LambdaLR with :class:`LRFactor`, stepped once per epoch."""
    s = cfg.schedule
    factor = LRFactor(s.epochs, s.warmup_epochs, s.warmup_factor, s.type, s.milestones, s.gamma,
                      s.min_lr / cfg.optimizer.lr)
    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def restore_scheduler(scheduler: torch.optim.lr_scheduler.LambdaLR, state: dict) -> None:
    """Load a checkpoint's scheduler position (epoch, base lrs) but keep this run's :class:`LRFactor`.

    LambdaLR.load_state_dict would also overwrite the factor's settings with the saved ones, so a
    resume with a changed schedule (e.g. ``--epochs 200`` to extend a cosine run) would silently
    keep the old one while the loop runs to the new epoch count.
    """
    scheduler.load_state_dict({**state, "lr_lambdas": [None] * len(scheduler.lr_lambdas)})


def build_loss_optimizer(criterion: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer | None:
    """Own SGD optimizer for the loss's parameters (CenterLoss centres) at ``loss.center.lr``.

    The criterion already scales the centres' gradient by 1 / center weight (BoT), so the
    centres move at that lr whatever the weight.
    """
    params = [p for p in criterion.parameters() if p.requires_grad] if isinstance(criterion, nn.Module) else []
    if not params:
        return None
    lr = cfg.loss.center.lr if cfg.loss.center is not None else cfg.optimizer.lr
    return torch.optim.SGD(params, lr=lr)


def rng_state() -> dict[str, Any]:
    """The python, numpy, torch (and CUDA) global RNG states: what the augmentation of the main
    process (``--num-workers 0``), dropout and drop-path draw from. Saved in ``last.pt``."""
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    """Put back the states of :func:`rng_state` (CUDA's when saved and the same GPU count is here)."""
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda is not None and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)


def epoch_seed(seed: int, epoch: int) -> int:
    """Seed of epoch ``epoch``'s data-loader workers (their augmentation), from (seed, epoch) alone,
    so a resumed run's workers draw what those of an uninterrupted run draw."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint64)[0] >> 1)


def _as_float(out: ReIDOutput) -> ReIDOutput:
    """Losses run in fp32 even when the network ran under autocast (ArcFace scale 135 overflows fp16)."""
    return ReIDOutput(embedding=out.embedding.float(), features=[f.float() for f in out.features],
                      logits=[z.float() for z in out.logits], aux={k: v.float() for k, v in out.aux.items()})


def train_one_epoch(model: nn.Module, criterion, optimizer: torch.optim.Optimizer, loader, device: torch.device,
                    epoch: int, *, loss_optimizer: torch.optim.Optimizer | None = None,
                    scaler: torch.amp.GradScaler | None = None, amp_dtype: torch.dtype | None = None,
                    channels_last: bool = False, max_iters: int | None = None) -> dict[str, float]:
    """One pass over ``loader`` (at most ``max_iters`` batches) with batches
    ``(images (B,3,H,W), pids (B,), camids, paths)``; ``criterion(out, pids) -> (loss, {name: value})``.
    ``loss_optimizer`` steps the loss's own parameters (center-loss centres).
    Returns the epoch mean of ``loss`` and of every loss term.
    """
    model.train()
    if isinstance(criterion, nn.Module):
        criterion.train()
    total = min(len(loader), max_iters) if max_iters else len(loader)
    sums: dict[str, float] = {}
    steps = 0
    bar = tqdm(loader, total=total, desc=f"epoch {epoch + 1}", dynamic_ncols=True, leave=False)
    for images, pids, _camids, _paths in bar:
        if steps >= total:
            break
        images, pids = images.to(device, non_blocking=True), pids.to(device, non_blocking=True)
        if channels_last:
            images = images.contiguous(memory_format=torch.channels_last)
        with torch.autocast(device.type, dtype=amp_dtype or torch.float32, enabled=amp_dtype is not None):
            out = model(images)
        loss, parts = criterion(_as_float(out), pids)
        if not torch.isfinite(loss):
            raise RuntimeError(f"loss is {loss.item()} at epoch {epoch + 1} step {steps + 1} "
                               f"({ {k: float(v) for k, v in parts.items()} }); lower optimizer.lr or check the data")
        optimizer.zero_grad(set_to_none=True)
        if loss_optimizer is not None:
            loss_optimizer.zero_grad(set_to_none=True)
        if scaler is not None:
            scaler.scale(loss).backward()
            if loss_optimizer is not None:
                scaler.step(loss_optimizer)
            scaler.step(optimizer)
            scaler.update()
        else:
            loss.backward()
            if loss_optimizer is not None:
                loss_optimizer.step()
            optimizer.step()
        steps += 1
        values = {"loss": float(loss.detach()), **{k: float(v) for k, v in parts.items()}}
        for k, v in values.items():
            sums[k] = sums.get(k, 0.0) + v
        bar.set_postfix(loss=f"{sums['loss'] / steps:.4f}", lr=f"{optimizer.param_groups[0]['lr']:.2e}")
    bar.close()
    if steps == 0:
        raise RuntimeError("the train loader yielded no batch: too few identities with enough images "
                           "for one P x K batch; lower --batch-size or sampler.num_instances")
    return {k: v / steps for k, v in sums.items()}


def _pretrained_arg(value: str) -> str | bool | None:
    """``none`` -> None, ``download`` -> True (torchvision download), else a local file path."""
    if value.lower() == "none":
        return None
    if value.lower() == "download":
        return True
    if not Path(value).is_file():
        raise UserError(f"--pretrained file not found: {value} (pass the ImageNet .pth, 'download' or 'none')")
    return value


def _apply_overrides(cfg: TrainConfig, args: argparse.Namespace) -> TrainConfig:
    """CLI flags override the recipe (same validation as the YAML)."""
    data = config_to_dict(cfg)
    if args.epochs is not None:
        data["schedule"]["epochs"] = args.epochs
        data["schedule"]["warmup_epochs"] = min(cfg.schedule.warmup_epochs, max(0, args.epochs - 1))
    if args.eval_every is not None:
        data["eval"]["every"] = args.eval_every
    if args.batch_size is not None:
        data["sampler"]["batch_size"] = args.batch_size
    if args.input_size is not None:
        data["input"]["size"] = list(args.input_size)
    if getattr(args, "num_instances", None) is not None:
        data["sampler"]["num_instances"] = args.num_instances
    return override(config_from_dict(data, source="command line overrides"), getattr(args, "set", None) or [])


def _load_recipe(args: argparse.Namespace, resume_ckpt: dict | None) -> TrainConfig:
    if args.config is not None:
        return load_config(args.config)
    if resume_ckpt is not None and resume_ckpt.get("config"):
        return config_from_dict(resume_ckpt["config"], source=f"{args.resume} (config)")
    raise ConfigError("--config is required (e.g. --config configs/reid/bot_r50.yaml)")


def load_dataset(args: argparse.Namespace):
    """(ReIDDataset, reader options) of ``--dataset`` at ``--data-root`` with the ``--dataset-option``
    KEY=VALUE items (e.g. MSMT17's ``include_val=true``); a bad option is a one-line ValueError."""
    from ..datasets import build_dataset, parse_dataset_options

    options = parse_dataset_options(getattr(args, "dataset_option", None) or [])
    return build_dataset(args.dataset, args.data_root, **options), options


def main(args: argparse.Namespace) -> dict[str, Any]:
    from .. import data
    from ..losses import build_criterion
    from ..transforms import build_test_transforms, build_train_transforms

    resume = read_checkpoint(args.resume) if args.resume else None
    cfg = _apply_overrides(_load_recipe(args, resume), args)
    rerank = cfg.eval.rerank if args.rerank is None else args.rerank
    device = resolve_device(args.device)
    amp_dtype = resolve_amp(args.amp, device)
    channels_last = device.type == "cuda"
    random.seed(cfg.seed)
    np.random.seed(cfg.seed)
    torch.manual_seed(cfg.seed)

    dataset, dataset_options = load_dataset(args)
    if not dataset.train:
        raise UserError(f"{args.dataset} has no training split (test-only dataset); train on e.g. "
                         f"market1501 and evaluate with python -m reid_models.evaluate --dataset {args.dataset}")
    num_classes = dataset.num_train_pids
    stem = Path(args.config).stem if args.config else cfg.model.name
    out_dir = Path(args.output) if args.output else Path("runs") / "reid" / f"{stem}-{args.dataset}"
    out_dir.mkdir(parents=True, exist_ok=True)

    model_kwargs = model_kwargs_for(cfg)
    pretrained = None if resume is not None or args.init else _pretrained_arg(args.pretrained)
    model = build_model(cfg, num_classes, pretrained)
    if args.init:
        init_weights(model, args.init)
    model.to(device)
    if channels_last:
        model.to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg.loss, num_classes=num_classes, feat_dim=feature_dims(model, cfg))
    criterion.to(device)
    optimizer = build_optimizer(model, cfg)
    scheduler = build_scheduler(optimizer, cfg)
    loss_optimizer = build_loss_optimizer(criterion, cfg)
    scaler = torch.amp.GradScaler("cuda") if amp_dtype == torch.float16 else None

    start_epoch, best_map = 0, -1.0
    if resume is not None:
        if resume["model"] != cfg.model.name or resume["num_classes"] != num_classes:
            raise CheckpointError(f"{args.resume} is a {resume['model']} with {resume['num_classes']} classes; "
                             f"this run is {cfg.model.name} on {args.dataset} with {num_classes} identities")
        model.load_state_dict(resume["state_dict"])
        try:
            optimizer.load_state_dict(resume["optimizer"])
        except ValueError as exc:  # another grouping: backbone_lr_factor / no_decay_norm_bias changed
            raise CheckpointError(f"{args.resume}: its optimizer state does not fit this recipe's parameter groups "
                                  f"({one_line(exc)}); resume with the checkpoint's optimizer settings") from None
        restore_scheduler(scheduler, resume["scheduler"])
        if resume.get("criterion"):
            criterion.load_state_dict(resume["criterion"])
        if loss_optimizer is not None and resume.get("loss_optimizer"):
            loss_optimizer.load_state_dict(resume["loss_optimizer"])
        if scaler is not None and resume.get("scaler"):
            scaler.load_state_dict(resume["scaler"])
        start_epoch, best_map = int(resume["epoch"]), float(resume.get("best_map", -1.0))
        print(f"resumed from {args.resume} after epoch {start_epoch}")

    pin = device.type == "cuda"
    train_loader = data.build_train_loader(dataset, build_train_transforms(cfg.input, cfg.augment),
                                           batch_size=cfg.sampler.batch_size, num_instances=cfg.sampler.num_instances,
                                           num_workers=args.num_workers, seed=cfg.seed, pin_memory=pin)
    query_loader, gallery_loader = data.build_test_loaders(dataset, build_test_transforms(cfg.input),
                                                           cfg.eval.batch_size, args.num_workers, pin_memory=pin)
    print(f"{cfg.model.name}: {sum(p.numel() for p in model.parameters()) / 1e6:.2f} M params, "
          f"{num_classes} train ids, {len(dataset.train)} train images, device {device}"
          f"{', autocast ' + str(amp_dtype).split('.')[-1] if amp_dtype else ''}; output {out_dir}")

    save_kw = dict(model_name=cfg.model.name, model_kwargs=model_kwargs, num_classes=num_classes,
                   input_size=cfg.input.size, config=config_to_dict(cfg), dataset=args.dataset,
                   dataset_options=dataset_options)
    result: dict[str, Any] = {}
    if resume is not None and resume.get("rng_state"):
        restore_rng_state(resume["rng_state"])  # the augmentation draws where the interrupted run stopped
    for epoch in range(start_epoch, cfg.schedule.epochs):
        start = time.time()
        if hasattr(train_loader.sampler, "set_epoch"):
            train_loader.sampler.set_epoch(epoch)
        train_loader.generator.manual_seed(epoch_seed(cfg.seed, epoch))  # this epoch's worker seeds
        lr = optimizer.param_groups[0]["lr"]
        stats = train_one_epoch(model, criterion, optimizer, train_loader, device, epoch,
                                loss_optimizer=loss_optimizer, scaler=scaler, amp_dtype=amp_dtype,
                                channels_last=channels_last, max_iters=args.max_iters)
        scheduler.step()
        log: dict[str, Any] = {"epoch": epoch + 1, "lr": lr, "time_s": round(time.time() - start, 2), **stats}
        print(f"epoch {epoch + 1}/{cfg.schedule.epochs} " + " ".join(f"{k} {v:.4g}" for k, v in stats.items())
              + f" lr {lr:.2e} ({log['time_s']:.0f} s)")
        if (epoch + 1) % cfg.eval.every == 0 or epoch + 1 == cfg.schedule.epochs:
            result = evaluate(model, query_loader, gallery_loader, device, output_dir=out_dir, rerank=rerank,
                              flip=cfg.eval.flip, amp_dtype=amp_dtype, channels_last=channels_last,
                              info={"model": cfg.model.name, "dataset": args.dataset, "epoch": epoch + 1})
            print(format_metrics(result))
            log["metrics"] = result["without_rerank"]
            if result["without_rerank"]["mAP"] > best_map:
                best_map = result["without_rerank"]["mAP"]
                save_checkpoint(out_dir / "best.pt", model, **save_kw, epoch=epoch + 1, metrics=result,
                                best_map=best_map)
        save_checkpoint(out_dir / "last.pt", model, **save_kw, epoch=epoch + 1, best_map=best_map,
                        metrics=result or None, optimizer=optimizer.state_dict(), scheduler=scheduler.state_dict(),
                        scaler=scaler.state_dict() if scaler is not None else None,
                        loss_optimizer=loss_optimizer.state_dict() if loss_optimizer is not None else None,
                        criterion=criterion.state_dict(), rng_state=rng_state())
        with open(out_dir / "log.jsonl", "a") as fh:
            fh.write(json.dumps(log) + "\n")
    best = f" (best mAP {best_map:.2f}, {out_dir / 'best.pt'})" if best_map >= 0 else ""
    print(f"done: {out_dir / 'last.pt'}{best}")
    return result


def init_weights(model: nn.Module, path: str | Path) -> None:
    """Load a checkpoint's weights into ``model`` where names and shapes match; print what stays fresh."""
    state = read_checkpoint(path)["state_dict"]
    own = model.state_dict()
    usable = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not usable:
        raise ValueError(f"--init {path}: no weight matches this network (a checkpoint of another model?)")
    model.load_state_dict(usable, strict=False)
    fresh = [k for k in own if k not in usable]
    print(f"initialised from {path}: {len(usable)}/{len(own)} tensors"
          + (f"; fresh: {', '.join(fresh[:6])}{' ...' if len(fresh) > 6 else ''}" if fresh else ""))


def model_kwargs_for(cfg: TrainConfig) -> dict[str, Any]:
    """``model.kwargs`` plus the recipe's ``input_size`` (every factory takes it; kept in checkpoints)."""
    return {"input_size": tuple(cfg.input.size), **cfg.model.kwargs}


def build_model(cfg: TrainConfig, num_classes: int, pretrained: str | bool | None) -> nn.Module:
    """``create_model`` from the recipe; a wrong ``model.kwargs`` key is a ConfigError."""
    try:
        return create_model(cfg.model.name, num_classes=num_classes, pretrained=pretrained, **model_kwargs_for(cfg))
    except KeyError as exc:
        raise ConfigError(f"model.name: {exc.args[0]}") from None
    except TypeError as exc:
        if "argument" not in str(exc):
            raise
        raise ConfigError(f"model.kwargs: {cfg.model.name}: {exc}") from None
    except RuntimeError as exc:  # ImageNet weights not downloadable (offline): one line, say which flag
        if pretrained is not True or "download" not in str(exc):
            raise
        raise UserError(f"{one_line(exc)} (here: --pretrained /path/to/that/file.pth, or --pretrained none)") from None


def feature_dims(model: nn.Module, cfg: TrainConfig) -> list[int]:
    """Sizes of the model's train-mode ``ReIDOutput.features`` (center loss needs them).

    One no-grad forward of a (2, 3, H, W) dummy; BatchNorm momentum is set to 0 meanwhile so
    the running statistics (e.g. ImageNet's) are left untouched.
    """
    device = next(model.parameters()).device
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    was_training = model.training
    try:
        for m in norms:
            m.momentum = 0.0
        model.train()
        with torch.no_grad():
            out = model(torch.zeros(2, 3, *cfg.input.size, device=device).normal_())
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum
        model.train(was_training)
    return [int(f.shape[1]) for f in out.features]


