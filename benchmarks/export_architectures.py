"""Which spandrel architectures `srtool export` turns into a working ONNX file, and why the others fail.

    python benchmarks/export_architectures.py [NAME ...] [--out FOLDER]

Each architecture is built at a published size (or spandrel's defaults) with random weights, saved
as .safetensors, loaded back through spandrel's detection, and exported with the parity checks of
:func:`sr_tool.export.export_model_file`. One line per architecture: OK, or the reason. Random weights
are enough: export and parity depend on the graph, not on the values. Takes minutes on a CPU (the
big transformers dominate).
"""

from __future__ import annotations

import argparse
import importlib
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
from safetensors.torch import save_file

from sr_tool.community import CommunityModelError, load_community_model
from sr_tool.export import ExportError, export_model_file

_SWIN = dict(upscale=4, img_size=64, window_size=8, embed_dim=180, depths=[6] * 6, num_heads=[6] * 6, mlp_ratio=2,
             upsampler="pixelshuffle", resi_connection="1conv")  # fmt: skip
# module: (class, keyword arguments) at a published size; {} = spandrel's defaults
ARCHITECTURES = {
    "ESRGAN": ("ESRGAN", {}),  # Real-ESRGAN x4plus: 23 RRDB blocks
    "Compact": ("Compact", {}),  # realesr-general-x4v3 size
    "SPAN": ("SPAN", dict(num_in_ch=3, num_out_ch=3, feature_channels=48, upscale=4)),
    "SwinIR": ("SwinIR", _SWIN),  # classical SR, medium
    "Swin2SR": ("Swin2SR", _SWIN),
    "HAT": ("HAT", dict(_SWIN, window_size=16, compress_ratio=3, squeeze_factor=30, conv_scale=0.01, overlap_ratio=0.5)),
    "DAT": ("DAT", {}),
    "RGT": ("RGT", {}),
    "DRCT": ("DRCT", dict(upscale=4, upsampler="pixelshuffle")),
    "ATD": ("ATD", dict(upscale=4, upsampler="pixelshuffle")),
    "CRAFT": ("CRAFT", {}),
    "OmniSR": ("OmniSR", {}),
    "PLKSR": ("RealPLKSR", {}),
    "SAFMN": ("SAFMN", dict(dim=36, n_blocks=8, ffn_scale=2.0, upscaling_factor=4)),
    "SeemoRe": ("SeemoRe", {}),
    "MoSR": ("MoSR", {}),
    "FDAT": ("FDAT", {}),
    "DITN": ("DITN", {}),
    "RealCUGAN": ("UpCunet2x", {}),
}


def check(name: str, folder: Path) -> str:
    module = importlib.import_module(f"spandrel.architectures.{name}")
    class_name, kwargs = ARCHITECTURES[name]
    torch.manual_seed(0)
    try:
        net = getattr(module, class_name)(**kwargs)
    except Exception as exc:
        return f"not built here ({type(exc).__name__}: {exc})"
    source = folder / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(source))
    start = time.perf_counter()
    try:
        loaded = load_community_model(source)
        export_model_file(source, folder / f"{name}.onnx")
    except (CommunityModelError, ExportError) as exc:
        return f"FAILS: {str(exc).removeprefix(str(source) + ' ')}"
    return f"OK    {loaded.description}, {time.perf_counter() - start:.0f} s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", default=list(ARCHITECTURES), help="architectures (default: all listed)")
    parser.add_argument("--out", type=Path, default=None, help="keep the files here (default: a temp folder)")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    import spandrel

    print(f"spandrel {spandrel.__version__}, torch {torch.__version__}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = args.out or Path(tmp)
        folder.mkdir(parents=True, exist_ok=True)
        for name in args.names:
            print(f"{name:<10} {check(name, folder)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
