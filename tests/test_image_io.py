import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageCms, ImageOps

from sr_tool.files import TEMP_SUFFIX
from sr_tool.image_io import (
    ImageInfo,
    ImageReadError,
    ImageWriteError,
    estimate_jpeg_quality,
    estimate_webp_quality,
    ijg_luminance_table,
    is_srtool_output,
    read_image,
    write_image,
)

SRGB_ICC = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def _rgb(h=13, w=17, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _no_temp_files(folder: Path):
    return not [p for p in folder.iterdir() if p.name.endswith(TEMP_SUFFIX)]


def test_png_8bit_round_trip(tmp_path):
    a = _rgb()
    Image.fromarray(a).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.pixels.shape == (1, 3, 13, 17) and img.pixels.dtype == torch.float32
    assert img.alpha is None and img.info.bit_depth == 8
    assert torch.equal((img.pixels[0].permute(1, 2, 0) * 255).round().byte(), torch.from_numpy(a))
    write_image(tmp_path / "b.png", img.pixels, info=img.info)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_png_16bit_round_trip(tmp_path, channels):
    import png

    data = np.random.default_rng(1).integers(0, 65536, (9, 11 * channels), dtype=np.uint16)
    png.Writer(11, 9, greyscale=channels < 3, alpha=channels in (2, 4), bitdepth=16).write(
        open(tmp_path / "a.png", "wb"), data
    )
    img = read_image(tmp_path / "a.png")
    assert img.info.bit_depth == 16
    assert img.pixels.shape[1] == (1 if channels < 3 else 3)
    assert (img.alpha is not None) == (channels in (2, 4))
    planes = torch.cat([img.pixels, img.alpha] if img.alpha is not None else [img.pixels], 1)[0]
    values = (planes.permute(1, 2, 0).double() * 65535).round().long().numpy()
    assert np.array_equal(values.reshape(9, 11 * channels), data)
    write_image(tmp_path / "b.png", img.pixels, alpha=img.alpha, info=img.info)
    again = read_image(tmp_path / "b.png")
    assert again.info.bit_depth == 16
    assert torch.equal(again.pixels, img.pixels)


def test_gray_16bit_tiff_stays_16bit(tmp_path):
    a = np.random.default_rng(2).integers(0, 65536, (8, 10), dtype=np.uint16)
    Image.fromarray(a).save(tmp_path / "a.tif")
    img = read_image(tmp_path / "a.tif")
    assert img.is_gray and img.info.bit_depth == 16
    write_image(tmp_path / "b.tif", img.pixels, info=img.info)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.tif")), a)


def test_rgba_alpha_is_split_and_written_back(tmp_path):
    a = np.random.default_rng(3).integers(0, 256, (10, 12, 4), dtype=np.uint8)
    Image.fromarray(a).save(tmp_path / "a.png")
    img = read_image(tmp_path / "a.png")
    assert img.pixels.shape == (1, 3, 10, 12) and img.alpha.shape == (1, 1, 10, 12)
    assert torch.equal((img.alpha[0, 0] * 255).round().byte(), torch.from_numpy(a[:, :, 3]))
    write_image(tmp_path / "b.png", img.pixels, alpha=img.alpha, info=img.info)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), a)
    write_image(tmp_path / "b.webp", img.pixels, alpha=img.alpha, info=img.info, quality=100)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.webp")), a)  # lossless at quality 100


def test_gray_l_and_la(tmp_path):
    g = np.random.default_rng(4).integers(0, 256, (7, 9), dtype=np.uint8)
    Image.fromarray(g).save(tmp_path / "l.png")
    img = read_image(tmp_path / "l.png")
    assert img.is_gray and img.alpha is None and img.info.mode == "L"
    write_image(tmp_path / "l2.png", img.pixels, info=img.info)
    assert Image.open(tmp_path / "l2.png").mode == "L"
    assert np.array_equal(np.asarray(Image.open(tmp_path / "l2.png")), g)

    la = np.stack([g, 255 - g], axis=-1)
    Image.fromarray(la).save(tmp_path / "la.png")
    img = read_image(tmp_path / "la.png")
    assert img.is_gray and img.alpha is not None
    write_image(tmp_path / "la2.png", img.pixels, alpha=img.alpha, info=img.info)
    back = Image.open(tmp_path / "la2.png")
    assert back.mode == "LA" and np.array_equal(np.asarray(back), la)


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (6, 4))
    p.putpalette([255, 0, 0, 0, 255, 0, 0, 0, 255] + [0] * 759)
    p.putdata([0, 1, 2, 0, 1, 2] * 4)
    p.info["transparency"] = 1  # green is transparent
    p.save(tmp_path / "p.png", transparency=1)
    img = read_image(tmp_path / "p.png")
    assert img.info.mode == "P" and img.alpha is not None
    alpha = img.alpha[0, 0]
    assert alpha[0, 1] == 0 and alpha[0, 0] == 1 and alpha[0, 2] == 1
    assert torch.allclose(img.pixels[0, :, 0, 0], torch.tensor([1.0, 0, 0]))

    del p.info["transparency"]
    p.save(tmp_path / "opaque.png")  # without transparency: plain RGB, no alpha
    assert read_image(tmp_path / "opaque.png").alpha is None


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = Image.fromarray(_rgb(16, 16))
    rgb.convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    img = read_image(tmp_path / "c.jpg")
    assert img.info.mode == "CMYK" and img.pixels.shape == (1, 3, 16, 16)
    expected = np.asarray(Image.open(tmp_path / "c.jpg").convert("RGB"))
    got = (img.pixels[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(got, expected)
    assert img.info.icc_profile is None  # never tag RGB output with a CMYK profile


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_applied(tmp_path, orientation):
    src = Image.fromarray(_rgb(6, 10))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x010F] = "srtool-test-camera"  # Make
    src.save(tmp_path / "o.png", exif=exif.tobytes())
    img = read_image(tmp_path / "o.png")
    expected = np.asarray(ImageOps.exif_transpose(Image.open(tmp_path / "o.png")))
    got = (img.pixels[0].permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(got, expected)
    write_image(tmp_path / "out.jpg", img.pixels, info=img.info)
    out_exif = Image.open(tmp_path / "out.jpg").getexif()
    assert out_exif.get(0x0112, 1) == 1 and out_exif[0x010F] == "srtool-test-camera"


def test_exif_rotated_jpeg(tmp_path):
    src = Image.fromarray(_rgb(8, 16))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 CW on display
    src.save(tmp_path / "r.jpg", exif=exif.tobytes(), quality=95)
    img = read_image(tmp_path / "r.jpg")
    assert img.size == (8, 16)  # width and height swapped


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".webp", ".tif"])
def test_icc_profile_preserved_byte_for_byte(tmp_path, suffix):
    Image.fromarray(_rgb()).save(tmp_path / "a.png", icc_profile=SRGB_ICC)
    img = read_image(tmp_path / "a.png")
    assert img.info.icc_profile == SRGB_ICC
    write_image(tmp_path / f"b{suffix}", img.pixels, info=img.info)
    assert read_image(tmp_path / f"b{suffix}").info.icc_profile == SRGB_ICC


def test_icc_preserved_in_16bit_png(tmp_path):
    img16 = read_image(_write_png16(tmp_path / "a.png"))
    info = ImageInfo(format="PNG", mode="RGB", bit_depth=16, icc_profile=SRGB_ICC)
    write_image(tmp_path / "b.png", img16.pixels, info=info)
    back = read_image(tmp_path / "b.png")
    assert back.info.icc_profile == SRGB_ICC and back.info.bit_depth == 16


def _write_png16(path):
    import png

    data = np.random.default_rng(5).integers(0, 65536, (5, 15), dtype=np.uint16)
    with open(path, "wb") as f:
        png.Writer(5, 5, greyscale=False, bitdepth=16).write(f, data)
    return path


# -- bad input --------------------------------------------------------------------------------


def _png_header(width, height):
    """A PNG that claims width x height but holds a few hundred bytes: a decompression-bomb header."""

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 10_000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def _bad_files(tmp_path):
    good = io.BytesIO()
    Image.fromarray(_rgb(64, 64)).save(good, format="PNG")
    data = good.getvalue()
    corrupt = bytearray(data)
    corrupt[60:80] = b"\x00" * 20  # inside IDAT
    files = {
        "zero.png": b"",
        "text.png": b"this is not an image\n",
        "truncated.png": data[: len(data) // 2],
        "corrupt.png": bytes(corrupt),
        "bomb.png": _png_header(100_000, 100_000),
    }
    for name, content in files.items():
        (tmp_path / name).write_bytes(content)
    return files


@pytest.mark.parametrize(
    "name, reason",
    [
        ("zero.png", "empty file"),
        ("text.png", "not an image"),
        ("truncated.png", "corrupt or truncated"),
        ("corrupt.png", "corrupt or truncated"),
        ("bomb.png", "decompression bomb"),
    ],
)
def test_bad_files_raise_one_clear_error(tmp_path, name, reason):
    _bad_files(tmp_path)
    with pytest.raises(ImageReadError) as err:
        read_image(tmp_path / name)
    message = str(err.value)
    assert message.startswith(str(tmp_path / name) + ": ") and reason in message
    assert "\n" not in message


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "nope.png")


def test_pixel_limit_is_configurable(tmp_path):
    Image.fromarray(_rgb(20, 20)).save(tmp_path / "a.png")
    with pytest.raises(ImageReadError, match="400 pixels is over the limit of 399"):
        read_image(tmp_path / "a.png", max_pixels=399)
    assert read_image(tmp_path / "a.png", max_pixels=400).size == (20, 20)


# -- writing ----------------------------------------------------------------------------------


def test_write_is_atomic_when_encoding_fails(tmp_path, monkeypatch):
    def broken_save(self, fp, *args, **kwargs):
        Path(fp).write_bytes(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(Image.Image, "save", broken_save)
    with pytest.raises(ImageWriteError, match="disk full"):
        write_image(tmp_path / "out.png", torch.rand(1, 3, 4, 4))
    assert list(tmp_path.iterdir()) == []


def test_write_replaces_existing_file_completely(tmp_path):
    target = tmp_path / "out.jpg"
    target.write_bytes(b"old")
    write_image(target, torch.rand(1, 3, 8, 8))
    assert Image.open(target).size == (8, 8)
    assert _no_temp_files(tmp_path)


def test_unknown_output_format(tmp_path):
    with pytest.raises(ImageWriteError, match="unknown output format"):
        write_image(tmp_path / "a.xyz", torch.rand(1, 3, 4, 4))


def test_jpeg_drops_alpha_and_8bit_only(tmp_path):
    write_image(tmp_path / "a.jpg", torch.rand(1, 3, 8, 8), alpha=torch.rand(1, 1, 8, 8), info=ImageInfo(bit_depth=16))
    img = Image.open(tmp_path / "a.jpg")
    assert img.mode == "RGB" and img.format == "JPEG"


def test_reads_real_benchmark_images(data_dir):
    bridge = read_image(data_dir / "Set14" / "HR" / "bridge.png")
    assert bridge.is_gray
    jpeg = read_image(next((data_dir / "BSD100" / "HR").glob("*.jpg")))
    assert jpeg.pixels.shape[1] == 3 and jpeg.info.format == "JPEG"


@pytest.mark.parametrize("name", ["o.png", "o.jpg", "o.webp", "o.tif", "o16.png"])
def test_every_written_file_is_marked_as_srtool_output_and_keeps_its_exif(tmp_path, name):
    exif = Image.Exif()
    exif[0x010F] = "test-camera"
    pixels = np.full((6, 5, 3), 40000 if name == "o16.png" else 120, np.uint16 if name == "o16.png" else np.uint8)
    info = ImageInfo(exif=exif.tobytes(), bit_depth=16 if name == "o16.png" else 8)
    write_image(tmp_path / name, pixels, info=info)
    assert is_srtool_output(tmp_path / name)
    assert Image.open(tmp_path / name).getexif().get(0x010F) == "test-camera"
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "plain.png")
    (tmp_path / "junk.png").write_bytes(b"not an image")
    assert not is_srtool_output(tmp_path / "plain.png") and not is_srtool_output(tmp_path / "junk.png")


def test_big_jpeg_outputs_skip_the_optimize_pass_that_holds_every_coefficient():
    from sr_tool.image_io import OPTIMIZE_MAX_PIXELS, ImageInfo, _save_options

    assert _save_options("JPEG", ImageInfo(), 90, 4000 * 3000)["optimize"] is True
    assert _save_options("JPEG", ImageInfo(), 90, OPTIMIZE_MAX_PIXELS + 1)["optimize"] is False


@pytest.mark.parametrize("suffix", [".jpg", ".png", ".webp", ".tif"])
def test_pixels_made_for_the_encoder_write_the_same_file(tmp_path, suffix):
    from sr_tool.image_io import new_pixels

    plain = np.random.default_rng(0).integers(0, 256, (37, 53, 3), dtype=np.uint8)
    adoptable = new_pixels(37, 53, 3, np.uint8)
    adoptable[:] = plain
    assert adoptable.base.shape == (37, 53, 4)  # the layout Pillow takes over for JPEG without a copy
    write_image(tmp_path / f"plain{suffix}", plain)
    write_image(tmp_path / f"adopted{suffix}", adoptable)
    assert (tmp_path / f"plain{suffix}").read_bytes() == (tmp_path / f"adopted{suffix}").read_bytes()


def test_views_of_other_four_channel_arrays_keep_their_own_pixels(tmp_path):
    from sr_tool.image_io import new_pixels

    rgba = np.random.default_rng(1).integers(0, 256, (20, 30, 4), dtype=np.uint8)
    cropped = new_pixels(20, 30, 3, np.uint8)
    cropped[:] = rgba[:, :, :3]
    for name, view in [("offset.png", rgba[:, :, 1:]), ("rows.png", cropped[5:12]), ("cols.png", cropped[:, 3:20])]:
        write_image(tmp_path / name, view)
        assert np.array_equal(np.asarray(Image.open(tmp_path / name)), view), name
    assert new_pixels(4, 5, 3, np.uint16).shape == (4, 5, 3) and new_pixels(4, 5, 1, np.uint8).base is None


def test_webp_quality_is_read_from_the_vp8_quantisers(tmp_path):
    from helpers import smooth_scene, with_noise

    scene = with_noise(smooth_scene(), 4)  # some texture, so that the segments differ
    for quality, tolerance in ((20, 12), (50, 12), (75, 12), (90, 2), (95, 2), (100, 0)):  # mid-range: by content
        Image.fromarray(scene).save(tmp_path / "q.webp", quality=quality)
        assert abs(read_image(tmp_path / "q.webp").info.webp_quality - quality) <= tolerance, quality
    # ICC and EXIF chunks come first in an extended file: skipped, same estimate
    Image.fromarray(scene).save(tmp_path / "x.webp", quality=60, icc_profile=SRGB_ICC, exif=b"Exif\x00\x00" + bytes(3000))
    Image.fromarray(scene).save(tmp_path / "p.webp", quality=60)
    assert estimate_webp_quality(tmp_path / "x.webp") == estimate_webp_quality(tmp_path / "p.webp") is not None
    Image.fromarray(scene).save(tmp_path / "l.webp", lossless=True)
    assert read_image(tmp_path / "l.webp").info.webp_quality is None  # lossless: nothing was quantised
    frames = [Image.fromarray(scene), Image.fromarray(scene[::-1].copy())]
    frames[0].save(tmp_path / "a.webp", save_all=True, append_images=frames[1:], quality=60)
    assert estimate_webp_quality(tmp_path / "a.webp") is None  # animation frames sit in ANMF chunks
    (tmp_path / "t.webp").write_bytes((tmp_path / "p.webp").read_bytes()[:26])  # cut short in the frame header
    assert estimate_webp_quality(tmp_path / "t.webp") is None
    assert read_image(tmp_path / "q.webp").info.jpeg_quality is None


def test_jpeg_quality_is_read_from_the_quantisation_tables(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (16, 24, 3), dtype=np.uint8)
    for quality in (5, 30, 50, 61, 75, 85, 90, 95, 100):
        Image.fromarray(pixels).save(tmp_path / "q.jpg", quality=quality)
        assert read_image(tmp_path / "q.jpg").info.jpeg_quality == quality
    Image.fromarray(pixels[..., 0]).save(tmp_path / "gray.jpg", quality=40)  # one table only
    assert read_image(tmp_path / "gray.jpg").info.jpeg_quality == 40
    # A camera's own tables (not libjpeg's scaled ones): the nearest libjpeg quality.
    custom = {0: [max(1, v - 1) for v in ijg_luminance_table(80)], 1: list(ijg_luminance_table(80))}
    assert estimate_jpeg_quality(custom) in range(78, 84)
    Image.fromarray(pixels).save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").info.jpeg_quality is None and estimate_jpeg_quality({}) is None
