"""Upscaling many files: input collection, output naming, sharding and the overlapped pipeline.

Decode threads -> bounded queue -> one inference worker per device -> bounded queue -> encode
threads, so the accelerator does not wait on image I/O and memory stays bounded. A bad file is
reported (file and reason) and the rest go on. Outputs are written atomically and existing ones are
skipped unless ``overwrite``, so a rerun after Ctrl-C continues where it stopped. On Ctrl-C the
workers finish the file they are writing and stop: only complete outputs exist afterwards.

Progress goes to an ``on_event`` callback; this module never prints.
"""

from __future__ import annotations

import glob
import os
import queue
import socket
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sr_tool.files import TEMP_SUFFIX, folder_problem

LOCK_SUFFIX = ".srtool-lock"
from sr_tool.image_io import (DEFAULT_MAX_PIXELS, FORMATS, ImageReadError, ImageWriteError, is_srtool_output, read_image,
                              write_image)  # fmt: skip

INPUT_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif"}
_FORMAT_SUFFIX = {"png": ".png", "jpg": ".jpg", "jpeg": ".jpg", "webp": ".webp", "tif": ".tif", "tiff": ".tif"}


class BatchError(ValueError):
    """Bad batch arguments (missing input, output that would overwrite an input, ...)."""


@dataclass(frozen=True)
class Job:
    source: Path
    target: Path


@dataclass
class Failure:
    source: Path
    reason: str


@dataclass
class BatchResult:
    done: list[Job] = field(default_factory=list)
    skipped: list[Job] = field(default_factory=list)
    busy: list[Job] = field(default_factory=list)  # claimed by another run writing into the same folder
    failed: list[Failure] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0
    megapixels: float = 0.0  # output megapixels written
    # Inference workers' time, summed over workers: upscaling, waiting for a decoded image, waiting
    # for room in the encode queue. The waits are the share of time the accelerator sits idle.
    inference_seconds: float = 0.0
    waited_for_decode: float = 0.0
    waited_for_encode: float = 0.0

    @property
    def idle_share(self) -> tuple[float, float]:
        """(share waiting for decoding, share waiting for encoding) of the inference workers' time."""
        total = self.inference_seconds + self.waited_for_decode + self.waited_for_encode
        return (self.waited_for_decode / total, self.waited_for_encode / total) if total else (0.0, 0.0)

    @property
    def ok(self) -> bool:
        return not self.failed and not self.interrupted


@dataclass
class Inputs:
    files: list[tuple[Path, Path]]  # (file, base folder) to upscale
    own_outputs: list[Path]  # found in folders or globs but written by srtool: never upscaled again


def collect_inputs(inputs: Sequence[str], recursive: bool = False) -> Inputs:
    """(file, base folder) for every input file: files as given, folders' images, glob matches.

    Files that srtool wrote (:func:`~sr_tool.image_io.is_srtool_output`) are left out of folders and
    globs, so that rerunning a command does not upscale its own outputs; a file named on its own is
    always taken (upscaling an output again is then a choice)."""
    found: list[tuple[Path, Path]] = []
    own: list[Path] = []

    def expanded(files: list[Path], base_of) -> None:
        for p in files:
            (own.append(p) if is_srtool_output(p) else found.append((p, base_of(p))))

    for item in inputs:
        path = Path(item)
        if path.is_dir():
            pattern = "**/*" if recursive else "*"
            files = sorted(p for p in path.glob(pattern) if p.is_file() and p.suffix.lower() in INPUT_SUFFIXES)
            expanded(files, lambda p, base=path: base)
        elif path.is_file():
            found.append((path, path.parent))
        elif glob.has_magic(item):
            # ** is recursive by itself, as in the shell's globstar: nobody writes it to mean *
            deep = recursive or "**" in item
            matches = sorted(Path(p) for p in glob.glob(item, recursive=deep) if Path(p).is_file())
            if not matches:
                raise BatchError(f"{item}: no files match")
            expanded(matches, lambda p, base=_glob_base(item): base)
        else:
            raise BatchError(f"{item}: no such file or folder")
    unique = {p.resolve(): (p, base) for p, base in found}
    return Inputs(list(unique.values()), own)


def _glob_base(pattern: str) -> Path:
    """The folder a glob starts from (its parts before the first wildcard): outputs under -o mirror
    the matches' layout below it, so that ``photos/**/*.jpg`` keeps its sub-folders apart."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if glob.has_magic(part)), len(parts))
    return Path(*parts[:fixed]) if fixed else Path(".")


def plan_jobs(
    inputs: Sequence[tuple[Path, Path]],
    output: str | Path | None,
    *,
    suffix: str,
    fmt: str | None = None,
) -> list[Job]:
    """Output path of each input. Without ``output``: beside the input, ``<stem><suffix>.<ext>``.
    With an image-file ``output`` and one input: that file. Else ``output`` is a folder that mirrors
    the inputs' layout below their base folder. Never the input itself. An input that is another
    input's output (``a_x2.png`` beside ``a.png``, from an earlier run) is not planned again."""
    if fmt is not None and fmt.lower() not in _FORMAT_SUFFIX:
        raise BatchError(f"unknown format {fmt!r}; use one of {', '.join(sorted(set(_FORMAT_SUFFIX)))}")
    out = Path(output) if output is not None else None
    single_file = out is not None and out.suffix.lower() in FORMATS and not out.is_dir()
    if out is not None and not single_file and out.exists() and not out.is_dir():
        raise BatchError(f"-o {out}: an existing file that is not an image; give a folder or an image file name")
    if single_file and len(inputs) != 1:
        raise BatchError(f"{out}: an output file takes one input, got {len(inputs)}; give a folder")
    jobs = []
    for source, base in inputs:
        ext = _FORMAT_SUFFIX[fmt.lower()] if fmt else (source.suffix.lower() if source.suffix.lower() in FORMATS else ".png")
        if single_file:
            target = out
        elif out is None:
            target = source.with_name(f"{source.stem}{suffix}{ext}")
        else:
            rel = source.relative_to(base)
            target = out / rel.parent / f"{rel.stem}{suffix}{ext}"
        if target.resolve() == source.resolve():
            remedy = "-o another file or folder" if out is not None else "--suffix or -o"
            raise BatchError(f"{source}: the output would overwrite the input; use {remedy}")
        jobs.append(Job(source, target))
    targets = {j.target.resolve() for j in jobs}
    jobs = [j for j in jobs if j.source.resolve() not in targets]
    by_target: dict[Path, Job] = {}
    for job in jobs:
        other = by_target.setdefault(job.target.resolve(), job)
        if other is not job:
            advice = ("keep their formats (no --format), or upscale them in separate runs" if fmt else
                      "give -o a folder above both, so that it mirrors their sub-folders, or upscale them in separate runs")
            raise BatchError(f"{other.source} and {job.source} would both write {job.target}; {advice}")
    return jobs


def check_writable(jobs: Sequence[Job]) -> None:
    """Raise :class:`BatchError` naming the first output folder that cannot be created or written,
    before any image is upscaled."""
    checked: set[Path] = set()
    for job in jobs:
        folder = job.target.parent
        if folder in checked:
            continue
        checked.add(folder)
        problem = folder_problem(folder)
        if problem:
            raise BatchError(f"{folder}: the output folder {problem}")


def parse_shard(text: str) -> tuple[int, int]:
    """'K/N' (shards count from 1, as SLURM array ids are usually written: 1/8 .. 8/8) -> (K - 1, N)."""
    try:
        k, n = (int(v) for v in text.split("/"))
    except ValueError:
        raise BatchError(f"--shard takes K/N, e.g. 1/4, got {text!r}") from None
    if not (n >= 1 and 1 <= k <= n):
        raise BatchError(f"--shard K/N needs 1 <= K <= N (shards count from 1), got {text!r}")
    return k - 1, n


def shard(jobs: Sequence[Job], k: int, n: int) -> list[Job]:
    """Every n-th job from the k-th of the sorted job list: disjoint shards covering all jobs."""
    ordered = sorted(jobs, key=lambda j: str(j.source))
    return ordered[k::n]


Event = Callable[[str, Job | None, dict], None]


def run_batch(
    jobs: Sequence[Job],
    upscalers: Sequence,
    *,
    overwrite: bool = False,
    quality: int = 95,
    max_pixels: int | None = DEFAULT_MAX_PIXELS,
    on_event: Event | None = None,
    decode_workers: int | None = None,
    encode_workers: int | None = None,
    prefetch: int = 4,
) -> BatchResult:
    """Upscale ``jobs`` with ``upscalers`` (one inference worker each, e.g. one per GPU).

    Events: ``("start", None, {"total": n})``, ``("skipped", job, {})``, ``("done", job,
    {"megapixels": mp, "route": text or None})`` (the default route's choice), ``("failed", job, {"reason": text})``, ``("warning", job, {"message": text})``
    (what the output cannot keep: animation frames, alpha in JPEG), ``("tiles", job, {"done": k,
    "total": n})`` while a big image is upscaled tile by tile. Ctrl-C (KeyboardInterrupt in the
    calling thread) stops the workers after their current file and returns with ``interrupted``.
    Where the upscalers have a ``prepare(image) -> image`` method (the default route's noise
    estimate), the decoding threads call it on each image, so the inference threads need not.

    Each output is claimed before its input is read (an exclusive lock file beside it), so two runs,
    or shards on a shared file system, pointed at one output folder split the work and never write
    one file twice; a job another run holds is reported as ``("skipped", job, {"busy": True})``.
    """
    started = time.perf_counter()
    emit = on_event or (lambda *args: None)
    result = BatchResult()
    lock = threading.Lock()
    todo = []
    for job in jobs:
        if job.target.exists() and not overwrite:
            result.skipped.append(job)
        else:
            todo.append(job)
    emit("start", None, {"total": len(jobs), "todo": len(todo), "skipped": len(result.skipped)})
    for job in result.skipped:
        emit("skipped", job, {})
    held: dict[Job, Path] = {}  # our claims, released when a job ends however it ends

    stop = threading.Event()
    pending: queue.Queue = queue.Queue()
    for job in todo:
        pending.put(job)
    decoded: queue.Queue = queue.Queue(maxsize=prefetch)
    upscaled: queue.Queue = queue.Queue(maxsize=prefetch)
    done_marker = object()

    def release(job: Job) -> None:
        with lock:
            claim = held.pop(job, None)
        if claim is not None:
            claim.unlink(missing_ok=True)

    def fail(job: Job, reason: str) -> None:
        release(job)
        with lock:
            result.failed.append(Failure(job.source, reason))
        emit("failed", job, {"reason": reason})

    def claim(job: Job) -> bool:
        try:
            claimed = _claim(job.target)
        except OSError as err:
            fail(job, f"cannot claim the output {job.target} ({err})")
            return False
        if claimed is None or (job.target.exists() and not overwrite):  # another run has it, or just wrote it
            if claimed is not None:
                claimed.unlink(missing_ok=True)
            with lock:
                result.busy.append(job)
            emit("skipped", job, {"busy": True})
            return False
        with lock:
            held[job] = claimed
        _remove_stale_temps(job)  # ours to clean now: no other run is writing this target
        return True

    def put(q: queue.Queue, item) -> bool:
        while not stop.is_set():
            try:
                q.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    prepare = getattr(upscalers[0], "prepare", None) if upscalers else None

    def decode_worker() -> None:
        while not stop.is_set():
            try:
                job = pending.get_nowait()
            except queue.Empty:
                return
            if not claim(job):
                continue
            try:
                image = read_image(job.source, max_pixels=max_pixels)
            except ImageReadError as err:
                fail(job, err.reason)
                continue
            if prepare is not None:  # e.g. the default route's noise estimate: here, not on the accelerator's thread
                image = prepare(image)
            for message in _losses_of(image, job.target):
                emit("warning", job, {"message": message})
            if not put(decoded, (job, image)):
                return

    def take(q: queue.Queue):
        """Items of ``q`` until its end marker, or until stop is set (checked between items)."""
        while not stop.is_set():
            try:
                item = q.get(timeout=0.1)
            except queue.Empty:
                continue
            if item is done_marker:
                return
            yield item

    def account(field: str, seconds: float) -> None:
        with lock:
            setattr(result, field, getattr(result, field) + seconds)

    def infer_worker(upscaler) -> None:
        clock = time.perf_counter
        ready = clock()
        for job, image in take(decoded):
            started = clock()
            account("waited_for_decode", started - ready)

            def on_tiles(done: int, total: int, job=job) -> None:
                if total > 1:
                    emit("tiles", job, {"done": done, "total": total})

            try:
                out = upscaler.upscale(image, on_tiles=on_tiles)
            except Exception as exc:  # a model/engine failure on one image must not end the batch
                fail(job, f"upscaling failed ({type(exc).__name__}: {exc})")
                out = None
            ready = clock()
            account("inference_seconds", ready - started)
            del image
            if out is None:
                continue
            if not put(upscaled, (job, out)):
                return
            finished, ready = ready, clock()
            account("waited_for_encode", ready - finished)

    def encode_worker() -> None:
        for job, out in take(upscaled):  # a write in progress when stop is set still completes
            try:
                write_image(job.target, out.pixels, alpha=out.alpha, info=out.info, quality=quality)
            except (ImageWriteError, OSError) as err:
                fail(job, getattr(err, "reason", str(err)))
                continue
            release(job)
            mp = out.pixels.shape[0] * out.pixels.shape[1] / 1e6
            with lock:
                result.done.append(job)
                result.megapixels += mp
            emit("done", job, {"megapixels": mp, "route": out.route})

    # Pillow and zlib release the GIL while they decode and encode, so threads use several cores:
    # half the cores each (2 to 8), enough to keep a GPU fed with PNG/JPEG work.
    io_threads = max(2, min(8, (os.cpu_count() or 2) // 2))
    decode_workers, encode_workers = decode_workers or io_threads, encode_workers or io_threads
    decoders = [threading.Thread(target=decode_worker, daemon=True) for _ in range(max(1, decode_workers))]
    inferers = [threading.Thread(target=infer_worker, args=(u,), daemon=True) for u in upscalers]
    encoders = [threading.Thread(target=encode_worker, daemon=True) for _ in range(max(1, encode_workers))]
    threads = decoders + inferers + encoders
    try:  # threads start inside: a Ctrl-C between two starts must still stop and release them all
        for t in threads:
            t.start()
        _join(decoders)
        for _ in inferers:
            put(decoded, done_marker)
        _join(inferers)
        for _ in encoders:
            put(upscaled, done_marker)
        _join(encoders)
    except KeyboardInterrupt:
        stop.set()
        result.interrupted = True
        # Every worker ends after its current item: writes complete (and are renamed), and no thread
        # is left inside the inference runtime when the interpreter exits.
        for t in threads:
            if t.ident is not None:  # started
                t.join()
    finally:
        for job in list(held):  # decoded or upscaled but not written (interrupted): free for a rerun
            release(job)
    result.seconds = time.perf_counter() - started
    return result


def _losses_of(image, target: Path) -> list[str]:
    """What the output cannot keep of this input, in words."""
    messages = []
    if image.info.frames > 1:
        messages.append(f"animated ({image.info.frames} frames): only the first frame is upscaled")
    if image.alpha is not None and FORMATS.get(target.suffix.lower()) == "JPEG":
        messages.append("JPEG has no alpha channel: transparency is dropped (use --format png or webp to keep it)")
    return messages


def _join(threads: list[threading.Thread]) -> None:
    for t in threads:
        while t.is_alive():
            t.join(timeout=0.2)  # short waits keep the main thread responsive to Ctrl-C


def _remove_stale_temps(job: Job) -> None:
    """Temp files an earlier, killed run left beside a target we have claimed."""
    for stale in job.target.parent.glob(f".{job.target.name}.*{TEMP_SUFFIX}"):
        stale.unlink(missing_ok=True)


def _claim(target: Path) -> Path | None:
    """Create ``target``'s lock file exclusively (O_EXCL, safe on shared file systems) and return it;
    None while another live run holds it. A lock whose run died on this machine is taken over."""
    claim_path = target.with_name(f".{target.name}{LOCK_SUFFIX}")
    claim_path.parent.mkdir(parents=True, exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(claim_path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            if not _claim_is_stale(claim_path):
                return None
            claim_path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(f"{socket.gethostname()} {os.getpid()}\n")
        return claim_path
    return None


def _claim_is_stale(claim_path: Path) -> bool:
    """A claim left by a process of this machine that no longer runs (killed with -9, power cut).
    Claims of other machines are respected: delete them by hand if that machine died."""
    try:
        host, pid = claim_path.read_text().split()
        pid_number = int(pid)
    except (OSError, ValueError):
        return False  # being written right now, or not ours to judge
    if host != socket.gethostname():
        return False
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False  # that run is alive
