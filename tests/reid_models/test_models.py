"""reid_models model zoo: outputs in train/eval mode, parameter counts, compute, ImageNet weight loading."""
from __future__ import annotations

import urllib.error

import pytest
import torch
import torchvision

from reid_models import ReIDOutput, backbones, create_model, list_models
from reid_models.__main__ import main
from reid_models.engine.benchmark import count_flops, count_params

OSNETS = ["osnet_ain_x0_25", "osnet_ain_x0_5", "osnet_ain_x0_75", "osnet_ain_x1_0", "osnet_ibn_x1_0", "osnet_x0_25",
          "osnet_x0_5", "osnet_x0_75", "osnet_x1_0"]
NAMES = ["bot_r50", "cbam_r50", "convnext_ap", "generic_mnv2_hsv", "mfa_r50", "nam_dyrelu_r50", *OSNETS, "resnet50",
         "sa_r50"]
SMALL = {"convnext_ap": {"variant": "tiny"}}  # the Base trunk is only built on "meta" below
# (name, embedding dim, number of classifiers / features, aux keys)
EXPECTED = {
    "bot_r50": (2048, 1, set()),
    "cbam_r50": (2048, 1, set()),
    "convnext_ap": (1536, 6, {"part_features"}),
    "generic_mnv2_hsv": (1536, 1, set()),
    "mfa_r50": (1024, 4, {"branch_features", "stripe_features"}),
    "nam_dyrelu_r50": (8192, 1, set()),
    "sa_r50": (2048, 1, set()),
    "resnet50": (2048, 1, set()),
    **{name: (512, 1, set()) for name in OSNETS},
}


def test_registry_has_exactly_the_zoo():
    assert list_models() == NAMES
    with pytest.raises(KeyError, match="unknown model 'resnet'"):
        create_model("resnet", num_classes=10)
    with pytest.raises(TypeError):
        create_model("bot_r50", num_classes=10, no_such_option=1)


@pytest.mark.slow
@pytest.mark.parametrize("name", NAMES)
def test_train_and_eval_outputs(name):
    torch.manual_seed(0)
    num_classes = 7
    model = create_model(name, num_classes=num_classes, **SMALL.get(name, {}))
    dim, heads, aux_keys = EXPECTED[name]
    assert model.embedding_dim == dim and model.input_size == (256, 128)
    x = torch.randn(3, 3, 128, 64)
    model.train()
    out = model(x)
    assert isinstance(out, ReIDOutput)
    assert out.embedding.shape == (3, dim)
    assert len(out.logits) == heads and all(t.shape == (3, num_classes) for t in out.logits)
    assert len(out.features) == heads and all(t.ndim == 2 and t.shape[0] == 3 for t in out.features)
    assert set(out.aux) == aux_keys
    if name in ("nam_dyrelu_r50", "cbam_r50"):  # cosine heads for ArcFace / circle softmax
        assert out.logits[0].abs().max() <= 1 + 1e-5
    sum(t.sum() for t in out.logits).backward()
    first = next(getattr(model, "backbone", model).parameters())  # the stem conv: gradients reach the input end
    assert first.grad is not None and first.grad.abs().sum() > 0
    model.eval()
    with torch.no_grad():
        ev = model(x)
        assert isinstance(ev, ReIDOutput) and ev.embedding.shape == (3, dim)
        assert ev.features == [] and ev.logits == [] and ev.aux == {}
        assert torch.isfinite(ev.embedding).all()
        # a fresh model with the same state dict gives the same embeddings (checkpoints round-trip)
        clone = create_model(name, num_classes=num_classes, **SMALL.get(name, {})).eval()
        clone.load_state_dict(model.state_dict())
        torch.testing.assert_close(clone(x).embedding, ev.embedding)


def test_mfa_gla_features_align_branch_and_stripe():
    model = create_model("mfa_r50", num_classes=5).train()
    out = model(torch.randn(2, 3, 128, 64))
    branch, stripe = out.aux["branch_features"], out.aux["stripe_features"]
    assert branch.shape == stripe.shape == (2, 4, 256)
    torch.testing.assert_close(branch, torch.stack(out.features, 1))
    # CPAA after layer2..4 starts as the identity
    cpaa = [model.backbone.layer2[-1], model.backbone.layer3[-1], model.backbone.layer4[-1]]
    assert all(type(m).__name__ == "CPAA" and m.channel.gamma.item() == 0 for m in cpaa)
    assert model.backbone.layer4[0].conv2.stride == (1, 1)


def test_convnext_ap_simam_in_every_block_and_rpp_second_stage():
    model = create_model("convnext_ap", num_classes=5, variant="tiny")
    blocks = model.backbone.blocks()
    assert len(blocks) == 18 and all(type(b.block[-1]).__name__ == "SimAM" for b in blocks)
    rpp = create_model("convnext_ap", num_classes=5, variant="tiny", rpp=True)
    result = rpp.load_state_dict(model.state_dict(), strict=False)
    assert result.missing_keys == ["pool.classifier.weight"] and result.unexpected_keys == []
    assert rpp.eval()(torch.randn(2, 3, 128, 64)).embedding.shape == (2, 1536)


def _on_meta(name, **kwargs):
    with torch.device("meta"):
        return create_model(name, num_classes=751, **kwargs)


@pytest.mark.parametrize("name, paper_params", [("convnext_ap", 90.74e6), ("mfa_r50", 28.3e6)])
def test_parameter_counts_match_papers(name, paper_params):
    params = count_params(_on_meta(name))
    assert abs(params - paper_params) / paper_params < 0.03, params


# OSNet paper (ICCV 2019) table 8: parameters (without the classifier) and multiply-adds at 256x128
@pytest.mark.parametrize("name, paper_params, paper_macs", [
    ("osnet_x1_0", 2.2e6, 978.9e6), ("osnet_x0_75", 1.3e6, 571.8e6), ("osnet_x0_5", 0.6e6, 272.9e6),
    ("osnet_x0_25", 0.2e6, 82.3e6)])
def test_osnet_size_and_compute_match_paper(name, paper_params, paper_macs):
    model = _on_meta(name)
    params = count_params(model) - sum(p.numel() for p in model.classifier.parameters())
    assert abs(params - paper_params) / paper_params < 0.1, params  # the paper rounds to 0.1 M
    macs = count_flops(model, (256, 128)) / 2
    assert abs(macs - paper_macs) / paper_macs < 0.03, macs


def test_osnet_variants_place_instance_norm_as_published():
    def norms(model):
        return {n for n, m in model.named_modules() if isinstance(m, torch.nn.InstanceNorm2d)}

    assert norms(create_model("osnet_x1_0", num_classes=2)) == set()
    assert norms(create_model("osnet_ibn_x1_0", num_classes=2)) == {"conv1.bn", "conv2.0.IN", "conv2.1.IN"}
    ain = create_model("osnet_ain_x1_0", num_classes=2)
    assert norms(ain) == {"conv1.bn", "conv2.0.IN", "conv2.1.IN", "conv3.1.IN", "conv4.0.IN"}
    assert ain.conv2[0].conv3.bn is None and ain.conv3[0].conv3.bn is not None  # IN replaces the BN it follows
    with torch.no_grad():  # the stem's instance norm (after a bias-free conv) makes it invariant to contrast
        x = torch.randn(2, 3, 128, 64)
        torch.testing.assert_close(ain.eval()(x).embedding, ain(3 * x).embedding, rtol=1e-3, atol=1e-4)


def test_convnext_ap_compute_matches_paper():
    macs = count_flops(_on_meta("convnext_ap"), (256, 128)) / 2
    assert abs(macs - 10.04e9) / 10.04e9 < 0.03, macs
    assert count_params(_on_meta("convnext_ap", variant="tiny")) < 40e6


@pytest.mark.slow
def test_list_command_prints_every_model(capsys):
    assert main(["list"]) == 0
    text = capsys.readouterr().out
    assert "GMACs" in text and all(name in text for name in NAMES)
    row = next(line for line in text.splitlines() if line.startswith("convnext_ap"))
    assert float(row.split()[1]) == pytest.approx(90.3, abs=0.5)


# ----------------------------------------------------------------------------- ImageNet weights
@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    torch.manual_seed(1)
    path = tmp_path_factory.mktemp("weights") / "resnet50-0676ba61.pth"
    state = torchvision.models.resnet50(weights=None).state_dict()
    torch.save(state, path)
    return path, state


@pytest.mark.parametrize("name", ["bot_r50", "nam_dyrelu_r50", "mfa_r50"])
def test_pretrained_from_local_file_loads_into_wrapped_trunks(resnet50_file, name):
    path, state = resnet50_file
    model = create_model(name, num_classes=3, pretrained=str(path))
    bb = model.backbone
    torch.testing.assert_close(bb.conv1.weight, state["conv1.weight"], rtol=0, atol=0)
    torch.testing.assert_close(bb.layer1[2].conv3.weight, state["layer1.2.conv3.weight"], rtol=0, atol=0)
    torch.testing.assert_close(bb.layer4[0].bn2.running_var, state["layer4.0.bn2.running_var"], rtol=0, atol=0)


@pytest.mark.slow
def test_pretrained_missing_or_wrong_file_is_a_clear_error(tmp_path, resnet50_file):
    missing = tmp_path / "nope.pth"
    with pytest.raises(FileNotFoundError, match="pretrained weights file not found: .*nope.pth"):
        create_model("bot_r50", num_classes=3, pretrained=str(missing))
    with pytest.raises(ValueError, match="not a torchvision convnext_tiny ImageNet state dict"):
        create_model("convnext_ap", num_classes=3, variant="tiny", pretrained=str(resnet50_file[0]))
    junk = tmp_path / "junk.pth"
    junk.write_bytes(b"not a torch file")
    with pytest.raises(ValueError, match="cannot read pretrained weights"):
        create_model("sa_r50", num_classes=3, pretrained=str(junk))


def test_pretrained_true_offline_fails_fast_with_hint(monkeypatch):
    seen = {}

    def offline(url, *args, **kwargs):
        seen["timeout"] = __import__("socket").getdefaulttimeout()
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", offline)
    with pytest.raises(RuntimeError, match=r"pretrained=/path/to/resnet50-0676ba61\.pth"):
        create_model("cbam_r50", num_classes=3, pretrained=True)
    assert seen["timeout"] == backbones.DOWNLOAD_TIMEOUT_S
    assert __import__("socket").getdefaulttimeout() != backbones.DOWNLOAD_TIMEOUT_S


def test_registered_defaults_match_the_built_networks():
    """register_model(...) settings (timm-style): input size and embedding size are what the network has."""
    from reid_models import get_model_info, model_defaults
    from reid_models.transforms import IMAGENET_MEAN, IMAGENET_STD

    for name in list_models():
        info = get_model_info(name)
        with torch.device("meta"):
            model = create_model(name, num_classes=10)
        assert (info.name, info.input_size, info.embedding_dim) == (name, tuple(model.input_size), model.embedding_dim)
        assert (info.mean, info.std) == (IMAGENET_MEAN, IMAGENET_STD)
        assert model_defaults(name) == {"input_size": info.input_size, "mean": info.mean, "std": info.std,
                                        "embedding_dim": info.embedding_dim}
    with pytest.raises(KeyError, match="unknown model 'resnet'"):
        get_model_info("resnet")


def test_register_model_checks_its_settings():
    from reid_models.registry import ModelInfo

    with pytest.raises(ValueError, match="input_size must be"):
        ModelInfo("tiny", input_size=(8, 4))
    with pytest.raises(ValueError, match="embedding_dim"):
        ModelInfo("flat", embedding_dim=0)
