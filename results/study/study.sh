#!/bin/bash
# Issue 10's positives study: every task, dense (200 demos) and sparse (20 demos), seeds 0-2,
# DBP with each positives setting (train.py, default flags otherwise) and MSE regression on the
# same windows and budget (bench.py --methods mse --steps 15000). Two runs at a time, one torch
# thread each, so train_seconds here are not the README's timings. Usage:
#   bash results/study/study.sh TASK DEMOS SETTING...     (SETTING: k1 w02 w05 plain mse)
# Writes runs/study/TASK-dDEMOS/SETTING-sSEED/ and copies eval.json + log.csv (or mse JSON) here.
cd "$(dirname "$0")/../.."
task=$1; demos=$2; shift 2
for setting in "$@"; do for seed in 0 1 2; do echo "$setting $seed"; done; done | \
xargs -P 2 -L 1 bash -c '
  setting=$0; seed=$1; task='"$task"'; demos='"$demos"'
  cell=$task-d$demos/$setting-s$seed; out=runs/study/$cell; keep=results/study/$cell
  export OMP_NUM_THREADS=1
  mkdir -p $keep $(dirname $out)
  if [ "$setting" = mse ]; then
    [ -f $keep/bench.json ] || .venv/bin/python bench.py --methods mse --steps 15000 --tasks $task --demos $demos \
        --seed $seed --latency-calls 20 --json $keep/bench.json > $out.log 2>&1
  else
    case $setting in k1) flags="--k 1";; w02) flags="--k 16 --bandwidth 0.02";; w05) flags="--k 16 --bandwidth 0.05";;
                     plain) flags="--k 16 --bandwidth inf";; esac
    [ -f $out/eval.json ] || { rm -rf $out; .venv/bin/python train.py --task $task --demos $demos --seed $seed $flags \
        --out $out > $out.log 2>&1; }
    cp $out/eval.json $out/log.csv $keep/
  fi
  echo "$(date +%T) $cell done"
'
