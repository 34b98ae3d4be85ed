#!/usr/bin/env bash
# One training run on a lent GPU machine, as a single command (README, "Training on a GPU").
#
# Prepared here, where dlib is:
#   python scripts/pack_cache.py cache/lfw-devtrain-96 cache/lfw-devtrain-96-packed   # ~46 MB
#   pip download --no-deps --only-binary=:all: -d .whl click      # that machine lacks click
# Run there from the repo root, carrying cache/lfw-devtrain-96-packed and .whl; OUT is the
# folder that comes back: OUT/run/best.pt, OUT/run/log.jsonl, OUT/train.log, OUT/gpu.txt.
# Extra arguments go to scripts/train.py (e.g. --widths 40,80,160,320 --lr 3e-3).
#
# Consistent distillation (--teacher online: the teacher runs there too) carries the masters
# instead, with dlib's network file (55 MB, 53 MiB, in all for LFW DevTrain):
#   python scripts/pack_cache.py cache/lfw-devtrain-96m cache/lfw-devtrain-96m-packed --masters 80
#   CACHE=cache/lfw-devtrain-96m-packed bash scripts/gpu_train.sh --teacher online --blends 32 \
#       --relational 1.0 --init faceid/weights/default.pt --lr 1e-3
set -euo pipefail
: "${OUT:?set OUT to the folder to write the run into}"
CACHE=${CACHE:-cache/lfw-devtrain-96-packed}
MINUTES=${MINUTES:-8}  # a command may run 10 minutes there: leave time to copy back

export PYTHONUNBUFFERED=1
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"  # faceid from this tree, not installed
if compgen -G ".whl/*.whl" >/dev/null; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target /tmp/faceid-site .whl/*.whl
    export PYTHONPATH="$PYTHONPATH:/tmp/faceid-site"
fi
(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || echo "no GPU") >"$OUT/gpu.txt"

python3 scripts/train.py --cache "$CACHE" --out "$OUT/run" --fresh \
    --minutes "$MINUTES" --epochs 1000 --input-size 96 --distill 1.0 "$@" 2>&1 |
    tee "$OUT/train.log"
rm -f "$OUT/run/last.pt"  # weights plus optimizer state: over the size that comes back
