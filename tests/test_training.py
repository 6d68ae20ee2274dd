import json
import runpy
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from sr_tool.archs import build_model, load_model, preset_config, save_model
from sr_tool.data import DataError, HRCropDataset, as_unit_float, find_images
from sr_tool.image_io import read_image
from sr_tool.losses import LOSSES, LossSpecError, build_loss, parse_loss_spec
from sr_tool.metrics import psnr_y
from sr_tool.resize import imresize
from sr_tool.training import (
    SRLightningModule,
    TimeBudget,
    TrainConfig,
    TrainingError,
    epoch_length,
    load_matching_weights,
    lr_factor,
    slim_checkpoint,
    train,
)


@pytest.fixture(scope="module")
def folders(tmp_path_factory, request):
    data = Path(__file__).resolve().parents[2] / "shared" / "data"
    if not (data / "train" / "T91").is_dir():
        pytest.skip("training data not found")
    root = tmp_path_factory.mktemp("data")
    (root / "train").mkdir()
    (root / "val").mkdir()
    for path in sorted((data / "train" / "T91").glob("*.png"))[:6]:
        shutil.copy(path, root / "train" / path.name)
    for name in ("baby.png", "bird.png"):
        img = read_image(data / "Set5" / "HR" / name).pixels[..., :96, :96]
        from sr_tool.image_io import write_image

        write_image(root / "val" / name, img)
    return root


def _cfg(folders, out, **kw):
    base = dict(
        train_dirs=[str(folders / "train")], val_dirs=[str(folders / "val")], out_dir=str(out), scale=2,
        preset="srresnet-tiny", patch_size=32, batch_size=4, max_steps=20, steps_per_epoch=10,
        num_workers=0, lr=1e-3, export=False, accelerator="cpu", devices="1",
    )  # fmt: skip
    base.update(kw)
    return TrainConfig(**base)


class Recorder(pl.Callback):
    def __init__(self):
        self.losses, self.val = [], []

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.losses.append(float(outputs["loss"]))

    def on_validation_epoch_end(self, trainer, module):
        self.val.append(float(trainer.callback_metrics["val/psnr_y"]))


def _val_psnr(model, folder, scale):
    values = []
    with torch.no_grad():
        for path in sorted(Path(folder).iterdir()):
            hr = read_image(path).pixels
            values.append(psnr_y(model(imresize(hr, 1 / scale, round_8bit=True)).clamp(0, 1), hr, scale).item())
    return sum(values) / len(values)


def test_training_lowers_loss_and_raises_validation_psnr(folders, tmp_path):
    torch.manual_seed(0)
    start = build_model(preset_config("srresnet-tiny", 2))
    save_model(start, tmp_path / "init.pt")
    recorder = Recorder()
    cfg = _cfg(folders, tmp_path / "run", max_steps=200, steps_per_epoch=100, init=str(tmp_path / "init.pt"), export=True)
    result = train(cfg, callbacks=[recorder])
    assert len(recorder.losses) == 200
    first, last = sum(recorder.losses[:50]) / 50, sum(recorder.losses[-50:]) / 50
    start_psnr = _val_psnr(start, folders / "val", 2)
    print(f"train loss {first:.4f} -> {last:.4f}; val PSNR-Y {start_psnr:.2f} -> {recorder.val[-1]:.2f}")
    assert last < 0.9 * first
    assert recorder.val[-1] > start_psnr + 0.5
    card = result.card.read_text()
    for key in ('"steps": 200', '"loss": "l1"', '"hardware"', '"wall_time_s"', '"val/psnr_y"', '"parameters"'):
        assert key in card
    assert result.onnx.is_file() and load_model(result.model_pt)[0].config.scale == 2


class Crash(Exception):
    pass


class CrashAtStep(pl.Callback):
    """A crash (power cut, kill) at the start of step ``step``, after that epoch's checkpoint."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            raise Crash()


def test_resume_is_exact(folders, tmp_path):
    settings = dict(max_steps=20, steps_per_epoch=10, ema_decay=0.9, warmup_steps=5)
    train(_cfg(folders, tmp_path / "straight", **settings))
    with pytest.raises(Crash):
        train(_cfg(folders, tmp_path / "resumed", **settings), callbacks=[CrashAtStep(10)])
    assert torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)["global_step"] == 10
    train(_cfg(folders, tmp_path / "resumed", resume=True, **settings))
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    assert a["global_step"] == b["global_step"] == 20
    for key, value in a["state_dict"].items():  # model and EMA weights
        assert torch.allclose(value, b["state_dict"][key], atol=1e-6), key
    adam_a, adam_b = a["optimizer_states"][0]["state"][0], b["optimizer_states"][0]["state"][0]
    assert torch.allclose(adam_a["exp_avg_sq"], adam_b["exp_avg_sq"]) and adam_a["step"] == adam_b["step"]
    assert a["lr_schedulers"][0]["last_epoch"] == b["lr_schedulers"][0]["last_epoch"] == 20


class StepClock(pl.Callback):
    """A clock that advances 0.05 s per training step, so time-budget runs are exact."""

    def __init__(self):
        self.steps = 0

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.steps += 1

    def __call__(self) -> float:
        return self.steps * 0.05


def test_time_budget_fits_whole_epochs_and_the_schedule(folders, tmp_path):
    clock = StepClock()
    budget = TimeBudget(5, warmup=5, calibrate=20, clock=clock)  # 5 s = 100 steps, less the 3% margin
    cfg = _cfg(folders, tmp_path / "run", max_steps=100_000, steps_per_epoch=10)
    result = train(cfg, callbacks=[clock, budget])
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    # 4.85 s at 20 steps/s = 97 steps, to whole epochs: 100; the run stops there, validated
    assert ckpt["global_step"] == 100 and ckpt["hyper_parameters"]["train_config"]["max_steps"] == 100
    assert "val/psnr_y" in result.metrics
    assert ckpt["lr_schedulers"][0]["_last_lr"][0] < 0.05 * cfg.lr  # the cosine ended at 100, not 100,000
    assert cfg.max_steps == 100_000  # the caller's config is left as given

    # From the config, on the real clock: stops at an epoch end, well before max_steps
    result = train(_cfg(folders, tmp_path / "run2", max_steps=100_000, steps_per_epoch=10, time_budget_s=3))
    ckpt = torch.load(result.last_checkpoint, map_location="cpu", weights_only=True)
    assert ckpt["global_step"] % 10 == 0 and ckpt["global_step"] == ckpt["hyper_parameters"]["train_config"]["max_steps"]


class StopSignalAtStep(pl.Callback):
    """A scheduler's SIGTERM at step ``step`` (Lightning's handler flags the trainer; it stops after the step)."""

    def __init__(self, step):
        self.step = step

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == self.step:
            import os
            import signal

            os.kill(os.getpid(), signal.SIGTERM)


def test_a_stop_signal_saves_the_step_reached_and_resume_finishes(folders, tmp_path):
    from sr_tool.training import TrainingInterrupted

    settings = dict(max_steps=20, steps_per_epoch=10)
    with pytest.raises(TrainingInterrupted, match="--resume") as stopped:
        train(_cfg(folders, tmp_path / "run", **settings), callbacks=[StopSignalAtStep(13)])
    last = tmp_path / "run/checkpoints/last.ckpt"
    assert stopped.value.checkpoint == last and stopped.value.step >= 13  # mid-epoch, past the epoch's save at 10
    assert torch.load(last, weights_only=True)["global_step"] == stopped.value.step
    train(_cfg(folders, tmp_path / "run", resume=True, **settings))
    assert torch.load(last, weights_only=True)["global_step"] == 20
    train(_cfg(folders, tmp_path / "straight", **settings))  # the resumed run is the uninterrupted one
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    b = torch.load(last, weights_only=True)["state_dict"]
    assert all(torch.allclose(v, b[k], atol=1e-6) for k, v in a.items())

    with pytest.raises(Crash):  # any other error keeps the last good checkpoint as it was
        train(_cfg(folders, tmp_path / "crash", **settings), callbacks=[CrashAtStep(13)])
    assert torch.load(tmp_path / "crash/checkpoints/last.ckpt", weights_only=True)["global_step"] == 10


@pytest.mark.parametrize("workers", [0, 1])
def test_two_stops_mid_epoch_resume_to_the_uninterrupted_run(folders, tmp_path, workers):
    # With data workers the loader draws its first indices as soon as it is built, before training
    # starts: the sampler must know where the stopped epoch was by then, or the resumed epoch
    # replays the first epoch's crops and the next one ends early (a run stopped twice then ended
    # hundreds of steps short of max_steps).
    from sr_tool.training import TrainingInterrupted

    settings = dict(max_steps=30, steps_per_epoch=10, num_workers=workers)
    last = tmp_path / "run/checkpoints/last.ckpt"
    for stop, resume in ((13, False), (24, True)):
        with pytest.raises(TrainingInterrupted):
            train(_cfg(folders, tmp_path / "run", resume=resume, **settings), callbacks=[StopSignalAtStep(stop)])
    train(_cfg(folders, tmp_path / "run", resume=True, **settings))
    train(_cfg(folders, tmp_path / "straight", **settings))
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(last, weights_only=True)
    assert a["global_step"] == b["global_step"] == 30 and a["epoch"] == b["epoch"]
    assert all(torch.allclose(v, b["state_dict"][k], atol=1e-6) for k, v in a["state_dict"].items())


def test_data_workers_ignore_ctrl_c_and_end_quietly_on_sigterm():
    code = ("import os, signal, time; from sr_tool.data import _leave_stops_to_the_trainer as f; f(0); "
            "os.kill(os.getpid(), signal.SIGINT); time.sleep(0.2); print('alive', flush=True); "
            "os.kill(os.getpid(), signal.SIGTERM); time.sleep(5); print('still here')")  # fmt: skip
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and out.stdout.split() == ["alive"]  # exit 0: the trainer is not failed at once


class StopSignalThenWorkerGone(StopSignalAtStep):
    """SIGTERM, then the error a data loader raises when the same signal has ended its worker."""

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        super().on_train_batch_start(trainer, module, batch, batch_idx)
        if trainer.global_step == self.step:
            raise RuntimeError("DataLoader worker (pid(s) 1234) exited unexpectedly")


def test_a_stop_signal_that_also_ended_a_data_worker_still_saves(folders, tmp_path):
    from sr_tool.training import TrainingInterrupted

    with pytest.raises(TrainingInterrupted) as stopped:
        train(_cfg(folders, tmp_path / "run", max_steps=20, steps_per_epoch=10), callbacks=[StopSignalThenWorkerGone(13)])
    assert stopped.value.step == 13
    assert torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["global_step"] == 13


def test_resume_without_checkpoint_is_a_clear_error(folders, tmp_path):
    with pytest.raises(ValueError, match="no checkpoint to resume"):
        train(_cfg(folders, tmp_path / "none", resume=True))


def test_nan_loss_stops_with_clear_message_and_keeps_last_checkpoint(folders, tmp_path, monkeypatch):
    import sr_tool.losses.pixel as pixel

    calls = {"n": 0}
    real = pixel.l1_loss

    def flaky(pred, target):
        calls["n"] += 1
        return real(pred, target) * (float("nan") if calls["n"] > 12 else 1.0)

    monkeypatch.setattr(pixel, "l1_loss", flaky)
    with pytest.raises(TrainingError, match="loss is nan at step 12.*last good checkpoint is"):
        train(_cfg(folders, tmp_path / "nan"))
    assert torch.load(tmp_path / "nan/checkpoints/last.ckpt", weights_only=True)["global_step"] == 10


def test_ddp_on_two_cpu_processes(folders, tmp_path):
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "sr_tool", "train", "--data", str(folders / "train"), "--out", str(out),
        "-x", "2", "--preset", "srresnet-tiny", "--patch-size", "32", "--batch-size", "2", "--max-steps", "4",
        "--steps-per-epoch", "2", "--num-workers", "0", "--accelerator", "cpu", "--devices", "2", "--strategy", "ddp",
    ]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "2 x CPU" in (out / "model.json").read_text()


def test_unreadable_training_image_is_skipped_with_a_warning(folders, tmp_path, caplog):
    shutil.copytree(folders / "train", tmp_path / "train")
    (tmp_path / "train" / "broken.png").write_bytes(b"not a png")
    with caplog.at_level("WARNING"):
        ds = HRCropDataset(find_images([tmp_path / "train"]), scale=2, patch_size=32, samples_per_epoch=8)
    assert len(ds.sources) == 6
    assert "broken.png" in caplog.text


def test_empty_folder_and_oversized_crops_are_clear_errors(folders, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no training images"):
        train(_cfg(folders, tmp_path / "o", train_dirs=[str(tmp_path / "empty")]))
    with pytest.raises(DataError, match="larger than every training image"):
        train(_cfg(folders, tmp_path / "o", patch_size=2048))


def test_samples_are_deterministic(folders):
    files = find_images([folders / "train"])
    a = HRCropDataset(files, scale=2, patch_size=32, samples_per_epoch=8, seed=3)
    b = HRCropDataset(files, scale=2, patch_size=32, samples_per_epoch=8, seed=3)
    assert torch.equal(a[5]["hr"], b[5]["hr"]) and not torch.equal(a[5]["hr"], a[6]["hr"])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_runs_one_step_with_finite_gradient(name, monkeypatch):
    if name.startswith("lpips-"):  # no ImageNet weights offline: a random backbone exercises the same code
        import torchvision

        import sr_tool.losses.deep as deep

        def random_trunk(net, weights):
            trunk = torchvision.models.alexnet() if net == "alex" else torchvision.models.vgg16()
            return {k[len("features.") :]: v for k, v in trunk.state_dict().items() if k.startswith("features.")}

        monkeypatch.setattr(deep, "_imagenet_trunk_state", random_trunk)
    model = build_model(preset_config("srresnet-tiny", 2))
    loss = build_loss(name)
    target = torch.rand(2, 3, 48, 48)
    value = loss(model(torch.rand(2, 3, 24, 24)), target, reference=target)  # ldl compares with a reference
    value.backward()
    grads = [p.grad for p in model.parameters()]
    assert torch.isfinite(value) and all(g is not None and torch.isfinite(g).all() for g in grads)


def test_loss_specs():
    assert parse_loss_spec("msssim+l1") == [(1.0, "msssim-l1")]  # the Zhao mix
    assert parse_loss_spec("l1+0.1*stlpips-vgg") == [(1.0, "l1"), (0.1, "stlpips-vgg")]
    assert parse_loss_spec("1*msssim+1*l1") == [(1.0, "msssim"), (1.0, "l1")]
    # the mix inside a longer spec is still the mix; other neighbours of msssim are not
    assert parse_loss_spec("msssim+l1+0.1*elpips-alex") == [(1.0, "msssim-l1"), (0.1, "elpips-alex")]
    assert parse_loss_spec("0.1*gan+msssim+l1") == [(0.1, "gan"), (1.0, "msssim-l1")]
    assert parse_loss_spec("msssim+l1-low") == [(1.0, "msssim"), (1.0, "l1-low")]
    with pytest.raises(LossSpecError, match="unknown loss 'lpip-vgg'.*valid names: l1, l2"):
        parse_loss_spec("l1+lpip-vgg")
    with pytest.raises(ValueError, match="unknown loss"):
        TrainConfig(train_dirs=["x"], loss="l3")


def test_learning_rate_schedule():
    cfg = TrainConfig(max_steps=1000, warmup_steps=100, schedule="cosine", min_lr_ratio=0.01)
    assert lr_factor(0, cfg) == pytest.approx(0.01) and lr_factor(99, cfg) == pytest.approx(1.0)
    assert lr_factor(550, cfg) == pytest.approx(0.505) and lr_factor(1000, cfg) == pytest.approx(0.01)
    step = TrainConfig(max_steps=1000, schedule="step", step_milestones=[300, 600], step_gamma=0.5)
    assert [lr_factor(s, step) for s in (0, 300, 700)] == [1.0, 0.5, 0.25]


def test_init_copies_matching_layers_across_scales(tmp_path):
    x4 = build_model(preset_config("srresnet-tiny", 4))
    save_model(x4, tmp_path / "x4.pt")
    x2 = build_model(preset_config("srresnet-tiny", 2))
    copied, skipped = load_matching_weights(x2, tmp_path / "x4.pt")  # x2 is x4 minus one upsampling stage
    assert (copied, skipped) == (len(x2.state_dict()), 0)
    assert torch.equal(x2.body[0].body[0].weight, x4.body[0].body[0].weight)
    x3 = build_model(preset_config("srresnet-tiny", 3))
    copied, skipped = load_matching_weights(x3, tmp_path / "x4.pt")  # the x3 upsampler has other shapes
    assert copied > 0 and skipped == 2
    assert not torch.equal(x3.upsample[0].weight[:32], x4.upsample[0].weight)


def test_init_from_another_preset_warns_that_little_matched(tmp_path, caplog):
    save_model(build_model(preset_config("srresnet-tiny", 2)), tmp_path / "tiny.pt")
    with caplog.at_level("INFO"):
        copied, _ = load_matching_weights(build_model(preset_config("srresnet-light", 2)), tmp_path / "tiny.pt")
    assert copied > 0 and "only" in caplog.text and "another preset?" in caplog.text


def test_init_takes_a_built_in_model_name(folders, tmp_path, caplog):
    from sr_tool.upscale import ModelNotFound, builtin_model_files

    if not builtin_model_files("pixel"):
        pytest.skip("built-in models not installed")
    with caplog.at_level("INFO"):
        result = train(_cfg(folders, tmp_path / "run", preset="rep-l", init="pixel", max_steps=1, val_dirs=[]))
    card = torch.load(result.last_checkpoint, weights_only=True)["hyper_parameters"]["train_config"]
    assert card["init"].endswith("pixel_x2.onnx") and "--init: " in caplog.text and "left as initialised" in caplog.text
    with pytest.raises(ModelNotFound, match="did you mean pixel"):
        train(_cfg(folders, tmp_path / "typo", init="pixle", max_steps=1))


def test_empty_init_on_the_command_line_overrides_a_recipes_init(folders, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from sr_tool.cli import app

    recipe = tmp_path / "recipe.yaml"  # the shipped recipes continue from the shipped weights
    settings = {k: v for k, v in vars(_cfg(folders, tmp_path / "run", max_steps=1, val_dirs=[])).items()
                if k in ("train_dirs", "out_dir", "scale", "preset", "patch_size", "batch_size", "max_steps",
                         "steps_per_epoch", "num_workers", "accelerator", "devices")}  # fmt: skip
    recipe.write_text(yaml.safe_dump({**settings, "init": "no_such_model.onnx"}))
    failed = CliRunner().invoke(app, ["train", "--config", str(recipe), "--no-export"])
    assert failed.exit_code != 0 and "no_such_model" in failed.output
    result = CliRunner().invoke(app, ["train", "--config", str(recipe), "--init", "", "--no-export"])
    assert result.exit_code == 0, result.output
    last = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    assert not last["hyper_parameters"]["train_config"]["init"]  # random weights: the start over


def test_efficient_preset_trains_and_continues_from_its_folded_export(folders, tmp_path):
    from sr_tool.export import model_from_onnx

    result = train(_cfg(folders, tmp_path / "rep", preset="rep-tiny", max_steps=4, steps_per_epoch=4, export=True))
    shipped = model_from_onnx(result.onnx)
    assert shipped.config.folded and json.loads(result.card.read_text())["parameters"] < 3000
    assert json.loads(result.card.read_text())["name"] == "rep"  # the run folder names OUT/model.onnx
    again = build_model(preset_config("rep-tiny", 2)).eval()
    load_matching_weights(again, result.onnx)  # the recipes' --init from the shipped file
    x = torch.rand(1, 3, 12, 10)
    with torch.no_grad():
        assert (again(x) - shipped(x)).abs().max() < 1e-5


def test_export_cli_from_checkpoint_and_model_file(folders, tmp_path):
    import json

    from typer.testing import CliRunner

    from sr_tool.cli import app
    from sr_tool.engine import OnnxEngine
    from sr_tool.export import model_from_onnx

    train(_cfg(folders, tmp_path / "run", max_steps=10))
    runner = CliRunner()
    result = runner.invoke(app, ["export", str(tmp_path / "run/checkpoints/last.ckpt"), "-o", str(tmp_path / "m.onnx"),
                                 "--parity-image", str(folders / "val" / "bird.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["steps"] == 10 and card["scale"] == 2 and card["loss"] == "l1"
    assert "CPU" in card["hardware"] and card["wall_time_s"] > 0 and "val/psnr_y" in card["validation"]
    assert card["export_parity"]["max_abs_diff"] <= 1e-4 and card["export_parity"]["image_shape"] == [1, 3, 96, 96]
    assert OnnxEngine(tmp_path / "m.onnx", "cpu").scale == 2

    # A slim checkpoint (EMA weights and records only) exports to the same model and card.
    slim = slim_checkpoint(tmp_path / "run/checkpoints/last.ckpt", tmp_path / "slim.ckpt")
    assert slim.stat().st_size < (tmp_path / "run/checkpoints/last.ckpt").stat().st_size / 2
    result = runner.invoke(app, ["export", str(slim), "-o", str(tmp_path / "s.onnx"),
                                 "--parity-image", str(folders / "val" / "bird.png")])  # fmt: skip
    assert result.exit_code == 0, result.output
    slim_card = json.loads((tmp_path / "s.json").read_text())
    for key in ("steps", "wall_time_s", "hardware", "validation", "config", "export_parity"):
        assert slim_card[key] == card[key]
    lr = torch.rand(1, 3, 20, 24)
    assert torch.equal(model_from_onnx(tmp_path / "s.onnx")(lr), model_from_onnx(tmp_path / "m.onnx")(lr))

    save_model(build_model(preset_config("srresnet-tiny", 3)), tmp_path / "m.pt", extra={"loss": "msssim"})
    result = runner.invoke(app, ["export", str(tmp_path / "m.pt"), "-o", str(tmp_path / "p.onnx"), "--fp16"])
    assert result.exit_code == 0, result.output
    assert OnnxEngine(tmp_path / "p.onnx", "cpu").metadata["precision"] == "fp16"
    pt_card = json.loads((tmp_path / "p.json").read_text())  # a model file gets a card too
    assert pt_card["loss"] == "msssim" and pt_card["scale"] == 3 and len(pt_card["source"]["sha256"]) == 64
    bad = runner.invoke(app, ["export", str(tmp_path / "nope.ckpt"), "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "nope.ckpt: no such file" in bad.output
    (tmp_path / "junk.ckpt").write_bytes(bytes(range(256)) * 40)
    bad = runner.invoke(app, ["export", str(tmp_path / "junk.ckpt"), "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "junk.ckpt: not a checkpoint or model file that srtool wrote" in bad.output
    bad = runner.invoke(app, ["export", str(tmp_path / "m.onnx"), "-o", str(tmp_path / "x.onnx")])
    assert bad.exit_code == 2 and "already an ONNX model" in bad.output and "weights_only" not in bad.output
    assert not (tmp_path / "x.onnx").exists()


def test_shipped_recipes_are_valid_configs():
    import yaml

    from sr_tool.upscale import list_builtin_models

    def recipes_in(folder: Path) -> dict[str, TrainConfig]:
        return {p.stem: TrainConfig.from_dict(yaml.safe_load(p.read_text())) for p in folder.glob("*.yaml")}

    root = Path(__file__).resolve().parents[1] / "train" / "recipes"
    cards = {f"{e['name']}_x{e['scale']}": e["card"] for e in list_builtin_models()}
    recipes = recipes_in(root)
    assert set(recipes) >= {"pixel_x4", "pixel_x2", "msssim_x4", "msssim_x2", "perceptual_x4", "perceptual_x2"}
    for stem, cfg in recipes.items():
        assert stem.endswith(f"_x{cfg.scale}")
        if stem in cards:  # a shipped model: its recipe has its architecture and continues from it
            assert cfg.preset == cards[stem]["preset"] and cfg.init == stem.rsplit("_x", 1)[0]
    for stem in ("photo_x4", "photo_x2"):  # --strength blends photo with pixel: the same architecture
        assert recipes[stem].preset == cards[f"pixel{stem[-3:]}"]["preset"] and recipes[stem].degradations != "clean"
    srresnet = recipes_in(root / "srresnet")  # the models rep-l replaced; the perceptual models started there
    assert set(srresnet) == {f"{n}_x{s}" for n in ("pixel", "msssim") for s in (2, 4)}
    assert {c.preset for c in srresnet.values()} == {"srresnet"}
    for stem in ("pixel_x4", "pixel_x2", "msssim_x4", "msssim_x2"):  # the efficient family, on the photo set too
        assert recipes[stem].preset.startswith("rep-") and "train/data/photos" in recipes[stem].train_dirs
    adversarial = recipes_in(root / "gan")  # perceptual candidates: the shipped loss plus a discriminator
    assert set(adversarial) == {"perceptual_x4", "perceptual_strong_x4"}
    for cfg in adversarial.values():
        assert cfg.init == "perceptual" and cfg.preset == cards["perceptual_x4"]["preset"]
        names = [name for _, name in parse_loss_spec(cfg.loss)]
        assert "gan" in names and "spectral-excess" in names
    session = runpy.run_path(str(root.parents[1] / "train" / "gpu_session.py"))  # __name__ is not __main__
    for plan in session["PLANS"].values():  # every device plan names recipes that exist
        for recipe, *_ in (job for stage in plan for job in stage):
            assert (root / f"{recipe}.yaml").is_file(), recipe


def test_paired_lr_folders_give_aligned_crops(folders, tmp_path):
    from sr_tool.image_io import write_image

    hr_dir, lr_dir = tmp_path / "hr", tmp_path / "lr"
    hr_dir.mkdir(), lr_dir.mkdir()
    for path in sorted((folders / "train").glob("*.png"))[:3]:
        hr = read_image(path).pixels
        h, w = hr.shape[-2:]
        hr = hr[..., : h - h % 2, : w - w % 2]
        write_image(hr_dir / path.name, hr)
        write_image(lr_dir / f"{path.stem}x2.png", imresize(hr, 0.5, round_8bit=True))
    ds = HRCropDataset(find_images([hr_dir]), scale=2, patch_size=32, samples_per_epoch=8,
                       lr_folders=[lr_dir], hr_folders=[hr_dir])  # fmt: skip
    for i in range(4):
        item = ds[i]
        assert item["hr"].dtype == item["lr"].dtype == torch.uint8  # converted on the accelerator
        item = as_unit_float(item)
        assert item["hr"].shape == (3, 32, 32) and item["lr"].shape == (3, 16, 16)
        inner = (imresize(item["hr"][None], 0.5, round_8bit=True)[0] - item["lr"])[:, 3:-3, 3:-3]
        # Lines up: a one-pixel shift would give errors of many levels. The few-level differences
        # come from the per-pass uint8 rounding running in another axis order on turned crops.
        assert inner.abs().max() <= 4 / 255 and inner.abs().mean() < 1 / 255


def test_streaming_without_cache_gives_the_same_samples(folders):
    files = find_images([folders / "train"])
    cached = HRCropDataset(files, scale=2, patch_size=32, samples_per_epoch=8, seed=1)
    streamed = HRCropDataset(files, scale=2, patch_size=32, samples_per_epoch=8, seed=1, cache_bytes=0)
    assert cached.cache is not None and streamed.cache is None
    assert torch.equal(cached[3]["hr"], streamed[3]["hr"])


def test_one_step_with_degradations_channels_last_and_clipping(folders, tmp_path):
    result = train(_cfg(folders, tmp_path / "opts", max_steps=2, steps_per_epoch=2,
                        degradations="second-order", channels_last=True, grad_clip=0.5, loss="l1+0.1*ssim"))  # fmt: skip
    ckpt = torch.load(result.last_checkpoint, weights_only=True)
    assert ckpt["global_step"] == 2


def test_lpips_loss_takes_a_local_backbone_file(tmp_path):
    import torchvision

    trunk = torchvision.models.alexnet(weights=None)
    torch.save(trunk.state_dict(), tmp_path / "alexnet.pth")
    loss = build_loss("l1+0.1*lpips-alex", lpips_backbone=str(tmp_path / "alexnet.pth"))
    assert torch.equal(loss.terms[1].distance.features[0].weight, trunk.features[0].weight)


def test_epoch_sampler_moves_on_without_set_epoch():
    from sr_tool.data import EpochSampler

    sampler = EpochSampler(4)
    assert list(sampler) == [0, 1, 2, 3] and list(sampler) == [4, 5, 6, 7]
    sampler.set_epoch(5)
    assert list(sampler) == [20, 21, 22, 23]


def test_epoch_length_ends_runs_on_a_validated_epoch():
    assert epoch_length(20, 1000) == 20  # a short run is one epoch: it validates and writes best-*.ckpt
    assert epoch_length(3000, 1000) == 1000 and epoch_length(1500, 1000) == 750
    assert epoch_length(1501, 1000) == 1000  # no whole split: as configured


def test_a_short_run_validates_writes_a_best_checkpoint_and_no_advertisement(folders, tmp_path, caplog):
    with caplog.at_level("INFO"):
        result = train(_cfg(folders, tmp_path / "run", max_steps=6, steps_per_epoch=1000, export=True))
    assert list((tmp_path / "run" / "checkpoints").glob("best-*.ckpt"))
    assert '"val/psnr_y"' in result.card.read_text()
    assert "GPU available" in caplog.text  # Lightning's own news is logged ...
    assert "litlogger" not in caplog.text.lower()  # ... and its advertisement is not


def test_a_gan_run_keeps_its_discriminator_across_a_resume(folders, tmp_path):
    settings = dict(max_steps=20, steps_per_epoch=10, loss="l1+0.01*gan", init=None)
    train(_cfg(folders, tmp_path / "straight", **settings))
    with pytest.raises(Crash):
        train(_cfg(folders, tmp_path / "resumed", **settings), callbacks=[CrashAtStep(10)])
    train(_cfg(folders, tmp_path / "resumed", resume=True, **settings))
    a = torch.load(tmp_path / "straight/checkpoints/last.ckpt", weights_only=True)
    b = torch.load(tmp_path / "resumed/checkpoints/last.ckpt", weights_only=True)
    discriminator = [k for k in a["state_dict"] if ".discriminator." in k]
    assert discriminator and all(k.startswith(("model.", "ema.", "loss.terms.1.")) for k in a["state_dict"])
    for key, value in a["state_dict"].items():  # upscaler, EMA and discriminator
        assert torch.allclose(value, b["state_dict"][key], atol=1e-5), key
    assert a["srtool_loss_optimizers"]["1.gan"]["state"][0]["step"] == b["srtool_loss_optimizers"]["1.gan"]["state"][0]["step"] == 20


def test_discriminator_warmup_holds_the_upscaler_while_the_discriminator_learns(folders, tmp_path):
    start = build_model(preset_config("srresnet-tiny", 2))
    save_model(start, tmp_path / "start.pt")
    settings = dict(max_steps=10, steps_per_epoch=10, loss="l1+0.01*gan", init=str(tmp_path / "start.pt"))
    train(_cfg(folders, tmp_path / "held", discriminator_warmup_steps=10, **settings))
    train(_cfg(folders, tmp_path / "free", **settings))
    start_state = {f"model.{k}": v for k, v in start.state_dict().items()}
    for run, moved in (("held", False), ("free", True)):
        ckpt = torch.load(tmp_path / run / "checkpoints/last.ckpt", weights_only=True)
        changed = [k for k, v in start_state.items() if not torch.equal(v, ckpt["state_dict"][k])]
        assert bool(changed) == moved, run
        assert ckpt["srtool_loss_optimizers"]["1.gan"]["state"][0]["step"] == 10  # D learned in both
    with pytest.raises(ValueError, match="needs a gan term"):
        _cfg(folders, tmp_path / "nogan", loss="l1", discriminator_warmup_steps=5)


def test_the_artifact_map_term_trains_against_the_ema_model(folders, tmp_path):
    start = build_model(preset_config("srresnet-tiny", 2))
    save_model(start, tmp_path / "start.pt")
    train(_cfg(folders, tmp_path / "run", max_steps=4, steps_per_epoch=4, loss="ldl", init=str(tmp_path / "start.pt")))
    ckpt = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)
    # the term alone moved the upscaler: it was given the EMA's output and found pixels to charge
    assert any(not torch.equal(v, ckpt["state_dict"][f"model.{k}"]) for k, v in start.state_dict().items())


def test_a_fixed_reference_is_the_starting_model_through_training_and_resumes(folders, tmp_path):
    start = build_model(preset_config("srresnet-tiny", 2))
    save_model(start, tmp_path / "start.pt")
    settings = dict(loss="ldl", reference="init", init=str(tmp_path / "start.pt"), max_steps=8, steps_per_epoch=4)
    with pytest.raises(Crash):
        train(_cfg(folders, tmp_path / "run", **settings), callbacks=[CrashAtStep(4)])
    train(_cfg(folders, tmp_path / "run", resume=True, **settings))
    state = torch.load(tmp_path / "run/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    for k, v in start.state_dict().items():
        assert torch.equal(state[f"reference_model.{k}"], v)  # held still, across the resume too
    assert any(not torch.equal(v, state[f"model.{k}"]) for k, v in start.state_dict().items())


def test_the_ldl_term_is_given_the_frozen_start_and_not_the_ema(tmp_path):
    save_model(build_model(preset_config("srresnet-tiny", 2)), tmp_path / "start.pt")
    module = SRLightningModule(TrainConfig(scale=2, preset="srresnet-tiny", loss="ldl", reference="init",
                                           init=str(tmp_path / "start.pt"), accelerator="cpu"))  # fmt: skip
    generator = torch.Generator().manual_seed(0)
    batch = {"lr": torch.rand(2, 3, 16, 16, generator=generator), "hr": torch.rand(2, 3, 32, 32, generator=generator)}
    with pytest.warns(UserWarning, match="self.log"):  # no Trainer here
        as_started = float(module.training_step(batch, 0))
        with torch.no_grad():
            for weight in module.reference_model.parameters():
                weight.mul_(0.5)  # a worse reference: fewer pixels where the model is behind it
        against_changed = float(module.training_step(batch, 0))
    assert against_changed < 0.9 * as_started


def test_a_fixed_reference_needs_a_start_and_an_ldl_term():  # settings only: no data needed
    with pytest.raises(ValueError, match="reference: init needs an init model"):
        TrainConfig(loss="l1+ldl", reference="init")
    with pytest.raises(ValueError, match="reference: init needs an ldl term in the loss, got 'l1'"):
        TrainConfig(loss="l1", reference="init", init="pixel")
    with pytest.raises(ValueError, match="reference must be one of ema, init, got 'pixel'"):
        TrainConfig(loss="ldl", reference="pixel")


def test_validation_images_too_small_for_the_metrics_are_skipped_with_a_warning(folders, tmp_path, caplog):
    from PIL import Image

    mixed, tiny_only = tmp_path / "mixed", tmp_path / "tiny"
    shutil.copytree(folders / "val", mixed)
    tiny_only.mkdir()
    for folder in (mixed, tiny_only):
        Image.new("RGB", (20, 20), "gray").save(folder / "speck.png")
    with caplog.at_level("WARNING"):
        train(_cfg(folders, tmp_path / "a", val_dirs=[str(mixed)], max_steps=4, steps_per_epoch=1000))
        result = train(_cfg(folders, tmp_path / "b", val_dirs=[str(tiny_only)], max_steps=4, steps_per_epoch=1000))
    assert caplog.text.count("skipping 1 validation images smaller than 28 px") == 2 and "speck.png" in caplog.text
    assert list((tmp_path / "a" / "checkpoints").glob("best-*.ckpt"))  # validated on the usable images
    assert result.last_checkpoint.is_file() and not list((tmp_path / "b" / "checkpoints").glob("best-*.ckpt"))


def test_resume_refuses_changed_settings_and_finished_runs(folders, tmp_path):
    settings = dict(max_steps=20, steps_per_epoch=10)
    with pytest.raises(Crash):
        train(_cfg(folders, tmp_path / "run", **settings), callbacks=[CrashAtStep(10)])
    with pytest.raises(ValueError, match=r"these differ: loss 'msssim' \(the run's: 'l1'\); lr 0\.01 .*--init"):
        train(_cfg(folders, tmp_path / "run", resume=True, loss="msssim", lr=0.01, **settings))
    with pytest.raises(ValueError, match="preset 'srresnet-light'"):  # not a size-mismatch traceback
        train(_cfg(folders, tmp_path / "run", resume=True, **{**settings, "preset": "srresnet-light"}))
    train(_cfg(folders, tmp_path / "run", resume=True, num_workers=1, **settings))  # hardware may change
    with pytest.raises(ValueError, match=r"is finished \(step 20 of 20\).*--init"):
        train(_cfg(folders, tmp_path / "run", resume=True, **{**settings, "max_steps": 40}))


def test_an_unusable_run_folder_is_one_error_before_any_work(folders, tmp_path):
    (tmp_path / "a_file.png").write_bytes(b"x")
    with pytest.raises(ValueError, match=r"the run's folder \(--out\) cannot be created \(.*a_file.png is a file\)"):
        train(_cfg(folders, tmp_path / "a_file.png" / "run"))


def test_a_loss_whose_network_cannot_be_had_is_one_usage_error(folders, tmp_path, monkeypatch):
    import sr_tool.losses.deep as deep

    def offline(net, weights):
        raise deep.WeightsUnavailable("LPIPS (alex) needs torchvision's ImageNet alex weights (offline)")

    monkeypatch.setattr(deep, "_imagenet_trunk_state", offline)
    with pytest.raises(ValueError, match=r"--loss l1\+0.1\*lpips-alex: LPIPS \(alex\) needs"):
        train(_cfg(folders, tmp_path / "run", loss="l1+0.1*lpips-alex"))
