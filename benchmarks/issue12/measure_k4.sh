#!/bin/bash
# Issue 12 point 7: k400tiny2 3-fold stratified random split (seed 0) with near-duplicate grouping (default)
# or without it (MODE=plain: --no-group-duplicates, the split before the fix), fp32 through ONNX Runtime.
# Training: docs/training.md recipe cut to 5 epochs (warm-up 0.5, lr 0.002) and 1 segment per video (there:
# 8 epochs, 3 segments) for the shared 2-core CPU. usage: MODE=grouped|plain benchmarks/issue12/measure_k4.sh
set -e
cd "$(dirname "$0")/../.."
TS=".venv/bin/python -m stream.cli"
OUT=benchmarks/issue12
MODE=${MODE:-grouped}
EXTRA=""; [ "$MODE" = plain ] && EXTRA="--no-group-duplicates"
for k in 0 1 2; do
  n=k4_${MODE}_fold$k
  S="--split random --folds 3 --fold $k $EXTRA"
  for s in spatial temporal; do
    [ -f runs/train/$n/$s/log.csv ] && grep -q '^4,' runs/train/$n/$s/log.csv && continue
    nice -n 10 $TS train --stream $s runs/extract/k400tiny2 --epochs 5 --warmup-epochs 0.5 --lr 0.002 --segments 1 \
      --batch-size 4 --cache --no-progress --out runs/train/$n/$s $S
  done
  nice -n 10 $TS eval runs/extract/k400tiny2 --model runs/train/$n/spatial runs/train/$n/temporal \
    --json $OUT/${n}.json $S
done
{ echo "## k400tiny2 $MODE (fp32)"; .venv/bin/python -m train.report $OUT/k4_${MODE}_fold0.json $OUT/k4_${MODE}_fold1.json \
  $OUT/k4_${MODE}_fold2.json; } > $OUT/k4_${MODE}.md
