"""Meta-World at Th = 4, Ta = 3 trained 3x longer: DBP and flow-1 on the four tasks where flow-1 led most at the
protocol's 5000 steps, with the lr schedule spanning 15000 steps and evaluations at 2500, 5000, 10000 and 15000
(cells in this folder), beside the 5000-step runs (schedule over 5000 steps: ../dbp and ../flow). Mean of seeds
0-2 per task, 50 episodes per seed and checkpoint.

    python results/bench-metaworld/h4/long/table.py
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"dbp": ("dbp", "DBP"), "flow": ("flow-1", "flow-1")}   # model: (method, label)


def by_step(folder, model, method):
    """{task: {step: [successes of each seed]}} of one model's cells in `folder`."""
    out = {}
    for path in sorted(glob.glob(os.path.join(folder, "cells", f"*-{model}-s*.json"))):
        cell = json.load(open(path))
        for e in cell["evaluations"]:
            r = e["methods"][method]
            out.setdefault(cell["task"], {}).setdefault(e["step"], []).append(r["n_success"] / r["n_episodes"])
    return out


def main():
    mean = lambda xs: sum(xs) / len(xs)
    print("| task | method | 5000 steps (schedule over 5000) | 2500 | 5000 | 10000 | 15000 (schedule over 15000) |")
    print("|---|---|---|---|---|---|---|")
    totals = {}
    for model, (method, label) in METHODS.items():
        long, short = by_step(HERE, model, method), by_step(os.path.join(HERE, "..", model), model, method)
        for task in sorted(long):
            row = [mean(short[task][5000])] + [mean(long[task][s]) if len(long[task].get(s, [])) == 3 else None
                                              for s in (2500, 5000, 10000, 15000)]
            print(f"| {task[3:]} | {label} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in row) + " |")
            if None not in row:
                totals.setdefault(label, []).append(row)
    for label, rows in totals.items():
        print(f"| mean of {len(rows)} | {label} | " + " | ".join(f"{mean(col):.3f}" for col in zip(*rows)) + " |")


if __name__ == "__main__":
    main()
