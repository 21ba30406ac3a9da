#!/bin/bash
# Round trip, per seed S: robot.py --record 100 bimanual episodes into LeRobot v3 (real time: every other process
# paused while it records), then the default training on them twice: from the LeRobot directory (--dataset) and from
# the same episodes as an npz file (--demos-file).
cd /work/main
PY=.venv/bin/python
export OMP_NUM_THREADS=1   # one thread per run: the benchmark shares the two cores
OUT=results/datasets/roundtrip
others() { pgrep -f "bench.py|multiprocessing.spawn|run_queue.sh|i32d.sh|train.py --stage dbpo" | grep -v $$; }
for S in 0 1 2; do
  if [ ! -f runs/rt-rec-s$S/meta/info.json ] || [ ! -f $OUT/record-s$S.json ]; then
    rm -rf runs/rt-rec-s$S
    P=$(others); [ -n "$P" ] && kill -STOP $P
    $PY robot.py --record runs/rt-rec-s$S --seed $S --episodes 100 --duration-s 900 --stats-json $OUT/record-s$S.json
    [ -n "$P" ] && kill -CONT $P
  fi
  $PY $OUT/to_npz.py runs/rt-rec-s$S runs/rt-rec-s$S.npz
  for fmt in lerobot npz; do
    [ -f runs/rt-train-$fmt-s$S/eval.json ] && continue
    src=$([ $fmt = lerobot ] && echo "--dataset runs/rt-rec-s$S" || echo "--demos-file runs/rt-rec-s$S.npz")
    $PY train.py --stage pretrain --task bimanual --seed $S $src --out runs/rt-train-$fmt-s$S --resume 2>/dev/null \
      || $PY train.py --stage pretrain --task bimanual --seed $S $src --out runs/rt-train-$fmt-s$S
    mkdir -p $OUT/train-$fmt-s$S && cp runs/rt-train-$fmt-s$S/{eval.json,log.csv} $OUT/train-$fmt-s$S/
  done
done
