#!/bin/bash
# fp32 reference for measure_w4.sh: the same checkpoints scored through ONNX Runtime fp32
# (`twostream eval --model SPATIAL TEMPORAL` exports them to a temporary fp32 bundle first).
set -e
cd "$(dirname "$0")/../.."
TS=".venv/bin/python -m stream.cli"
OUT=benchmarks/issue12
for v in 0,1 2,3 4,5 6; do
  n=w4_val${v/,/}
  S="--split group --group-regex actor(\d+) --val-groups $v"
  nice -n 10 $TS eval runs/extract/weizmann4 --model runs/train/$n/spatial runs/train/$n/temporal \
    --json $OUT/${n}_fp32.json $S
done
{ echo "## fp32"; .venv/bin/python -m train.report $OUT/w4_val01_fp32.json $OUT/w4_val23_fp32.json $OUT/w4_val45_fp32.json \
  $OUT/w4_val6_fp32.json; } >> $OUT/w4_folds.md
