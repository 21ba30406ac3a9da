#!/bin/bash
# Positives on push, dense regime (200 demos), 3 seeds; one run at a time.
cd /work/main
PY=/work/main/.venv/bin/python
for seed in 0 1 2; do
  for setting in "k1:--k 1" "knn16-bw0.02:--k 16 --bandwidth 0.02" "knn16-bw0.05:--k 16 --bandwidth 0.05" "knn16-plain:--k 16 --bandwidth inf"; do
    name=${setting%%:*}; flags=${setting#*:}
    [ "$name" = "knn16-bw0.02" ] && [ "$seed" = 0 ] && continue   # the fresh-clone run (results/pretrain-push-s0)
    out=runs/positives/push-d200/$name-s$seed
    [ -f $out/eval.json ] && continue
    $PY train.py --task push --seed $seed $flags --out $out > /tmp/study_$name-s$seed.log 2>&1
  done
done
echo done > /tmp/study_done
