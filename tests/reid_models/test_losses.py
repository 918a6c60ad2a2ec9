"""reid_models.losses: hand-computed values, config strictness, and that training with them learns."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from reid_models.losses import (
    ArcFaceLoss,
    CenterLoss,
    CircleSoftmaxLoss,
    CrossEntropyLabelSmooth,
    GLALoss,
    TripletLoss,
    build_criterion,
)
from reid_models.output import ReIDOutput


def test_label_smoothed_ce_matches_torch():
    torch.manual_seed(0)
    logits, targets = torch.randn(6, 5), torch.tensor([0, 1, 2, 3, 4, 0])
    for eps in (0.0, 0.1):
        ours = CrossEntropyLabelSmooth(5, eps)(logits, targets)
        assert ours.item() == pytest.approx(F.cross_entropy(logits, targets, label_smoothing=eps).item(), rel=1e-6)


def test_arcface_adds_the_angular_margin_to_the_target_only():
    # target cosine 0.5 (60 deg) with m = 0.5 rad -> cos(acos(0.5) + 0.5); others unchanged; all times s.
    cos = torch.tensor([[0.5, 0.2, -0.1]])
    s, m = 10.0, 0.5
    expected = torch.tensor([[math.cos(math.acos(0.5) + m), 0.2, -0.1]]) * s
    loss = ArcFaceLoss(3, margin=m, scale=s)(cos, torch.tensor([0]))
    assert loss.item() == pytest.approx(F.cross_entropy(expected, torch.tensor([0])).item(), rel=1e-5)
    # near theta = pi the monotone fallback cos - m sin(m) is used
    cos = torch.tensor([[-0.95, 0.2, -0.1]])
    expected = torch.tensor([[-0.95 - m * math.sin(m), 0.2, -0.1]]) * s
    loss = ArcFaceLoss(3, margin=m, scale=s)(cos, torch.tensor([0]))
    assert loss.item() == pytest.approx(F.cross_entropy(expected, torch.tensor([0])).item(), rel=1e-5)
    # margin 0 is plain softmax CE on s * cos
    cos = torch.tensor([[0.3, 0.6, -0.2]])
    assert ArcFaceLoss(3, 0.0, s)(cos, torch.tensor([0])).item() == pytest.approx(
        F.cross_entropy(cos * s, torch.tensor([0])).item(), rel=1e-5)


def test_circle_softmax_by_hand():
    # cos = [0.8, 0.3, -0.2], target 0, m = 0.25, gamma = 64:
    # target: a_p = 1.25 - 0.8 = 0.45, logit = 64 * 0.45 * (0.8 - 0.75) = 1.44
    # others: a_n = 0.3 + 0.25 = 0.55, logit = 64 * 0.55 * (0.3 - 0.25) = 1.76
    #         a_n = -0.2 + 0.25 = 0.05, logit = 64 * 0.05 * (-0.2 - 0.25) = -1.44
    # loss = -(1.44 - log(e^1.44 + e^1.76 + e^-1.44))
    expected = -(1.44 - math.log(math.exp(1.44) + math.exp(1.76) + math.exp(-1.44)))
    loss = CircleSoftmaxLoss(3, margin=0.25, gamma=64)(torch.tensor([[0.8, 0.3, -0.2]]), torch.tensor([0]))
    assert loss.item() == pytest.approx(expected, rel=1e-5)


def test_batch_hard_triplet_by_hand():
    # 1-D features: ids 0 at 0 and 1, ids 1 at 3 and 5.
    # anchor 0: d_ap 1, d_an 3 | anchor 1: 1, 2 | anchor 3: 2, 2 | anchor 5: 2, 4
    # margin 0.3: relu(-1.7), relu(-0.7), relu(0.3), relu(-1.7) -> mean 0.075
    # soft: softplus(-2), softplus(-1), softplus(0), softplus(-2) -> mean 0.315066
    x = torch.tensor([[0.0], [1.0], [3.0], [5.0]])
    y = torch.tensor([0, 0, 1, 1])
    assert TripletLoss(0.3)(x, y).item() == pytest.approx(0.075, abs=1e-5)
    soft = (2 * math.log1p(math.exp(-2)) + math.log1p(math.exp(-1)) + math.log(2)) / 4
    assert TripletLoss(None)(x, y).item() == pytest.approx(soft, rel=1e-5)


def test_triplet_normalize_and_degenerate_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 4), torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    assert TripletLoss(0.3, normalize=True)(10 * x, y).item() == pytest.approx(
        TripletLoss(0.3, normalize=True)(x, y).item(), rel=1e-5)
    assert TripletLoss(0.3)(10 * x, y).item() != pytest.approx(TripletLoss(0.3)(x, y).item(), rel=1e-3)
    one_id = x.clone().requires_grad_()
    loss = TripletLoss(0.3)(one_id, torch.zeros(8, dtype=torch.long))
    loss.backward()
    assert loss.item() == 0.0 and one_id.grad is not None


def test_center_loss_by_hand():
    loss = CenterLoss(2, 2)
    with torch.no_grad():
        loss.centers.copy_(torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    x = torch.tensor([[3.0, 4.0], [1.0, 2.0]])
    # ||(3,4) - (0,0)||^2 = 25, ||(1,2) - (1,1)||^2 = 1 -> mean 13
    assert loss(x, torch.tensor([0, 1])).item() == pytest.approx(13.0)


def test_gla_loss():
    b = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]], requires_grad=True)  # (B=1, n=2, d=2)
    same, orth, opposite = b.detach().clone(), torch.tensor([[[0.0, 1.0], [1.0, 0.0]]]), -b.detach()
    assert GLALoss()(b, same).item() == pytest.approx(0.0, abs=1e-6)
    assert GLALoss()(b, orth).item() == pytest.approx(1.0)
    assert GLALoss()(b, opposite).item() == pytest.approx(2.0)
    stripe = orth.clone().requires_grad_()
    GLALoss(detach_stripes=True)(b, stripe).backward()
    assert stripe.grad is None and b.grad is not None
    GLALoss(detach_stripes=False)(b, stripe).backward()
    assert stripe.grad is not None
    with pytest.raises(ValueError, match="same shape"):
        GLALoss()(b, torch.zeros(1, 3, 2))


def _out(num_classes=4, batch=8, dim=6, n_logits=1, n_feats=1, cosine=False, aux=None, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = [torch.randn(batch, num_classes, generator=g) for _ in range(n_logits)]
    if cosine:
        logits = [torch.tanh(lg) for lg in logits]
    feats = [torch.randn(batch, dim, generator=g, requires_grad=True) for _ in range(n_feats)]
    return ReIDOutput(embedding=feats[0].detach(), features=feats, logits=logits, aux=aux or {})


PIDS = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])


def test_criterion_total_is_the_weighted_sum_and_lists_are_averaged():
    crit = build_criterion({"ce": {"weight": 1.0, "label_smooth": 0.1}, "triplet": {"weight": 2.0, "margin": 0.3}},
                           num_classes=4)
    out = _out(n_logits=2, n_feats=3)
    total, parts = crit(out, PIDS)
    assert set(parts) == {"ce", "triplet"}
    assert total.item() == pytest.approx(parts["ce"] + 2.0 * parts["triplet"], rel=1e-5)
    ce = CrossEntropyLabelSmooth(4, 0.1)
    assert parts["ce"] == pytest.approx(sum(ce(lg, PIDS).item() for lg in out.logits) / 2, rel=1e-5)
    tri = TripletLoss(0.3)
    assert parts["triplet"] == pytest.approx(sum(tri(f, PIDS).item() for f in out.features) / 3, rel=1e-5)
    assert list(crit.parameters()) == []


def test_criterion_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="'focal'"):
        build_criterion({"ce": {}, "focal": {"weight": 1}}, 4)
    with pytest.raises(ValueError, match=r"loss\.triplet: unknown option\(s\) 'mragin'"):
        build_criterion({"triplet": {"mragin": 0.3}}, 4)
    with pytest.raises(ValueError, match="one classification loss"):
        build_criterion({"ce": {}, "arcface": {}}, 4)
    with pytest.raises(ValueError, match=r"loss\.ce\.weight"):
        build_criterion({"ce": {"weight": "high"}}, 4)
    with pytest.raises(ValueError, match="feat_dim"):
        build_criterion({"center": {}}, 4)
    with pytest.raises(ValueError, match="cosine logits"):
        build_criterion({"arcface": {}}, 4)(_out(), PIDS)
    with pytest.raises(ValueError, match="branch_features"):
        build_criterion({"gla": {}}, 4)(_out(), PIDS)
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        build_criterion({"ce": {}}, 4)(_out(), PIDS + 1)


def test_triplet_null_margin_is_soft_margin_and_gla_reads_aux():
    out = _out(aux={"branch_features": torch.randn(8, 4, 6), "stripe_features": torch.randn(8, 4, 6)})
    _, parts = build_criterion({"triplet": {"margin": None}, "gla": {"weight": 1.0}}, 4)(out, PIDS)
    assert parts["triplet"] == pytest.approx(TripletLoss(None)(out.features[0], PIDS).item(), rel=1e-5)
    assert parts["gla"] == pytest.approx(
        GLALoss()(out.aux["branch_features"], out.aux["stripe_features"]).item(), rel=1e-5)


def test_center_gradient_is_unweighted_for_the_centres_only():
    out = _out(n_feats=2)
    crit = build_criterion({"center": {"weight": 0.01, "lr": 0.5}}, 4, feat_dim=[6, 6])
    assert crit.center_lr == 0.5 and len(list(crit.parameters())) == 2
    total, parts = crit(out, PIDS)
    total.backward()
    plain = build_criterion({"center": {"weight": 1.0}}, 4, feat_dim=[6, 6])
    plain.load_state_dict(crit.state_dict())
    feats = [f.detach().clone().requires_grad_() for f in out.features]
    plain(ReIDOutput(embedding=feats[0], features=feats), PIDS)[0].backward()
    for mine, ref in zip(crit.parameters(), plain.parameters()):
        assert torch.allclose(mine.grad, ref.grad, rtol=1e-5, atol=1e-7)  # centres: unweighted gradient
    assert torch.allclose(out.features[0].grad, 0.01 * feats[0].grad, rtol=1e-5, atol=1e-9)  # network: weighted


@pytest.mark.parametrize("cfg,cosine", [
    ({"ce": {"label_smooth": 0.1}, "triplet": {"margin": 0.3}, "center": {"weight": 0.0005}}, False),
    ({"arcface": {"margin": 0.4, "scale": 30.0}, "triplet": {"margin": None}}, True),
    ({"circle": {"margin": 0.25, "gamma": 32.0}, "triplet": {"margin": 0.3}}, True),
])
def test_training_with_the_criterion_lowers_the_loss(cfg, cosine):
    torch.manual_seed(0)
    num_classes, batch = 4, 16
    pids = torch.arange(num_classes).repeat_interleave(batch // num_classes)
    inputs = torch.randn(num_classes, 12)[pids] + 0.5 * torch.randn(batch, 12)
    embed = nn.Linear(12, 8)
    classifier = nn.Linear(8, num_classes, bias=not cosine)
    crit = build_criterion(cfg, num_classes, feat_dim=8)
    opt = torch.optim.Adam([*embed.parameters(), *classifier.parameters()], lr=0.02)
    center_opt = torch.optim.SGD(crit.parameters(), lr=crit.center_lr) if crit.center_lr else None
    losses = []
    for _ in range(40):
        feat = embed(inputs)
        if cosine:
            logits = F.linear(F.normalize(feat), F.normalize(classifier.weight))
        else:
            logits = classifier(feat)
        total, _ = crit(ReIDOutput(embedding=feat, features=[feat], logits=[logits]), pids)
        opt.zero_grad()
        if center_opt:
            center_opt.zero_grad()
        total.backward()
        opt.step()
        if center_opt:
            center_opt.step()
        losses.append(total.item())
    assert losses[-1] < 0.5 * losses[0]
