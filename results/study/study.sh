#!/bin/bash
# Issue 10's positives study. Each line of CELLS (a file, or stdin) is one run: TASK DEMOS SETTING SEED,
# SETTING one of k1 (the default, K = 1), w02 / w05 (K = 16 weighted, bandwidth 0.02 / 0.05),
# plain (K = 16 unweighted) and mse (MSE regression on the same windows and budget, bench.py).
# DBP runs are `train.py --task TASK --demos DEMOS --seed SEED <positives flags> --video 2`, default
# flags otherwise. Two runs at a time, one torch thread each: train_seconds here are not timings.
# Writes runs/study/TASK-dDEMOS/SETTING-sSEED/ and copies eval.json + log.csv (or bench.json) here.
#   bash results/study/study.sh results/study/cells.txt
cd "$(dirname "$0")/../.."
xargs -P 2 -L 1 bash -c '
  task=$0; demos=$1; setting=$2; seed=$3
  cell=$task-d$demos/$setting-s$seed; out=runs/study/$cell; keep=results/study/$cell
  export OMP_NUM_THREADS=1
  mkdir -p $keep $(dirname $out)
  case $setting in
    k1) flags="--k 1";; w02) flags="--k 16 --bandwidth 0.02";; w05) flags="--k 16 --bandwidth 0.05";;
    plain) flags="--k 16 --bandwidth inf";; mse) flags="";; *) echo "unknown setting $setting"; exit 1;;
  esac
  if [ $setting = mse ]; then
    [ -f $keep/bench.json ] || .venv/bin/python bench.py --methods mse --steps 15000 --tasks $task --demos $demos \
        --seed $seed --latency-calls 20 --json $keep/bench.json > $out.log 2>&1
  else
    [ -f $out/eval.json ] || { rm -rf $out; .venv/bin/python train.py --task $task --demos $demos --seed $seed \
        $flags --video 2 --out $out > $out.log 2>&1; }
    cp $out/eval.json $out/log.csv $keep/
  fi
  echo "$(date +%T) $cell"
' < "${1:-/dev/stdin}"
