#!/bin/bash
# One screening job: train (1 thread) then a 200-episode evaluation. Args: name task seed flags...
cd /work/main
name=$1; task=$2; seed=$3; shift 3
out=runs/screen/$name
export OMP_NUM_THREADS=1
if [ ! -f $out/eval.json ]; then
  rm -rf $out
  .venv/bin/python train.py --task $task --seed $seed "$@" --out $out > runs/screen/$name.log 2>&1
fi
r=$(PYTHONPATH=. .venv/bin/python runs/diag/multi.py $out/ckpt.pt 2>/dev/null | grep ckpt)
echo "$(date +%T) $name own=$(grep -o '"success_rate": [0-9.]*' $out/eval.json | cut -d' ' -f2) train_s=$(grep -o '"train_seconds": [0-9.]*' $out/eval.json | cut -d' ' -f2) multi=${r#*ckpt.pt }" >> runs/screen/results.txt
