"""Meta-World stage 2: the rollouts' mean return (Meta-World's dense reward) and success per 200 iterations of each
run in this folder, to see whether the reward PPO maximizes tracks success.

    python results/dbpo/metaworld/return_vs_success.py
"""
import csv
import glob
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
for path in sorted(glob.glob(os.path.join(HERE, "*mw-*", "log.csv"))):
    rows = list(csv.DictReader(open(path)))
    if "charts/return" not in rows[0]:
        continue                                          # a stage-1 run
    cells = []
    last = max(int(r["iteration"]) for r in rows)
    for lo in range(0, last, 200):
        part = [r for r in rows if lo < int(r["iteration"]) <= lo + 200 and r["charts/return"]]
        cells.append(f"{statistics.mean(float(r['charts/return']) for r in part):.0f} / "
                     f"{statistics.mean(float(r['charts/success_rate']) for r in part):.2f}")
    print(f"{os.path.basename(os.path.dirname(path)):24s} return / success per 200 iterations: " + ", ".join(cells))
