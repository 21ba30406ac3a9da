"""DBP's levers at Th = 4, Ta = 3 on the four tasks where flow-1 leads most: success at 5000 steps per task (mean of
seeds 0-2) and over the four tasks with the Wilson interval of the pooled episodes, from each folder's cells.

    python results/bench-metaworld/h4/levers.py
"""
import glob
import json
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", ".."))
from rollouts import wilson_interval  # noqa: E402

TASKS = ("mw-push", "mw-pick-place", "mw-hand-insert", "mw-shelf-place")
ROWS = (("DBP, the defaults", "dbp", "dbp", "dbp"), ("DBP, temperatures 0.2 / 0.5 / 1.0", "tsoft", "dbp", "dbp"),
        ("DBP, To = 1", "to1", "dbp", "dbp"), ("DBP, no EMA", "noema", "dbp", "dbp"), ("flow-1", "flow", "flow", "flow-1"))


def at_5000(folder, model, method):
    """{task: [(successes, episodes) per seed]} at 5000 steps, or None where the folder has no cells."""
    found = {}
    for path in glob.glob(os.path.join(HERE, folder, "cells", f"*-{model}-s*.json")):
        cell = json.load(open(path))
        last = next(e for e in cell["evaluations"] if e["step"] == 5000)["methods"][method]
        found.setdefault(cell["task"], []).append((last["n_success"], last["n_episodes"]))
    return found or None


def main():
    print("| setting | " + " | ".join(t[3:] for t in TASKS) + " | mean of 4 [95 % CI] | seeds |")
    print("|---" * (len(TASKS) + 3) + "|")
    for label, folder, model, method in ROWS:
        found = at_5000(folder, model, method)
        if not found or not set(TASKS) <= set(found):
            continue
        means = [sum(s / n for s, n in found[t]) / len(found[t]) for t in TASKS]
        k, n = (sum(x[i] for t in TASKS for x in found[t]) for i in (0, 1))
        lo, hi = wilson_interval(k, n)
        seeds = min(len(found[t]) for t in TASKS)
        print(f"| {label} | " + " | ".join(f"{m:.2f}" for m in means)
              + f" | {sum(means) / len(means):.3f} [{lo:.2f}, {hi:.2f}] | {seeds} |")


if __name__ == "__main__":
    main()
