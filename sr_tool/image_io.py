"""Image I/O and colour handling: the only module in srtool that opens image files.

Reading turns any still image that Pillow reads into its samples (HxWxC uint8 or uint16, C = 1 for
grayscale and C = 3 for colour; ``LoadedImage.pixels`` gives them as a float32 1xCxHxW tensor in
[0, 1]), plus the alpha plane split off and the metadata needed to write the result back faithfully
(ICC profile, EXIF, bit depth). This module does not import torch until a tensor is asked for, so
ONNX Runtime inference runs without it (it costs ~700 MB of memory with the CUDA build). Conversions are chosen from
the decoded mode, never guessed from pixel values. EXIF orientation is applied on read and reset on
write.

16-bit PNG is read and written with pypng, because Pillow has no 16-bit RGB(A) mode; 16-bit gray TIFF
and PNG also work through Pillow's ``I;16``.
"""

from __future__ import annotations

import io
import threading
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import png  # pypng
from PIL import Image, ImageCms

from sr_tool.files import atomic_output

#: Default limit on width x height of an input image; larger images are refused as possible
#: decompression bombs. A 12000x12000 image fits; pass ``max_pixels`` to change it.
DEFAULT_MAX_PIXELS = 150_000_000

#: Output formats by file suffix.
FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".tif": "TIFF", ".tiff": "TIFF"}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_EXIF_ORIENTATION = 0x0112
_EXIF_SOFTWARE = 0x0131
#: Every file srtool writes names it in the EXIF Software tag, so that a rerun over a folder does
#: not take srtool's own outputs for inputs (see :func:`is_srtool_output`).
SOFTWARE = "srtool"
_PIL_LIMIT_LOCK = threading.Lock()


class ImageReadError(ValueError):
    """An input image could not be read; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ImageWriteError(ValueError):
    """An output image could not be written; the message names the file and the reason."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


@dataclass(frozen=True)
class ImageInfo:
    """What a decoded image was, so that an output can carry it over."""

    format: str | None = None  # Pillow format name of the source, e.g. "PNG", "JPEG"
    mode: str = "RGB"  # mode as decoded, before conversion, e.g. "P", "CMYK", "I;16"
    bit_depth: int = 8  # 8 or 16 bits per sample
    icc_profile: bytes | None = None
    exif: bytes | None = None  # with the orientation tag removed (it has been applied)
    frames: int = 1  # frames in the source (animations): only the first is decoded
    jpeg_quality: int | None = None  # JPEG sources: the IJG quality nearest their tables (estimate_jpeg_quality)
    webp_quality: int | None = None  # lossy WebP sources: the libwebp quality (estimate_webp_quality)


@dataclass
class LoadedImage:
    """Decoded samples: ``array`` HxWxC (C = 1 gray, 3 colour), uint8 / uint16 as decoded or float32
    in [0, 1]; ``alpha_array`` HxWx1 likewise or None; and the source's info. ``noise_sigma`` and
    ``past_jpeg_quality``: what :func:`sr_tool.noise.estimate_noise_sigma` and
    :func:`sr_tool.jpeg_trace.past_jpeg_quality` read in the pixels, where that was done already (the
    default route reads both at once; a batch does it while decoding, off the accelerator's thread).
    ``noise_sigma`` None: not read yet."""

    array: np.ndarray
    alpha_array: np.ndarray | None
    info: ImageInfo
    noise_sigma: float | None = None
    past_jpeg_quality: int | None = None

    @classmethod
    def from_tensors(cls, pixels, alpha=None, info: ImageInfo | None = None) -> LoadedImage:
        """From float tensors 1xCxHxW (and 1x1xHxW alpha) in [0, 1]."""
        return cls(_channel_last(pixels), None if alpha is None else _channel_last(alpha), info or ImageInfo())

    @property
    def pixels(self):
        """float32 1xCxHxW torch tensor in [0, 1]."""
        return to_tensor(self.array)

    @property
    def alpha(self):
        """float32 1x1xHxW torch tensor in [0, 1], or None."""
        return None if self.alpha_array is None else to_tensor(self.alpha_array)

    def float_chw(self) -> np.ndarray:
        """float32 CxHxW array in [0, 1] (what inference engines take)."""
        return unit_float(self.array).transpose(2, 0, 1)

    @property
    def is_gray(self) -> bool:
        return self.array.shape[2] == 1

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return self.array.shape[1], self.array.shape[0]


def unit_float(array: np.ndarray) -> np.ndarray:
    """float32 samples in [0, 1] from uint8 / uint16 samples (float input is passed through)."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255.0
    if array.dtype == np.uint16:
        return array.astype(np.float32) / 65535.0
    return array.astype(np.float32, copy=False)


def to_tensor(array: np.ndarray):
    """1xCxHxW float32 torch tensor in [0, 1] from HxWxC samples (uint8, uint16 or float)."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(unit_float(array).transpose(2, 0, 1)))[None]


# ----------------------------------------------------------------------------------------------
# Reading


def read_image(path: str | Path, *, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> LoadedImage:
    """Decode ``path``. Raises :class:`ImageReadError` for any unreadable, corrupt or too large file."""
    path = Path(path)
    if not path.is_file():
        raise ImageReadError(path, "no such file" if not path.exists() else "not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(path, "empty file (0 bytes)")
    try:
        with _open_without_pillow_limit(path) as img:
            _check_pixel_limit(path, img.size, max_pixels)
            img.load()
            return _decode(path, img)
    except ImageReadError:
        raise
    except Image.UnidentifiedImageError:
        raise ImageReadError(path, "not an image file, or a format Pillow cannot read") from None
    except Exception as exc:  # decoders raise OSError, SyntaxError, zlib.error, ValueError, ... on bad data
        raise ImageReadError(path, f"corrupt or truncated image ({_describe(exc)})") from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the header alone, without decoding pixels or orientation."""
    try:
        with _open_without_pillow_limit(Path(path)) as img:
            return img.size
    except Exception as exc:
        raise ImageReadError(path, f"cannot read image header ({_describe(exc)})") from exc


class _open_without_pillow_limit:
    """Image.open with Pillow's global bomb check off: we apply our own, configurable limit."""

    def __init__(self, path: Path):
        self.path = path
        self.img: Image.Image | None = None

    def __enter__(self) -> Image.Image:
        with _PIL_LIMIT_LOCK:  # the limit is a Pillow global; only open() reads it
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                self.img = Image.open(self.path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        return self.img

    def __exit__(self, *exc) -> None:
        if self.img is not None:
            self.img.close()


def is_srtool_output(path: str | Path) -> bool:
    """Whether ``path`` is an image that srtool wrote (its EXIF Software tag), from the header alone.
    Unreadable files are not srtool outputs (reading them later reports why)."""
    try:
        with _open_without_pillow_limit(Path(path)) as img:
            software = img.getexif().get(_EXIF_SOFTWARE, "")
    except Exception:
        return False
    return isinstance(software, str) and software.split(" ")[0] == SOFTWARE


def _stamped_exif(exif: bytes | None) -> bytes:
    """The source's EXIF (if any) with Software set to srtool."""
    from sr_tool import __version__

    tags = Image.Exif()
    if exif:
        tags.load(exif)
    tags[_EXIF_SOFTWARE] = f"{SOFTWARE} {__version__}"
    return tags.tobytes()


def _check_pixel_limit(path: Path, size: tuple[int, int], max_pixels: int | None) -> None:
    w, h = size
    if max_pixels is not None and w * h > max_pixels:
        raise ImageReadError(
            path,
            f"{w}x{h} = {w * h:,} pixels is over the limit of {max_pixels:,} "
            "(possible decompression bomb; raise the limit with max_pixels / --max-pixels)",
        )


def _describe(exc: Exception) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _decode(path: Path, img: Image.Image) -> LoadedImage:
    if getattr(img, "n_frames", 1) > 1:
        img.seek(0)  # still images only: an animation gives its first frame
    icc = img.info.get("icc_profile") or None
    exif = img.getexif()
    orientation = int(exif.get(_EXIF_ORIENTATION, 1) or 1)
    mode = img.mode

    if img.format == "PNG" and _png_bit_depth(path) == 16:
        array, bit_depth = _read_png16(path), 16
        has_alpha = array.shape[2] in (2, 4)
    else:
        array, has_alpha, bit_depth, icc = _pillow_to_array(path, img, icc)

    array = _apply_orientation(array, orientation)
    if array.dtype != (np.uint16 if bit_depth == 16 else np.uint8):
        raise ImageReadError(path, f"unexpected sample type {array.dtype} for a {bit_depth}-bit image")
    color = np.ascontiguousarray(array[:, :, :-1] if has_alpha else array)
    alpha = np.ascontiguousarray(array[:, :, -1:]) if has_alpha else None

    exif_bytes = None
    if "exif" in img.info:  # TIFF tags are not EXIF blocks to copy; only carry a real EXIF block
        exif.pop(_EXIF_ORIENTATION, None)
        exif_bytes = exif.tobytes() if len(exif) else None
    quality = estimate_jpeg_quality(getattr(img, "quantization", None) or {}) if img.format == "JPEG" else None
    info = ImageInfo(format=img.format, mode=mode, bit_depth=bit_depth, icc_profile=icc, exif=exif_bytes,
                     frames=getattr(img, "n_frames", 1), jpeg_quality=quality,
                     webp_quality=estimate_webp_quality(path) if img.format == "WEBP" else None)  # fmt: skip
    return LoadedImage(array=color, alpha_array=alpha, info=info)


# The IJG (libjpeg) luminance table at quality 50, row by row (JPEG standard, Annex K).
_IJG_LUMINANCE = np.array([
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
])  # fmt: skip


def ijg_luminance_table(quality: int) -> np.ndarray:
    """The 64 luminance quantisers libjpeg (and Pillow, cameras, most tools) writes at ``quality`` 1..100."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((_IJG_LUMINANCE * scale + 50) // 100, 1, 255)


#: The 64 luminance quantisers of every IJG quality: row q - 1 is quality q.
IJG_LUMINANCE_TABLES = np.stack([ijg_luminance_table(q) for q in range(1, 101)])


def estimate_jpeg_quality(tables: dict) -> int | None:
    """The IJG quality (1..100) whose luminance table is nearest the file's first table (least mean
    absolute difference; row-by-row order, as Pillow gives it); None without a 64-entry table. Exact
    for files libjpeg wrote; the nearest IJG equivalent for cameras' own tables."""
    table = tables.get(0) if tables else None
    if table is None or len(table) != 64:
        return None
    errors = np.abs(IJG_LUMINANCE_TABLES - np.asarray(table, dtype=np.int64)).mean(axis=1)
    return int(np.argmin(errors)) + 1


def estimate_webp_quality(path: str | Path) -> int | None:
    """The libwebp quality (0..100) a lossy WebP was saved at, estimated from the quantiser indices in
    its VP8 key-frame header: their mean over the image's segments, through libwebp's curve from
    quality to quantiser for a segment of average complexity. Within about 8 to 12 of the quality
    Pillow (libwebp) was given, mid-range, depending on content, and 2 at 90 and above
    (``tests/test_image_io.py``). None for
    lossless WebP, or where no VP8 key frame is found (animations included)."""
    try:
        return _webp_quality(_vp8_frame(Path(path)))
    except (OSError, IndexError, ValueError):  # a header this reader does not follow: quality unknown
        return None


def _webp_quality(frame: bytes | None) -> int | None:
    if frame is None or len(frame) < 12 or frame[0] & 1 or frame[3:6] != b"\x9d\x01\x2a":  # not a key frame
        return None
    bits = _BoolDecoder(frame[10:])  # the first partition: RFC 6386, section 9.2 onwards
    bits.literal(2)  # colour space, clamping
    segments = None
    if bits.flag():  # segmentation enabled
        update_map, update_data = bits.flag(), bits.flag()
        if update_data:
            absolute = bits.flag()
            segments = (bits.optional(4, 7), absolute)  # libwebp writes absolute values; others may write deltas
            bits.optional(4, 6)  # loop-filter levels
        if update_map:
            bits.optional(3, 8, signed=False)  # segment-tree probabilities
    bits.literal(1 + 6 + 3)  # filter type, level, sharpness
    if bits.flag() and bits.flag():  # loop-filter deltas, updated
        bits.optional(8, 6)
    bits.literal(2)  # DCT partitions
    base = bits.literal(7)  # the luma AC quantiser index, 0..127
    indices = [base] if segments is None else [q if segments[1] else base + q for q in segments[0]]
    compression = (1 - float(np.clip(np.mean(indices), 0, 127)) / 127) ** 3
    quality = compression * 1.5 if compression < 0.5 else (compression + 1) / 2  # inverse of libwebp's curve
    return int(np.clip(round(100 * quality), 0, 100))


def _vp8_frame(path: Path, header_bytes: int = 4096) -> bytes | None:
    """The start of a WebP file's lossy frame (its 'VP8 ' chunk), or None (lossless, not WebP)."""
    with open(path, "rb") as f:
        if f.read(12)[8:] != b"WEBP":
            return None
        while len(chunk := f.read(8)) == 8:
            fourcc, size = chunk[:4], int.from_bytes(chunk[4:], "little")
            if fourcc == b"VP8 ":
                return f.read(min(size, header_bytes))
            if fourcc == b"VP8L":
                return None
            f.seek(size + (size & 1), io.SEEK_CUR)  # ICC, EXIF, animation headers: skipped
    return None


class _BoolDecoder:
    """VP8's boolean entropy decoder (RFC 6386, section 7), for reading frame headers."""

    def __init__(self, data: bytes):
        self.data, self.pos = data, 2
        self.value = int.from_bytes(data[:2], "big")
        self.range, self.shifted = 255, 0

    def flag(self, probability: int = 128) -> int:
        split = 1 + (((self.range - 1) * probability) >> 8)
        bit = int(self.value >= split << 8)
        if bit:
            self.range, self.value = self.range - split, self.value - (split << 8)
        else:
            self.range = split
        while self.range < 128:  # renormalise, pulling in the next byte every eight shifts
            self.value, self.range, self.shifted = self.value << 1, self.range << 1, self.shifted + 1
            if self.shifted == 8:
                self.shifted = 0
                self.value |= self.data[self.pos] if self.pos < len(self.data) else 0
                self.pos += 1
        return bit

    def literal(self, bits: int) -> int:
        value = 0
        for _ in range(bits):
            value = (value << 1) | self.flag()
        return value

    def signed(self, bits: int) -> int:
        value = self.literal(bits)
        return -value if self.flag() else value

    def optional(self, count: int, bits: int, signed: bool = True) -> list[int]:
        """``count`` fields, each a flag and, where it is set, a value (0 where not)."""
        read = self.signed if signed else self.literal
        return [read(bits) if self.flag() else 0 for _ in range(count)]


def _pillow_to_array(path: Path, img: Image.Image, icc: bytes | None) -> tuple[np.ndarray, bool, int, bytes | None]:
    """HxWxC array (uint8 or uint16), whether the last channel is alpha, bit depth, ICC to keep."""
    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # 16-bit gray (PNG, TIFF). Mode "I" is 32-bit signed; its sources here are 16-bit gray files.
        array = np.asarray(img).astype(np.int64).clip(0, 65535).astype(np.uint16)
        return array[:, :, None], False, 16, icc
    if mode == "F":
        raise ImageReadError(path, "32-bit float images (mode F) are not supported")
    if mode == "CMYK":
        if icc:  # colour-managed CMYK -> sRGB; the output is then plain sRGB, so the CMYK profile is dropped
            src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
            img = ImageCms.profileToProfile(img, src, ImageCms.createProfile("sRGB"), outputMode="RGB")
        else:
            img = img.convert("RGB")
        return np.asarray(img), False, 8, None
    if mode in ("1", "L"):
        return np.asarray(img.convert("L"))[:, :, None], False, 8, icc
    if mode in ("LA", "La"):
        return np.asarray(img.convert("LA")), True, 8, icc
    if mode in ("P", "PA"):
        has_alpha = mode == "PA" or "transparency" in img.info
        return np.asarray(img.convert("RGBA" if has_alpha else "RGB")), has_alpha, 8, icc
    if mode in ("RGBA", "RGBa"):
        return np.asarray(img.convert("RGBA")), True, 8, icc
    if mode in ("RGB", "RGBX", "YCbCr", "HSV", "LAB"):
        return np.asarray(img.convert("RGB")), False, 8, icc
    raise ImageReadError(path, f"unsupported image mode {mode}")


def _png_bit_depth(path: Path) -> int:
    with open(path, "rb") as f:
        head = f.read(26)
    if len(head) < 26 or not head.startswith(_PNG_SIGNATURE):
        return 8
    return head[24]


def _read_png16(path: Path) -> np.ndarray:
    width, height, rows, meta = png.Reader(filename=str(path)).asDirect()
    planes = meta["planes"]
    array = np.vstack([np.asarray(row, dtype=np.uint16) for row in rows])
    return array.reshape(height, width, planes)


def _apply_orientation(a: np.ndarray, orientation: int) -> np.ndarray:
    """Apply an EXIF orientation (1-8) to an HxWxC array."""
    ops = {
        2: lambda x: x[:, ::-1],
        3: lambda x: x[::-1, ::-1],
        4: lambda x: x[::-1],
        5: lambda x: x.swapaxes(0, 1),
        6: lambda x: np.rot90(x, -1),
        7: lambda x: x[::-1, ::-1].swapaxes(0, 1),
        8: lambda x: np.rot90(x, 1),
    }
    return ops[orientation](a) if orientation in ops else a


# ----------------------------------------------------------------------------------------------
# Writing


def write_image(
    path: str | Path,
    pixels,
    *,
    alpha=None,
    info: ImageInfo | None = None,
    quality: int = 95,
    bit_depth: int | None = None,
    mark: bool = True,
) -> Path:
    """Encode an image to ``path``, atomically (temp file in the same folder, then rename).

    ``pixels``: a float tensor 1xCxHxW or CxHxW in [0, 1], or a channel-last HxWxC numpy array
    (float in [0, 1], uint8 or uint16), C = 1 or 3. ``alpha`` likewise with one channel.
    The format comes from the suffix (.png, .jpg/.jpeg, .webp, .tif/.tiff). ICC profile and EXIF are
    taken from ``info``; EXIF Software is set to srtool (:func:`is_srtool_output`) unless ``mark`` is
    False (files meant as inputs, such as LR sets). ``bit_depth`` defaults to the source's; 16 bits
    are written where the format allows (PNG; gray TIFF), 8 elsewhere. JPEG cannot hold alpha: it is
    dropped there.
    """
    path = Path(path)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ImageWriteError(path, f"unknown output format {path.suffix!r}; use one of {', '.join(sorted(FORMATS))}")
    info = info or ImageInfo()
    exif = _stamped_exif(info.exif) if mark else (info.exif or b"")
    depth = bit_depth or info.bit_depth
    color = _channel_last(pixels)
    if color.shape[2] not in (1, 3):
        raise ValueError(f"pixels must have 1 or 3 channels, got shape {tuple(color.shape)}")
    sixteen = depth == 16 and (fmt == "PNG" or (fmt == "TIFF" and color.shape[2] == 1 and alpha is None))
    sample = np.uint16 if sixteen else np.uint8
    planes = quantise(color, sample)
    if alpha is not None and fmt != "JPEG":
        a = quantise(_channel_last(alpha).reshape(*color.shape[:2], 1), sample)
        planes = np.concatenate([planes, a], axis=2)
    del color
    try:
        with atomic_output(path) as tmp:
            if sixteen and fmt == "PNG":
                _write_png16(tmp, planes, info, exif)
            else:
                img = _pillow_image(planes, fmt)
                del planes  # Pillow holds its own copy (or the only reference): keep peak memory near one image
                img.save(tmp, format=fmt, exif=exif, **_save_options(fmt, info, quality, img.width * img.height))
    except (OSError, ValueError) as exc:
        raise ImageWriteError(path, f"cannot write image ({_describe(exc)})") from exc
    return path


def jpeg_round_trip(pixels, quality: int) -> np.ndarray:
    """``pixels`` (as :func:`write_image` takes them, 1 or 3 channels) through a JPEG of ``quality``
    in memory, encoded as :func:`write_image` would write it: the decoded HxWxC uint8 array."""
    planes = quantise(_channel_last(pixels), np.uint8)
    buffer = io.BytesIO()
    img = _pillow_image(planes, "JPEG")
    img.save(buffer, format="JPEG", **_save_options("JPEG", ImageInfo(), quality, img.width * img.height))
    decoded = np.asarray(Image.open(buffer))
    return decoded.reshape(*decoded.shape[:2], -1)


def new_pixels(height: int, width: int, channels: int, dtype) -> np.ndarray:
    """An empty HxWxC array for an image that :func:`write_image` will encode.

    Pillow stores RGB as 4 bytes a pixel (RGBX), so an ordinary uint8 RGB array is copied whole when
    it is encoded: 768 MB beside the array's 576 MB for a 16000x12000 output. An RGB uint8 array made
    here is a view of such a 4-byte buffer, which Pillow takes over without a copy for JPEG.
    """
    if channels == 3 and np.dtype(dtype) == np.uint8:
        return np.empty((height, width, 4), np.uint8)[:, :, :3]
    return np.empty((height, width, channels), dtype)


def _rgbx_buffer(planes: np.ndarray) -> np.ndarray | None:
    """The whole HxWx4 buffer behind ``planes`` when it is an RGB view made by :func:`new_pixels`."""
    base = planes.base
    if (
        planes.dtype == np.uint8
        and planes.shape[2] == 3
        and isinstance(base, np.ndarray)
        and base.shape == (*planes.shape[:2], 4)
        and base.flags.c_contiguous
        and planes.__array_interface__["data"][0] == base.__array_interface__["data"][0]
    ):
        return base
    return None


def _pillow_image(planes: np.ndarray, fmt: str) -> Image.Image:
    rgbx = _rgbx_buffer(planes)
    if rgbx is None:
        return Image.fromarray(planes[:, :, 0] if planes.shape[2] == 1 else planes)
    height, width = planes.shape[:2]
    # Pillow maps the buffer (no copy); its 4th byte is never read when writing RGB.
    img = Image.frombuffer("RGBX", (width, height), rgbx, "raw", "RGBX", 0, 1)
    return img if fmt == "JPEG" else img.convert("RGB")  # the JPEG encoder takes RGBX; others want RGB


def _channel_last(pixels) -> np.ndarray:
    """HxWxC numpy view of a numpy image or of a torch tensor 1xCxHxW / CxHxW."""
    if isinstance(pixels, np.ndarray):
        return pixels if pixels.ndim == 3 else pixels[:, :, None]
    if pixels.dim() == 4:
        if pixels.shape[0] != 1:
            raise ValueError(f"write_image takes one image, got a batch of {pixels.shape[0]}")
        pixels = pixels[0]
    if pixels.dim() != 3:
        raise ValueError(f"pixels must be 1xCxHxW or CxHxW, got shape {tuple(pixels.shape)}")
    return pixels.detach().float().cpu().permute(1, 2, 0).numpy()


def quantise(planes: np.ndarray, dtype) -> np.ndarray:
    """uint8 or uint16 samples (``dtype``) from float [0, 1], uint8 or uint16 input: rounded, clamped."""
    if planes.dtype == dtype:
        return planes
    if planes.dtype == np.uint16:  # to uint8
        return np.floor(planes / 257.0 + 0.5).astype(np.uint8)
    if planes.dtype == np.uint8:  # to uint16
        return planes.astype(np.uint16) * 257
    peak = np.iinfo(dtype).max
    return np.floor(np.clip(planes, 0, 1) * peak + 0.5).astype(dtype)


OPTIMIZE_MAX_PIXELS = 16_000_000


def _save_options(fmt: str, info: ImageInfo, quality: int, pixel_count: int = 0) -> dict:
    opts: dict = {}
    if info.icc_profile:
        opts["icc_profile"] = info.icc_profile
    if fmt == "JPEG":
        # optimize (about 5% smaller) makes libjpeg hold every DCT coefficient of the image: 576 MB
        # for a 16000x12000 output, on top of the pixels. Big outputs skip it.
        opts.update(quality=quality, subsampling=0 if quality >= 90 else 2, optimize=pixel_count <= OPTIMIZE_MAX_PIXELS)
    elif fmt == "WEBP":
        # exact: lossless WebP would otherwise rewrite the colour of fully transparent pixels
        opts.update(quality=quality, lossless=quality >= 100, exact=True, method=4)
    elif fmt == "PNG":
        # zlib level 1: 4.7x faster than Pillow's default 6 on a 512 px upscaled photo, and no larger
        opts.update(compress_level=1)
    elif fmt == "TIFF":
        opts.update(compression="tiff_deflate")
    return opts


def _write_png16(tmp: Path, planes: np.ndarray, info: ImageInfo, exif: bytes) -> None:
    height, width, channels = planes.shape
    writer = png.Writer(
        width, height, greyscale=channels in (1, 2), alpha=channels in (2, 4), bitdepth=16, compression=1
    )
    buffer = io.BytesIO()
    writer.write(buffer, planes.reshape(height, width * channels))
    extra = []
    if info.icc_profile:
        extra.append((b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(info.icc_profile)))
    extra.append((b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
    chunks = list(png.Reader(bytes=buffer.getvalue()).chunks())
    with open(tmp, "wb") as f:
        png.write_chunks(f, chunks[:1] + extra + chunks[1:])  # metadata goes right after IHDR


def label_image(pixels: np.ndarray, text: str, height: int = 18) -> np.ndarray:
    """An HxWx3 uint8 image with a white band holding ``text`` above it (comparison pictures)."""
    from PIL import ImageDraw

    band = Image.new("RGB", (pixels.shape[1], height), "white")
    ImageDraw.Draw(band).text((4, 3), text, fill="black")
    return np.concatenate([np.asarray(band), pixels], axis=0)
