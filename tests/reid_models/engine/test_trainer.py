"""Training: every network learns with its own recipe's losses, and the train CLI runs end to end
(checkpoints, metrics.json, figures, --resume) on a tiny dataset in the Market-1501 layout."""
from __future__ import annotations

import dataclasses
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from reid_models.checkpoint import load_model, read_checkpoint
from reid_models.common import UserError
from reid_models.config import load_config
from reid_models.data import ImageDataset
from reid_models.datasets import build_dataset
from reid_models.engine.trainer import (
    LRFactor,
    build_loss_optimizer,
    build_model,
    build_optimizer,
    build_scheduler,
    feature_dims,
    restore_scheduler,
    train_one_epoch,
)
from reid_models.losses import build_criterion
from reid_models.output import ReIDOutput
from reid_models.registry import list_models
from reid_models.train import cli, get_args_parser, main
from reid_models.transforms import build_transforms

from ..conftest import REPO, person_image, train_args

METRIC_KEYS = {"rank1", "rank5", "rank10", "rank20", "mAP", "mINP"}


def tiny_batch(market_root: Path, size=(64, 32)) -> tuple[torch.Tensor, torch.Tensor]:
    """8 real files of the tiny dataset: 4 identities x 2 images (a P x K batch), test transform."""
    train = build_dataset("market1501", market_root).train
    items = [next(it for it in train if it[1] == pid and it[2] == cam) for pid in range(4) for cam in (0, 1)]
    data = ImageDataset(items, build_transforms({"size": list(size)}, train=False))
    images, pids, _, _ = zip(*(data[i] for i in range(len(data))))
    return torch.stack(images), torch.tensor(pids)


@pytest.mark.slow
@pytest.mark.parametrize("name", list_models())
def test_model_learns_with_its_recipe_losses(name, market_root):
    """Forward, then optimisation steps on one tiny batch with the recipe's loss section: the loss falls.

    The recipe's optimizer is swapped for Adam lr 3e-4 so one setting works from random init
    for all six (the papers' SGD lrs assume ImageNet weights); convnext_ap uses its tiny variant.
    """
    cfg = load_config(REPO / "configs" / "reid" / f"{name}.yaml")
    kwargs = {**cfg.model.kwargs, **({"variant": "tiny"} if name == "convnext_ap" else {})}
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kwargs=kwargs),
                              input=dataclasses.replace(cfg.input, size=(64, 32)),
                              optimizer=dataclasses.replace(cfg.optimizer, name="adam", lr=3e-4))
    torch.manual_seed(0)
    images, pids = tiny_batch(market_root)
    model = build_model(cfg, num_classes=4, pretrained=None)
    criterion = build_criterion(cfg.loss.as_dict(), num_classes=4, feat_dim=feature_dims(model, cfg))
    optimizer, loss_optimizer = build_optimizer(model, cfg), build_loss_optimizer(criterion, cfg)
    assert (loss_optimizer is not None) == (cfg.loss.center is not None)
    losses = []
    for step in range(6):  # one batch per "epoch": each call is one optimisation step
        stats = train_one_epoch(model, criterion, optimizer, [(images, pids, pids, [""] * 8)], torch.device("cpu"),
                                step, loss_optimizer=loss_optimizer)
        assert set(stats) == {"loss", *cfg.loss.as_dict()} and math.isfinite(stats["loss"])
        losses.append(stats["loss"])
    assert losses[-1] < 0.9 * losses[0], losses
    model.eval()
    with torch.no_grad():
        out = model(images)
    assert isinstance(out, ReIDOutput) and out.embedding.shape == (8, model.embedding_dim)
    assert torch.isfinite(out.embedding).all() and not out.logits


def test_lr_schedules_follow_the_recipes():
    bot = LRFactor(120, 10, 0.1, "step", (40, 70), 0.1, 0.0)  # BoT: 3.5e-5 -> 3.5e-4 in 10 epochs, x0.1 at 40, 70
    assert [bot(e) for e in (0, 5, 10, 39)] == pytest.approx([0.1, 0.55, 1.0, 1.0])
    assert [bot(e) for e in (40, 69, 70, 119)] == pytest.approx([0.1, 0.1, 0.01, 0.01])
    cnx = LRFactor(120, 5, 0.2, "cosine", (), 0.1, 0.0)  # ConvNeXt-AP: 0.02 -> 0.1 in 5 epochs, then cosine
    assert [cnx(e) for e in (0, 5, 62)] == pytest.approx([0.2, 1.0, 0.5 * (1 + math.cos(math.pi * 57 / 115))])
    assert cnx(119) < 0.001 and all(cnx(e) >= cnx(e + 1) for e in range(5, 119))


def test_resume_keeps_the_new_runs_schedule():
    """Resuming a 10-epoch cosine run with 20 epochs: the position comes from the checkpoint, the
    schedule from this run (LambdaLR.load_state_dict alone would bring back the 10-epoch factor)."""
    cfg = load_config(REPO / "configs" / "reid" / "convnext_ap.yaml")
    cfg = dataclasses.replace(cfg, optimizer=dataclasses.replace(cfg.optimizer, backbone_lr_factor=1.0))  # no backbone
    params = [torch.nn.Parameter(torch.zeros(2))]

    def run(epochs: int):
        c = dataclasses.replace(cfg, schedule=dataclasses.replace(cfg.schedule, epochs=epochs, warmup_epochs=0))
        opt = build_optimizer(torch.nn.ParameterList(params), c)
        return opt, build_scheduler(opt, c)

    opt, sched = run(10)
    for _ in range(6):
        opt.step()
        sched.step()
    opt2, sched2 = run(20)
    opt2.load_state_dict(opt.state_dict())
    restore_scheduler(sched2, sched.state_dict())
    assert sched2.last_epoch == 6 and sched2.lr_lambdas[0].epochs == 20
    for _ in range(4):  # epochs 6..9 of 20: still well above the floor the 10-epoch run reaches
        opt2.step()
        sched2.step()
    expected = 0.1 * 0.5 * (1 + math.cos(math.pi * 10 / 20))
    assert opt2.param_groups[0]["lr"] == pytest.approx(expected)


@pytest.mark.slow
def test_train_cli_writes_checkpoints_metrics_and_figures(trained_run):
    for name in ("last.pt", "best.pt", "metrics.json", "cmc.png", "ranked_results.png", "log.jsonl"):
        assert (trained_run / name).is_file(), name
    metrics = json.loads((trained_run / "metrics.json").read_text())
    assert (metrics["model"], metrics["dataset"], metrics["epoch"]) == ("bot_r50", "market1501", 1)
    assert (metrics["num_query"], metrics["num_gallery"]) == (4, 13)  # junk -1 dropped, distractor 0000 kept
    for mode in ("without_rerank", "with_rerank"):
        assert set(metrics[mode]) == METRIC_KEYS
        values = metrics[mode]
        assert all(0.0 <= v <= 100.0 for v in values.values())
        assert values["rank1"] <= values["rank5"] <= values["rank10"] <= values["rank20"]
    ckpt = read_checkpoint(trained_run / "last.pt")
    assert ckpt["epoch"] == 1 and ckpt["input_size"] == [64, 32] and ckpt["num_classes"] == 6
    assert {"optimizer", "scheduler", "loss_optimizer", "criterion", "config"} <= set(ckpt)
    assert ckpt["config"]["input"]["size"] == [64, 32] and ckpt["dataset"] == "market1501"
    model, info = load_model(trained_run / "best.pt")
    assert info["metrics"]["without_rerank"] == metrics["without_rerank"]
    with torch.no_grad():
        assert model(torch.zeros(2, 3, 64, 32)).embedding.shape == (2, 2048)
    log = [json.loads(line) for line in (trained_run / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [1] and log[0]["loss"] > 0 and "center" in log[0]
    cmc = np.asarray(Image.open(trained_run / "cmc.png"))
    grid = np.asarray(Image.open(trained_run / "ranked_results.png").convert("RGB"))
    assert cmc.shape[0] > 100 and grid.shape[0] > 4 * 64  # one row per query (4 queries)
    assert (np.abs(grid.astype(int) - (0, 200, 0)).sum(2) == 0).any()  # a correct match framed green


@pytest.mark.slow
def test_resume_continues_from_the_saved_epoch(trained_run, market_root, tmp_path):
    start = tmp_path / "start.pt"
    shutil.copy(trained_run / "last.pt", start)
    out = tmp_path / "resumed"
    args = [a for a in train_args(market_root, out) if a not in ("--config", str(REPO / "configs/reid/bot_r50.yaml"))]
    args[args.index("--epochs") + 1] = "2"
    main(get_args_parser().parse_args([*args, "--resume", str(start)]))  # recipe read back from the checkpoint
    log = [json.loads(line) for line in (out / "log.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in log] == [2]
    ckpt = read_checkpoint(out / "last.pt")
    assert ckpt["epoch"] == 2 and ckpt["scheduler"]["last_epoch"] == 2
    adam_steps = {int(s["step"]) for s in ckpt["optimizer"]["state"].values()}
    assert adam_steps == {4}  # 2 iterations in epoch 1 (restored) + 2 in epoch 2
    assert ckpt["loss_optimizer"]["param_groups"][0]["lr"] == 0.5  # center-loss SGD lr from the recipe
    first = read_checkpoint(start)["state_dict"]
    assert any(not torch.equal(first[k], v) for k, v in ckpt["state_dict"].items() if v.is_floating_point())
    assert json.loads((out / "metrics.json").read_text())["epoch"] == 2


def test_test_only_dataset_cannot_be_trained(tmp_path):
    for folder in ("partial_body_images", "whole_body_images"):
        for pid in (1, 2):
            path = tmp_path / "Partial_REID" / folder / f"{pid:03d}_01.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(person_image(pid, 0)).save(path)
    args = train_args(tmp_path, tmp_path / "out")
    args[args.index("market1501")] = "partial_reid"
    with pytest.raises(UserError, match="partial_reid has no training split .*test-only.*reid_models.evaluate"):
        main(get_args_parser().parse_args(args))


def test_bad_input_is_one_error_line(tmp_path, market_root, capsys):
    args = train_args(tmp_path / "missing", tmp_path / "out")
    assert cli(args) == 2
    message = capsys.readouterr().err
    assert message.startswith("error: Market-1501: data root ") and "missing does not exist" in message
    assert message.count("\n") == 1
    args = train_args(market_root, tmp_path / "out")
    args[args.index("--pretrained") + 1] = str(tmp_path / "resnet50-0676ba61.pth")
    with pytest.raises(UserError, match="--pretrained file not found: .*resnet50-0676ba61.pth"):
        main(get_args_parser().parse_args(args))


@pytest.mark.slow
def test_mixed_precision_step_with_grad_scaler(market_root):
    """The CUDA path's autocast + GradScaler + channels_last code, run on the CPU with bf16."""
    cfg = load_config(REPO / "configs" / "reid" / "bot_r50.yaml")
    cfg = dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, size=(64, 32)))
    torch.manual_seed(0)
    model = build_model(cfg, num_classes=4, pretrained=None).to(memory_format=torch.channels_last)
    criterion = build_criterion(cfg.loss.as_dict(), num_classes=4, feat_dim=feature_dims(model, cfg))
    optimizer, loss_optimizer = build_optimizer(model, cfg), build_loss_optimizer(criterion, cfg)
    scaler = torch.amp.GradScaler("cpu")
    images, pids = tiny_batch(market_root)
    centers = criterion.losses["center"][0].centers.detach().clone()
    losses = [train_one_epoch(model, criterion, optimizer, [(images, pids, pids, [""] * 8)], torch.device("cpu"), step,
                              loss_optimizer=loss_optimizer, scaler=scaler, amp_dtype=torch.bfloat16,
                              channels_last=True)["loss"] for step in range(4)]
    assert losses[-1] < 0.9 * losses[0], losses
    assert scaler.get_scale() > 1 and not torch.equal(centers, criterion.losses["center"][0].centers)


@pytest.mark.slow
def test_init_loads_matching_weights_and_keeps_new_layers_fresh(trained_run, capsys):
    """--init (e.g. PCB -> RPP second stage): every tensor whose name and shape match is loaded."""
    from reid_models.engine.trainer import init_weights

    trained = read_checkpoint(trained_run / "last.pt")["state_dict"]
    same = build_model(load_config(REPO / "configs" / "reid" / "bot_r50.yaml"), num_classes=6, pretrained=None)
    init_weights(same, trained_run / "last.pt")
    assert all(torch.equal(v, trained[k]) for k, v in same.state_dict().items())
    sa = build_model(load_config(REPO / "configs" / "reid" / "sa_r50.yaml"), num_classes=6, pretrained=None)
    init_weights(sa, trained_run / "last.pt")
    printed = capsys.readouterr().out
    assert "fresh: " in printed and ".alpha" in printed  # the self-attention block is new
    assert torch.equal(sa.state_dict()["backbone.conv1.weight"], trained["backbone.conv1.weight"])


def test_offline_imagenet_download_is_one_error_line(market_root, tmp_path, monkeypatch):
    """backbones fails fast offline; train turns it into one line naming the --pretrained flag."""
    import reid_models.engine.trainer as train_module

    def offline(*args, pretrained=None, **kwargs):
        assert pretrained is True  # --pretrained download
        raise RuntimeError("cannot download ImageNet weights for resnet50 from https://download.pytorch.org/"
                           "models/resnet50-0676ba61.pth (URLError); pass pretrained=/path/to/resnet50-0676ba61.pth")

    monkeypatch.setattr(train_module, "create_model", offline)
    args = train_args(market_root, tmp_path / "out")
    args[args.index("--pretrained") + 1] = "download"
    with pytest.raises(UserError, match=r"^cannot download ImageNet .* \(here: --pretrained /path/to/that"):
        main(get_args_parser().parse_args(args))


@pytest.mark.slow
def test_corrupt_train_jpeg_is_one_error_line_whatever_the_worker_count(market_root, tmp_path):
    """Issue 9: with the default DataLoader workers a corrupt JPEG gave an 18-line 'Caught ImageReadError in
    DataLoader worker process 0' traceback; now one line naming the file (exit 2), as with --num-workers 0."""
    import os
    import subprocess
    import sys

    data = tmp_path / "data"
    shutil.copytree(market_root, data)
    for path in (data / "Market-1501-v15.09.15" / "bounding_box_train").glob("*.jpg"):
        path.write_bytes(path.read_bytes()[:200])  # every train image truncated: the first batch fails
    args = [a for a in train_args(data, tmp_path / "out") if a not in ("--num-workers", "0")]
    assert "--num-workers" not in args  # the default worker count (> 0 on any machine with 2 CPUs)
    run = subprocess.run([sys.executable, "-m", "reid_models.train", *args], capture_output=True, text=True,
                         cwd=REPO, timeout=300, env={**os.environ, "CAMREID_TRACEBACK": "", "REID_TRACEBACK": ""})
    assert run.returncode == 2, run.stderr
    lines = [line for line in run.stderr.replace("\r", "\n").splitlines()
             if line.strip() and not line.startswith("epoch ")]  # tqdm's progress bar
    assert len(lines) == 1 and lines[0].startswith("error: cannot decode image "), run.stderr
    assert "corrupt or truncated" in lines[0] and "Traceback" not in run.stderr


# ----------------------------------------------------------------------------- optimizer param groups
def _recipe(name: str, **optimizer):
    cfg = load_config(REPO / "configs" / "reid" / f"{name}.yaml")
    return dataclasses.replace(cfg, input=dataclasses.replace(cfg.input, size=(64, 32)),
                               optimizer=dataclasses.replace(cfg.optimizer, **optimizer))


def _group_of(model, optimizer) -> dict[str, dict]:
    """parameter name -> its optimizer group (trainable parameters; BNNeck's frozen bias has none)."""
    where = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    return {n: where[id(p)] for n, p in model.named_parameters() if p.requires_grad}


def test_backbone_trains_at_its_lr_factor():
    cfg = _recipe("convnext_ap", backbone_lr_factor=0.1)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, kwargs={**cfg.model.kwargs, "variant": "tiny"}))
    assert load_config(REPO / "configs" / "reid" / "convnext_ap.yaml").optimizer.backbone_lr_factor == 0.1
    model = build_model(cfg, num_classes=5, pretrained=None)
    optimizer = build_optimizer(model, cfg)
    groups = _group_of(model, optimizer)
    assert optimizer.param_groups[0]["name"] == "head_weights" and optimizer.param_groups[0]["lr"] == 0.1
    for name, group in groups.items():
        backbone = name.startswith("backbone.")
        assert group["lr"] == pytest.approx(0.01 if backbone else 0.1), name
        assert group["name"].startswith("backbone_" if backbone else "head_") and group["weight_decay"] == 5e-4
    assert {g["name"] for g in groups.values()} == {"backbone_weights", "backbone_biases", "head_weights",
                                                   "head_biases"}
    assert groups["classifiers.0.weight"]["lr"] == 0.1
    assert groups["backbone.features.0.0.weight"]["lr"] == pytest.approx(0.01)
    scheduler = build_scheduler(optimizer, cfg)  # the schedule scales both alike
    optimizer.step()
    scheduler.step()
    lrs = {g["name"]: g["lr"] for g in optimizer.param_groups}
    assert lrs["backbone_weights"] == pytest.approx(0.1 * lrs["head_weights"])


def test_weight_decay_can_skip_norms_biases_and_gem_p():
    cfg = _recipe("mfa_r50")
    model = build_model(cfg, num_classes=5, pretrained=None)
    default = build_optimizer(model, cfg)  # default: every parameter decays, groups as before (weights, biases)
    assert [g["name"] for g in default.param_groups] == ["weights", "biases"]
    assert {g["weight_decay"] for g in default.param_groups} == {5e-4}
    skip = build_optimizer(model, _recipe("mfa_r50", no_decay_norm_bias=True))
    groups = _group_of(model, skip)
    for name in ("gems.0.p", "backbone.bn1.weight", "backbone.bn1.bias", "necks.0.bn.weight", "branches.0.1.weight",
                 "branches.0.1.bias"):
        assert groups[name]["weight_decay"] == 0.0, name
    for name in ("backbone.conv1.weight", "backbone.layer4.2.conv3.weight", "branches.0.0.weight",
                 "classifiers.0.weight"):
        assert groups[name]["weight_decay"] == 5e-4, name
    params = dict(model.named_parameters())
    assert all((g["weight_decay"] == 0.0) == (params[n].ndim <= 1) for n, g in groups.items())
    assert skip.param_groups[0]["name"] == "weights" and skip.param_groups[0]["weight_decay"] == 5e-4


def test_backbone_factor_needs_a_backbone_and_a_positive_value():
    from reid_models.config import ConfigError, override

    cfg = _recipe("osnet_x0_25", backbone_lr_factor=0.1)
    with pytest.raises(ConfigError, match="osnet_x0_25 has no 'backbone' submodule"):
        build_optimizer(build_model(cfg, num_classes=5, pretrained=None), cfg)
    with pytest.raises(ConfigError, match="optimizer.backbone_lr_factor: must be > 0"):
        override(_recipe("bot_r50"), ["optimizer.backbone_lr_factor=0"])


# ----------------------------------------------------------------------------- RNG on resume
def test_rng_state_restores_the_augmentation_draws(market_root):
    from reid_models.config import AugmentConfig, InputConfig
    from reid_models.engine.trainer import restore_rng_state, rng_state
    from reid_models.transforms import build_train_transforms

    transform = build_train_transforms(InputConfig(size=(64, 32)), AugmentConfig(flip=0.5, pad=10, random_erasing=0.5))
    image = Image.open(build_dataset("market1501", market_root).train[0][0])
    state = rng_state()
    first = torch.stack([transform(image) for _ in range(8)])
    restore_rng_state(state)
    assert torch.equal(torch.stack([transform(image) for _ in range(8)]), first)
    assert not torch.equal(torch.stack([transform(image) for _ in range(8)]), first)


def test_loader_workers_draw_per_epoch_augmentation(market_root):
    """With workers, epoch e's augmentation depends on (seed, e) only: a fresh loader (a resumed run)
    reseeded for epoch 1 yields the images an uninterrupted loader yields in its epoch 1."""
    from reid_models.data import build_train_loader
    from reid_models.engine.trainer import epoch_seed

    options = {"size": [64, 32], "flip": 0.5, "pad": 10, "random_erasing": 0.5}
    data = build_dataset("market1501", market_root)

    def epoch_images(loader, epoch):
        loader.sampler.set_epoch(epoch)
        loader.generator.manual_seed(epoch_seed(0, epoch))
        return torch.cat([images for images, *_ in loader])

    uninterrupted = build_train_loader(data, options, batch_size=8, num_instances=2, num_workers=1, seed=0)
    epoch_images(uninterrupted, 0)
    epoch1 = epoch_images(uninterrupted, 1)
    resumed = build_train_loader(data, options, batch_size=8, num_instances=2, num_workers=1, seed=0)
    assert torch.equal(epoch_images(resumed, 1), epoch1)
    other = build_train_loader(data, options, batch_size=8, num_instances=2, num_workers=1, seed=0)
    other.sampler.set_epoch(1)
    other.generator.manual_seed(epoch_seed(0, 0))  # epoch 1's order, epoch 0's worker seeds
    assert not torch.equal(torch.cat([images for images, *_ in other]), epoch1)  # the seed drives the augmentation


@pytest.mark.slow
def test_resumed_run_trains_like_an_uninterrupted_one(market_root, tmp_path, monkeypatch):
    """2 epochs in one go vs a run interrupted after epoch 1 and resumed: the same weights, to the bit
    (CPU), so the resumed epoch drew the same augmentation (flip, pad/crop, random erasing)."""
    from reid_models.engine import trainer

    def run(out, *extra):
        args = train_args(market_root, out, "--no-rerank", "--eval-every", "5", *extra)
        args[args.index("--epochs") + 1] = "2"
        main(get_args_parser().parse_args(args))
        return read_checkpoint(out / "last.pt")

    whole = run(tmp_path / "whole")
    save = trainer.save_checkpoint

    def save_then_interrupt(path, *a, **kw):
        save(path, *a, **kw)
        if Path(path).name == "last.pt":
            raise KeyboardInterrupt  # Ctrl-C right after epoch 1 was saved

    monkeypatch.setattr(trainer, "save_checkpoint", save_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run(tmp_path / "half")
    monkeypatch.undo()
    assert read_checkpoint(tmp_path / "half" / "last.pt")["epoch"] == 1
    resumed = run(tmp_path / "resumed", "--resume", str(tmp_path / "half" / "last.pt"))
    assert resumed["epoch"] == whole["epoch"] == 2
    diff = [k for k, v in whole["state_dict"].items() if not torch.equal(v, resumed["state_dict"][k])]
    assert diff == []


# ----------------------------------------------------------------------------- dataset options
def test_dataset_option_reaches_the_reader(tmp_path, market_root, capsys):
    from reid_models.engine.trainer import load_dataset

    from ..test_datasets import make_msmt17

    make_msmt17(tmp_path, "MSMT17_V1", "train", "test")
    base = ["--config", str(REPO / "configs/reid/bot_r50.yaml"), "--data-root", str(tmp_path), "--dataset", "msmt17"]
    plain, options = load_dataset(get_args_parser().parse_args(base))
    assert len(plain.train) == 3 and options == {}
    with_val, options = load_dataset(get_args_parser().parse_args([*base, "--dataset-option", "include_val=true"]))
    assert len(with_val.train) == 4 and options == {"include_val": True}  # + list_val.txt
    bad = [(["--dataset-option", "include_val=maybe"], "option include_val is true or false, got 'maybe'"),
           (["--dataset-option", "include_val"], "expects KEY=VALUE such as include_val=true"),
           (["--dataset-option", "colour=red"], "has no option 'colour'; options: version, include_val")]
    for extra, words in bad:
        assert cli([*base, *extra]) == 2
        err = capsys.readouterr().err
        assert words in err and err.count("\n") == 1, err
