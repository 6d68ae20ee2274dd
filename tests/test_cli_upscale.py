"""End-to-end `srtool upscale` on files and folders (CliRunner and a real subprocess)."""

import os
import signal
import socket
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms
from typer.testing import CliRunner

from helpers import smooth_scene, tiny_onnx, tiny_shipped_models, with_noise
from sr_tool.cli import app
from sr_tool.files import TEMP_SUFFIX
from sr_tool.image_io import read_image

runner = CliRunner()
SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _run(*args):
    return runner.invoke(app, ["upscale", *map(str, args), "--device", "cpu", "-q"])


def _temps(folder):
    return [p for p in Path(folder).rglob("*") if p.name.endswith(TEMP_SUFFIX)]


def test_alpha_gray_16bit_exif_and_icc_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (12, 10, 4), dtype=np.uint8)).save(tmp_path / "rgba.png", icc_profile=SRGB_ICC)
    Image.fromarray(rng.integers(0, 256, (12, 10), dtype=np.uint8)).save(tmp_path / "gray.png")
    Image.fromarray(rng.integers(0, 65536, (12, 10), dtype=np.uint16)).save(tmp_path / "g16.png")
    exif = Image.Exif()
    exif[0x0112] = 6
    exif[0x010F] = "test-camera"
    Image.fromarray(rng.integers(0, 256, (12, 10, 3), dtype=np.uint8)).save(tmp_path / "rot.jpg", exif=exif.tobytes())
    result = _run(tmp_path, "-x", "2", "--model", tiny_onnx(2), "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    rgba = Image.open(tmp_path / "out/rgba_x2.png")
    assert rgba.mode == "RGBA" and rgba.size == (20, 24) and rgba.info["icc_profile"] == SRGB_ICC
    gray = Image.open(tmp_path / "out/gray_x2.png")
    assert gray.mode == "L" and gray.size == (20, 24)
    g16 = read_image(tmp_path / "out/g16_x2.png")
    assert g16.info.bit_depth == 16 and g16.is_gray and g16.size == (20, 24)
    rot = Image.open(tmp_path / "out/rot_x2.jpg")
    assert rot.size == (24, 20)  # EXIF rotation applied: portrait became landscape
    assert rot.getexif().get(0x0112, 1) == 1 and rot.getexif()[0x010F] == "test-camera"


def _bomb_png():
    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", 50_000, 50_000, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1000)) + chunk(b"IEND", b"")


def test_bad_files_are_reported_and_the_rest_written(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(3):
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(folder / f"good{i}.png")
    good = (folder / "good0.png").read_bytes()
    (folder / "corrupt.png").write_bytes(good[:40] + b"\x00" * 30 + good[70:])
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.png").write_text("hello, not an image\n")
    (folder / "bomb.png").write_bytes(_bomb_png())
    result = runner.invoke(app, ["upscale", str(folder), "-x", "2", "--model", str(tiny_onnx(2)), "-o",
                                 str(tmp_path / "out"), "--device", "cpu", "-q"])  # fmt: skip
    assert result.exit_code == 1
    for name, reason in [("corrupt.png", "corrupt"), ("zero.png", "empty file"), ("text.png", "not an image"),
                         ("bomb.png", "decompression bomb")]:  # fmt: skip
        line = next(line for line in result.output.splitlines() if name in line)
        assert line.startswith("error: ") and reason in line
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["good0_x2.png", "good1_x2.png", "good2_x2.png"]
    assert not _temps(tmp_path)
    assert "3 written" in result.output and "4 failed" in result.output


def test_the_summary_mentions_existing_outputs_only_when_there_were_some(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    args = ["upscale", str(tmp_path / "a.png"), "--model", "bicubic", "-x", "2", "-o", str(tmp_path / "out")]
    first, second = runner.invoke(app, args), runner.invoke(app, args)  # not quiet: the summary is printed
    assert "1 written, 0 skipped," in first.output and "already exist" not in first.output
    assert "0 written, 1 skipped (outputs already exist; --overwrite replaces them)" in second.output


def test_existing_outputs_are_skipped_unless_overwrite_and_inputs_never_overwritten(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    model = tiny_onnx(2)
    assert _run(tmp_path / "a.png", "-x", "2", "--model", model).exit_code == 0
    out = tmp_path / "a_x2.png"
    stamp = out.stat().st_mtime_ns
    assert _run(tmp_path / "a.png", "-x", "2", "--model", model).exit_code == 0
    assert out.stat().st_mtime_ns == stamp
    assert _run(tmp_path / "a.png", "-x", "2", "--model", model, "--overwrite").exit_code == 0
    assert out.stat().st_mtime_ns != stamp
    result = _run(tmp_path / "a.png", "-x", "2", "--model", model, "--suffix", "")
    assert result.exit_code == 2 and "overwrite the input; use --suffix or -o" in result.output
    result = _run(tmp_path / "a.png", "-x", "2", "--model", model, "-o", tmp_path / "a.png")
    assert result.exit_code == 2 and "overwrite the input; use -o another file or folder" in result.output


def test_usage_errors_exit_2(tmp_path):
    assert _run(tmp_path / "missing.png", "--model", "bicubic").exit_code == 2
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    assert _run(tmp_path / "a.png", "--model", tmp_path / "nope.onnx").exit_code == 2
    assert _run(tmp_path / "a.png", "--model", "bicubic", "--shard", "3/2").exit_code == 2


def test_nothing_is_computed_when_the_output_cannot_be_written(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        result = _run(tmp_path / "a.png", "--model", "bicubic", "-x", "2", "-o", locked / "sub")
        if os.access(locked, os.W_OK):  # root ignores permissions: nothing to test there
            assert result.exit_code == 0
        else:
            assert result.exit_code == 2 and "not writable" in result.output
    finally:
        locked.chmod(0o700)
    (tmp_path / "notes.txt").write_text("mine")
    result = _run(tmp_path / "a.png", "--model", "bicubic", "-x", "2", "-o", tmp_path / "notes.txt")
    assert result.exit_code == 2 and "not an image" in result.output
    assert (tmp_path / "notes.txt").read_text() == "mine"
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would go")
    result = _run(tmp_path / "a.png", "--model", "bicubic", "-x", "2", "-o", blocker / "out")
    assert result.exit_code == 2 and "the output folder cannot be created" in result.output
    # a folder that cannot be made even by root: one usage error, not one failure per file
    result = _run(tmp_path / "a.png", tmp_path / "a.png", "--model", "bicubic", "-x", "2", "-o", "/proc/srtool-nope")
    assert result.exit_code == 2 and result.output.count("not writable") == 1, result.output


def test_empty_folders_scale_one_and_fp16_on_cpu_are_not_silent(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    result = _run(tmp_path / "empty", "--model", "bicubic")
    assert result.exit_code == 2 and "no images found" in result.output
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    for scale in ("1", "0.5"):
        result = _run(tmp_path / "a.png", "--model", "bicubic", "-x", scale)
        assert result.exit_code == 2 and "must be above 1" in result.output
    result = runner.invoke(app, ["upscale", str(tmp_path / "a.png"), "-x", "2", "--model", str(tiny_onnx(2)),
                                 "--device", "cpu", "--fp16", "-o", str(tmp_path / "h.png")])  # fmt: skip
    assert result.exit_code == 0 and "--fp16 applies to the torch engine on a CUDA device only" in result.output


def test_a_failed_file_is_reported_when_it_happens_and_in_the_summary(tmp_path):
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "b.png").write_bytes(b"broken")
    result = runner.invoke(app, ["upscale", str(tmp_path), "--model", "bicubic", "-x", "2", "-o", str(tmp_path / "o")])
    assert result.exit_code == 1
    assert result.output.count("b.png: not an image file") == 2 and "1 failed:" in result.output


def test_shards_split_a_folder_without_overlap(tmp_path):
    for i in range(5):
        Image.fromarray(np.full((8, 8, 3), i, np.uint8)).save(tmp_path / f"{i}.png")
    for k in range(2):
        assert _run(tmp_path, "--model", "bicubic", "-x", "2", "-o", tmp_path / "out", "--shard", f"{k + 1}/2").exit_code == 0
        assert len(list((tmp_path / "out").iterdir())) == (3 if k == 0 else 5)
    assert "count from 1" in _run(tmp_path, "--model", "bicubic", "--shard", "0/2").output


def test_ctrl_c_leaves_only_complete_outputs_and_a_rerun_finishes(tmp_path):
    folder, out = tmp_path / "in", tmp_path / "out"
    folder.mkdir()
    rng = np.random.default_rng(2)
    for i in range(48):  # enough that the interrupt lands mid-batch on a busy machine too
        Image.fromarray(rng.integers(0, 256, (160, 160, 3), dtype=np.uint8)).save(folder / f"{i:02d}.png")
    cmd = [sys.executable, "-m", "sr_tool", "upscale", str(folder), "-x", "4", "--model", str(tiny_onnx(4)),
           "-o", str(out), "--device", "cpu", "-q"]  # fmt: skip
    def child_setup():
        os.nice(10)  # on a busy machine this test's polling still wakes before the batch is over
        # A child inherits an ignored SIGINT, and Python then leaves it ignored; earlier tests in this
        # process (Lightning's signal handling) can leave it so. A user's terminal does not.
        signal.signal(signal.SIGINT, signal.SIG_DFL)

    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, preexec_fn=child_setup)
    deadline = time.time() + 120
    # Interrupt as soon as the batch has begun (its first claim, temp file or output in the folder):
    # 47 files or more are still to do then, however busy the machine is.
    while time.time() < deadline and not (out.is_dir() and any(out.iterdir())):
        time.sleep(0.01)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    written = sorted(p for p in out.iterdir() if p.suffix == ".png")
    assert len(written) < 48, "the interrupt should land mid-batch"
    assert not [p for p in out.iterdir() if p.name.endswith(".srtool-lock")]  # claims are released
    assert not _temps(out)
    for path in written:
        assert read_image(path).size == (640, 640)  # complete, decodable
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert len(list(out.glob("*.png"))) == 48 and not _temps(out)
    for path in out.glob("*.png"):
        assert read_image(path).size == (640, 640)


def test_a_rerun_never_upscales_its_own_outputs(tmp_path):
    rng = np.random.default_rng(1)
    for name in ("a.png", "sub/b.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / name)
    model = tiny_onnx(2)
    for _ in range(3):  # beside the inputs, as the Ctrl-C advice ("rerun the same command") would do
        assert _run(tmp_path, "-r", "-x", "2", "--model", model).exit_code == 0
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.png")) == [
        "a.png", "a_x2.png", "sub/b.png", "sub/b_x2.png"]  # fmt: skip
    for _ in range(2):  # -o inside the input folder
        assert _run(tmp_path, "-r", "-x", "2", "--model", model, "-o", tmp_path / "out").exit_code == 0
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "a_x2.png", "sub/b_x2.png"]  # fmt: skip
    result = _run(tmp_path / "a_x2.png", "-x", "2", "--model", model)  # named on its own: the user's choice
    assert result.exit_code == 0 and (tmp_path / "a_x2_x2.png").is_file()


def test_outputs_of_an_older_version_without_the_mark_are_recognised_by_name(tmp_path):
    rng = np.random.default_rng(2)
    for name in ("a.png", "a_x2.png"):  # a_x2.png as an older srtool (or anyone) wrote it: no mark
        Image.fromarray(rng.integers(0, 256, (10, 12, 3), dtype=np.uint8)).save(tmp_path / name)
    result = runner.invoke(app, ["upscale", str(tmp_path), "-x", "2", "--model", str(tiny_onnx(2)), "--device", "cpu"])
    assert result.exit_code == 0 and "1 file(s) are srtool outputs" in result.output, result.output
    assert not (tmp_path / "a_x2_x2.png").exists()


def test_collisions_name_the_files_and_globs_mirror_their_sub_folders(tmp_path):
    for name in ("a.png", "a.jpg", "x/c.png", "y/c.png"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / name)
    result = _run(tmp_path / "a.png", tmp_path / "a.jpg", "--model", "bicubic", "-x", "2", "--format", "png")
    assert result.exit_code == 2 and "a.png and" in result.output and "a.jpg would both write" in result.output
    result = _run(f"{tmp_path}/**/c.png", "-r", "--model", "bicubic", "-x", "2", "-o", tmp_path / "out")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in (tmp_path / "out").rglob("*.png")) == [
        "x/c_x2.png", "y/c_x2.png"]  # fmt: skip
    # ** descends without -r too (as the shell's globstar): nothing at the top or deeper is left out
    (tmp_path / "x" / "deep").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / "x" / "deep" / "d.png")
    result = _run(f"{tmp_path}/**/*.png", "--model", "bicubic", "-x", "2", "-o", tmp_path / "all")
    assert result.exit_code == 0, result.output
    assert sorted(p.relative_to(tmp_path / "all").as_posix() for p in (tmp_path / "all").rglob("*.png")) == [
        "a_x2.png", "x/c_x2.png", "x/deep/d_x2.png", "y/c_x2.png"]  # fmt: skip
    # same names from two folders given side by side: the advice is about -o, not --format
    result = _run(tmp_path / "x" / "c.png", tmp_path / "y" / "c.png", "--model", "bicubic", "-x", "2", "-o", tmp_path / "flat")
    assert result.exit_code == 2 and "--format" not in result.output and "-o a folder above both" in result.output


def test_two_runs_on_one_output_folder_split_the_work(tmp_path):
    from sr_tool.batch import LOCK_SUFFIX, Job, run_batch
    from sr_tool.upscale import Upscaler

    jobs = []
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
        jobs.append(Job(tmp_path / f"{i}.png", tmp_path / "out" / f"{i}_x2.png"))
    (tmp_path / "out").mkdir()
    # another live run (this test's own process stands in for it) holds the claims of 0 and 1
    for i in (0, 1):
        (tmp_path / "out" / f".{i}_x2.png{LOCK_SUFFIX}").write_text(f"{socket.gethostname()} {os.getpid()}\n")
    # a run killed with -9 left the claim of 2: its process is gone, so the claim is stale
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (tmp_path / "out" / f".2_x2.png{LOCK_SUFFIX}").write_text(f"{socket.gethostname()} {dead.stdout.strip()}\n")
    result = run_batch(jobs, [Upscaler("bicubic", 2)])
    assert sorted(j.source.name for j in result.busy) == ["0.png", "1.png"]
    assert sorted(j.source.name for j in result.done) == ["2.png", "3.png", "4.png", "5.png"]
    assert not (tmp_path / "out" / "0_x2.png").exists()
    left = sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.endswith(LOCK_SUFFIX))
    assert left == [f".0_x2.png{LOCK_SUFFIX}", f".1_x2.png{LOCK_SUFFIX}"]  # ours released, theirs kept


def test_what_an_output_cannot_keep_is_said(tmp_path):
    frames = [Image.fromarray(np.full((8, 8), v, np.uint8), "L").convert("P") for v in (0, 120, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    Image.fromarray(np.full((8, 8, 4), 100, np.uint8), "RGBA").save(tmp_path / "alpha.png")
    result = runner.invoke(app, ["upscale", str(tmp_path / "anim.gif"), "--model", "bicubic", "-x", "2", "-o",
                                 str(tmp_path / "a.png")])  # fmt: skip
    assert result.exit_code == 0 and "anim.gif: animated (3 frames): only the first frame" in result.output
    result = runner.invoke(app, ["upscale", str(tmp_path / "alpha.png"), "--model", "bicubic", "-x", "2", "-o",
                                 str(tmp_path / "b.jpg")])  # fmt: skip
    assert result.exit_code == 0 and "transparency is dropped" in result.output


def test_a_big_image_reports_progress_tile_by_tile(tmp_path):
    from sr_tool.batch import Job, run_batch
    from sr_tool.upscale import TileSettings, Upscaler

    Image.fromarray(np.zeros((100, 90, 3), np.uint8)).save(tmp_path / "big.png")
    events = []
    up = Upscaler(str(tiny_onnx(2)), 2, device="cpu", tiles=TileSettings(tile=56))
    run_batch([Job(tmp_path / "big.png", tmp_path / "big_x2.png")], [up], on_event=lambda k, j, d: events.append((k, d)))
    tiles = [d for k, d in events if k == "tiles"]
    assert len(tiles) > 3 and tiles[-1]["done"] == tiles[-1]["total"] and events[-1][0] == "done"


def test_without_a_model_jpeg_and_noisy_inputs_get_the_photo_model_at_the_strength_they_call_for(tmp_path, monkeypatch):
    import sr_tool.upscale as upscale

    models = tiny_shipped_models(tmp_path / "models", clean="perceptual")
    monkeypatch.setattr(upscale, "shipped_models_dir", lambda: models)
    folder = tmp_path / "in"
    folder.mkdir()
    clean = smooth_scene(72, 96)  # 20 blocks of 16 px: enough to read noise in
    jpegs = {"a.jpg": 95, "c.jpg": 40}  # light and heavy compression: different strengths
    assert upscale.jpeg_strength(95) != upscale.jpeg_strength(40) == 1
    for name, quality in jpegs.items():
        Image.fromarray(clean).save(folder / name, quality=quality)
    Image.fromarray(clean).save(folder / "b.png")
    Image.fromarray(with_noise(clean, 12)).save(folder / "d.png")
    assert upscale.noise_strength(12) == 1 and upscale.noise_strength(1) is None

    loud = lambda *args: runner.invoke(app, ["upscale", *map(str, args), "--device", "cpu"])  # noqa: E731
    result = loud(folder, "-x", "2", "-o", tmp_path / "auto")
    assert result.exit_code == 0, result.output
    assert "JPEG (or once JPEG), lossy WebP and noisy inputs: photo_x2.onnx mixed with pixel_x2.onnx, at a strength set by each file's" in result.output
    assert "route: 2 to photo_x2 at 1, 1 to perceptual_x2.onnx, 1 to photo_x2 at 0.25" in result.output  # c.jpg, d.png; b; a
    assert "a.jpg" not in result.output  # which file went where: only with --verbose
    result = loud(folder, "-x", "2", "-o", tmp_path / "told", "--verbose")
    said = {line.split(": ", 1)[0].rsplit("/", 1)[-1]: line.split(": ", 1)[1] for line in result.output.splitlines() if ".jpg: " in line or ".png: " in line}
    assert said["a.jpg"].startswith("photo_x2 at 0.25 (JPEG quality 95, noise ") and said["c.jpg"].startswith("photo_x2 at 1 (JPEG quality 40")
    assert said["b.png"].startswith("perceptual_x2.onnx (noise ") and said["d.png"].startswith("photo_x2 at 1 (noise 1")
    # The same outputs as each input alone with its model: photo at its quality's strength for the
    # JPEGs (1 is photo as trained), photo as trained for the noisy PNG, perceptual for the clean one.
    cases = [(name, ["-m", "photo", "--strength", str(upscale.jpeg_strength(q))]) for name, q in jpegs.items()]
    cases += [("c.jpg", ["-m", "photo"]), ("d.png", ["-m", "photo"]), ("b.png", ["-m", "perceptual"])]
    for i, (name, options) in enumerate(cases):
        out = name.replace(".", "_x2.")
        alone = _run(folder / name, "-x", "2", *options, "-o", tmp_path / f"alone{i}" / out)
        assert alone.exit_code == 0, alone.output
        assert np.array_equal(read_image(tmp_path / "auto" / out).array, read_image(tmp_path / f"alone{i}" / out).array), options
    assert not np.array_equal(read_image(tmp_path / "auto" / "a_x2.jpg").array, read_image(tmp_path / "alone1" / "c_x2.jpg").array)

    # JPEGs only: the photo model alone is loaded, the same output.
    only = loud(folder / "a.jpg", "-x", "2", "-o", tmp_path / "only" / "a_x2.jpg")
    assert only.exit_code == 0 and "model: photo_x2.onnx mixed with pixel_x2.onnx" in only.output, only.output
    assert "perceptual" not in only.output
    assert np.array_equal(read_image(tmp_path / "only" / "a_x2.jpg").array, read_image(tmp_path / "auto" / "a_x2.jpg").array)

    # --strength alone means the photo model, mixed with its partner at that strength, for every input.
    result = loud(folder, "-x", "2", "-o", tmp_path / "mixed", "--strength", "0.5")
    assert result.exit_code == 0 and "photo_x2.onnx at strength 0.5 (mixed with pixel_x2.onnx)" in result.output


def test_the_route_estimates_the_noise_while_decoding_not_on_the_inference_thread(tmp_path, monkeypatch):
    import threading

    import sr_tool.upscale as upscale
    from sr_tool.batch import Job, run_batch
    from sr_tool.upscale import Upscaler

    models = tiny_shipped_models(tmp_path / "models", clean="msssim")
    monkeypatch.setattr(upscale, "shipped_models_dir", lambda: models)
    route = upscale.default_route(lambda name, strength: Upscaler(name, 2, device="cpu", strength=strength))
    jobs = []
    for i, sigma in enumerate((0, 12, 0, 12)):
        Image.fromarray(with_noise(smooth_scene(72, 80), sigma)).save(tmp_path / f"{i}.png")
        jobs.append(Job(tmp_path / f"{i}.png", tmp_path / f"{i}_x2.png"))
    measured_in, estimate = [], upscale.estimate_noise_sigma

    def recording_estimate(array):
        measured_in.append(threading.current_thread().name)
        return estimate(array)

    monkeypatch.setattr(upscale, "estimate_noise_sigma", recording_estimate)
    inference = []
    real_upscale = route.upscale
    monkeypatch.setattr(route, "upscale", lambda image, **kw: inference.append(threading.current_thread().name)
                        or real_upscale(image, **kw))  # fmt: skip
    result = run_batch(jobs, [route], decode_workers=1)
    assert len(result.done) == 4 and len(measured_in) == 4  # once per image, no second estimate at inference
    assert not set(measured_in) & set(inference)
    assert route.routed == {"msssim_x2.onnx": 2, "photo_x2 at 1": 2}


@pytest.mark.parametrize("slow", ["decode", "upscale"])
def test_batch_reports_how_long_inference_waited_for_decoding(tmp_path, monkeypatch, slow):
    """The share of time the accelerator idles: high when decoding is the bottleneck, low when
    inference itself is."""
    import sr_tool.batch as batch
    from sr_tool.batch import Job, run_batch
    from sr_tool.upscale import Upscaler

    jobs = []
    for i in range(6):
        Image.fromarray(np.full((8, 8, 3), i * 40, np.uint8)).save(tmp_path / f"{i}.png")
        jobs.append(Job(tmp_path / f"{i}.png", tmp_path / f"{i}_x2.png"))
    up = Upscaler("bicubic", 2)
    real_read, real_upscale = batch.read_image, up.upscale

    def slow_read(*args, **kwargs):
        time.sleep(0.05 if slow == "decode" else 0)
        return real_read(*args, **kwargs)

    def slow_upscale(*args, **kwargs):
        time.sleep(0.05 if slow == "upscale" else 0)
        return real_upscale(*args, **kwargs)

    monkeypatch.setattr(batch, "read_image", slow_read)
    monkeypatch.setattr(up, "upscale", slow_upscale)
    result = run_batch(jobs, [up], decode_workers=1, encode_workers=1)
    assert len(result.done) == 6
    waited_decode, waited_encode = result.idle_share
    if slow == "decode":
        assert waited_decode > 0.6 and result.inference_seconds < 0.2
    else:
        assert waited_decode < 0.3 and result.inference_seconds >= 0.3


def test_without_x_a_model_file_runs_at_its_own_scale_and_built_ins_at_4(tmp_path):
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    assert _run(tmp_path / "a.png", "--model", tiny_onnx(2), "-o", tmp_path / "own").exit_code == 0
    assert Image.open(tmp_path / "own" / "a_x2.png").size == (60, 40)
    result = _run(tmp_path / "a.png", "--model", tiny_onnx(2), "-x", "4", "-o", tmp_path / "asked")
    assert result.exit_code == 0 and "bicubic does the rest up to x4" in result.output
    assert Image.open(tmp_path / "asked" / "a_x4.png").size == (120, 80)
    assert _run(tmp_path / "a.png", "--model", "bicubic", "-o", tmp_path / "builtin").exit_code == 0
    assert Image.open(tmp_path / "builtin" / "a_x4.png").size == (120, 80)
