"""Recipe YAMLs: strict loading, the papers' numbers, and every shipped recipe builds its model and losses."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from reid_models.config import ConfigError, config_from_dict, config_to_dict, load_config
from reid_models.engine.trainer import build_model, feature_dims
from reid_models.losses import build_criterion
from reid_models.registry import list_models

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "reid"


def test_one_recipe_per_registered_model():
    assert sorted(p.stem for p in CONFIGS.glob("*.yaml")) == list_models()


@pytest.mark.parametrize("name", sorted(p.stem for p in CONFIGS.glob("*.yaml")))
def test_shipped_recipe_loads_and_builds_model_and_criterion(name):
    cfg = load_config(CONFIGS / f"{name}.yaml")
    assert cfg.model.name == name and cfg.paper
    assert config_from_dict(config_to_dict(cfg)) == cfg  # what checkpoints store reads back
    with torch.device("meta"):  # shapes only: the full-size network without memory or arithmetic
        model = build_model(cfg, num_classes=751, pretrained=None)
    dims = feature_dims(model, cfg)
    criterion = build_criterion(cfg.loss.as_dict(), num_classes=751, feat_dim=dims)
    assert set(criterion.losses) == set(cfg.loss.as_dict())
    assert model.input_size == (256, 128) == cfg.input.size
    params_m = sum(p.numel() for p in model.parameters()) / 1e6
    paper_params = {"convnext_ap": 90.74, "mfa_r50": 28.3}  # the papers' own counts
    if name in paper_params:
        assert abs(params_m - paper_params[name]) / paper_params[name] < 0.05, params_m


def test_recipes_hold_the_papers_numbers():
    nam = load_config(CONFIGS / "nam_dyrelu_r50.yaml")  # Bi et al. 2024, sec. 4.1
    assert (nam.optimizer.name, nam.optimizer.lr, nam.optimizer.momentum, nam.optimizer.weight_decay) == \
        ("sgd", 0.05, 0.9, 5e-4)
    assert (nam.schedule.epochs, nam.schedule.milestones, nam.sampler.batch_size) == (60, (30,), 32)
    assert (nam.loss.arcface.margin, nam.loss.arcface.scale, nam.model.kwargs["last_stride"]) == (0.4, 135.0, 2)
    cnx = load_config(CONFIGS / "convnext_ap.yaml")  # Sun et al. 2024, sec. 5.1
    assert (cnx.schedule.type, cnx.schedule.epochs, cnx.schedule.warmup_epochs) == ("cosine", 120, 5)
    assert cnx.optimizer.lr * cnx.schedule.warmup_factor == pytest.approx(0.02) and cnx.optimizer.lr == 0.1
    assert cnx.augment.random_erasing == 0.5 and cnx.model.kwargs["variant"] == "base"
    mfa = load_config(CONFIGS / "mfa_r50.yaml")  # Adam, 16 ids x 4, soft triplet + center + GLA
    assert (mfa.optimizer.name, mfa.sampler.batch_size, mfa.sampler.num_instances) == ("adam", 64, 4)
    assert mfa.loss.triplet.margin is None and mfa.loss.center and mfa.loss.gla
    sa = load_config(CONFIGS / "sa_r50.yaml")
    assert (sa.optimizer.name, sa.optimizer.lr, sa.schedule.epochs, sa.sampler.batch_size) == ("adam", 3e-4, 800, 32)
    assert sa.loss.ce.label_smooth == 0.1
    cbam = load_config(CONFIGS / "cbam_r50.yaml")
    assert (cbam.optimizer.lr, cbam.sampler.batch_size) == (3.5e-4, 64) and cbam.loss.circle and cbam.loss.triplet


def _write(tmp_path: Path, mutate) -> Path:
    data = yaml.safe_load((CONFIGS / "bot_r50.yaml").read_text())
    mutate(data)
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.mark.parametrize("mutate, expected", [
    (lambda d: d["optimizer"].update(lrate=0.1), "optimizer.lrate: unknown key; allowed keys in optimizer: name, lr"),
    (lambda d: d.update(epochs=3), "epochs: unknown key; allowed keys in top level: model,"),
    (lambda d: d["loss"]["triplet"].update(marign=0.3), "loss.triplet.marign: unknown key; allowed keys in "
                                                        "loss.triplet: weight, margin, normalize"),
    (lambda d: d["loss"].update(softmax={"weight": 1}), "loss.softmax: unknown key; allowed keys in loss: ce, arcface"),
    (lambda d: d["optimizer"].update(name="rmsprop"), "optimizer.name: 'rmsprop' is not one of sgd, adam, adamw"),
    (lambda d: d["schedule"].update(epochs="120"), "schedule.epochs: expected an integer, got '120'"),
    (lambda d: d["sampler"].update(batch_size=30), "sampler.batch_size: 30 is not a multiple of"),
    (lambda d: d["input"].update(size=[256]), "input.size: expected 2 values"),
    (lambda d: d.pop("optimizer"), "optimizer: missing required key"),
    (lambda d: d["loss"].update(circle={"weight": 1.0}), "loss: needs exactly one of ce, arcface, circle"),
])
def test_bad_recipe_is_a_one_line_error_naming_file_and_key(tmp_path, mutate, expected):
    path = _write(tmp_path, mutate)
    with pytest.raises(ConfigError) as excinfo:
        load_config(path)
    message = str(excinfo.value)
    assert message.startswith(f"{path}: ") and expected in message and "\n" not in message


def test_missing_file_and_broken_yaml(tmp_path):
    with pytest.raises(ConfigError, match="config not found: .*nope.yaml"):
        load_config(tmp_path / "nope.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("model: {name: bot_r50\noptimizer: [")
    with pytest.raises(ConfigError, match="broken.yaml: not valid YAML"):
        load_config(broken)


def test_unknown_model_kwarg_is_a_config_error():
    cfg = load_config(CONFIGS / "bot_r50.yaml")
    bad = config_from_dict({**config_to_dict(cfg), "model": {"name": "bot_r50", "kwargs": {"last_strid": 1}}})
    with pytest.raises(ConfigError, match="model.kwargs: bot_r50: .*last_strid"), torch.device("meta"):
        build_model(bad, num_classes=10, pretrained=None)


def test_set_overrides_are_validated_like_the_file():
    from reid_models.config import override

    cfg = load_config(CONFIGS / "convnext_ap.yaml")
    stage2 = override(cfg, ["model.kwargs.rpp=true", "schedule.epochs=10", "schedule.warmup_epochs=0",
                            "optimizer.lr=0.01", "schedule.milestones=[5]"])
    assert stage2.model.kwargs == {"variant": "base", "rpp": True}
    assert (stage2.schedule.epochs, stage2.optimizer.lr, stage2.schedule.milestones) == (10, 0.01, (5,))
    with pytest.raises(ConfigError, match="^--set: schedule.epoch: unknown key; allowed keys in schedule: epochs"):
        override(cfg, ["schedule.epoch=3"])
    with pytest.raises(ConfigError, match="^--set: expected KEY=VALUE such as schedule.epochs=10"):
        override(cfg, ["schedule.epochs"])
    with pytest.raises(ConfigError, match="^--set: optimizer.lr: expected a number, got 'fast'"):
        override(cfg, ["optimizer.lr=fast"])


def test_a_recipe_without_input_takes_the_models_registered_defaults():
    from reid_models import get_model_info

    data = yaml.safe_load((CONFIGS / "bot_r50.yaml").read_text())
    del data["input"]
    cfg = config_from_dict(data, "no-input.yaml")
    info = get_model_info("bot_r50")
    assert (cfg.input.size, cfg.input.mean, cfg.input.std) == (info.input_size, info.mean, info.std)
    data["input"] = {"size": [384, 128]}
    cfg = config_from_dict(data, "tall.yaml")
    assert cfg.input.size == (384, 128) and cfg.input.mean == info.mean
    assert config_from_dict(config_to_dict(cfg)) == cfg


def test_loss_and_augment_defaults_have_one_home():
    """build_criterion reads the term dataclasses' defaults (no second table in losses.py)."""
    from reid_models.config import AugmentConfig, CenterTerm, TripletTerm
    from reid_models.losses import loss_config

    cfg = loss_config({"ce": {}, "triplet": {}, "center": {"weight": 0.001}})
    assert cfg.triplet == TripletTerm() and cfg.center == CenterTerm(weight=0.001) and cfg.ce.label_smooth == 0.1
    crit = build_criterion(cfg, num_classes=4, feat_dim=8)
    assert crit.center_lr == CenterTerm().lr and crit.losses["triplet"].margin == TripletTerm().margin
    with pytest.raises(ConfigError, match="augment.flip: must be a probability in"):
        config_from_dict({**yaml.safe_load((CONFIGS / "bot_r50.yaml").read_text()), "augment": {"flip": 2}}, "x")
    assert AugmentConfig().erasing_value == "random"
