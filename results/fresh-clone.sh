#!/bin/bash
# The README's first command on a fresh clone of main, then --seed 1 and --seed 2, one run at a time
# (run it on an idle machine: the times are the figures). Copies each run's eval.json and log.csv to
# results/pretrain-push-s{0,1,2}/ and the wall times to results/pretrain-push-s0/fresh_clone_times.txt.
#   bash results/fresh-clone.sh
set -e
repo=$(cd "$(dirname "$0")/.." && pwd); dst=/tmp/fresh-clone
rm -rf $dst && git clone -q $repo $dst && cd $dst
t0=$(date +%s); python3 -m venv .venv && .venv/bin/pip install -q -r requirements.txt
times="setup $(( $(date +%s) - t0 )) s"
for seed in 0 1 2; do
  flags=$([ $seed = 0 ] || echo "--seed $seed")
  t0=$(date +%s); .venv/bin/python train.py --stage pretrain $flags > seed$seed.log 2>&1
  times="$times"$'\n'"seed $seed wall $(( $(date +%s) - t0 )) s"
  mkdir -p $repo/results/pretrain-push-s$seed && cp runs/pretrain-push-s$seed/{eval.json,log.csv} $repo/results/pretrain-push-s$seed/
  tail -1 seed$seed.log
done
echo "$times" | tee $repo/results/pretrain-push-s0/fresh_clone_times.txt
