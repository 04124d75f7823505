#!/usr/bin/env bash
# Continue the bundled sketch network (weights/sketch2mask_lite) on a GPU machine, from a packed training set.
#
#   bash scripts/gpu_train_sketch2mask.sh PACK.tar.gz MINUTES OUT_DIR
#
# Run from the repository root on the GPU machine; it needs only torch, numpy, OpenCV, Pillow, safetensors and
# tqdm there (no install: `python3 -m training.train_cli`). PACK is made here with
# `s3d-data pack-sketches --data DIR --out PACK.tar.gz --max-mib M` (docs/models.md, "Training on a GPU").
# The run starts from the bundled weights with their card's configuration and recipe (L_SV, when that recipe
# uses it, targets the bundled generator's mask encoder), builds batches with the spare cores (--workers), and
# exports the moving average into OUT_DIR (sketch2mask_lite.safetensors / .json, mirror-averaged as the bundle is)
# with log.jsonl.
# OUT_DIR also gets checkpoint_fp16.pt (python -m training.compact: the moving average in float16, 8.8 MB at the
# bundled 1.5x width), for a warm start here (--init-from) when the float32 export (16.7 MiB at that width) is over
# the device tool's 16 MiB per returned file.
#
# Environment (all optional):
#   DEVICE    cuda (default; fails rather than falling back) or cpu, for a dry run
#   BATCH     examples per step (default 32: the GPU is idle at the CPU machine's 8)
#   LR        learning rate (default: the card's x sqrt(BATCH / card batch))
#   CHANNELS  a wider U-Net, e.g. '[16,24,32,64,96,160,192,192]' (grown from the bundle, training/widen.py;
#             the exported file must stay under the device tool's 16 MiB per returned file)
#   STEPS     also stop after this many steps (a dry run)
#   SEED      default 0
#   PYTHON    default python3
set -euo pipefail
if [ $# -ne 3 ]; then
    echo "usage: bash scripts/gpu_train_sketch2mask.sh PACK.tar.gz MINUTES OUT_DIR" >&2
    exit 2
fi
pack=$1 minutes=$2 out=$3
py=${PYTHON:-python3}
[ -f "$pack" ] || { echo "no pack $pack: make one with s3d-data pack-sketches" >&2; exit 2; }
[ -f weights/sketch2mask_lite.json ] || { echo "run from the repository root (weights/ not found)" >&2; exit 2; }
work=$(mktemp -d "${TMPDIR:-/tmp}/s3d_gpu_train.XXXXXX")
trap 'rm -rf "$work"' EXIT
tar -xzf "$pack" -C "$work"
data="$work/$(basename "$pack" .tar.gz)"
cores=$(nproc)
workers=$(( cores > 4 ? cores - 2 : 1 ))

# The card's configuration and recipe, with the batch, learning rate and width of this run.
overrides=$(BATCH=${BATCH:-32} LR=${LR:-} CHANNELS=${CHANNELS:-} "$py" - <<'PY'
import json, math, os
card = json.load(open("weights/sketch2mask_lite.json"))
cfg, recipe = dict(card["config"]), dict(card["training"]["recipe"])
batch = int(os.environ["BATCH"])
recipe["lr"] = float(os.environ["LR"]) if os.environ["LR"] else recipe["lr"] * math.sqrt(batch / recipe["batch"])
recipe["batch"] = batch
if os.environ["CHANNELS"]:
    cfg["channels"] = json.loads(os.environ["CHANNELS"])
print(json.dumps(cfg))
print(json.dumps(recipe))
PY
)
config=$(echo "$overrides" | sed -n 1p)
recipe=$(echo "$overrides" | sed -n 2p)
limit=()
[ -n "${STEPS:-}" ] && limit=(--steps "$STEPS")

echo "data $data ($(ls "$data" | wc -l) entries), $workers batch workers, device ${DEVICE:-cuda}" >&2
PYTHONPATH=$PWD "$py" -m training.train_cli sketch2mask --data "$data" --profile lite --device "${DEVICE:-cuda}" \
    --workers "$workers" --threads 2 --minutes "$minutes" "${limit[@]}" --out "$work/run" --init-from weights \
    --mask-encoder weights --seed "${SEED:-0}" --checkpoint-minutes 2 --log-every 50 \
    --config-override "$config" --recipe-override "$recipe"
PYTHONPATH=$PWD "$py" -m training.train_cli export "$work/run" --weights "$out" --mirror-average
PYTHONPATH=$PWD "$py" -m training.compact "$work/run" "$out/checkpoint_fp16.pt"
cp "$work/run/log.jsonl" "$out/"
echo "exported to $out" >&2
