"""reid_models.convert_weights / reid_models.convert: torchreid and fast-reid checkpoints -> reid_models checkpoints.

Parity is checked against the real torchreid package (PyPI ``torchreid==0.2.5``, a test-only dependency
that needs ``tensorboard`` and ``gdown`` importable); those tests skip with the reason when it is missing.
fast-reid is not installable here, so its key layout is built from our own bot_r50 and round-tripped.
"""
from __future__ import annotations

import io
import urllib.error
import warnings

import numpy as np
import pytest
import torch

from reid_models import convert_weights as cw
from reid_models import create_model
from reid_models.checkpoint import load_model, normalization
from reid_models.convert import main

OSNETS = ["osnet_x1_0", "osnet_x0_75", "osnet_x0_5", "osnet_x0_25", "osnet_ibn_x1_0", "osnet_ain_x1_0",
          "osnet_ain_x0_75", "osnet_ain_x0_5", "osnet_ain_x0_25"]
TOLERANCE = 1e-4


def _torchreid_models():
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torchreid.reid import models
    except ImportError as exc:
        pytest.skip(f"torchreid not importable ({exc}): pip install --no-deps torchreid==0.2.5 tensorboard gdown")
    return models


def _randomise_statistics(state: dict[str, torch.Tensor], seed: int = 0) -> dict[str, torch.Tensor]:
    """Non-trivial BN running statistics and norm affines, so that eval-mode parity tests every norm layer."""
    g = torch.Generator().manual_seed(seed)
    out = {}
    for key, value in state.items():
        value = value.clone()
        if value.dtype.is_floating_point and value.ndim == 1:
            noise = torch.randn(value.shape, generator=g)
            if key.endswith("running_var"):
                value = noise.abs() * 0.5 + 0.5
            elif key.endswith("running_mean") or key.endswith(".bias"):
                value = value + 0.1 * noise
            elif key.endswith(".weight"):
                value = value + 0.2 * noise
        out[key] = value
    return out


def _torchreid_checkpoint(models, arch: str, path, *, module_prefix: bool, num_classes: int = 11):
    """Build torchreid's ``arch`` (random init), save it as torchreid does; returns the eval-mode model."""
    net = models.build_model(arch, num_classes=num_classes, pretrained=False)
    net.load_state_dict(_randomise_statistics(net.state_dict()))
    state = {("module." + k if module_prefix else k): v for k, v in net.state_dict().items()}
    torch.save({"state_dict": state, "epoch": 60, "rank1": np.float64(0.9), "optimizer": None}, path)
    return net.eval()


def _max_diff(theirs: torch.nn.Module, ckpt, x: torch.Tensor) -> float:
    ours, info = load_model(ckpt, "cpu")
    with torch.no_grad():
        want, got = theirs(x), ours(x).embedding
    assert got.shape == want.shape
    return float((want - got).abs().max())


# ----------------------------------------------------------------------------- torchreid parity
@pytest.mark.parametrize("module_prefix", [False, True], ids=["plain", "module."])
@pytest.mark.parametrize("arch", OSNETS)
def test_torchreid_osnet_parity(arch, module_prefix, tmp_path):
    models = _torchreid_models()
    torch.manual_seed(0)
    theirs = _torchreid_checkpoint(models, arch, tmp_path / "model.pth.tar-60", module_prefix=module_prefix)
    result = cw.convert("torchreid", tmp_path / "model.pth.tar-60", tmp_path / "ours.pt")
    assert (result.model, result.source_arch, result.num_classes, result.embedding_dim) == (arch, arch, 11, 512)
    x = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(1))
    diff = _max_diff(theirs, result.path, x)
    print(f"{arch} ({'module.' if module_prefix else 'plain'}): max |torchreid - ours| = {diff:.3g}")
    assert diff <= TOLERANCE


@pytest.mark.parametrize("arch, module_prefix, dim", [("resnet50", False, 2048), ("resnet50_fc512", True, 512)])
def test_torchreid_resnet50_parity(arch, module_prefix, dim, tmp_path):
    models = _torchreid_models()
    torch.manual_seed(0)
    theirs = _torchreid_checkpoint(models, arch, tmp_path / "r50.pth", module_prefix=module_prefix)
    result = cw.convert("torchreid", tmp_path / "r50.pth", tmp_path / "ours.pt")
    assert (result.model, result.source_arch, result.embedding_dim) == ("resnet50", arch, dim)
    x = torch.randn(2, 3, 256, 128, generator=torch.Generator().manual_seed(1))
    diff = _max_diff(theirs, result.path, x)
    print(f"{arch}: max |torchreid - ours| = {diff:.3g}")
    assert diff <= TOLERANCE


def test_torchreid_mobilenetv2_is_refused_in_one_line(tmp_path, capsys):
    models = _torchreid_models()
    net = models.build_model("mobilenetv2_x1_0", num_classes=5, pretrained=False)
    torch.save({"state_dict": net.state_dict(), "epoch": 1}, tmp_path / "mb.pth")
    assert main(["--from", "torchreid", str(tmp_path / "mb.pth"), "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "mobilenetv2 has no counterpart" in err and "expansion conv" in err
    assert not (tmp_path / "o.pt").exists()


# ----------------------------------------------------------------------------- torchreid layout without torchreid
@pytest.fixture()
def osnet_file(tmp_path):
    """A torchreid-layout osnet_x0_25 checkpoint (our model has torchreid's keys) and its source network."""
    torch.manual_seed(0)
    net = create_model("osnet_x0_25", num_classes=13)
    net.load_state_dict(_randomise_statistics(net.state_dict()))
    path = tmp_path / "osnet_x0_25_market.pth"
    torch.save({"state_dict": {"module." + k: v for k, v in net.state_dict().items()}, "epoch": 150}, path)
    return path, net.eval()


def test_converted_checkpoint_loads_in_the_pipeline_embedder(osnet_file, tmp_path, capsys):
    from pipeline.config import EmbedderConfig
    from pipeline.stages.embed import Embedder

    path, net = osnet_file
    out = tmp_path / "osnet.pt"
    assert main(["--from", "torchreid", str(path), "--out", str(out)]) == 0
    line = capsys.readouterr().out
    assert "torchreid osnet_x0_25 -> osnet_x0_25" in line and "512-d" in line and "13 classes" in line
    model, info = load_model(out)
    assert info["converted_from"]["framework"] == "torchreid" and info["converted_from"]["classifier_loaded"]
    assert info["converted_from"]["sha256"] == cw.file_sha256(path)
    assert normalization(info) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    for key, value in net.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)
    embedder = Embedder(EmbedderConfig(checkpoint=str(out)), device="cpu")
    crops = [np.random.default_rng(i).integers(0, 255, (90 + 10 * i, 40, 3), dtype=np.uint8) for i in range(3)]
    vectors = embedder(crops)
    assert embedder.dim == 512 and embedder.input_size == (256, 128) and embedder.model_name == "osnet_x0_25"
    assert vectors.shape == (3, 512) and np.allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)


def test_headless_state_dict_converts_with_a_fresh_classifier(osnet_file, tmp_path):
    path, net = osnet_file
    state = {k: v for k, v in net.state_dict().items() if not k.startswith("classifier.")}
    torch.save(state, tmp_path / "headless.pth")
    result = cw.convert("torchreid", tmp_path / "headless.pth", tmp_path / "o.pt")
    model, info = load_model(result.path)
    assert result.num_classes == 1 and info["converted_from"]["classifier_loaded"] is False
    x = torch.randn(2, 3, 128, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x).embedding, net(x).embedding)


def test_wrong_architecture_names_the_differing_keys(osnet_file, tmp_path, capsys):
    path, _ = osnet_file
    out = tmp_path / "o.pt"
    assert main(["--from", "torchreid", str(path), "--out", str(out), "--model", "osnet_ain_x0_25"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match torchreid osnet_ain_x0_25" in err
    assert "missing keys: conv2.0.conv2.0.layers.0.conv1.weight" in err and "unexpected keys" in err
    assert main(["--from", "torchreid", str(path), "--out", str(out), "--model", "osnet_x1_0"]) == 2
    assert "shape mismatches: conv1.conv.weight (16, 3, 7, 7) vs (64, 3, 7, 7)" in capsys.readouterr().err
    assert main(["--from", "torchreid", str(path), "--out", str(out), "--model", "densenet121"]) == 2
    assert "unknown torchreid architecture 'densenet121'" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("args, message", [
    (["--from", "caffe", "{src}", "--out", "{out}"], "unknown --from 'caffe'; choose one of torchreid, fastreid"),
    (["--from", "torchreid", "{junk}", "--out", "{out}"], "is not a torch checkpoint file"),
    (["--from", "torchreid", "{missing}", "--out", "{out}"], "is neither a file nor a known model name"),
    (["--from", "torchreid", "osnet_x9_msmt17", "--out", "{out}"], "known names: osnet_x1_0_msmt17"),
    (["--from", "torchreid", "{tensor}", "--out", "{out}"], "holds a Tensor, not a state dict"),
    (["--from", "torchreid", "{src}"], "missing --out"),
])
def test_bad_input_is_one_line_with_exit_2(args, message, osnet_file, tmp_path, capsys):
    (tmp_path / "junk.pth").write_bytes(b"definitely not a torch file")
    torch.save(torch.zeros(3), tmp_path / "tensor.pth")
    names = {"src": osnet_file[0], "out": tmp_path / "o.pt", "junk": tmp_path / "junk.pth",
             "missing": tmp_path / "nope.pth", "tensor": tmp_path / "tensor.pth"}
    try:
        code = main([a.format(**names) for a in args])
    except SystemExit as exc:  # argparse-level errors (missing flags)
        code = exc.code
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert not (tmp_path / "o.pt").exists()


def test_osnet_pretrained_path_loads_everything_but_the_classifier(osnet_file):
    path, net = osnet_file
    model = create_model("osnet_x0_25", num_classes=3, pretrained=str(path))
    torch.testing.assert_close(model.conv2[0].conv2d[3].conv2.weight, net.conv2[0].conv2d[3].conv2.weight)
    torch.testing.assert_close(model.fc[1].running_var, net.fc[1].running_var)
    assert model.classifier.weight.shape == (3, 512)
    with pytest.raises(ValueError, match="does not match torchreid osnet_x1_0"):
        create_model("osnet_x1_0", num_classes=3, pretrained=str(path))
    with pytest.raises(ValueError, match="pretrained=True has no download"):
        create_model("osnet_x1_0", num_classes=3, pretrained=True)


# ----------------------------------------------------------------------------- known names / downloads
def test_known_name_offline_fails_fast_in_one_line(monkeypatch, tmp_path, capsys):
    seen = {}

    def offline(url, timeout=None):
        seen.update(url=url, timeout=timeout)
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setenv("REID_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cw.urllib.request, "urlopen", offline)
    assert main(["--from", "torchreid", "osnet_x1_0_msmt17", "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot download osnet_x1_0_msmt17" in err and "pass its path" in err
    assert seen["timeout"] == cw.DOWNLOAD_TIMEOUT_S and seen["url"] == cw.KNOWN_WEIGHTS["osnet_x1_0_msmt17"].url
    assert not list((tmp_path / "cache").glob("*"))  # no half-written file left behind


def test_known_name_downloads_checks_sha256_and_converts(monkeypatch, osnet_file, tmp_path, capsys):
    path, net = osnet_file
    payload = path.read_bytes()
    entry = cw.KnownWeights("osnet_x0_25", "https://example.invalid/osnet_x0_25_test.pth", cw.file_sha256(path))
    monkeypatch.setitem(cw.KNOWN_WEIGHTS, "osnet_x0_25_test", entry)
    monkeypatch.setenv("REID_MODELS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cw.urllib.request, "urlopen", lambda url, timeout=None: io.BytesIO(payload))
    assert main(["--from", "torchreid", "osnet_x0_25_test", "--out", str(tmp_path / "o.pt")]) == 0
    assert (tmp_path / "cache" / "osnet_x0_25_test.pth").read_bytes() == payload
    model, info = load_model(tmp_path / "o.pt")
    assert info["model"] == "osnet_x0_25" and info["converted_from"]["sha256"] == entry.sha256
    # a cached file whose hash no longer matches is refused
    monkeypatch.setitem(cw.KNOWN_WEIGHTS, "osnet_x0_25_test", cw.KnownWeights("osnet_x0_25", entry.url, "0" * 64))
    capsys.readouterr()
    assert main(["--from", "torchreid", "osnet_x0_25_test", "--out", str(tmp_path / "o2.pt")]) == 2
    assert "expected " + "0" * 64 in capsys.readouterr().err and not (tmp_path / "o2.pt").exists()


# ----------------------------------------------------------------------------- fast-reid
PIXEL_MEAN = [123.675, 116.28, 103.53]
PIXEL_STD = [58.395, 57.12, 57.375]


def _fastreid_state(net, *, pixel_mean=PIXEL_MEAN, classifier_key="heads.weight") -> dict:
    """fast-reid's Baseline layout (backbone.*, heads.bottleneck.0.*, heads.weight, pixel buffers) of a bot_r50."""
    state = {}
    for key, value in net.state_dict().items():
        if key.startswith("backbone."):
            state[key] = value
        elif key.startswith("neck.bn."):
            state["heads.bottleneck.0." + key.removeprefix("neck.bn.")] = value
        elif key == "classifier.weight":
            state[classifier_key] = value
    state["pixel_mean"] = torch.tensor(pixel_mean).view(1, 3, 1, 1)
    state["pixel_std"] = torch.tensor(PIXEL_STD).view(1, 3, 1, 1)
    return state


@pytest.fixture(scope="module")
def bot():
    torch.manual_seed(0)
    net = create_model("bot_r50", num_classes=17)
    net.load_state_dict(_randomise_statistics(net.state_dict()))
    return net.eval()


@pytest.mark.parametrize("classifier_key", ["heads.weight", "heads.classifier.weight"])
def test_fastreid_bot_r50_round_trip(bot, classifier_key, tmp_path):
    state = _fastreid_state(bot, classifier_key=classifier_key)
    torch.save({"model": {"module." + k: v for k, v in state.items()}, "iteration": 1000, "optimizer": {}},
               tmp_path / "model_final.pth")
    result = cw.convert("fastreid", tmp_path / "model_final.pth", tmp_path / "bot.pt")
    assert (result.model, result.source_arch, result.num_classes, result.embedding_dim) == \
        ("bot_r50", "bagtricks_R50", 17, 2048)
    model, info = load_model(result.path)
    assert info["model_kwargs"]["last_stride"] == 1 and "config" not in info  # ImageNet statistics: no recipe
    np.testing.assert_allclose(normalization(info)[0], (0.485, 0.456, 0.406), atol=1e-6)
    x = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(model(x).embedding, bot(x).embedding, rtol=0, atol=0)


def test_fastreid_pixel_statistics_become_the_checkpoint_normalisation(bot, tmp_path):
    state = _fastreid_state(bot, pixel_mean=[127.5, 127.5, 127.5])
    torch.save({"model": state}, tmp_path / "m.pth")
    model, info = load_model(cw.convert("fastreid", tmp_path / "m.pth", tmp_path / "bot.pt").path)
    mean, std = normalization(info)
    np.testing.assert_allclose(mean, (0.5, 0.5, 0.5), atol=1e-6)
    np.testing.assert_allclose(std, np.array(PIXEL_STD) / 255, atol=1e-6)


@pytest.mark.parametrize("extra, named", [
    ({"backbone.NL_2.0.g.weight": torch.zeros(1), "heads.pool_layer.p": torch.ones(1)}, "backbone.NL_2.0.g.weight"),
    ({"backbone.layer1.0.bn1.IN.weight": torch.zeros(32)}, "backbone.layer1.0.bn1.IN.weight"),
    ({"backbone.layer3.6.conv1.weight": torch.zeros(1)}, "backbone.layer3.6.conv1.weight"),
])
def test_fastreid_other_configs_are_refused_naming_keys(bot, extra, named, tmp_path, capsys):
    state = {**_fastreid_state(bot), **extra}
    torch.save({"model": state}, tmp_path / "sbs.pth")
    assert main(["--from", "fastreid", str(tmp_path / "sbs.pth"), "--out", str(tmp_path / "o.pt")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not match fast-reid BoT-R50" in err and named in err
    assert "bagtricks_R50.yml" in err and not (tmp_path / "o.pt").exists()


def test_fastreid_missing_layers_and_wrong_model_are_refused(bot, tmp_path):
    state = {k: v for k, v in _fastreid_state(bot).items() if not k.startswith("backbone.layer4.2.")}
    torch.save({"model": state}, tmp_path / "m.pth")
    with pytest.raises(cw.ConversionError, match=r"missing keys: backbone\.layer4\.2\.conv1\.weight"):
        cw.convert("fastreid", tmp_path / "m.pth", tmp_path / "o.pt")
    with pytest.raises(cw.ConversionError, match="convert to bot_r50 only, not 'osnet_x1_0'"):
        cw.convert("fastreid", tmp_path / "m.pth", tmp_path / "o.pt", model="osnet_x1_0")
    with pytest.raises(cw.ConversionError, match="not a torchreid OSNet or ResNet50 state dict"):
        cw.convert("torchreid", tmp_path / "m.pth", tmp_path / "o.pt")
