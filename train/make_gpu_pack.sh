#!/usr/bin/env bash
# Build gpu_pack/ for train/gpu_session.py (train/README.md, "How the shipped models were trained").
# A device call carries 64 MiB including the checkout (about 25 MB), so the pack travels in two calls
# to a warm machine: first `carry: [gpu_pack/train]` with a trivial command, then
# `carry: [gpu_pack/train, gpu_pack/val, gpu_pack/site]` with the plan's command (carried paths
# already there are kept). --photos adds the free photo set's tar parts (downloads; more calls).
#
#   train/make_gpu_pack.sh [--photos]
set -euo pipefail
cd "$(dirname "$0")/.."
py=${PYTHON:-python}
[ -d gpu_pack/train ] || "$py" train/pack_data.py ../shared/data/train gpu_pack/train
for set in Set5 Set14; do
    [ -d "gpu_pack/val/$set" ] || "$py" train/pack_data.py "../shared/data/$set/HR" "gpu_pack/val/$set"
done
# The loss's AlexNet weights (read as a file, never imported) and pypng, for the machine's PYTHONPATH.
weights=gpu_pack/site/stlpips_pytorch/weights/vST0.0
mkdir -p "$weights"
cp "$("$py" -c 'from sr_tool.losses.deep import package_file as f; print(f("stlpips-pytorch", "stlpips_pytorch", "weights/vST0.0/alex_shift_tolerant.pth"))')" "$weights/"
cp "$("$py" -c 'import png; print(png.__file__)')" gpu_pack/site/
if [ "${1:-}" = --photos ]; then
    "$py" train/data/build_photo_set.py --pack gpu_pack/photos
fi
du -sh gpu_pack/*
