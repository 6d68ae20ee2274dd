"""Build a free, reproducible HR photo training set from Debian wallpaper packages and the photos
bundled in scikit-image's wheel.

    python train/data/build_photo_set.py                      # -> train/data/photos/, manifest.csv
    python train/data/build_photo_set.py --pack gpu_pack/photos   # and tar parts of <= 60 MiB

Sources are fetched by name and pinned version with the ordinary tools (``apt-get download``,
``pip download``) into ``--cache``. Only the pictures in the keep-lists below are used: every
candidate of every package was looked at, and renders, illustrations, vector art, gradients and
logos were left out. Each kept picture is converted to RGB (sRGB), downscaled to at most 2048 px on
the long side with ``sr_tool.resize.imresize`` (MATLAB bicubic, antialiased) and written as PNG to
``photos/<package>/<name>.png``. ``manifest.csv`` records source, version, path, licence, copyright,
sizes and the SHA-256 of each output. The set is then compared with the benchmark images (Set5,
Set14, BSD100) and the script fails if any picture is near-identical to one of them.
"""

from __future__ import annotations

import argparse
import ast
import csv
import hashlib
import io
import re
import shutil
import subprocess
import sys
import tarfile
import time
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageCms

from sr_tool.image_io import LoadedImage, image_size, read_image, unit_float, write_image
from sr_tool.resize import imresize

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
MAX_SIDE = 2048
THUMB = 32  # overlap check: 32x32 luma thumbnails
NEAR = 0.25  # thumbnail distance below which two pictures count as the same (see overlap_check)


@dataclass(frozen=True)
class Pick:
    """One kept picture: its path inside the package, the output name, and what it shows.
    ``licence`` / ``copyright`` are given by hand only where the package's copyright file is not
    machine readable (scikit-image: its docstrings); ``evidence`` is the docstring text stating it."""

    path: str
    name: str
    shows: str
    licence: str = ""
    copyright: str = ""
    evidence: str = ""


def plasma(name: str, shows: str) -> Pick:
    # Plasma ships each wallpaper in several sizes under contents/images/; all the kept ones are one
    # 2560x1600 JPEG with the other sizes as symlinks to it (checked in build(): the largest file).
    return Pick(f"usr/share/wallpapers/{name}/contents/images/2560x1600.jpg", name, shows)


def mate(name: str, shows: str) -> Pick:
    return Pick(f"usr/share/backgrounds/mate/nature/{name}.jpg", name, shows)


# Debian bookworm packages: name -> (pinned version, keep-list). Licences come from each package's
# DEP-5 usr/share/doc/<package>/copyright.
DEBIAN: dict[str, tuple[str, list[Pick]]] = {
    # Dropped (renders, illustrations, low-poly art): Altai, Autumn (painting), Canopee, Cascade,
    # Cluster, Elarun, Flow (+ images_dark), FlyingKonqui (cartoon), Honeywave, IceCold, Kay
    # (+ images_dark), Kokkini, MilkyWay, Opal, PastelHills, Patak (+ images_dark), SafeLanding
    # (illustration), Shell, Volna (low-poly beach render). screenshot.* previews are never used.
    "plasma-workspace-wallpapers": ("4:5.27.5-2", [
        plasma("BytheWater", "weathered boards of a jetty, lake and tree line out of focus behind"),
        plasma("ColdRipple", "wooden jetty on a misty grey lake, near-monochrome"),
        plasma("ColorfulCups", "rows of plastic cups from above, blue, pink and red"),
        plasma("DarkestHour", "foggy lake at blue hour, tree islands on the horizon"),
        plasma("EveningGlow", "rowing boats on a pebble shore at sunset, lake and hills (HDR-toned)"),
        plasma("FallenLeaf", "fallen maple leaf on autumn leaves, shallow depth of field"),
        plasma("Grey", "curved facade bands of a modern building, black and white (grayscale JPEG)"),
        plasma("Kite", "rainbow kite in a blue sky with clouds"),
        plasma("OneStandsOut", "star-shaped moss plants from above, one orange among the green"),
        plasma("Path", "footpath through a spruce forest with green undergrowth"),
        plasma("summer_1am", "calm lake at dusk with reeds, pink and violet sky"),
    ]),
    # Dropped: abstract/* (Arc-Colors-Transparent-Wallpaper, Flow, Gulp, Silk, Spring, Waves: vector
    # swirls; Elephants, _3840x2160, _5640x3172: a painting) and desktop/* (Float-into-MATE,
    # GreenTraditional, MATE-Stripes-Dark/-Light, Stripes: logos and stripes; Ubuntu-Mate-*-no-logo:
    # blurred aurora with a synthetic star field). Every nature/* picture is a photograph, kept.
    "mate-backgrounds": ("1.26.0-1", [
        mate("Aqua", "water drop splash crown, macro"),
        mate("Blinds", "backlit green leaf with parallel veins, macro"),
        mate("Dune", "dune grass against sea and sky"),
        mate("FreshFlower", "orange flower petals, macro"),
        mate("Garden", "red and yellow marigold, blurred garden behind"),
        mate("GreenMeadow", "young grass blades close up"),
        mate("LadyBird", "ladybird on a grass stem among forget-me-nots"),
        mate("RainDrops", "water drops on green leaves"),
        mate("Storm", "storm clouds over fields, motion-blurred road and guard rail in front"),
        mate("TwoWings", "two dandelion seeds on a seed head, orange flowers blurred behind"),
        mate("Wood", "weathered pale wooden planks, shallow depth of field"),
        mate("YellowFlower", "yellow flower petals and centre on a dark background"),
    ]),
    # Looked at and nothing kept (so not downloaded):
    # - gnome-backgrounds 43.1-1: adwaita, grid, licorice, pixels, symbolic, truchet, wood (*-d/-l
    #   .webp) are 3-D renders and patterns, vnc-* flat colour, *.svg vector art (paths and gradients
    #   only, no embedded raster); its copyright file is not DEP-5.
    # - ukui-wallpapers 20.04.3-1.1: all twelve are illustrations or 3-D renders (ribbons, goldfish,
    #   calla, mouse, flat shapes).
    # - lomiri-wallpapers 20.04.0-2: warty-final-ubuntu.png (lomiri-default-background.png is a
    #   symlink to it) is a purple-orange gradient.
    # - sway-backgrounds 1.7-6: the sway logo on a blue gradient, in eight sizes.
}

SKIMAGE_VERSION = "0.26.0"
# The exact wheel, whatever Python runs this script (the bundled images are the same in all wheels).
SKIMAGE_WHEEL = "scikit_image-0.26.0-cp311-cp311-manylinux_2_24_x86_64.manylinux_2_28_x86_64.whl"
SKIMAGE_SHA256 = "74aa5518ccea28121f57a95374581d3b979839adc25bb03f289b1bc9b99c58af"
CC0, PD = "CC0-1.0", "public-domain"
# Licences from the docstrings of skimage/data/_fetchers.py (checked against the wheel's copy).
# Dropped: coins, ihc ("no known copyright restrictions" is no licence), moon, page,
# motorcycle_left/right (no licence stated), clock_motion (public domain, but blurred on purpose),
# cell (a phase map, not a photograph), microaneurysms (102x102 crop), horse, logo, color,
# phantom, chessboard_*, multipage*.tif, no_time_for_that_tiny.gif (not photographs).
SKIMAGE: list[Pick] = [
    Pick("skimage/data/astronaut.png", "astronaut", "astronaut Eileen Collins in an orange suit, NASA portrait", PD,
         "NASA (Great Images database)", "No known copyright restrictions, released into the public domain."),
    Pick("skimage/data/camera.png", "camera", "man filming with a camera on a tripod, grayscale", CC0,
         "Lav Varshney", "CC0 by the photographer (Lav Varshney)"),
    Pick("skimage/data/chelsea.png", "chelsea", "face of a tabby cat", CC0,
         "Stefan van der Walt", "CC0 by the photographer (Stefan van der Walt)"),
    Pick("skimage/data/coffee.png", "coffee", "espresso cup on a red saucer on a wooden table", CC0,
         "Rachel Michetti", "CC0 by the photographer (Rachel Michetti)"),
    Pick("skimage/data/rocket.jpg", "rocket", "Falcon 9 with DSCOVR on the launch pad at dusk (Adobe RGB source)", PD,
         "SpaceX", "released in the public domain"),
    Pick("skimage/data/hubble_deep_field.jpg", "hubble_deep_field", "Hubble eXtreme Deep Field: galaxies on black", PD,
         "NASA", "may be freely used in the public domain"),
    Pick("skimage/data/retina.jpg", "retina", "fundus photograph of a left eye, black surround", CC0,
         "Mikael Häggström", "Creative Commons CC0 1.0 Universal Public Domain Dedication"),
    Pick("skimage/data/brick.png", "brick", "brick wall, grayscale, perspective-corrected crop", CC0,
         "CC0Textures (Bricks25)", "licensed under the Creative Commons CC0 License"),
    Pick("skimage/data/grass.png", "grass", "grass from above, grayscale crop", CC0,
         "linolafett (DeviantArt, Grass-01)", "licensed under the Creative Commons CC0 License"),
    Pick("skimage/data/gravel.png", "gravel", "gravel, grayscale crop", CC0,
         "CC0Textures (Gravel04)", "licensed under the Creative Commons CC0 License"),
    Pick("skimage/data/text.png", "text", "handwritten maths on paper, grayscale", PD,
         "Wikipedia File:Corner.png", "No known copyright restrictions, released into the public domain."),
]  # fmt: skip

FIELDS = ["file", "source", "package", "version", "path", "licence", "copyright", "original_size", "size", "sha256",
          "shows"]  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Fetching


def run(cmd: list[str], cwd: Path | None = None) -> str:
    done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{done.stderr.strip()}")
    return done.stdout


def ar_members(deb: Path) -> dict[str, bytes]:
    """The members of an ``ar`` archive (a .deb): name -> bytes."""
    data = deb.read_bytes()
    if not data.startswith(b"!<arch>\n"):
        raise SystemExit(f"{deb}: not a .deb (ar) archive")
    members, pos = {}, 8
    while pos + 60 <= len(data):
        name, size = data[pos : pos + 16].decode().strip().rstrip("/"), int(data[pos + 48 : pos + 58])
        members[name] = data[pos + 60 : pos + 60 + size]
        pos += 60 + size + size % 2  # members start on even offsets
    return members


def deb_tar(deb: Path, prefix: str) -> tarfile.TarFile:
    """The control.tar.* or data.tar.* of a .deb (gz, xz or bz2; Python's tarfile has no zstd)."""
    name = next((n for n in ar_members(deb) if n.startswith(prefix)), None)
    if name is None:
        raise SystemExit(f"{deb}: no {prefix}* member")
    return tarfile.open(fileobj=io.BytesIO(ar_members(deb)[name]))


def deb_version(deb: Path) -> str:
    if shutil.which("dpkg-deb"):
        return run(["dpkg-deb", "-f", str(deb), "Version"]).strip()
    with deb_tar(deb, "control.tar") as tar:
        control = tar.extractfile("./control").read().decode()
    return re.search(r"^Version:\s*(\S+)", control, re.M).group(1)


def fetch_deb(package: str, version: str, cache: Path) -> Path:
    """The package's .deb in ``cache`` (``apt-get download`` unless already there), extracted."""
    deb = next((d for d in cache.glob(f"{package}_*.deb") if deb_version(d) == version), None)
    if deb is None:
        try:
            run(["apt-get", "download", f"{package}={version}"], cwd=cache)
        except SystemExit as err:
            raise SystemExit(f"{err}\n(run apt-get update; if the version has left the archive, "
                             "update the pin and look at the keep-list again)") from None  # fmt: skip
        deb = next(d for d in cache.glob(f"{package}_*.deb") if deb_version(d) == version)
    root = cache / f"{package}_{version.replace(':', '%3a')}"
    if not root.is_dir():
        tmp = root.with_name(root.name + ".tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        if shutil.which("dpkg-deb"):
            run(["dpkg-deb", "-x", str(deb), str(tmp)])
        else:
            with deb_tar(deb, "data.tar") as tar:
                tar.extractall(tmp, filter="data")
        tmp.rename(root)
    return root


def fetch_wheel(cache: Path) -> Path:
    wheel = cache / SKIMAGE_WHEEL
    if not wheel.is_file():
        run([sys.executable, "-m", "pip", "download", f"scikit-image=={SKIMAGE_VERSION}", "--no-deps", "-d", str(cache),
             "--only-binary=:all:", "--platform", "manylinux_2_28_x86_64", "--python-version", "3.11",
             "--implementation", "cp", "--abi", "cp311"])  # fmt: skip
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    if digest != SKIMAGE_SHA256:
        raise SystemExit(f"{wheel}: sha256 {digest}, expected {SKIMAGE_SHA256}")
    return wheel


# ----------------------------------------------------------------------------------------------
# Licences


def parse_dep5(text: str) -> list[tuple[list[str], str, str]] | None:
    """The Files paragraphs of a machine-readable (DEP-5) copyright file as (globs, licence,
    copyright), in order; None when the file is not DEP-5."""
    if not text.lstrip().startswith("Format:"):
        return None
    paragraphs = []
    for block in re.split(r"\n[ \t]*\n", text.strip()):
        fields: dict[str, list[str]] = {}
        key = ""
        for line in block.splitlines():
            if line.startswith("#"):
                continue
            if line[:1] in (" ", "\t") and key:
                fields[key].append(line.strip())
            elif ":" in line:
                key, _, value = line.partition(":")
                fields[key] = [value.strip()]
        if "Files" in fields:
            licence = fields.get("License", [""])[0]  # the first line names it; the rest is its text
            holders = "; ".join(h for h in fields.get("Copyright", []) if h)
            paragraphs.append((" ".join(fields["Files"]).split(), licence, holders))
    return paragraphs


def dep5_licence(paragraphs: list[tuple[list[str], str, str]], path: str) -> tuple[str, str] | None:
    """(licence, copyright) for an installed ``path``: Files globs are relative to the source tree,
    so a glob matches when it matches a trailing part of the path; the last matching paragraph wins."""

    def regex(glob: str) -> re.Pattern:
        return re.compile("".join(".*" if c == "*" else "." if c == "?" else re.escape(c) for c in glob))

    parts = path.split("/")
    found = None
    for globs, licence, holders in paragraphs:
        if any(regex(g).fullmatch("/".join(parts[i:])) for g in globs for i in range(len(parts))):
            found = (licence, holders)
    return found


def docstring_licences(wheel: zipfile.ZipFile) -> dict[str, str]:
    """skimage/data/<file> -> the docstring (whitespace collapsed) of the function that loads it."""
    tree = ast.parse(wheel.read("skimage/data/_fetchers.py").decode())
    docs = {}
    for fn in (n for n in tree.body if isinstance(n, ast.FunctionDef)):
        doc = " ".join((ast.get_docstring(fn) or "").split())
        for node in ast.walk(fn):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("data/"):
                docs["skimage/" + node.value] = doc
    return docs


# ----------------------------------------------------------------------------------------------
# Images


def srgb_pixels(image: LoadedImage, where: str) -> torch.Tensor:
    """1x3xHxW float32 sRGB in [0, 1]: gray repeated, an opaque alpha dropped, another profile converted."""
    if image.alpha_array is not None and image.alpha_array.min() < np.iinfo(image.alpha_array.dtype).max:
        raise SystemExit(f"{where}: has transparent pixels; choose another picture or composite it first")
    array = image.array
    icc = image.info.icc_profile
    if icc and "sRGB" not in ImageCms.getProfileDescription(ImageCms.ImageCmsProfile(io.BytesIO(icc))):
        if array.dtype != np.uint8 or array.shape[2] != 3:
            raise SystemExit(f"{where}: colour profile conversion is only done for 8-bit RGB")
        src, srgb = ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB")
        array = np.asarray(ImageCms.profileToProfile(Image.fromarray(array), src, srgb, outputMode="RGB"))
    rgb = unit_float(array)
    if rgb.shape[2] == 1:
        rgb = np.repeat(rgb, 3, axis=2)
    return torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1)))[None]


def downscale(pixels: torch.Tensor) -> torch.Tensor:
    """At most MAX_SIDE px on the long side (MATLAB bicubic, antialiased); smaller images unchanged."""
    h, w = pixels.shape[-2:]
    if max(h, w) <= MAX_SIDE:
        return pixels
    s = MAX_SIDE / max(h, w)
    return imresize(pixels, size=(round(h * s), round(w * s))).clamp(0, 1)


def thumbnail(pixels: torch.Tensor) -> np.ndarray:
    """32x32 luma thumbnail with zero mean and unit RMS: blind to size, resampling, JPEG and contrast."""
    if pixels.shape[1] == 3:
        pixels = (pixels * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1, keepdim=True)
    t = imresize(pixels, size=(THUMB, THUMB))[0, 0].double().numpy()
    t = t - t.mean()
    return t / max(float(t.std()), 1e-6)


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """RMS difference of two normalised thumbnails, over b's 8 flips and quarter turns:
    sqrt(2 (1 - correlation)); 0 for the same picture, about 1.4 for unrelated ones."""
    turns = [np.rot90(b, k) for k in range(4)]
    return min(float(np.sqrt(np.mean((a - v) ** 2))) for t in turns for v in (t, t[:, ::-1]))


@dataclass
class Built:
    out: Path
    row: dict[str, str]
    thumb: np.ndarray
    pixels: int


def build_one(src: Path, out: Path, row: dict[str, str]) -> Built:
    image = read_image(src)
    pixels = downscale(srgb_pixels(image, row["path"]))
    out.parent.mkdir(parents=True, exist_ok=True)
    write_image(out, pixels)  # 8-bit RGB PNG; no metadata but srtool's EXIF Software stamp
    h, w = pixels.shape[-2:]
    row |= {"original_size": "{}x{}".format(*image.size), "size": f"{w}x{h}",
            "sha256": hashlib.sha256(out.read_bytes()).hexdigest()}  # fmt: skip
    return Built(out, row, thumbnail(pixels), w * h)


def build(cache: Path, photos: Path) -> list[Built]:
    built = []
    for package, (version, picks) in DEBIAN.items():
        root = fetch_deb(package, version, cache)
        paragraphs = parse_dep5((root / f"usr/share/doc/{package}/copyright").read_text())
        for pick in picks:
            src = root / pick.path
            if not src.is_file() or src.is_symlink():
                raise SystemExit(f"{package} {version}: {pick.path} is missing or a symlink")
            if src.parent.name == "images":  # Plasma: one wallpaper in several sizes; take the largest
                sizes = [p for p in src.parent.iterdir() if p.is_file() and not p.is_symlink()]
                if max(sizes, key=lambda p: np.prod(image_size(p))) != src:
                    raise SystemExit(f"{package}: {pick.path} is not the largest size of its wallpaper")
            found = dep5_licence(paragraphs, pick.path) if paragraphs is not None else None
            licence, holders = found or (pick.licence, pick.copyright)
            if not licence:
                raise SystemExit(f"{package}: no licence for {pick.path} (copyright file not DEP-5: add it by hand)")
            row = {"file": f"photos/{package}/{pick.name}.png", "source": "debian", "package": package,
                   "version": version, "path": pick.path, "licence": licence, "copyright": holders,
                   "shows": pick.shows}  # fmt: skip
            built.append(build_one(src, photos / package / f"{pick.name}.png", row))
    wheel_path = fetch_wheel(cache)
    extracted = cache / f"scikit-image_{SKIMAGE_VERSION}"
    with zipfile.ZipFile(wheel_path) as wheel:
        docs = docstring_licences(wheel)
        for pick in SKIMAGE:
            if pick.evidence not in docs.get(pick.path, ""):
                raise SystemExit(f"scikit-image {SKIMAGE_VERSION}: {pick.path}'s docstring does not say {pick.evidence!r}")
            src = Path(wheel.extract(pick.path, extracted))  # read_image takes a file
            row = {"file": f"photos/scikit-image/{pick.name}.png", "source": "pypi", "package": "scikit-image",
                   "version": SKIMAGE_VERSION, "path": pick.path, "licence": pick.licence, "copyright": pick.copyright,
                   "shows": pick.shows}  # fmt: skip
            built.append(build_one(src, photos / "scikit-image" / f"{pick.name}.png", row))
    return built


# ----------------------------------------------------------------------------------------------
# Overlap with the benchmarks


def overlap_check(built: list[Built], benchmarks: Path) -> None:
    """Compare every kept picture's thumbnail with every benchmark HR image's; fail on a near match.
    As a control, each benchmark HR image must match its own x4 LR file (a 4x smaller copy)."""
    bench: list[tuple[str, np.ndarray]] = []
    control = 0.0
    for name in ("Set5", "Set14", "BSD100"):
        if not (benchmarks / name / "HR").is_dir():
            raise SystemExit(f"{benchmarks / name / 'HR'}: not found; give --benchmarks, or --no-overlap-check")
        for hr in sorted((benchmarks / name / "HR").iterdir()):
            thumb = thumbnail(read_image(hr).pixels)
            bench.append((f"{name}/{hr.name}", thumb))
            lr = benchmarks / name / "LR_bicubic" / "X4" / f"{hr.stem}x4.png"
            if lr.is_file():
                control = max(control, distance(thumbnail(read_image(lr).pixels), thumb))
    if control >= NEAR:
        raise SystemExit(f"overlap check is blind: a benchmark image and its own x4 LR are {control:.3f} apart")
    pairs = sorted((distance(b.thumb, t), b.row["file"], name) for b in built for name, t in bench)
    inner = sorted((distance(a.thumb, b.thumb), a.row["file"], b.row["file"])
                   for i, a in enumerate(built) for b in built[i + 1 :])  # fmt: skip
    print(f"overlap check: {len(built)} pictures x {len(bench)} benchmark images (32x32 luma, 8 orientations); "
          f"near-identical below {NEAR}; control (benchmark HR vs its own x4 LR): at most {control:.3f}")  # fmt: skip
    for d, ours, theirs in pairs[:3]:
        print(f"  closest: {d:.3f}  {ours}  ~  {theirs}")
    print(f"  closest pair inside the set: {inner[0][0]:.3f}  {inner[0][1]}  ~  {inner[0][2]}")
    near = [p for p in pairs + inner if p[0] < NEAR]
    if near:
        raise SystemExit("near-identical pictures:\n" + "\n".join(f"  {d:.3f} {a} ~ {b}" for d, a, b in near))


# ----------------------------------------------------------------------------------------------
# Packing for device calls


def pack(photos: Path, dest: Path, part_mib: float) -> list[Path]:
    """photos/ as reproducible tar parts (whole files, sorted, zeroed times and owners) of at most
    ``part_mib`` MiB each, named photos.part00.tar, ...; each extracts on its own with ``tar -xf``."""
    limit = int(part_mib * 2**20) - 20480  # room for the end-of-archive blocks and record padding
    groups: list[list[Path]] = [[]]
    used = 0
    for f in sorted(photos.rglob("*.png")):
        cost = 512 + -(-f.stat().st_size // 512) * 512  # header + data rounded to blocks
        if cost > limit:
            raise SystemExit(f"{f}: larger than one part")
        if used + cost > limit and groups[-1]:
            groups.append([])
            used = 0
        groups[-1].append(f)
        used += cost
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("photos.part*.tar"):
        old.unlink()
    parts = []
    for i, group in enumerate(groups):
        part = dest / f"photos.part{i:02d}.tar"
        with tarfile.open(part, "w", format=tarfile.USTAR_FORMAT) as tar:
            for f in group:
                info = tar.gettarinfo(f, arcname=str(f.relative_to(photos.parent)))
                info.mtime, info.uid, info.gid, info.uname, info.gname, info.mode = 0, 0, 0, "", "", 0o644
                with open(f, "rb") as fh:
                    tar.addfile(info, fh)
        parts.append(part)
    return parts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=HERE / "cache", help="downloads and extracted packages")
    parser.add_argument("--out", type=Path, default=HERE / "photos", help="where the PNGs go")
    parser.add_argument("--manifest", type=Path, default=HERE / "manifest.csv")
    parser.add_argument("--benchmarks", type=Path, default=REPO.parent / "shared" / "data",
                        help="holds Set5/HR, Set14/HR, BSD100/HR (default ../shared/data)")  # fmt: skip
    parser.add_argument("--no-overlap-check", action="store_true", help="when the benchmark sets are not at hand")
    parser.add_argument("--pack", type=Path, metavar="DIR", help="also write photos.partNN.tar files here")
    parser.add_argument("--part-mib", type=float, default=60.0, help="largest tar part, MiB (default 60)")
    args = parser.parse_args()

    start = time.monotonic()
    torch.set_num_threads(1)  # a few dozen images: one core is enough, and leaves the other free
    args.cache.mkdir(parents=True, exist_ok=True)
    built = build(args.cache, args.out)
    written = {b.out for b in built}
    for stale in set(args.out.rglob("*.png")) - written:
        stale.unlink()
    if args.no_overlap_check:
        print("overlap check NOT done (--no-overlap-check)")
    else:
        overlap_check(built, args.benchmarks)

    with open(args.manifest, "w", newline="") as f:
        writer = csv.DictWriter(f, FIELDS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(b.row for b in built)

    counts: dict[str, list[int]] = {}
    for b in built:
        counts.setdefault(b.row["package"], []).append(b.pixels)
    licences: dict[str, int] = {}
    for b in built:
        licences[b.row["licence"]] = licences.get(b.row["licence"], 0) + 1
    for package, pixels in counts.items():
        print(f"{package}: {len(pixels)} images, {sum(pixels) / 1e6:.1f} MP")
    total_mp = sum(b.pixels for b in built) / 1e6
    size_mb = sum(f.stat().st_size for f in written) / 1e6
    print(f"total: {len(built)} images, {total_mp:.1f} MP, {size_mb:.1f} MB of PNG in {args.out}")
    print("licences: " + ", ".join(f"{k} {v}" for k, v in sorted(licences.items())))
    if args.pack:
        for part in pack(args.out, args.pack, args.part_mib):
            print(f"packed {part} ({part.stat().st_size / 2**20:.1f} MiB)")
    print(f"done in {time.monotonic() - start:.0f} s; manifest: {args.manifest}")


if __name__ == "__main__":
    main()
