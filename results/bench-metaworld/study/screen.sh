#!/bin/bash
# Screen of DBP settings on the Meta-World tasks where DBP was weakest at seed 0 (bench --suite metaworld):
# one seed, DBP alone, evaluated with its sampler and decoded at z = 0 (dbp-z0), each setting in its own
# run directory. Copies each run's bench.json here as <setting>.json.
#   bash results/bench-metaworld/study/screen.sh [SETTING ...]     # here: base.json, k16.json (g16, tau-low, h4, wide not run yet)
# k16 on the other five tasks (k16-rest.json):
#   python bench.py --suite metaworld --models dbp --eval-methods dbp,dbp-z0 --seeds 1 --recipe k=16,bandwidth=0.02 \
#     --tasks mw-assembly,mw-pick-out-of-hole,mw-pick-place,mw-push,mw-pick-place-wall --out runs/mw-screen/k16-rest
cd "$(dirname "$0")/../../.."
tasks=mw-disassemble,mw-stick-pull,mw-stick-push,mw-hand-insert,mw-shelf-place,mw-push-back
declare -A recipe=([base]="" [k16]="k=16,bandwidth=0.02" [g16]="n_samples=16" [tau-low]="temperatures=0.01/0.02/0.05"
                   [h4]="horizon=4,n_action_steps=3" [wide]="hidden_dim=512")
for setting in "${@:-base k16 g16 tau-low h4 wide}"; do
  for s in $setting; do
    .venv/bin/python bench.py --suite metaworld --models dbp --eval-methods dbp,dbp-z0 --tasks $tasks --seeds 1 \
        --recipe "${recipe[$s]}" --latency-calls 20 --out runs/mw-screen/$s > runs/mw-screen-$s.log 2>&1 \
      && cp runs/mw-screen/$s/bench.json results/bench-metaworld/study/$s.json
    echo "$(date +%T) $s done"
  done
done
