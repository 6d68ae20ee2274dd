"""Training and validation data for SR: HR image folders, random crops, LR made on the fly.

The DataModule owns the data; LR for training is made on the accelerator by the LightningModule
(:meth:`sr_tool.training.SRLightningModule.on_after_batch_transfer`) with the MATLAB bicubic or the
real-photo degradations of :mod:`sr_tool.degrade`, unless paired LR folders are given.

Determinism: every sample is a pure function of (seed, epoch, index), so runs repeat exactly and a
resume from an epoch boundary continues the same sequence.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from sr_tool.image_io import ImageReadError, LoadedImage, image_size, quantise, read_image

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp"}


class DataError(ValueError):
    """The training data cannot be used (empty folder, images too small, ...)."""


def find_images(folders: Sequence[str | Path]) -> list[Path]:
    """Image files under ``folders``, recursively, sorted; a missing folder is an error."""
    files = []
    for folder in folders:
        folder = Path(folder)
        if not folder.is_dir():
            where = "" if folder.is_absolute() else f" (looked in {Path.cwd()}: relative paths, recipes' too, start there)"
            raise DataError(f"{folder}: not a folder{where}")
        files += sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
    return files


def _to_uint8_rgb(image: LoadedImage) -> torch.Tensor:
    """3xHxW uint8 (the cache format: a quarter of float32's memory) from decoded samples."""
    a = quantise(image.array, np.uint8)
    if a.shape[2] == 1:
        a = np.repeat(a, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(a.transpose(2, 0, 1)))


@dataclass
class _Source:
    path: Path
    lr_path: Path | None


class HRCropDataset(Dataset):
    """Random HR crops (with flips and 90-degree turns) from image files, one per index.

    Index ``i`` is a sample id (see :class:`EpochSampler`); the crop depends only on (seed, i).
    Items are dicts with ``hr`` (3xPxP uint8) and, with paired LR folders, ``lr`` (3x(P/s)x(P/s)
    uint8). :func:`as_unit_float` converts a batch.
    """

    def __init__(
        self,
        files: Sequence[Path],
        *,
        scale: int,
        patch_size: int,
        samples_per_epoch: int,
        seed: int = 0,
        lr_folders: Sequence[Path] | None = None,
        hr_folders: Sequence[Path] | None = None,
        cache_bytes: int = 4 << 30,
    ):
        if patch_size % scale:
            raise DataError(f"patch size {patch_size} must be a multiple of the scale {scale}")
        self.scale, self.patch_size, self.seed = scale, patch_size, seed
        self.samples_per_epoch = samples_per_epoch
        self.sources, skipped_small, readable = [], [], []
        for path in files:
            try:
                width, height = image_size(path)
            except ImageReadError as err:
                log.warning("skipping unreadable training image %s", err)
                continue
            if min(width, height) < patch_size:
                skipped_small.append(path)
                continue
            readable.append((path, width, height))
        # Decode everything once, now: unreadable files are found before training starts, and when
        # the set fits in ``cache_bytes`` (as uint8) it stays in memory, shared with forked workers.
        keep = sum(3 * w * h for _, w, h in readable) <= cache_bytes
        self.cache: list[tuple[torch.Tensor, torch.Tensor | None]] | None = [] if keep else None
        for path, _, _ in readable:
            try:
                hr = _to_uint8_rgb(read_image(path))
            except ImageReadError as err:
                log.warning("skipping unreadable training image %s", err)
                continue
            lr_path = _paired_lr(path, hr_folders, lr_folders, scale) if lr_folders else None
            self.sources.append(_Source(path, lr_path))
            if self.cache is not None:
                self.cache.append((hr, _to_uint8_rgb(read_image(lr_path)) if lr_path else None))
        if not files:
            raise DataError("no training images found (looked for " + ", ".join(sorted(IMAGE_SUFFIXES)) + ")")
        if not self.sources:
            if skipped_small:
                raise DataError(
                    f"the {patch_size} px crop is larger than every training image "
                    f"({len(skipped_small)} too small); use a smaller --patch-size"
                )
            raise DataError("none of the training images could be read")
        if skipped_small:
            log.warning("skipping %d images smaller than the %d px crop", len(skipped_small), patch_size)

    def __len__(self) -> int:
        return 1 << 62  # indices are sample ids, not positions; the sampler bounds them

    def _load(self, k: int) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.cache is not None:
            return self.cache[k]
        source = self.sources[k]
        hr = _to_uint8_rgb(read_image(source.path))
        return hr, _to_uint8_rgb(read_image(source.lr_path)) if source.lr_path else None

    def __getitem__(self, sample_id: int) -> dict[str, torch.Tensor]:
        rng = random.Random(self.seed * 1_000_003 + sample_id)
        k = rng.randrange(len(self.sources))
        hr, lr = self._load(k)
        s, p = self.scale, self.patch_size
        # Crop on the LR grid so that paired LR crops line up exactly.
        lr_h, lr_w = hr.shape[1] // s, hr.shape[2] // s
        y, x = rng.randrange(lr_h - p // s + 1), rng.randrange(lr_w - p // s + 1)
        item = {"hr": hr[:, y * s : y * s + p, x * s : x * s + p]}
        if lr is not None:
            item["lr"] = lr[:, y : y + p // s, x : x + p // s]
        flip, turns = rng.random() < 0.5, rng.randrange(4)
        for key, value in item.items():
            value = value.flip(-1) if flip else value
            # Still uint8: a quarter of float32's bytes from the workers to the accelerator, where
            # the LightningModule converts.
            item[key] = torch.rot90(value, turns, dims=(1, 2)).contiguous()
        return item


def as_unit_float(batch: dict) -> dict:
    """A batch with its uint8 tensors as float32 in [0, 1] (other entries unchanged)."""
    return {k: v.float().div_(255) if torch.is_tensor(v) and v.dtype == torch.uint8 else v for k, v in batch.items()}


def _paired_lr(hr_path: Path, hr_folders, lr_folders, scale: int) -> Path:
    """The LR file for an HR file: same relative path (or ``<stem>x<scale>``) in the paired folder."""
    for hr_root, lr_root in zip(hr_folders, lr_folders):
        hr_root, lr_root = Path(hr_root), Path(lr_root)
        try:
            rel = hr_path.relative_to(hr_root)
        except ValueError:
            continue
        for candidate in (lr_root / rel, lr_root / rel.parent / f"{rel.stem}x{scale}{rel.suffix}",
                          lr_root / rel.parent / f"{rel.stem}x{scale}.png"):  # fmt: skip
            if candidate.is_file():
                return candidate
    raise DataError(f"{hr_path}: no paired LR file found in {', '.join(map(str, lr_folders))}")


class EpochSampler(Sampler[int]):
    """Yields the sample ids of one epoch: epoch * n ... epoch * n + n - 1 (Lightning sets the epoch)."""

    def __init__(self, samples_per_epoch: int, epoch: int = 0, skip: int = 0):
        self.n = samples_per_epoch
        self.epoch = epoch
        self.skip = skip  # samples of ``epoch`` already trained on (a run resumed mid-epoch)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __iter__(self):
        epoch, skip = self.epoch, self.skip
        # Next pass, next epoch, also where nobody calls set_epoch: Lightning's DDP sampler wrapper
        # doesn't forward it. Where Lightning does call it (one process, resume), that value wins.
        self.epoch, self.skip = self.epoch + 1, 0
        return iter(range(epoch * self.n + skip, (epoch + 1) * self.n))

    def __len__(self) -> int:
        return self.n


#: The smallest side, after the scale's border is shaved, that every validation metric takes
#: (ST-LPIPS's deepest features need it).
VAL_MIN_SIDE = 24


class ValidationDataset(Dataset):
    """Whole HR images (mod-cropped to the scale), one per item; LR is made by the module."""

    def __init__(self, files: Sequence[Path], scale: int):
        self.items = []
        smallest = VAL_MIN_SIDE + 2 * scale  # the metrics shave `scale` pixels off each border
        small = []
        for path in files:
            try:
                pixels = read_image(path).pixels
            except ImageReadError as err:
                log.warning("skipping unreadable validation image %s", err)
                continue
            pixels = pixels.expand(-1, 3, -1, -1) if pixels.shape[1] == 1 else pixels
            h, w = pixels.shape[-2:]
            if min(h - h % scale, w - w % scale) < smallest:
                small.append(path.name)
                continue
            self.items.append((path.name, pixels[0, :, : h - h % scale, : w - w % scale].contiguous()))
        if small:
            log.warning("skipping %d validation images smaller than %d px (the validation metrics need it): %s",
                        len(small), smallest, ", ".join(small[:5]) + (" ..." if len(small) > 5 else ""))  # fmt: skip

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i):
        name, hr = self.items[i]
        return {"hr": hr, "name": name}


class SRDataModule(pl.LightningDataModule):
    def __init__(
        self,
        train_dirs: Sequence[str | Path],
        val_dirs: Sequence[str | Path] = (),
        *,
        scale: int = 4,
        patch_size: int = 96,
        batch_size: int = 16,
        steps_per_epoch: int = 1000,
        num_workers: int = 2,
        seed: int = 0,
        lr_dirs: Sequence[str | Path] | None = None,
        cache_bytes: int = 4 << 30,
    ):
        super().__init__()
        self.train_dirs = [Path(d) for d in train_dirs]
        self.val_dirs = [Path(d) for d in val_dirs]
        self.lr_dirs = [Path(d) for d in lr_dirs] if lr_dirs else None
        if self.lr_dirs and len(self.lr_dirs) != len(self.train_dirs):
            raise DataError("give one LR folder per training folder")
        self.scale, self.patch_size, self.batch_size = scale, patch_size, batch_size
        self.steps_per_epoch, self.num_workers, self.seed = steps_per_epoch, num_workers, seed
        self.cache_bytes = cache_bytes
        self.train_set: HRCropDataset | None = None
        self.val_set: ValidationDataset | None = None
        self.resume_position = (0, 0)  # (epoch, samples of it done): see resume_at

    def resume_at(self, epoch: int, samples: int) -> None:
        """Start training ``samples`` into ``epoch``, so that a run resumed from a stop mid-epoch draws
        the crops an uninterrupted run would have. Set before the loader is built: its workers draw
        the first indices as soon as it is."""
        self.resume_position = (epoch, samples)

    def setup(self, stage: str | None = None) -> None:
        if self.train_set is None:
            files = find_images(self.train_dirs)
            if not files:
                raise DataError(f"no training images in {', '.join(map(str, self.train_dirs))}")
            self.train_set = HRCropDataset(
                files,
                scale=self.scale,
                patch_size=self.patch_size,
                samples_per_epoch=self.steps_per_epoch * self.batch_size,
                seed=self.seed,
                lr_folders=self.lr_dirs,
                hr_folders=self.train_dirs,
                cache_bytes=self.cache_bytes,
            )
        if self.val_set is None and self.val_dirs:
            self.val_set = ValidationDataset(find_images(self.val_dirs), self.scale)

    def train_dataloader(self) -> DataLoader:
        self.sampler = EpochSampler(self.steps_per_epoch * self.batch_size, *self.resume_position)
        return DataLoader(
            self.train_set,
            batch_size=self.batch_size,
            sampler=self.sampler,
            num_workers=self.num_workers,
            persistent_workers=False,
            pin_memory=torch.cuda.is_available(),
            drop_last=True,
            worker_init_fn=_leave_stops_to_the_trainer,
        )

    def val_dataloader(self):
        if not self.val_set:
            return []
        return DataLoader(self.val_set, batch_size=1, num_workers=0)


def _leave_stops_to_the_trainer(worker_id: int) -> None:
    """A scheduler's SIGTERM or a Ctrl-C reaches the loader's workers too. Ctrl-C they ignore: the
    trainer stops and shuts them down. On SIGTERM they exit quietly (a worker killed by a signal makes
    the trainer fail at once, wherever it is), and the trainer, told by the same signal, notices the
    missing worker when it fetches the next batch: between steps, where its state can be saved."""
    import os
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda signum, frame: os._exit(0))
