"""Training: the LightningModule (owns the training step) and :func:`train`, the library entry point.

:class:`TrainConfig` holds every setting as a typed field; ``srtool train`` fills it from a YAML
recipe plus command-line overrides and calls :func:`train`, which runs Lightning and ends with an
ONNX export, ``model.pt`` (weights + config) and a JSON model card.
"""

from __future__ import annotations

import copy
import json
import logging
import math
import platform
import random
import time
import warnings
import zlib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn

from sr_tool import __version__
from sr_tool.archs import build_model, checkpoint_weights, fold, load_model, parameter_count, preset_config
from sr_tool.data import SRDataModule, as_unit_float
from sr_tool.degrade import degradation_from_spec, degrade
from sr_tool.files import folder_problem
from sr_tool.losses import build_loss, loss_networks, parse_loss_spec
from sr_tool.metrics import deep_distance, ms_ssim_rgb, psnr_y, ssim_y
from sr_tool.resize import imresize

log = logging.getLogger(__name__)

SCHEDULES = ("cosine", "step", "constant")
REFERENCES = ("ema", "init")  # what the ldl loss compares with (TrainConfig.reference)
# Lightning warnings about things srtool does on purpose: frozen EMA / loss networks in eval mode,
# LR made in the module's on_after_batch_transfer.
_EXPECTED_WARNINGS = (".*module\\(s\\) in eval mode.*", ".*overridden `on_after_batch_transfer`.*", ".*LeafSpec.*",
                      ".*Checkpoint directory .* exists and is not empty.*",  # a resume writes where it left off
                      ".*Total length of .* across ranks is zero.*")  # no validation folder: nothing to sync
MONITORS = {"psnr_y": "max", "ssim_y": "max", "ms_ssim": "max", "st_lpips": "min"}


class NonFiniteLossError(RuntimeError):
    """The training loss became NaN or infinite."""


class TrainingError(RuntimeError):
    """Training stopped; the message says why and what was kept."""


class TrainingInterrupted(TrainingError):
    """Training was stopped from outside (SIGTERM, Ctrl-C) after saving a checkpoint to resume from."""

    def __init__(self, step: int, checkpoint: Path):
        super().__init__(f"stopped at step {step}; saved {checkpoint} (continue with the same command and --resume)")
        self.step, self.checkpoint = step, checkpoint


@dataclass
class TrainConfig:
    train_dirs: list[str] = field(default_factory=list)
    val_dirs: list[str] = field(default_factory=list)
    lr_dirs: list[str] | None = None  # paired LR folders, one per training folder
    out_dir: str = "runs/srtool"
    scale: int = 4
    preset: str = "srresnet-light"
    loss: str = "l1"
    patch_size: int = 96  # HR crop, pixels
    batch_size: int = 16
    max_steps: int = 100_000
    time_budget_s: float = 0.0  # wall seconds for the run, setup included: max_steps is fitted to it; 0 = off
    steps_per_epoch: int = 1000  # validation and checkpoints happen at epoch ends
    lr: float = 2e-4
    schedule: str = "cosine"
    warmup_steps: int = 0
    min_lr_ratio: float = 0.01  # cosine floor, as a fraction of lr
    step_milestones: list[int] = field(default_factory=list)  # step schedule: steps where lr *= step_gamma
    step_gamma: float = 0.5
    ema_decay: float = 0.999
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    precision: str = "auto"  # auto: bf16-mixed on a GPU that has it, else 32
    channels_last: bool = False
    compile: bool = False
    init: str | None = None  # start from another model (.pt, .ckpt or .onnx); matching layers only
    resume: bool = False  # continue from out_dir/checkpoints/last.ckpt
    monitor: str = "psnr_y"  # validation metric that picks the best checkpoint
    seed: int = 0
    num_workers: int = 2
    cache_gb: float = 4.0
    # LR for training and validation: a preset of sr_tool.degrade (clean, jpeg, first-order,
    # second-order) or a mapping {preset: ..., <Stage field>: value} (recipes).
    degradations: str | dict = "clean"
    lpips_backbone: str | None = None  # local torchvision weights for lpips-* losses (else downloaded)
    # gan loss only: for the first steps the upscaler holds still and only the discriminator learns,
    # so that it knows the starting model's patterns before the upscaler answers it (BasicSR: net_d_init_iters)
    discriminator_warmup_steps: int = 0
    # ldl loss only: the steadier model it compares with. "ema": the EMA of the weights (LDL's), which
    # follows the run, so a pattern that grows slowly is soon in it too; "init": the model the run
    # started from, frozen, so anything the run paints that makes a pixel worse than it is charged.
    reference: str = "ema"
    accelerator: str = "auto"
    devices: str = "auto"
    num_nodes: int = 1
    strategy: str = "auto"
    export: bool = True
    recipe: str | None = None  # the YAML file this came from, for the model card

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"schedule must be one of {', '.join(SCHEDULES)}, got {self.schedule!r}")
        if self.monitor not in MONITORS:
            raise ValueError(f"monitor must be one of {', '.join(MONITORS)}, got {self.monitor!r}")
        term_names = {name for _, name in parse_loss_spec(self.loss)}  # fail now on a typo, listing the valid names
        if self.discriminator_warmup_steps and "gan" not in term_names:
            raise ValueError(f"discriminator_warmup_steps needs a gan term in the loss, got {self.loss!r}")
        if self.reference not in REFERENCES:
            raise ValueError(f"reference must be one of {', '.join(REFERENCES)}, got {self.reference!r}")
        if self.reference == "init" and not self.init:
            raise ValueError("reference: init needs an init model to compare with")
        if self.reference != "ema" and "ldl" not in term_names:
            raise ValueError(f"reference: {self.reference} needs an ldl term in the loss, got {self.loss!r}")
        self.degradation = degradation_from_spec(self.degradations)
        if self.lr_dirs and self.degradation.name != "clean":
            raise ValueError("paired LR folders and degradations exclude each other: the LR is either read or made")
        preset_config(self.preset, self.scale)

    @classmethod
    def from_dict(cls, data: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown training settings {unknown}; valid: {', '.join(sorted(known))}")
        return cls(**data)


def epoch_length(max_steps: int, steps_per_epoch: int) -> int:
    """Steps per epoch such that the run ends on an epoch's end, where it is validated and
    checkpointed: ``max_steps`` itself for a run shorter than one epoch, else the largest length up to
    ``steps_per_epoch`` that divides ``max_steps`` into the same number of epochs, if there is one."""
    if max_steps <= steps_per_epoch:
        return max(1, max_steps)
    epochs = math.ceil(max_steps / steps_per_epoch)
    return max_steps // epochs if max_steps % epochs == 0 else steps_per_epoch


class _NoAdvertisements(logging.Filter):
    """Drops Lightning's tips that advertise other products (the console is for the run's own news)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "litlogger" not in record.getMessage().lower()


logging.getLogger("pytorch_lightning.utilities.rank_zero").addFilter(_NoAdvertisements())


def lr_factor(step: int, cfg: TrainConfig) -> float:
    """Multiplier of the base learning rate at ``step``: linear warmup, then the schedule."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.schedule == "cosine":
        span = max(1, cfg.max_steps - cfg.warmup_steps)
        progress = min(1.0, (step - cfg.warmup_steps) / span)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule == "step":
        return cfg.step_gamma ** sum(step >= m for m in cfg.step_milestones)
    return 1.0


class SRLightningModule(pl.LightningModule):
    """Trains an upscaler on (LR, HR) batches; validates and exports the EMA of its weights."""

    def __init__(self, cfg: TrainConfig):
        super().__init__()
        self.cfg = cfg
        self.save_hyperparameters({"train_config": asdict(cfg)})
        self.model = build_model(preset_config(cfg.preset, cfg.scale))
        if cfg.init and not cfg.resume:  # a resume takes its weights from the checkpoint
            load_matching_weights(self.model, cfg.init)
        if cfg.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.ema = copy.deepcopy(self.model).requires_grad_(False).eval()
        self.loss = build_loss(cfg.loss, cfg.lpips_backbone)
        # A submodule, so it follows the device and a resume restores it as it was.
        self.reference_model = None
        if self.loss.needs_reference and cfg.reference == "init":
            self.reference_model = copy.deepcopy(self.ema)
            # A resume leaves self.model uninitialised: load the start here too, so that even a checkpoint
            # without these weights compares with the start (a checkpoint that has them restores the same).
            if cfg.resume:
                load_matching_weights(self.reference_model, cfg.init)
        self.strict_loading = False  # frozen loss networks are not stored in checkpoints
        # Not a submodule (it is self.model, maybe compiled): checkpoints would hold the weights twice.
        self.__dict__["_forward"] = torch.compile(self.model) if cfg.compile else self.model
        self.__dict__["_st_lpips"] = None  # a metric, not a submodule: kept out of checkpoints
        self._wall_before = 0.0  # training time of earlier runs this one resumed, for model cards
        self._fit_started = time.time()

    # -- data -------------------------------------------------------------------------------
    def on_after_batch_transfer(self, batch, dataloader_idx):
        batch = as_unit_float(batch)
        # LR on the accelerator: the MATLAB bicubic with uint8 rounding, like the benchmark LR files,
        # or the real-photo degradations, batched.
        if "lr" not in batch:
            degradation = self.cfg.degradation
            if degradation.name == "clean":
                batch["lr"] = imresize(batch["hr"], 1 / self.cfg.scale, round_8bit=True)
            else:
                batch["lr"] = degrade(batch["hr"], self.cfg.scale, degradation, self._degradation_generator(batch))
        if self.cfg.channels_last:
            batch = {k: v.contiguous(memory_format=torch.channels_last) if torch.is_tensor(v) else v
                     for k, v in batch.items()}  # fmt: skip
        return batch

    def _degradation_generator(self, batch) -> torch.Generator:
        """Seeded by (seed, step) in training, by the image's name in validation: LR repeat across runs,
        resumes, and validations."""
        if "name" in batch:
            key = zlib.crc32("/".join(batch["name"]).encode())
        else:
            key = self.cfg.seed * 1_000_003 + self.trainer.global_step
        return torch.Generator(device=self.device).manual_seed(key)

    # -- training ---------------------------------------------------------------------------
    def training_step(self, batch, batch_idx):
        if self.global_step < self.cfg.discriminator_warmup_steps:
            return self._discriminator_step(batch)
        sr = self._forward(batch["lr"])
        reference = None
        if self.loss.needs_reference:  # what the weights have learned for good, or the starting model
            steady = self.ema if self.reference_model is None else self.reference_model
            with torch.no_grad():
                reference = steady(batch["lr"]).float()
        # Losses in float32 even under mixed precision: SSIM's variances (E[x^2] - E[x]^2) and the
        # deep-feature normalisation lose too much in bf16/fp16.
        with torch.autocast(self.device.type, enabled=False):
            loss = self.loss(sr.float(), batch["hr"].float(), reference)
        if not torch.isfinite(loss):
            raise NonFiniteLossError(f"the training loss is {loss.item()} at step {self.global_step}")
        self.log("train/loss", loss, prog_bar=True)
        if len(self.loss.last_terms) > 1:
            self.log_dict({f"train/{k}": v for k, v in self.loss.last_terms.items()})
        self._log_discriminators()
        return loss

    def _log_discriminators(self) -> None:
        for name, term in self.loss.trained_terms.items():
            self.log(f"train/{name.split('.', 1)[1]}-discriminator", term.last_discriminator_loss)

    def _discriminator_step(self, batch):
        """Only the loss's discriminators learn; the upscaler gets a zero loss, so its weights and its
        fresh Adam moments stay as they are (the step still counts, for the schedule and resumes)."""
        sr = self._forward(batch["lr"])
        for term in self.loss.trained_terms.values():
            term.train_discriminator(sr.detach().float(), batch["hr"].float())
        self._log_discriminators()
        return sr.sum() * 0

    def on_train_batch_end(self, outputs, batch, batch_idx):
        decay = min(self.cfg.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        with torch.no_grad():
            for e, p in zip(self.ema.parameters(), self.model.parameters()):
                e.lerp_(p.detach(), 1 - decay)
            for e, b in zip(self.ema.buffers(), self.model.buffers()):
                e.copy_(b)

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.model.parameters(), lr=self.cfg.lr, betas=(0.9, 0.99))
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_factor(step, self.cfg))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # -- validation -------------------------------------------------------------------------
    def validation_step(self, batch, batch_idx):
        s = self.cfg.scale
        with torch.autocast(self.device.type, enabled=False):  # metrics of the float32 model that ships
            sr = self.ema(batch["lr"].float()).clamp(0, 1)
        hr = batch["hr"].float()
        metrics = {"val/psnr_y": psnr_y(sr, hr, shave=s), "val/ssim_y": ssim_y(sr, hr, shave=s)}
        if min(hr.shape[-2:]) - 2 * s >= 11:
            metrics["val/ms_ssim"] = ms_ssim_rgb(sr, hr, shave=s)
        metrics["val/st_lpips"] = deep_distance(sr, hr, self._st_lpips_metric(), shave=s)
        self.log_dict({k: v.mean().float() for k, v in metrics.items()}, batch_size=1, sync_dist=True,
                      prog_bar=False)  # fmt: skip

    def _st_lpips_metric(self):
        if self.__dict__["_st_lpips"] is None:
            from sr_tool.losses.deep import load_st_lpips

            self.__dict__["_st_lpips"] = load_st_lpips("alex").to(self.device)
        return self.__dict__["_st_lpips"]

    # -- checkpoints ------------------------------------------------------------------------
    def on_fit_start(self):
        self._fit_started = time.time()
        self._cudnn_autotune(True)

    def on_validation_start(self):
        self._cudnn_autotune(False)  # whole images: every shape is new, tuning would cost more than it saves

    def on_validation_end(self):
        self._cudnn_autotune(True)

    def on_fit_end(self):
        self._cudnn_autotune(False)

    def _cudnn_autotune(self, on: bool) -> None:
        # Training crops all have one shape: cuDNN then picks its fastest kernels once.
        torch.backends.cudnn.benchmark = on and self.device.type == "cuda"

    def on_save_checkpoint(self, checkpoint):
        datamodule = getattr(self.trainer, "datamodule", None)
        checkpoint["srtool_meta"] = {
            "hardware": _hardware(self.trainer),
            "precision": _precision(self.cfg),
            "wall_time_s": round(self._wall_before + time.time() - self._fit_started, 1),
            "train_images": len(datamodule.train_set.sources) if datamodule and datamodule.train_set else None,
        }
        # Frozen loss networks are rebuilt from their files; trained ones (a discriminator) are kept.
        trained = tuple(f"loss.terms.{name.split('.')[0]}." for name in self.loss.trained_terms)
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items()
                                    if not k.startswith("loss.") or k.startswith(trained)}  # fmt: skip
        checkpoint["srtool_loss_optimizers"] = {name: t.optimizer_state() for name, t in self.loss.trained_terms.items()}
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        checkpoint["srtool_val"] = {k: float(v) for k, v in metrics.items() if k.startswith("val/")}
        checkpoint["srtool_rng"] = {"torch": torch.get_rng_state(), "python": random.getstate()}
        if torch.cuda.is_available():
            checkpoint["srtool_rng"]["cuda"] = torch.cuda.get_rng_state_all()

    def on_load_checkpoint(self, checkpoint):
        _as_epoch_boundary(checkpoint)
        # Resumed from a stop mid-epoch: Lightning goes on counting the epoch's batches but draws from
        # a fresh loader, whose sampler must then skip the crops of the batches done.
        loop = checkpoint.get("loops", {}).get("fit_loop", {})
        epoch = loop.get("epoch_progress", {}).get("current", {}).get("completed", 0)
        batches = loop.get("epoch_loop.batch_progress", {}).get("current", {}).get("completed", 0)
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and hasattr(datamodule, "resume_at"):
            datamodule.resume_at(epoch, batches * self.cfg.batch_size)
        for name, state in checkpoint.get("srtool_loss_optimizers", {}).items():
            if name in self.loss.trained_terms:
                self.loss.trained_terms[name].load_optimizer_state(state)
        self._wall_before = checkpoint.get("srtool_meta", {}).get("wall_time_s", 0.0)
        rng = checkpoint.get("srtool_rng")
        if rng:
            torch.set_rng_state(rng["torch"])
            random.setstate(rng["python"])
            if "cuda" in rng and torch.cuda.is_available():
                torch.cuda.set_rng_state_all(rng["cuda"])


class SaveOnStop(pl.Callback):
    """On SIGTERM or Ctrl-C, save the training state to ``path`` (then ``--resume`` continues from
    the step reached). Other errors save nothing: their state may be what went wrong."""

    def __init__(self, path: Path):
        self.path = path

    def on_exception(self, trainer, pl_module, exception):
        from pytorch_lightning.utilities.exceptions import SIGTERMException

        stopped = isinstance(exception, (SIGTERMException, KeyboardInterrupt)) or trainer.received_sigterm
        if stopped and trainer.global_step > 0:  # received_sigterm: e.g. a worker that the same SIGTERM ended
            trainer.save_checkpoint(str(self.path), weights_only=False)  # the full state: --resume needs it


class TimeBudget(pl.Callback):
    """Fits ``max_steps`` to a wall-time budget, so that the learning-rate schedule runs to its end.

    The fitted value is a whole number of epochs (the nearest to the budget), never below the end of
    the epoch in progress.
    The step rate is measured once early (after ``warmup`` steps, over ``calibrate`` steps) and again
    at every epoch end, over everything since: validation and checkpoint time are then included.
    ``max_steps`` is only ever lowered from the configured value, which stays the cap.
    """

    def __init__(self, seconds: float, *, warmup: int = 20, calibrate: int = 100, margin: float = 0.03, clock=time.monotonic):
        self.clock = clock
        self.deadline = clock() + seconds * (1 - margin)  # the budget starts now
        self.warmup, self.calibrate = warmup, calibrate
        self.cap: int | None = None
        self._t0: float | None = None
        self._step0 = 0

    def on_train_start(self, trainer, pl_module):
        self.cap = pl_module.cfg.max_steps

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        step = trainer.global_step
        if self._t0 is None and step >= self._step0 + self.warmup:
            self._t0, self._step0 = self.clock(), step
        elif self._t0 is not None and step == self._step0 + self.calibrate:
            self._fit(trainer, pl_module)

    def on_train_epoch_end(self, trainer, pl_module):
        if self._t0 is not None and trainer.global_step > self._step0:
            self._fit(trainer, pl_module)

    def _fit(self, trainer, pl_module) -> None:
        now, step = self.clock(), trainer.global_step
        rate = (step - self._step0) / max(now - self._t0, 1e-6)
        # Whole epochs: the last step then ends an epoch, so it is validated and checkpointed.
        cfg, spe = pl_module.cfg, pl_module.cfg.steps_per_epoch
        epochs = max(math.ceil(step / spe), round((step + rate * (self.deadline - now)) / spe))
        fitted = trainer.strategy.broadcast(min(self.cap, epochs * spe), src=0)  # all processes stop together
        cfg.max_steps = fitted  # lr_factor reads it: the cosine now ends at the fitted step
        pl_module.hparams["train_config"]["max_steps"] = fitted  # the checkpoint and card record it
        trainer.fit_loop.epoch_loop.max_steps = fitted
        trainer.fit_loop.max_epochs = math.ceil(fitted / spe)
        log.info("time budget: %.1f steps/s, max_steps fitted to %d", rate, fitted)


def _as_epoch_boundary(checkpoint: dict) -> None:
    """Make a checkpoint taken in ``on_train_epoch_end`` restore as a finished epoch.

    Lightning records that epoch as processed but not completed, with the batch counters still at
    the end; on restore it then treats the next epoch as already run and skips it (compare
    Lightning issue #19617). Marking the epoch completed and zeroing the per-epoch counters gives the
    state of a clean epoch boundary, so ``--resume`` continues exactly where training stopped.
    """
    loop = checkpoint.get("loops", {}).get("fit_loop")
    if not loop:
        return
    epoch, batch = loop["epoch_progress"], loop["epoch_loop.batch_progress"]
    if batch.get("is_last_batch") and epoch["current"]["processed"] > epoch["current"]["completed"]:
        for part in ("total", "current"):
            epoch[part]["completed"] = epoch[part]["processed"]
        batch["current"] = {key: 0 for key in batch["current"]}
        batch["is_last_batch"] = False
        loop["epoch_loop.scheduler_progress"]["current"] = {
            key: 0 for key in loop["epoch_loop.scheduler_progress"]["current"]
        }


def load_matching_weights(model: nn.Module, source: str | Path) -> tuple[int, int]:
    """Copy the weights of ``source`` (.pt from save_model, Lightning .ckpt, or srtool .onnx) whose
    names and shapes match, e.g. an x2 body from an x4 model; returns (copied, skipped)."""
    source = Path(source)
    if source.suffix == ".onnx":
        from sr_tool.export import model_from_onnx

        shipped = model_from_onnx(source)
        state = shipped.state_dict()
        if getattr(shipped.config, "folded", False) and hasattr(model, "unfolded_state"):
            state = model.unfolded_state(state)  # a shipped (folded) model: same function, unfolded
    elif source.suffix == ".ckpt":
        state = checkpoint_weights(torch.load(source, map_location="cpu", weights_only=True))
    else:
        state = load_model(source)[0].state_dict()
    return _copy_matching(model, state, source)


def _copy_matching(model: nn.Module, state: dict[str, torch.Tensor], source: Path) -> tuple[int, int]:
    own = model.state_dict()
    matching = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    if not matching:
        raise TrainingError(f"{source}: no layer matches this model; is it an srtool model of the same preset?")
    model.load_state_dict(matching, strict=False)
    skipped = len(own) - len(matching)
    if len(matching) < len(own) / 2:  # e.g. another preset: a few shapes agree by chance
        log.warning("--init %s: only %d of this model's %d tensors match it (another preset?); the rest start "
                    "from random values", source, len(matching), len(own))  # fmt: skip
    else:
        log.info("--init: %d tensors from %s (%d left as initialised)", len(matching), source, skipped)
    return len(matching), skipped


@dataclass
class TrainResult:
    out_dir: Path
    best_checkpoint: Path | None
    last_checkpoint: Path | None
    model_pt: Path | None
    onnx: Path | None
    card: Path | None
    metrics: dict


def _precision(cfg: TrainConfig) -> str:
    if cfg.precision != "auto":
        return cfg.precision
    use_gpu = cfg.accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    return "bf16-mixed" if use_gpu and torch.cuda.is_bf16_supported() else "32-true"


def _loggers(out_dir: Path):
    from pytorch_lightning.loggers import CSVLogger

    loggers = [CSVLogger(str(out_dir), name="logs")]  # logs/version_N: a resume keeps earlier logs
    try:
        import tensorboard  # noqa: F401
        from pytorch_lightning.loggers import TensorBoardLogger

        loggers.append(TensorBoardLogger(str(out_dir), name="tensorboard"))
    except ImportError:
        pass
    return loggers


#: What a run trains, and how: a resumed run keeps these (hardware, data workers, the time budget
#: and the data folders may change).
RUN_SETTINGS = ("preset", "scale", "loss", "lpips_backbone", "patch_size", "batch_size", "steps_per_epoch", "lr",
                "schedule", "warmup_steps", "min_lr_ratio", "step_milestones", "step_gamma", "ema_decay",
                "grad_clip", "monitor", "seed", "degradations", "reference")  # fmt: skip


def _check_resumable(cfg: TrainConfig, last: Path) -> None:
    """Refuse (ValueError) a resume that would quietly train something else than the run, and card it
    wrongly, or that would do nothing."""
    ckpt = torch.load(last, map_location="cpu", weights_only=True)
    was = ckpt.get("hyper_parameters", {}).get("train_config", {})
    changed = [f"{key} {getattr(cfg, key)!r} (the run's: {was[key]!r})" for key in RUN_SETTINGS
               if key in was and getattr(cfg, key) != was[key]]  # fmt: skip
    fresh = f"start a new run from its weights: --init {last} --out NEW_FOLDER"
    if changed:
        raise ValueError(f"--resume continues {cfg.out_dir} with its own settings, and these differ: "
                         f"{'; '.join(changed)}. Give the run's settings, or {fresh}")  # fmt: skip
    step, planned = ckpt.get("global_step", 0), was.get("max_steps", 0)
    if step >= planned > 0:
        raise ValueError(f"--resume: {cfg.out_dir} is finished (step {step} of {planned}); to train it further, "
                         f"{fresh} (with a learning-rate schedule of its own)")  # fmt: skip


def train(cfg: TrainConfig, callbacks: list | None = None) -> TrainResult:
    """Train, then (on rank 0) export ONNX + model.pt + a model card into ``cfg.out_dir``."""
    from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint

    budget = TimeBudget(cfg.time_budget_s) if cfg.time_budget_s > 0 else None  # counts data loading too
    cfg = copy.deepcopy(cfg)  # a time budget refits max_steps; the caller's config stays as given
    cfg.steps_per_epoch = epoch_length(cfg.max_steps, cfg.steps_per_epoch)
    out_dir = Path(cfg.out_dir)
    ckpt_dir = out_dir / "checkpoints"
    last = ckpt_dir / "last.ckpt"
    problem = folder_problem(out_dir)  # before any work, not at the first checkpoint
    if problem:
        raise ValueError(f"{out_dir}: the run's folder (--out) {problem}")
    if cfg.resume and not last.is_file():
        raise ValueError(f"--resume: no checkpoint to resume at {last}")
    if cfg.resume:
        _check_resumable(cfg, last)
    if cfg.init and not cfg.resume:  # a resume takes its weights from the checkpoint
        from sr_tool.upscale import resolve_model

        # a file, or a model name as `upscale -m` takes it (pixel -> its model file at this scale)
        cfg.init = str(resolve_model(cfg.init, cfg.scale) or "")
        if not cfg.init:
            raise ValueError("--init bicubic: bicubic has no weights to start from")
    pl.seed_everything(cfg.seed, workers=True, verbose=False)

    data = SRDataModule(
        cfg.train_dirs,
        cfg.val_dirs,
        scale=cfg.scale,
        patch_size=cfg.patch_size,
        batch_size=cfg.batch_size,
        steps_per_epoch=cfg.steps_per_epoch,
        num_workers=cfg.num_workers,
        seed=cfg.seed,
        lr_dirs=cfg.lr_dirs,
        cache_bytes=int(cfg.cache_gb * (1 << 30)),
    )
    data.setup("fit")  # data errors surface here, before any process is spawned
    callbacks = [*(callbacks or []), *([budget] if budget else [])]
    from sr_tool.losses.deep import WeightsUnavailable

    try:
        module = SRLightningModule(cfg)
    except WeightsUnavailable as err:  # a loss's network, e.g. LPIPS offline
        raise ValueError(f"--loss {cfg.loss}: {err}") from None
    monitor = f"val/{cfg.monitor}" if data.val_set else None  # none: no validation images, or none usable
    # Both at the epoch's end, after its validation: a clean epoch boundary that resumes exactly
    # (a save at validation end looks mid-epoch to Lightning's loop restore). Two callbacks because
    # Lightning 2.6 writes save_last=True's file only when a top-k file was written at that step.
    latest = ModelCheckpoint(dirpath=str(ckpt_dir), filename="last", save_top_k=1, enable_version_counter=False,
                             save_on_train_epoch_end=True)  # fmt: skip
    checkpoints = [latest]
    if monitor:
        best_checkpoint = ModelCheckpoint(dirpath=str(ckpt_dir), filename="best-{step}", monitor=monitor,
                                          mode=MONITORS[cfg.monitor], save_top_k=1, auto_insert_metric_name=False,
                                          save_on_train_epoch_end=True)  # fmt: skip
        checkpoints.append(best_checkpoint)
    trainer = pl.Trainer(
        max_steps=cfg.max_steps,
        max_epochs=math.ceil(cfg.max_steps / cfg.steps_per_epoch),
        accelerator=cfg.accelerator,
        devices=cfg.devices,
        num_nodes=cfg.num_nodes,
        strategy=cfg.strategy,
        precision=_precision(cfg),
        gradient_clip_val=cfg.grad_clip or None,
        logger=_loggers(out_dir),
        callbacks=[*checkpoints, SaveOnStop(last), LearningRateMonitor(logging_interval="step"), *callbacks],
        default_root_dir=str(out_dir),
        num_sanity_val_steps=0,
        log_every_n_steps=min(50, cfg.steps_per_epoch),
        enable_model_summary=False,
    )
    if trainer.world_size > 1 and module.loss.trained_terms:
        raise TrainingError("the gan loss trains on one device for now: its discriminator would differ between "
                            "processes (use --devices 1)")  # fmt: skip
    try:
        with warnings.catch_warnings():
            for message in _EXPECTED_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            trainer.fit(module, datamodule=data, ckpt_path=str(last) if cfg.resume else None)
    except SystemExit:  # Lightning's answer to SIGTERM and Ctrl-C, after SaveOnStop has run
        if not trainer.interrupted:
            raise
        raise TrainingInterrupted(trainer.global_step, last) from None
    except NonFiniteLossError as err:
        kept = f"the last good checkpoint is {last}" if last.is_file() else "no checkpoint was saved yet"
        raise TrainingError(f"{err}; training stopped, {kept}") from None
    except Exception:
        if trainer.received_sigterm and last.is_file():  # e.g. a data worker that the same SIGTERM ended
            raise TrainingInterrupted(trainer.global_step, last) from None
        raise

    best = Path(checkpoints[-1].best_model_path) if monitor and checkpoints[-1].best_model_path else None
    result = TrainResult(out_dir, best, last if last.is_file() else None, None, None, None, {})
    source = best if best and best.is_file() else result.last_checkpoint
    if not trainer.is_global_zero or source is None:
        return result
    result.metrics = {**torch.load(source, map_location="cpu", weights_only=True).get("srtool_val", {})}
    if cfg.export:
        # The EMA weights of the best checkpoint (or of the last, without validation) are what ships.
        parity_image = None
        if data.val_set:
            hr = data.val_set[0]["hr"][None]
            parity_image = imresize(hr, 1 / cfg.scale, round_8bit=True)[..., :64, :64].contiguous()
        result.model_pt = out_dir / "model.pt"
        result.onnx, result.card = export_checkpoint(
            source, out_dir / "model.onnx", parity_image=parity_image, model_pt=result.model_pt
        )
    return result


def slim_checkpoint(checkpoint: str | Path, dest: str | Path) -> Path:
    """Write a copy of a training checkpoint with only what export and ``--init`` read: the EMA
    weights, training config, step, hardware/time record and validation metrics (no optimiser
    state, no raw weights: about a quarter of the size). It cannot be resumed from."""
    from sr_tool.files import atomic_output

    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    if "train_config" not in ckpt.get("hyper_parameters", {}):
        raise TrainingError(f"{checkpoint}: not an srtool training checkpoint (no train_config)")
    keep = ("hyper_parameters", "global_step", "epoch", "srtool_meta", "srtool_val")
    slim = {key: ckpt[key] for key in keep if key in ckpt}
    slim["state_dict"] = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("ema.")}
    with atomic_output(Path(dest)) as tmp:
        torch.save(slim, tmp)
    return Path(dest)


def export_checkpoint(
    checkpoint: str | Path,
    onnx_path: str | Path,
    *,
    fp16: bool = False,
    parity_image: torch.Tensor | None = None,
    model_pt: str | Path | None = None,
) -> tuple[Path, Path]:
    """Export a training checkpoint's EMA weights to ONNX, with a JSON model card beside it
    (``<name>.json``): architecture, parameters, scale, loss, recipe, data, steps, hardware, wall
    time, validation metrics; also to ``model_pt`` (weights + config, for ``--init``) if given.
    Returns (onnx path, card path)."""
    from sr_tool.export import export_onnx
    from sr_tool.files import atomic_output

    checkpoint, onnx_path = Path(checkpoint), Path(onnx_path)
    ckpt = torch.load(checkpoint, map_location="cpu", weights_only=True)
    try:
        cfg = TrainConfig.from_dict(ckpt["hyper_parameters"]["train_config"])
    except KeyError:
        raise TrainingError(f"{checkpoint}: not an srtool training checkpoint (no train_config)") from None
    model = build_model(preset_config(cfg.preset, cfg.scale))
    model.load_state_dict(checkpoint_weights(ckpt))  # the run's own preset: every tensor
    steps = int(ckpt.get("global_step", 0))
    if model_pt is not None:
        from sr_tool.archs import save_model

        save_model(model, model_pt, extra={"loss": cfg.loss})
    parity = export_onnx(model, onnx_path, loss=cfg.loss, fp16=fp16, parity_image=parity_image,
                         metadata={"steps": str(steps), "preset": cfg.preset})  # fmt: skip
    meta = ckpt.get("srtool_meta", {})
    card = {
        # a run's export is OUT/model.onnx: the run's folder names it
        "name": onnx_path.parent.resolve().name if onnx_path.stem == "model" else onnx_path.stem,
        "srtool_version": __version__,
        "architecture": asdict(fold(model).config),
        "preset": cfg.preset,
        "parameters": parameter_count(fold(model)),
        "scale": cfg.scale,
        "loss": cfg.loss,
        "loss_networks": loss_networks(cfg.loss),
        "recipe": cfg.recipe,
        "init": cfg.init,
        "data": {
            "train": cfg.train_dirs,
            "train_images": meta.get("train_images"),
            "val": cfg.val_dirs,
            "patch_size": cfg.patch_size,
            "batch_size": cfg.batch_size,
            "degradations": cfg.degradations,
        },
        "steps": steps,
        "max_steps": cfg.max_steps,
        "hardware": meta.get("hardware", "not recorded"),
        "precision": meta.get("precision", "not recorded"),
        "wall_time_s": meta.get("wall_time_s", "not recorded"),
        "validation": ckpt.get("srtool_val", {}),
        "checkpoint": checkpoint.name,
        "export_parity": parity,
        "config": asdict(cfg),
    }
    card_path = onnx_path.with_suffix(".json")
    with atomic_output(card_path) as tmp:
        tmp.write_text(json.dumps(card, indent=2) + "\n")
    return onnx_path, card_path


def _hardware(trainer) -> str:
    n = trainer.world_size
    if torch.cuda.is_available() and trainer.strategy.root_device.type == "cuda":
        return f"{n} x {torch.cuda.get_device_name(trainer.strategy.root_device)}"
    return f"{n} x CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
