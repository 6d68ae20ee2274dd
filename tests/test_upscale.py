import numpy as np
import pytest
import torch
from PIL import Image

from helpers import smooth_scene, tiny_onnx, with_noise
from sr_tool.image_io import ImageInfo, LoadedImage, read_image
from sr_tool.upscale import ModelNotFound, TileSettings, Upscaler, resolve_model


def _image(c=3, h=20, w=30, alpha=False, bit_depth=8):
    gen = torch.Generator().manual_seed(0)
    pixels = torch.rand(1, c, h, w, generator=gen)
    a = torch.rand(1, 1, h, w, generator=gen) if alpha else None
    return LoadedImage.from_tensors(pixels, a, ImageInfo(bit_depth=bit_depth))


def test_native_scale_output_and_dtype():
    up = Upscaler(str(tiny_onnx(2)), 2, device="cpu")
    out = up.upscale(_image())
    assert out.pixels.shape == (40, 60, 3) and out.pixels.dtype == np.uint8 and out.alpha is None


def test_gray_stays_gray_and_alpha_is_upscaled_separately():
    up = Upscaler(str(tiny_onnx(2)), 2, device="cpu")
    out = up.upscale(_image(c=1, alpha=True))
    assert out.pixels.shape == (40, 60, 1) and out.alpha.shape == (40, 60, 1)


def test_sixteen_bit_in_gives_sixteen_bit_out():
    out = Upscaler(str(tiny_onnx(2)), 2, device="cpu").upscale(_image(bit_depth=16))
    assert out.pixels.dtype == np.uint16


@pytest.mark.parametrize("scale, expected", [(3, (60, 90)), (1.5, (30, 45)), (4, (80, 120))])
def test_any_scale_uses_the_larger_model_then_downscales(scale, expected):
    up = Upscaler(str(tiny_onnx(4)), scale, device="cpu")
    assert up.model_scale == 4
    assert up.upscale(_image()).pixels.shape[:2] == expected


def test_non_native_scale_is_the_antialiased_downscale_of_the_model_output():
    from sr_tool.resize import imresize

    up4 = Upscaler(str(tiny_onnx(4)), 4, device="cpu")
    up3 = Upscaler(str(tiny_onnx(4)), 3, device="cpu")
    image = _image()
    big = torch.from_numpy(up4.runner(image.array)).permute(2, 0, 1)[None]
    expected = np.floor(imresize(big, size=(60, 90))[0].permute(1, 2, 0).clamp(0, 1).numpy() * 255 + 0.5)
    assert np.abs(up3.upscale(image).pixels.astype(float) - expected).max() <= 1


def test_bicubic_baseline_needs_no_model():
    up = Upscaler("bicubic", 2)
    assert up.engine is None and up.upscale(_image()).pixels.shape == (40, 60, 3)


def test_unknown_model_is_a_clear_error(tmp_path):
    with pytest.raises(ModelNotFound, match="nope.onnx: no such file$"):
        resolve_model(str(tmp_path / "nope.onnx"), 4)
    with pytest.raises(ModelNotFound, match="percepual: no such model; did you mean perceptual\\?"):
        resolve_model("percepual", 4)


def test_a_model_file_at_another_scale_says_so():
    up = Upscaler(str(tiny_onnx(2)), 4)
    assert any("is an x2 model; bicubic does the rest up to x4 (-x 2 runs it" in w for w in up.warnings)
    down = Upscaler(str(tiny_onnx(4)), 2)
    assert any("is an x4 model; its output is downscaled to x2" in w for w in down.warnings)


def test_tiled_upscaler_matches_untiled():
    image = _image(h=70, w=90)
    whole = Upscaler(str(tiny_onnx(2)), 2, device="cpu", tiles=TileSettings(tile=512)).upscale(image)
    tiled = Upscaler(str(tiny_onnx(2)), 2, device="cpu", tiles=TileSettings(tile=48)).upscale(image)
    assert np.abs(whole.pixels.astype(int) - tiled.pixels.astype(int)).max() <= 1


def test_builtin_names_resolve_to_the_nearest_larger_scale(tmp_path, monkeypatch):
    import shutil

    import sr_tool.upscale as upscale

    for name, scale in [("pixel", 2), ("pixel", 4), ("msssim", 4)]:
        shutil.copy(tiny_onnx(scale), tmp_path / f"{name}_x{scale}.onnx")
    monkeypatch.setattr(upscale, "shipped_models_dir", lambda: tmp_path)
    assert resolve_model("pixel", 2).name == "pixel_x2.onnx"
    assert resolve_model("pixel", 1.5).name == "pixel_x2.onnx"
    assert resolve_model("pixel", 3).name == "pixel_x4.onnx"
    assert resolve_model("pixel", 8).name == "pixel_x4.onnx"  # largest; bicubic does the rest
    assert Upscaler("pixel", 3, device="cpu").description.endswith(", its output downscaled to x3")
    assert "downscaled" not in Upscaler("pixel", 4, device="cpu").description
    assert upscale.default_model() == "msssim"  # perceptual is not installed here
    assert upscale.default_photo_model() is None  # nor photo
    with pytest.raises(ModelNotFound, match="'perceptual' is not installed"):
        resolve_model("perceptual", 4)
    assert [e["scale"] for e in upscale.list_builtin_models() if e["name"] == "pixel"] == [2, 4]


def test_the_photo_strength_follows_the_jpeg_quality_and_the_noise(tmp_path):
    from sr_tool.upscale import jpeg_strength, noise_strength, photo_strength

    clean, noisy = smooth_scene(), with_noise(smooth_scene(), 12)
    Image.fromarray(clean).save(tmp_path / "clean.png")
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    Image.fromarray(with_noise(clean, 6)).save(tmp_path / "grainy.png")
    Image.fromarray(clean).save(tmp_path / "clean95.jpg", quality=95)
    Image.fromarray(clean).save(tmp_path / "clean40.jpg", quality=40)
    Image.fromarray(noisy).save(tmp_path / "noisy95.jpg", quality=95)
    strength = {p.name: photo_strength(read_image(p)) for p in tmp_path.iterdir()}
    assert strength["clean.png"] is None  # the clean model
    assert strength["grainy.png"] == noise_strength(6) == 0.5
    assert strength["noisy.png"] == noise_strength(12) == 1
    assert strength["clean95.jpg"] == jpeg_strength(95) == 0.25
    assert strength["clean40.jpg"] == jpeg_strength(40) == 1
    assert strength["noisy95.jpg"] == 1  # its noise asks for more than its quality


def test_a_png_that_was_a_jpeg_and_a_resaved_jpeg_get_the_strength_of_the_first_compression(tmp_path):
    from test_jpeg_trace import textured_scene, through_jpeg

    from sr_tool.upscale import jpeg_strength, photo_strength

    scene = textured_scene()
    once = through_jpeg(scene, 40)
    Image.fromarray(once).save(tmp_path / "was_jpeg.png")
    Image.fromarray(once).save(tmp_path / "resaved.jpg", quality=95)
    Image.fromarray(scene).save(tmp_path / "clean.png")
    Image.fromarray(scene).save(tmp_path / "clean.jpg", quality=95)
    strength = {p.name: photo_strength(read_image(p)) for p in tmp_path.iterdir()}
    assert strength["was_jpeg.png"] == strength["resaved.jpg"] == jpeg_strength(40) == 1
    assert strength["clean.png"] is None
    assert strength["clean.jpg"] == jpeg_strength(95) == 0.25  # its own quality, which its pixels agree with


def test_a_lossy_webp_gets_the_strength_of_its_quality_a_lossless_one_none(tmp_path):
    from sr_tool.upscale import photo_strength

    for quality, strength in ((30, 0.75), (95, 0.25)):
        Image.fromarray(smooth_scene()).save(tmp_path / "q.webp", quality=quality)
        assert photo_strength(read_image(tmp_path / "q.webp")) == strength, quality
    Image.fromarray(smooth_scene()).save(tmp_path / "l.webp", lossless=True)
    assert photo_strength(read_image(tmp_path / "l.webp")) is None

