#!/bin/bash
# The study's push / 200-demo K = 1 and MSE rows again at the batch-128 default (issue 10), two at a time,
# one torch thread each (train_seconds are not timings). Outputs: results/study-b128/SETTING-sSEED/.
#   bash results/study-b128/run.sh
cd "$(dirname "$0")/../.."
printf "k1 0\nmse 0\nk1 1\nmse 1\nk1 2\nmse 2\n" | xargs -P 2 -L 1 bash -c '
  setting=$0; seed=$1; keep=results/study-b128/$setting-s$seed; out=runs/study-b128/$setting-s$seed
  export OMP_NUM_THREADS=1; mkdir -p $keep
  if [ $setting = mse ]; then
    .venv/bin/python bench.py --methods mse --steps 15000 --tasks push --demos 200 --seed $seed --latency-calls 20 \
        --json $keep/bench.json > $out.log 2>&1
  else
    .venv/bin/python train.py --task push --demos 200 --seed $seed --out $out > $out.log 2>&1
    cp $out/eval.json $out/log.csv $keep/
  fi
  echo "$(date +%T) $setting-s$seed"'
