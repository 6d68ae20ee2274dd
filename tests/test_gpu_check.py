"""benchmarks/gpu_check.py end to end on the CPU with tiny sizes, as it will run on a GPU session."""

import json
import subprocess
import sys
from pathlib import Path

from helpers import tiny_onnx

SCRIPT = Path(__file__).parents[1] / "benchmarks" / "gpu_check.py"


def test_gpu_check_measures_paths_parity_and_a_folder_run(tmp_path):
    model = tiny_onnx(2)
    report_file = tmp_path / "report.json"
    run = subprocess.run([sys.executable, str(SCRIPT), "--models", str(model), "--device", "cpu", "--image-size", "80x60",
                          "--images", "3", "--tile", "48", "--batch", "2", "--repeats", "1", "--json", str(report_file)],
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr
    report = json.loads(report_file.read_text())
    assert report["card"] == "CPU"
    rows = report["models"][model.name]
    paths = {label: row for label, row in rows.items() if label != "folder"}
    assert {"torch fp32, host tiling", "torch fp32, device tiling", "onnxruntime, device tiling"} <= set(paths)
    for row in paths.values():
        assert row["path_mp_per_s"] > 0 and row["parity_max_levels"] <= row["parity_limit"]
    assert rows["folder"]["images"] == 3 and rows["folder"]["failed"] == 0
    assert 0 <= rows["folder"]["waited_for_decode"] <= 1
