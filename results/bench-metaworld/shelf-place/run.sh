#!/bin/bash
# Shelf-place, where DBP trails flow-1 most (0.47 against 0.79 at 5000 steps): DBP settings on 3 seeds,
# the benchmark's settings otherwise (run at its commit 480dfb0). Cells and bench.json land in runs/mw-shelf/SETTING;
# copied here. `python bench.py --suite metaworld --models dbp --eval-methods dbp --tasks mw-shelf-place --recipe R
# --out DIR --report` prints a setting's table from its cells.
cd "$(dirname "$0")/../../.."
declare -A recipe=([tau-low]="temperatures=0.01/0.02/0.05" [g16]="n_samples=16" [wide]="hidden_dim=512" [h4]="horizon=4,n_action_steps=3")
for s in tau-low g16 wide h4; do
  .venv/bin/python bench.py --suite metaworld --models dbp --eval-methods dbp --tasks mw-shelf-place --workers 2 \
    --recipe "${recipe[$s]}" --latency-calls 20 --out runs/mw-shelf/$s
done
