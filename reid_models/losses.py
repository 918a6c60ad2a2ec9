"""Re-ID training losses, and ``build_criterion`` that combines them from the YAML ``loss`` section.

Every loss acts on fields of :class:`reid_models.output.ReIDOutput`:

* classification (one of ``ce`` / ``arcface`` / ``circle``): on each tensor of ``out.logits``
  (B, num_classes), averaged over the list (PCB parts, MFA branches). ``arcface`` and ``circle``
  expect cosine logits in [-1, 1] (from a cosine classifier) and apply margin and scale here.
* ``triplet`` and ``center``: on each tensor of ``out.features`` (B, d_i), averaged over the list.
* ``gla`` (MFA only): on ``out.aux["branch_features"]`` (B, n, d) and ``out.aux["stripe_features"]``
  (B, n, d).

The loss section (``ce``, ``arcface``, ``circle``, ``triplet``, ``center``, ``gla``, each optional) and
every option's default are the term dataclasses of :class:`reid_models.config.LossConfig`.
"""
from __future__ import annotations

import dataclasses
import math
import typing
from collections.abc import Mapping, Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .config import CLASSIFICATION_LOSSES, LossConfig, build_section
from .output import ReIDOutput

BRANCH_KEY = "branch_features"
STRIPE_KEY = "stripe_features"


def _smoothed_ce(logits: torch.Tensor, targets: torch.Tensor, epsilon: float) -> torch.Tensor:
    """Cross-entropy against (1 - eps) * one_hot + eps / C. logits (B, C) -> scalar (batch mean)."""
    log_probs = F.log_softmax(logits.float(), dim=1)
    nll = -log_probs.gather(1, targets[:, None]).squeeze(1)
    if epsilon == 0.0:
        return nll.mean()
    return ((1.0 - epsilon) * nll - epsilon * log_probs.mean(1)).mean()


class CrossEntropyLabelSmooth(nn.Module):
    """Softmax cross-entropy with label smoothing (Szegedy et al. 2016), as in BoT/torchreid.

    logits (B, C) raw scores, targets (B,) long in [0, C) -> scalar.
    """

    def __init__(self, num_classes: int, epsilon: float = 0.1):
        super().__init__()
        if not 0.0 <= epsilon < 1.0:
            raise ValueError(f"label_smooth must be in [0, 1), got {epsilon}")
        self.num_classes, self.epsilon = num_classes, float(epsilon)

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return _smoothed_ce(logits, targets, self.epsilon)


class ArcFaceLoss(nn.Module):
    """Additive angular margin softmax (ArcFace, Deng et al. CVPR 2019) on cosine logits.

    The target class cosine cos(theta) becomes cos(theta + m); all logits are multiplied by s,
    then (label-smoothed) cross-entropy. Where theta + m would pass pi, the usual monotone
    fallback cos(theta) - m * sin(m) is used (insightface's ``th``/``mm`` trick).
    cosines (B, C) in [-1, 1], targets (B,) -> scalar.
    """

    def __init__(self, num_classes: int, margin: float = 0.5, scale: float = 64.0, label_smooth: float = 0.0):
        super().__init__()
        self.num_classes, self.margin, self.scale, self.label_smooth = num_classes, margin, scale, label_smooth
        self._cos_m, self._sin_m = math.cos(margin), math.sin(margin)
        self._threshold = math.cos(math.pi - margin)
        self._fallback = math.sin(math.pi - margin) * margin

    def forward(self, cosines: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cos = cosines.float().clamp(-1.0 + 1e-7, 1.0 - 1e-7)
        target_cos = cos.gather(1, targets[:, None])
        sin = torch.sqrt(1.0 - target_cos * target_cos)
        with_margin = target_cos * self._cos_m - sin * self._sin_m  # cos(theta + m)
        with_margin = torch.where(target_cos > self._threshold, with_margin, target_cos - self._fallback)
        logits = cos.scatter(1, targets[:, None], with_margin) * self.scale
        return _smoothed_ce(logits, targets, self.label_smooth)


class CircleSoftmaxLoss(nn.Module):
    """Circle loss in its classification form (Sun et al. CVPR 2020; fast-reid's CircleSoftmax).

    With cosines s_p (target class) and s_n (others), margin m and scale gamma:
    logit_p = gamma * a_p * (s_p - (1 - m)),  a_p = relu(1 + m - s_p) (no gradient);
    logit_n = gamma * a_n * (s_n - m),        a_n = relu(s_n + m)     (no gradient);
    then (label-smoothed) cross-entropy. cosines (B, C) in [-1, 1], targets (B,) -> scalar.
    """

    def __init__(self, num_classes: int, margin: float = 0.25, gamma: float = 64.0, label_smooth: float = 0.0):
        super().__init__()
        self.num_classes, self.margin, self.gamma, self.label_smooth = num_classes, margin, gamma, label_smooth

    def forward(self, cosines: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        cos = cosines.float()
        m = self.margin
        alpha_p = torch.clamp_min(1.0 + m - cos.detach(), 0.0)
        alpha_n = torch.clamp_min(cos.detach() + m, 0.0)
        is_target = F.one_hot(targets, cos.shape[1]).bool()
        logits = torch.where(is_target, alpha_p * (cos - (1.0 - m)), alpha_n * (cos - m)) * self.gamma
        return _smoothed_ce(logits, targets, self.label_smooth)


def _euclidean(x: torch.Tensor) -> torch.Tensor:
    """(B, d) -> (B, B) Euclidean distances (clamped away from 0 so sqrt has a gradient)."""
    sq = (x * x).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * (x @ x.t())
    return d2.clamp_min(1e-12).sqrt()


class TripletLoss(nn.Module):
    """Batch-hard triplet loss (Hermans et al. 2017) on one feature tensor.

    For each anchor: hardest positive = farthest sample with the same id (itself, at distance 0,
    when it has no other), hardest negative = nearest sample with another id. Anchors without
    any negative in the batch are ignored. Loss = mean relu(d_ap - d_an + margin), or the
    soft-margin mean log(1 + exp(d_ap - d_an)) when ``margin`` is None.
    ``normalize``: L2-normalise the features first (else raw features, as BoT).
    features (B, d), targets (B,) -> scalar.
    """

    def __init__(self, margin: float | None = 0.3, normalize: bool = False):
        super().__init__()
        self.margin, self.normalize = margin, normalize

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        x = features.float()
        if self.normalize:
            x = F.normalize(x, dim=1)
        dist = _euclidean(x)
        same = targets[:, None] == targets[None, :]
        has_negative = (~same).any(1)
        if not has_negative.any():
            return x.sum() * 0.0  # one identity in the batch: nothing to separate
        d_ap = dist.masked_fill(~same, 0.0).max(1).values[has_negative]
        d_an = dist.masked_fill(same, float("inf")).min(1).values[has_negative]
        if self.margin is None:
            return F.softplus(d_ap - d_an).mean()
        return F.relu(d_ap - d_an + self.margin).mean()


class CenterLoss(nn.Module):
    """Center loss (Wen et al. ECCV 2016) as in BoT: mean over the batch of ||x_i - c_{y_i}||^2.

    The centres (num_classes, feat_dim) are learnable, initialised N(0, 1); BoT trains them with
    their own SGD (lr 0.5). ``center_grad_scale`` multiplies only the gradient reaching the
    centres (BoT divides it by the loss weight). features (B, feat_dim), targets (B,) -> scalar.
    """

    def __init__(self, num_classes: int, feat_dim: int, center_grad_scale: float = 1.0):
        super().__init__()
        self.centers = nn.Parameter(torch.randn(num_classes, feat_dim))
        self.center_grad_scale = center_grad_scale

    def forward(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        if features.shape[1] != self.centers.shape[1]:
            raise ValueError(f"center loss built for {self.centers.shape[1]}-d features, got {features.shape[1]}-d; "
                             "pass the model's feature sizes as build_criterion(feat_dim=...)")
        c = self.centers[targets]
        if self.center_grad_scale != 1.0:  # same value, gradient to the centres scaled
            c = c + (c - c.detach()) * (self.center_grad_scale - 1.0)
        diff = features.float() - c
        return (diff * diff).sum(1).clamp(1e-12, 1e12).mean()


class GLALoss(nn.Module):
    """MFA's Global-Local Aligned loss: pull local branch i towards horizontal stripe i.

    The paper's formula was lost in the text; decision: mean over the batch and the n branches
    of 1 - cosine(branch_i GeM embedding, pooled stripe i). ``detach_stripes`` (default True):
    the stripes act as the guide ("local feature maps guide the branch networks"), so no
    gradient flows through them. branch, stripe (B, n, d) -> scalar.
    """

    def __init__(self, detach_stripes: bool = True):
        super().__init__()
        self.detach_stripes = detach_stripes

    def forward(self, branch: torch.Tensor, stripe: torch.Tensor) -> torch.Tensor:
        if branch.shape != stripe.shape or branch.dim() != 3:
            raise ValueError(f"gla loss needs aux[{BRANCH_KEY!r}] and aux[{STRIPE_KEY!r}] of the same shape "
                             f"(B, n, d); got {tuple(branch.shape)} and {tuple(stripe.shape)}")
        if self.detach_stripes:
            stripe = stripe.detach()
        return (1.0 - F.cosine_similarity(branch.float(), stripe.float(), dim=2)).mean()


def loss_config(section: LossConfig | Mapping) -> LossConfig:
    """The typed ``loss`` section from a LossConfig or a plain mapping ``{term: {option: value}}``.

    Option names and defaults are those of the term dataclasses in ``reid_models.config``; unknown
    names or options, bad values or two classification losses -> ValueError naming them."""
    if isinstance(section, LossConfig):
        return section
    if not isinstance(section, Mapping) or not section:
        raise ValueError(f"loss section must be a non-empty mapping of loss name -> options, got {section!r}")
    terms = {f.name: f.type for f in dataclasses.fields(LossConfig)}
    unknown = sorted(set(section) - set(terms))
    if unknown:
        raise ValueError(f"unknown loss(es) {', '.join(map(repr, unknown))} in the loss section; "
                         f"choose from {', '.join(terms)}")
    hints = typing.get_type_hints(LossConfig)
    for name, given in section.items():
        if given is not None and not isinstance(given, Mapping):
            raise ValueError(f"loss.{name} must be a mapping of options, got {given!r}")
        allowed = [f.name for f in dataclasses.fields(typing.get_args(hints[name])[0])]
        bad = sorted(set(given or {}) - set(allowed))
        if bad:
            raise ValueError(f"loss.{name}: unknown option(s) {', '.join(map(repr, bad))}; "
                             f"allowed: {', '.join(allowed)}")
    return build_section(LossConfig, {k: dict(v or {}) for k, v in section.items()}, "loss section", "loss")


class Criterion(nn.Module):
    """Weighted sum of the configured losses. Call ``criterion(out, pids) -> (total, {name: value})``.

    The dict holds each loss's unweighted value as a float. ``parameters()`` yields the center-loss
    centres (empty without ``center``); train them with their own optimizer at ``center_lr``. The
    centres' gradient is that of the unweighted center loss, while the network gets the weighted
    one (BoT divides the centres' gradient by the weight before their SGD step; done here).
    """

    def __init__(self, losses: dict[str, nn.Module | nn.ModuleList], weights: dict[str, float],
                 num_classes: int, center_lr: float | None = None):
        super().__init__()
        self.losses = nn.ModuleDict(losses)
        self.weights = dict(weights)
        self.num_classes = num_classes
        self.center_lr = center_lr

    def forward(self, out: ReIDOutput, pids: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        pids = pids.long()
        if pids.numel():
            lo, hi = torch.stack(torch.aminmax(pids)).tolist()  # one device sync
            if lo < 0 or hi >= self.num_classes:
                raise ValueError(f"labels must be train ids in [0, {self.num_classes}); got range [{lo}, {hi}] "
                                 "(relabel the training pids)")
        values: dict[str, torch.Tensor] = {}
        for name, loss in self.losses.items():
            if name in CLASSIFICATION_LOSSES:
                values[name] = self._over_logits(name, loss, out, pids)
            elif name == "triplet":
                values[name] = torch.stack([loss(f, pids) for f in self._features(name, out)]).mean()
            elif name == "center":
                feats = self._features(name, out)
                modules = list(loss) if len(loss) > 1 else [loss[0]] * len(feats)
                if len(modules) != len(feats):
                    raise ValueError(f"center loss built for {len(modules)} feature tensors, model returned "
                                     f"{len(feats)}; pass feat_dim with one size per entry of out.features")
                values[name] = torch.stack([m(f, pids) for m, f in zip(modules, feats)]).mean()
            else:  # gla
                missing = [k for k in (BRANCH_KEY, STRIPE_KEY) if k not in out.aux]
                if missing:
                    raise ValueError(f"gla loss needs out.aux[{missing[0]!r}] (B, n, d), which this model does not "
                                     "return; remove gla from the loss section (it is for mfa_r50)")
                values[name] = loss(out.aux[BRANCH_KEY], out.aux[STRIPE_KEY])
        total = sum(self.weights[n] * v for n, v in values.items())
        return total, dict(zip(values, torch.stack(list(values.values())).detach().tolist()))

    def _over_logits(self, name: str, loss: nn.Module, out: ReIDOutput, pids: torch.Tensor) -> torch.Tensor:
        if not out.logits:
            raise ValueError(f"{name} loss needs out.logits, which is empty (model in eval mode?)")
        for lg in out.logits:
            if lg.dim() != 2 or lg.shape != (len(pids), self.num_classes):
                raise ValueError(f"{name} loss: logits of shape {tuple(lg.shape)}, expected "
                                 f"({len(pids)}, {self.num_classes}) (batch, num_classes)")
            if name != "ce" and float(lg.detach().abs().max()) > 1.0 + 1e-3:
                raise ValueError(f"{name} loss expects cosine logits in [-1, 1] from a cosine classifier; "
                                 "this model gives raw scores: use ce instead")
        return torch.stack([loss(lg, pids) for lg in out.logits]).mean()

    @staticmethod
    def _features(name: str, out: ReIDOutput) -> list[torch.Tensor]:
        if not out.features:
            raise ValueError(f"{name} loss needs out.features, which is empty (model in eval mode?)")
        return out.features


def build_criterion(loss_cfg: LossConfig | Mapping, num_classes: int,
                    feat_dim: int | Sequence[int] | None = None) -> Criterion:
    """The :class:`Criterion` of a ``loss`` section (a LossConfig, or a mapping read by :func:`loss_config`).

    ``feat_dim``: size of the features the center loss acts on (one int, or one per entry of
    ``ReIDOutput.features``, e.g. MFA's branches). Bad sections -> ValueError naming the problem.
    """
    cfg = loss_config(loss_cfg)
    losses: dict[str, nn.Module] = {}
    if cfg.ce is not None:
        losses["ce"] = CrossEntropyLabelSmooth(num_classes, cfg.ce.label_smooth)
    if cfg.arcface is not None:
        losses["arcface"] = ArcFaceLoss(num_classes, cfg.arcface.margin, cfg.arcface.scale, cfg.arcface.label_smooth)
    if cfg.circle is not None:
        losses["circle"] = CircleSoftmaxLoss(num_classes, cfg.circle.margin, cfg.circle.gamma, cfg.circle.label_smooth)
    if cfg.triplet is not None:
        losses["triplet"] = TripletLoss(cfg.triplet.margin, cfg.triplet.normalize)
    if cfg.center is not None:
        if feat_dim is None:
            raise ValueError("center loss needs the feature size: build_criterion(..., feat_dim=D)")
        dims = [feat_dim] if isinstance(feat_dim, int) else list(feat_dim)
        if not dims or any(not isinstance(d, int) or d <= 0 for d in dims):
            raise ValueError(f"feat_dim must be a positive int or a list of them, got {feat_dim!r}")
        scale = 1.0 / cfg.center.weight if cfg.center.weight > 0 else 1.0
        losses["center"] = nn.ModuleList(CenterLoss(num_classes, d, scale) for d in dims)
    if cfg.gla is not None:
        losses["gla"] = GLALoss(cfg.gla.detach_stripes)
    weights = {name: getattr(cfg, name).weight for name in losses}
    return Criterion(losses, weights, num_classes, cfg.center.lr if cfg.center is not None else None)
