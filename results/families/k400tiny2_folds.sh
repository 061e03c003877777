#!/bin/bash
# Issue 13: the families on k400tiny2, 3 grouped folds (the benchmarks/issue12 split: `--split random --folds 3
# --fold k`, seed 0, near-duplicates grouped = the default), 64 held-out videos, fp32 (and int8) ONNX graphs.
#
# Data: runs/extract/k400tiny2 (issue 12's extraction: 112 px, DIS fast, bound 20, raw flow, first 300 frames).
# late: the issue-12 checkpoints runs/train/k4_grouped_fold$k/{spatial,temporal} (benchmarks/issue12/measure_k4.sh:
#   5 epochs, warm-up 0.5, lr 0.002, 1 segment, batch 4), re-exported as format-2 bundles (export-late).
# convfusion: from the fold's late streams, EPOCHS epochs (family defaults otherwise).
# i3d: ImageNet-inflated Lite0 (all_dw, T = 8), EPOCHS epochs.
# hidden: MotionNet EPOCHS unsupervised + EPOCHS end-to-end epochs from the fold's late temporal stream; its
#   bundle late-fuses the fold's late spatial stream.
#
# i3dflow (session 5, the zoo's i3d recipe): i3d with --time-pool stem, EPOCHS epochs, int8 export forced
#   (--min-agreement 0, as the zoo's), late-fused 1 : 1.5 with the fold's int8 late temporal stream
#   (scripts/late_fuse_bundles.py).
#
# usage: results/families/k400tiny2_folds.sh STAGE...   stages: check late convfusion i3d hidden int8 i3dflow pool
#        (each stage runs folds 0, 1, 2; finished steps are skipped, so the script resumes)
set -e
cd "$(dirname "$0")/../.."
T=".venv/bin/python -m stream.cli family"
RUN="chrt --idle 0 nice -n 19"        # shared 2-core machine: idle priority, one process at a time
D=runs/extract/k400tiny2
R=runs/families/k4                    # runs and bundles (git-ignored)
OUT=results/families/k400tiny2        # per-fold eval JSONs (committed)
EP=${EPOCHS:-4}
mkdir -p $R/logs $R/bundles $OUT
TIMES=$OUT/wall_times.tsv; [ -f $TIMES ] || printf 'step\tstart_utc\tseconds\tload_avg_at_end\n' > $TIMES

step() {  # step NAME CMD... : run once, log, record wall seconds and load average
  local name=$1; shift
  local t0; t0=$(date +%s)
  echo "[$(date -u +%H:%M:%S)] $name: $*" | tee -a $R/logs/$name.log
  "$@" >> $R/logs/$name.log 2>&1
  printf '%s\t%s\t%s\t%s\n' "$name" "$(date -u -d @$t0 +%H:%M:%S)" "$(( $(date +%s) - t0 ))" \
    "$(cut -d' ' -f1-3 /proc/loadavg)" >> $TIMES
}

fold() {  # fold STAGE k
  local stage=$1 k=$2
  local S="--split random --folds 3 --fold $k" L=runs/train/k4_grouped_fold$k
  case $stage in
  check)  # the late checkpoints were trained on exactly this split's training videos
    .venv/bin/python - "$k" <<'EOF'
import argparse, json, sys
from train.cmd_family import _split
from train.engine import load_checkpoint
k = int(sys.argv[1])
index = json.load(open("runs/extract/k400tiny2/extract.json"))
args = argparse.Namespace(split="random", split_number=1, annotations=None, group_regex=None, val_groups="",
                          val_fraction=0.2, split_seed=0, folds=3, fold=k, group_duplicates=True)
sp = _split(args, index)
for s in ("spatial", "temporal"):
    meta = load_checkpoint(f"runs/train/k4_grouped_fold{k}/{s}/last.pt")["meta"]
    same = sorted(meta["train_items"]) == sorted(it.rel for it in sp.train)
    print(f"fold {k} {s}: {len(sp.train)} train / {len(sp.val)} val; checkpoint trained on the same videos: {same}")
    assert same
EOF
    ;;
  late)
    [ -f $R/bundles/late_fold$k/bundle.toml ] || step late_fold${k}_export $RUN $T export-late $L/spatial $L/temporal $R/bundles/late_fold$k --windows 16
    [ -f $OUT/late_fold$k.json ] || step late_fold${k}_eval $RUN $T eval $R/bundles/late_fold$k $D $S --threads 1 --json $OUT/late_fold$k.json
    ;;
  convfusion|i3d|hidden)
    local init=() exp=()
    [ $stage = convfusion ] && init=(--spatial-init $L/spatial/last.pt --temporal-init $L/temporal/last.pt)
    [ $stage = hidden ] && { init=(--motion-epochs $EP --temporal-init $L/temporal/last.pt); exp=(--spatial $L/spatial/last.pt); }
    [ -f $R/${stage}_fold$k/last.pt ] || step ${stage}_fold${k}_train $RUN $T train $stage $D --epochs $EP "${init[@]}" --threads 1 --out $R/${stage}_fold$k $S
    [ -f $R/bundles/${stage}_fold$k/bundle.toml ] || step ${stage}_fold${k}_export $RUN $T export $R/${stage}_fold$k $R/bundles/${stage}_fold$k --windows 16 "${exp[@]}"
    [ -f $OUT/${stage}_fold$k.json ] || step ${stage}_fold${k}_eval $RUN $T eval $R/bundles/${stage}_fold$k $D $S --threads 1 --json $OUT/${stage}_fold$k.json
    ;;
  i3dflow)
    [ -f $R/i3dtp_fold$k/last.pt ] || step i3dtp_fold${k}_train $RUN $T train i3d $D --epochs $EP --time-pool stem --threads 1 --out $R/i3dtp_fold$k $S
    [ -f $R/bundles/i3dtp_int8_fold$k/bundle.toml ] || step i3dtp_int8_fold${k}_export $RUN $T export $R/i3dtp_fold$k $R/bundles/i3dtp_int8_fold$k --windows 16 --quantize int8 --min-agreement 0
    [ -f $R/bundles/i3dflow_int8_fold$k/bundle.toml ] || step i3dflow_int8_fold${k}_fuse $RUN .venv/bin/python scripts/late_fuse_bundles.py $R/bundles/i3dflow_int8_fold$k --family i3d_flow --net $R/bundles/i3dtp_int8_fold$k:i3d:1.0 --net $R/bundles/late_int8_fold$k:temporal:1.5
    [ -f $OUT/i3dflow_int8_fold$k.json ] || step i3dflow_int8_fold${k}_eval $RUN $T eval $R/bundles/i3dflow_int8_fold$k $D $S --threads 1 --json $OUT/i3dflow_int8_fold$k.json
    ;;
  int8)  # same checkpoints, int8 export calibrated on the fold's training videos (late, convfusion, i3d: int8 in the zoo)
    for fam in late convfusion i3d; do
      [ -f $OUT/${fam}_fold$k.json ] || continue
      if [ ! -f $R/bundles/${fam}_int8_fold$k/bundle.toml ]; then
        if [ $fam = late ]; then
          step late_int8_fold${k}_export $RUN $T export-late $L/spatial $L/temporal $R/bundles/late_int8_fold$k --windows 16 --quantize int8 --min-agreement 0
        else
          step ${fam}_int8_fold${k}_export $RUN $T export $R/${fam}_fold$k $R/bundles/${fam}_int8_fold$k --windows 16 --quantize int8 --min-agreement 0
        fi
      fi
      [ -f $OUT/${fam}_int8_fold$k.json ] || step ${fam}_int8_fold${k}_eval $RUN $T eval $R/bundles/${fam}_int8_fold$k $D $S --threads 1 --json $OUT/${fam}_int8_fold$k.json
    done
    ;;
  esac
}

for stage in "$@"; do
  if [ $stage = pool ]; then
    specs=()
    for fam in late convfusion i3d hidden late_int8 convfusion_int8 i3d_int8 i3dflow_int8; do
      f=(); for k in 0 1 2; do [ -f $OUT/${fam}_fold$k.json ] && f+=($OUT/${fam}_fold$k.json); done
      [ ${#f[@]} = 3 ] && specs+=("$fam=$(IFS=,; echo "${f[*]}")")
    done
    .venv/bin/python -m train.families.report results/families/k400tiny2_folds.json "${specs[@]}" | tee results/families/k400tiny2_folds.md
    continue
  fi
  for k in 0 1 2; do fold $stage $k; done
done
