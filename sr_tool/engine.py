"""Inference engines: ONNX Runtime (for .onnx files) and PyTorch (for weights files, and srtool's
own ONNX files).

Both expose ``run_batch(float32 NxCxhxw array) -> NxCx(sh)x(sw) array``, ``scale``, ``size_rule``
(what the model needs of its input size) and ``description`` (which provider or device actually
runs). Devices: ``auto`` (CUDA when its provider really loads, else CPU with a warning if a GPU
seemed present), ``cpu``, ``cuda`` or ``cuda:N``. An explicit CUDA request that cannot be met is an
error, never a silent CPU run.

The PyTorch engine runs community weights files (:mod:`sr_tool.community`), and rebuilds srtool's
own networks from their ONNX files' weights; it serves GPU users whose ONNX Runtime CUDA libraries
don't match their system.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from sr_tool.community import is_weights_file, size_rule_from_metadata
from sr_tool.tiling import OutOfMemory, SizeRule, is_out_of_memory

#: auto: ONNX Runtime for .onnx files, PyTorch for weights files (.pth, .safetensors, ...);
#: tensorrt: ONNX Runtime's TensorRT provider (GPU, fp16)
ENGINES = ("auto", "onnxruntime", "torch", "tensorrt")


class EngineError(RuntimeError):
    """The requested engine or device cannot run here; the message says why."""


def parse_devices(device: str) -> list[str]:
    """'auto' | 'cpu' | 'cuda' | 'cuda:N' | 'cuda:0,cuda:1' -> list of single devices."""
    devices = [d.strip().lower() for d in device.split(",") if d.strip()]
    for d in devices:
        if d not in ("auto", "cpu", "cuda") and not (d.startswith("cuda:") and d[5:].isdigit()):
            raise EngineError(f"unknown device {d!r}; use auto, cpu, cuda, cuda:N or a list cuda:0,cuda:1")
    if not devices:
        raise EngineError("no device given")
    return devices


def read_metadata(path: str | Path | None, proto=None) -> dict[str, str]:
    """The ``srtool.*`` metadata of an ONNX file (or of ``proto``, an ``onnx.ModelProto`` already
    loaded), keys without the prefix; {} for a foreign file. Needs onnx, not torch: importing torch
    costs ~0.5 GB of memory, which ``srtool upscale --strength`` must not pay."""
    if proto is None:
        import onnx

        proto = onnx.load(str(path), load_external_data=False)
    return {p.key[len("srtool.") :]: p.value for p in proto.metadata_props if p.key.startswith("srtool.")}


def _gpu_present() -> bool:
    return Path("/dev/nvidia0").exists() or Path("/dev/nvidiactl").exists()


class OnnxEngine:
    """``proto``: run this in-memory model (e.g. an interpolation) instead of reading ``model_path``,
    which then only names it."""

    name = "onnxruntime"

    def __init__(self, model_path: str | Path, device: str = "auto", *, threads: int | None = None, proto=None,
                 tensorrt: bool = False, tensorrt_cache: str | Path | None = None):  # fmt: skip
        """``tensorrt``: run through ONNX Runtime's TensorRT provider (fp16 kernels, engines cached in
        ``tensorrt_cache``, default ~/.cache/srtool/tensorrt); an error if it cannot load."""
        import onnxruntime as ort

        self.path = Path(model_path)
        self.warnings: list[str] = []
        if tensorrt:
            if device == "cpu":
                raise EngineError("--engine tensorrt runs on a GPU; --device cpu contradicts it")
            if "TensorrtExecutionProvider" not in ort.get_available_providers():
                raise EngineError(f"--engine tensorrt: this ONNX Runtime ({ort.__version__}) has no TensorRT provider; "
                                  "install onnxruntime-gpu, or use --device cuda")  # fmt: skip
            if not _gpu_present():
                raise EngineError("--engine tensorrt: no NVIDIA GPU found (/dev/nvidia0); use --device cpu")
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
            options.inter_op_num_threads = 1
        options.log_severity_level = 3  # our own messages say what happened with the providers
        # Idle inference threads sleep instead of spinning: decode/encode threads need those cores.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        # auto tries CUDA only where a GPU exists: elsewhere it would just fail to load, slowly.
        want_cuda = device != "cpu" and (device != "auto" or _gpu_present())
        providers: list = ["CPUExecutionProvider"]
        if want_cuda:
            device_id = int(device.split(":")[1]) if ":" in device else 0
            # Tiles have one constant shape, so one exhaustive cuDNN search per shape pays off.
            cuda_options = {"device_id": device_id, "cudnn_conv_algo_search": "EXHAUSTIVE"}
            providers = [("CUDAExecutionProvider", cuda_options), "CPUExecutionProvider"]
            if tensorrt:
                cache = Path(tensorrt_cache or Path.home() / ".cache" / "srtool" / "tensorrt").expanduser()
                cache.mkdir(parents=True, exist_ok=True)
                # Building an engine takes minutes per input shape; the caches keep them across runs.
                trt_options = {"device_id": device_id, "trt_fp16_enable": True, "trt_engine_cache_enable": True,
                               "trt_engine_cache_path": str(cache), "trt_timing_cache_enable": True,
                               "trt_timing_cache_path": str(cache)}  # fmt: skip
                providers.insert(0, ("TensorrtExecutionProvider", trt_options))
        ort.set_default_logger_severity(4)  # provider load failures are reported by us, in one line
        try:
            source = proto.SerializeToString() if proto is not None else str(self.path)
            self.session = ort.InferenceSession(source, sess_options=options, providers=providers)
        except Exception as exc:
            raise EngineError(f"{self.path}: ONNX Runtime cannot load this model ({exc})") from exc
        finally:
            ort.set_default_logger_severity(2)
        custom = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k[len("srtool.") :]: v for k, v in custom.items() if k.startswith("srtool.")}
        self.scale = int(self.metadata.get("scale", 0)) or _probe_scale(self.session)
        self.size_rule = size_rule_from_metadata(self.metadata)  # recorded by `srtool export` of a weights file
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        active = self.session.get_providers()
        if tensorrt and "TensorrtExecutionProvider" not in active:
            raise EngineError("--engine tensorrt: ONNX Runtime's TensorRT provider did not load (TensorRT libraries "
                              "missing or mismatched: pip install tensorrt); or use --device cuda without it")  # fmt: skip
        self.on_gpu = "CUDAExecutionProvider" in active or "TensorrtExecutionProvider" in active
        if want_cuda and not self.on_gpu:
            if device != "auto":
                raise EngineError(
                    f"--device {device}: ONNX Runtime's CUDA provider did not load (CUDA/cuDNN libraries "
                    "missing or mismatched); use --device cpu, or --engine torch with a CUDA build of PyTorch"
                )
            if _gpu_present():
                self.warnings.append(
                    "a GPU is present but ONNX Runtime's CUDA provider did not load; running on CPU "
                    "(try --engine torch)"
                )
        self.device = (device if device.startswith("cuda:") else "cuda:0") if self.on_gpu else "cpu"
        self.description = f"onnxruntime {ort.__version__} {active[0]}" + (f" ({self.device})" if self.on_gpu else "")

    def release_memory(self) -> None:
        """Hand the memory arena's free blocks back to the system (call between images).

        The arena makes repeated runs ~10% faster on CPU, but keeps its peak (941 MB for a 256 px
        x4 tile of srresnet-light, measured) unless shrunk; a tiny run with the shrinkage option does it.
        """
        import onnxruntime as ort

        options = ort.RunOptions()
        options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0" + (";gpu:0" if self.on_gpu else ""))
        tiny = np.zeros((1, 3, 8, 8), np.float32)
        self.session.run([self.output_name], {self.input_name: tiny}, options)

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        try:
            return self.session.run([self.output_name], {self.input_name: batch})[0]
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(str(exc)) from exc
            raise

    # For sr_tool.device_tiling: tensors stay where they are (on the GPU), bound to the session's
    # input and output by address, so no tile crosses the bus.
    channels_last = False

    def run_tensor(self, batch):
        """Nx3xhxw float32 torch tensor (CPU or this engine's CUDA device) -> Nx3x(sh)x(sw), same device."""
        import torch

        batch = batch.float().contiguous()
        n, _, h, w = batch.shape
        out = torch.empty((n, 3, h * self.scale, w * self.scale), dtype=torch.float32, device=batch.device)
        where = ("cuda", batch.device.index or 0) if batch.is_cuda else ("cpu", 0)
        if batch.is_cuda:  # ONNX Runtime reads on its own stream: PyTorch's writes to the batch must be done
            torch.cuda.current_stream(batch.device).synchronize()
        binding = self.session.io_binding()
        binding.bind_input(self.input_name, *where, np.float32, list(batch.shape), batch.data_ptr())
        binding.bind_output(self.output_name, *where, np.float32, list(out.shape), out.data_ptr())
        try:
            self.session.run_with_iobinding(binding)  # returns when the outputs are written (ORT synchronises)
        except Exception as exc:
            if is_out_of_memory(exc):
                raise OutOfMemory(str(exc)) from exc
            raise
        return out


class TorchEngine:
    name = "torch"

    def __init__(self, model_path: str | Path, device: str = "auto", *, threads: int | None = None, fp16: bool = False,
                 proto=None, compile: bool = False):  # fmt: skip
        """``compile``: torch.compile the model (worth it on a GPU, for many tiles of one shape)."""
        import torch

        self.path = Path(model_path)
        self.warnings: list[str] = []
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
            if device == "cpu" and _gpu_present():
                self.warnings.append("a GPU is present but this PyTorch build cannot use it; running on CPU")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise EngineError(f"--device {device}: this PyTorch build has no usable CUDA device")
        if threads:
            torch.set_num_threads(threads)
        self.torch = torch
        self.device = torch.device(device)
        self.on_gpu = self.device.type == "cuda"
        half, bf16 = True, True
        community = is_weights_file(self.path) and proto is None
        if community:
            from sr_tool.community import load_community_model

            loaded = load_community_model(self.path)
            if (loaded.in_channels, loaded.out_channels) != (3, 3):
                raise EngineError(f"{self.path}: a {loaded.in_channels}-to-{loaded.out_channels}-channel model; srtool "
                                  "runs RGB models (3 channels in and out)")  # fmt: skip
            model, self.scale, self.metadata = loaded.net, loaded.scale, loaded.metadata()
            self.size_rule = loaded.size_rule
            half, bf16 = loaded.supports_half, loaded.supports_bfloat16
        else:
            from sr_tool.export import model_from_onnx

            self.metadata = read_metadata(self.path, proto)
            if "config" not in self.metadata:
                raise EngineError(f"{self.path}: --engine torch rebuilds srtool's own architectures from their ONNX files; "
                                  "run this file with onnxruntime (--engine auto), or its .pth/.safetensors with torch")  # fmt: skip
            model = model_from_onnx(self.path, proto)
            self.scale = model.config.scale
            self.size_rule = SizeRule()
        self.dtype = torch.float32
        if fp16 and self.on_gpu:
            if half:
                self.dtype = torch.float16
            elif bf16:
                self.dtype = torch.bfloat16
                self.warnings.append(f"{self.path.name}: this architecture does not run in fp16; --fp16 runs it in bf16")
            else:
                self.warnings.append(f"{self.path.name}: this architecture runs in fp32 only; --fp16 is ignored")
        self.model = model.to(self.device, self.dtype)
        # srtool's convolution-only networks run faster channels-last on GPUs; community ones may
        # reshape with view(), which needs the default layout.
        self.channels_last = self.on_gpu and not community
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if compile:  # one graph per tile shape; "reduce-overhead" replays it as a CUDA graph
            self.model = torch.compile(self.model, mode="reduce-overhead" if self.on_gpu else "default", dynamic=False)
        name = torch.cuda.get_device_name(self.device) if self.on_gpu else "CPU"
        self.description = f"torch {torch.__version__} {self.device} ({name}, {str(self.dtype).split('.')[-1]})"

    def run_batch(self, batch: np.ndarray) -> np.ndarray:
        torch = self.torch
        try:
            with torch.inference_mode():
                x = torch.from_numpy(batch).to(self.device, self.dtype)
                return self.model(x).float().cpu().numpy()
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise OutOfMemory(str(exc)) from exc

    def run_tensor(self, batch):
        """Nx3xhxw tensor on this engine's device, in its dtype -> Nx3x(sh)x(sw) (sr_tool.device_tiling)."""
        torch = self.torch
        try:
            with torch.inference_mode():
                return self.model(batch)
        except torch.OutOfMemoryError as exc:
            torch.cuda.empty_cache()
            raise OutOfMemory(str(exc)) from exc

    def release_memory(self) -> None:
        if self.on_gpu:
            self.torch.cuda.empty_cache()


def _probe_scale(session) -> int:
    """Scale of a foreign ONNX model (no srtool metadata), from one small run."""
    inp = session.get_inputs()[0]
    channels = inp.shape[1] if isinstance(inp.shape[1], int) else 3
    out = session.run(None, {inp.name: np.zeros((1, channels, 16, 16), np.float32)})[0]
    if out.shape[-1] % 16:
        raise EngineError("the model's output is not an integer multiple of its input size")
    return out.shape[-1] // 16


def make_engine(model_path: str | Path, *, engine: str = "auto", device: str = "auto",
                threads: int | None = None, fp16: bool = False, proto=None, compile: bool = False):  # fmt: skip
    """An engine for ``model_path``, or for the in-memory ONNX ``proto`` that the path names."""
    weights = is_weights_file(model_path) and proto is None
    if engine == "auto":
        engine = "torch" if weights else "onnxruntime"
    if engine in ("onnxruntime", "tensorrt") and weights:
        raise EngineError(f"{model_path}: ONNX Runtime runs .onnx files; run this with --engine torch (what --engine "
                          f"auto picks), or convert it once: srtool export {model_path} -o model.onnx")  # fmt: skip
    if engine in ("onnxruntime", "tensorrt"):
        return OnnxEngine(model_path, device, threads=threads, proto=proto, tensorrt=engine == "tensorrt")
    if engine == "torch":
        return TorchEngine(model_path, device, threads=threads, fp16=fp16, proto=proto, compile=compile)
    raise EngineError(f"unknown engine {engine!r}; choose one of {', '.join(ENGINES)}")


def model_channels(engine) -> int:
    """Feature width from the model's config (for memory estimates); 64 when unknown."""
    config = engine.metadata.get("config")
    return json.loads(config).get("channels", 64) if config else 64


def available_memory(engine) -> int:
    """Bytes free for activations on the engine's device."""
    if engine.on_gpu:
        try:
            import torch

            return torch.cuda.mem_get_info(int(str(engine.device).split(":")[-1] or 0))[0]
        except Exception:
            return 4 << 30
    try:
        with open("/proc/meminfo") as f:
            info = dict(line.split(":", 1) for line in f)
        return int(info["MemAvailable"].split()[0]) * 1024
    except (OSError, KeyError, ValueError):
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_AVPHYS_PAGES"))


def auto_tile(engine, batch_size: int) -> int:
    """Largest tile (multiple of 32; 64..1024 on GPU, ..512 on CPU) whose activations fit the budget:
    half the free GPU memory, or on CPU a fifth of available memory capped at 512 MB. With ONNX
    Runtime's arena, peak activations are about 22 * channels * scale^2 bytes per input pixel
    (measured: 941 MB for a 256 px x4 tile of the 32-channel preset)."""
    available = available_memory(engine)
    budget = available * 0.5 if engine.on_gpu else min(available * 0.2, 512 << 20)
    per_pixel = 22 * model_channels(engine) * engine.scale**2
    side = int((budget / (per_pixel * batch_size)) ** 0.5) // 32 * 32
    return max(64, min(side, 1024 if engine.on_gpu else 512))
