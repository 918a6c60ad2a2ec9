"""reid_models.layers: shapes, identities at initialisation and the papers' closed forms."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from reid_models.layers import (
    ATTENTION_BLOCKS,
    CBAM,
    CPAA,
    NAM,
    RPP,
    BNNeck,
    ChannelAffinity,
    CosineClassifier,
    DynamicReLUB,
    GeM,
    PCBPool,
    SelfAttention,
    SimAM,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.mark.parametrize("name", sorted(ATTENTION_BLOCKS))
def test_blocks_share_constructor_and_keep_shape(name):
    block = ATTENTION_BLOCKS[name](32)
    x = torch.randn(2, 32, 8, 4, requires_grad=True)
    y = block(x)
    assert y.shape == x.shape
    assert torch.isfinite(y).all()
    y.sum().backward()  # differentiable end to end
    assert x.grad is not None and torch.isfinite(x.grad).all()


def test_self_attention_alpha_zero_is_identity_and_matches_formula():
    sa = SelfAttention(16)
    x = torch.randn(2, 16, 4, 3)
    assert sa.alpha.item() == 0.0
    assert torch.equal(sa(x), x)
    with torch.no_grad():
        sa.alpha.fill_(0.7)
    # paper eqs. 3-6 written out with explicit loops over positions
    f = torch.relu(sa.f(x)).flatten(2)
    g = torch.relu(sa.g(x)).flatten(2)
    h = sa.h(x).flatten(2)
    n = x.shape[2] * x.shape[3]
    expected = torch.empty_like(h)
    for b in range(2):
        for j in range(n):
            e = torch.stack([f[b, :, i] @ g[b, :, j] for i in range(n)])  # e_ij over i
            s = torch.softmax(e, dim=0)
            expected[b, :, j] = (h[b] * s).sum(dim=1)
    y = sa(x)
    torch.testing.assert_close(y, x + 0.7 * expected.view_as(x), rtol=1e-5, atol=1e-5)
    assert sa.f.out_channels == 2 and sa.h.out_channels == 16  # D/8 and D


def test_simam_has_no_parameters_and_matches_closed_form():
    sim = SimAM(lambda_=1e-4)
    assert sum(p.numel() for p in sim.parameters()) == 0
    x = torch.tensor([[[[1.0, 2.0], [3.0, 6.0]]]])
    v = x.numpy()[0, 0]
    mu = v.mean()
    var = ((v - mu) ** 2).sum() / (v.size - 1)
    inv_e = (v - mu) ** 2 / (4 * (var + 1e-4)) + 0.5
    expected = v / (1 + np.exp(-inv_e))
    np.testing.assert_allclose(sim(x).numpy()[0, 0], expected, rtol=1e-6)
    # most distinctive neuron (6.0) gets the largest weight
    weights = sim(x) / x
    assert weights.flatten().argmax().item() == 3


def test_nam_weights_formula_and_output():
    nam = NAM(4).eval()
    with torch.no_grad():
        nam.bn.weight.copy_(torch.tensor([1.0, -3.0, 2.0, 2.0]))
        nam.bn.bias.copy_(torch.tensor([0.1, 0.2, -0.3, 0.0]))
        nam.bn.running_mean.copy_(torch.tensor([0.5, -0.5, 0.0, 1.0]))
        nam.bn.running_var.copy_(torch.tensor([1.0, 4.0, 0.25, 2.0]))
    w = nam.channel_weights()
    torch.testing.assert_close(w, torch.tensor([1 / 8, 3 / 8, 2 / 8, 2 / 8]))
    x = torch.randn(2, 4, 3, 3)
    g, b = nam.bn.weight.view(1, -1, 1, 1), nam.bn.bias.view(1, -1, 1, 1)
    m, v = nam.bn.running_mean.view(1, -1, 1, 1), nam.bn.running_var.view(1, -1, 1, 1)
    bn = g * (x - m) / torch.sqrt(v + nam.bn.eps) + b
    expected = x * torch.sigmoid(w.view(1, -1, 1, 1) * bn)
    torch.testing.assert_close(nam(x), expected)


def test_dyrelu_is_max_of_its_linear_pieces():
    act = DynamicReLUB(8, reduction=4, k=2)
    x = torch.randn(3, 8, 5, 4) * 3
    a, b = act.coefficients(x)
    assert a.shape == b.shape == (3, 8, 2)
    # residual ranges: a1 = 1 + d in (0, 2), a2 = d in (-1, 1), b = 0.5 d in (-0.5, 0.5)
    assert ((a[..., 0] > 0) & (a[..., 0] < 2)).all() and (a[..., 1].abs() < 1).all()
    assert (b.abs() < 0.5).all()
    y = act(x)
    lines = x.unsqueeze(-1) * a[:, :, None, None, :] + b[:, :, None, None, :]
    torch.testing.assert_close(y, lines.amax(dim=-1))
    assert (y >= lines[..., 0] - 1e-6).all() and (y >= lines[..., 1] - 1e-6).all()  # convex upper bound
    # coefficients are shared over space: per channel, y is one piecewise-linear function of x
    assert not torch.allclose(a[0], a[1])  # ...but differ per sample (dynamic)
    with torch.no_grad():  # a zero hyper-function output leaves exactly ReLU
        act.fc2.weight.zero_()
        act.fc2.bias.zero_()
    torch.testing.assert_close(act(x), torch.relu(x))


def test_cbam_matches_channel_then_spatial_formula():
    cbam = CBAM(16, reduction=4).eval()
    x = torch.randn(2, 16, 6, 3)
    mlp = cbam.channel.mlp
    mc = torch.sigmoid(mlp(x.mean((2, 3), keepdim=True)) + mlp(x.amax((2, 3), keepdim=True)))
    xc = x * mc
    pooled = torch.cat([xc.mean(1, keepdim=True), xc.amax(1, keepdim=True)], 1)
    ms = torch.sigmoid(cbam.spatial.bn(cbam.spatial.conv(pooled)))
    y = cbam(x)
    torch.testing.assert_close(y, xc * ms)
    assert (y.abs() <= x.abs() + 1e-6).all()  # sigmoid gates only attenuate


def test_cpaa_is_identity_at_init_and_channel_affinity_formula():
    cpaa = CPAA(16)
    x = torch.randn(2, 16, 4, 2)
    assert cpaa.channel.gamma.item() == 0.0 and cpaa.point.gamma.item() == 0.0
    assert torch.equal(cpaa(x), x)
    ca = ChannelAffinity(16)
    with torch.no_grad():
        ca.gamma.fill_(0.5)
    flat = x.flatten(2)
    attn = torch.softmax(flat @ flat.transpose(1, 2) / np.sqrt(8), dim=-1)
    torch.testing.assert_close(ca(x), x + 0.5 * (attn @ flat).view_as(x))
    with torch.no_grad():
        cpaa.point.gamma.fill_(1.0)
    assert not torch.allclose(cpaa(x), x)
    cpaa(x).sum().backward()
    assert cpaa.point.gamma.grad is not None and cpaa.channel.gamma.grad is not None


def test_gem_p1_is_average_pooling_and_large_p_tends_to_max():
    x = torch.rand(2, 5, 4, 3) + 0.1
    torch.testing.assert_close(GeM(p=1.0)(x), x.mean(dim=(2, 3)))
    torch.testing.assert_close(GeM(p=200.0)(x), x.amax(dim=(2, 3)), rtol=2e-2, atol=0)
    gem = GeM()
    assert gem.p.requires_grad and gem.p.item() == 3.0
    assert GeM(p=3.0)(x).shape == (2, 5)


def test_pcb_stripes_and_rpp_with_one_hot_assignment_equal_stripe_means():
    x = torch.randn(2, 3, 6, 2)
    parts = PCBPool(6)(x)
    assert parts.shape == (2, 3, 6)
    torch.testing.assert_close(parts[:, :, 2], x[:, :, 2, :].mean(-1))
    # channels 0..5 one-hot code the row; a part classifier reading them assigns row i to part i
    rows = torch.eye(6).view(1, 6, 6, 1).expand(2, 6, 6, 2) * 50.0
    feat = torch.cat([rows, x], dim=1)                                   # (2, 9, 6, 2)
    rpp = RPP(9, parts=6)
    with torch.no_grad():
        rpp.classifier.weight.zero_()
        rpp.classifier.weight[:, :6, 0, 0] = torch.eye(6)
    probs = rpp.part_probs(feat)
    torch.testing.assert_close(probs.sum(1), torch.ones(2, 6, 2))
    torch.testing.assert_close(rpp(feat), PCBPool(6)(feat), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("height,parts", [(8, 6), (24, 6), (7, 3), (16, 4), (4, 6)])
def test_pcb_stripes_equal_adaptive_pooling(height, parts):
    """Slice-based stripes (floor(i*H/p) .. ceil((i+1)*H/p)) give adaptive_avg_pool2d's numbers."""
    x = torch.randn(2, 5, height, 3)
    torch.testing.assert_close(PCBPool(parts)(x), F.adaptive_avg_pool2d(x, (parts, 1)).squeeze(-1))


def test_bnneck_bias_frozen_and_normalises():
    neck = BNNeck(8)
    assert not neck.bn.bias.requires_grad and neck.bn.weight.requires_grad
    y = neck(torch.randn(16, 8) * 5 + 3)
    torch.testing.assert_close(y.mean(0), torch.zeros(8), atol=1e-5, rtol=0)


def test_cosine_classifier_outputs_cosines():
    cls = CosineClassifier(12, 5)
    x = torch.randn(7, 12) * 10
    out = cls(x)
    assert out.shape == (7, 5)
    assert (out.abs() <= 1 + 1e-6).all()
    expected = F.cosine_similarity(x[:, None, :], cls.weight[None, :, :], dim=-1)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(cls(3 * x), out)  # scale-invariant in the feature
    with torch.no_grad():
        cls.weight[2] = x[0]
    assert cls(x[:1])[0, 2].item() == pytest.approx(1.0, abs=1e-6)
