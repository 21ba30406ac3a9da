"""Meta-World at the protocol's chunk (Th = 4, Ta = 3) beside the benchmark's (Th = 8, Ta = 2): per task and over
the 11 tasks, success at 5000 steps, mean of seeds 0-2, from the cells in this folder and in ../cells.

    python results/bench-metaworld/h4/table.py
"""
import glob
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
METHODS = {"dbp": ("dbp", "DBP"), "mse": ("mse", "MSE"), "flow": ("flow-1", "flow-1")}   # model: (method, label)


def success(folder, model, method):
    """{task: success at the last checkpoint, mean over the seeds} of one model's cells in `folder`."""
    runs = {}
    for path in glob.glob(os.path.join(folder, f"*-{model}-s*.json")):
        cell = json.load(open(path))
        last = cell["evaluations"][-1]["methods"][method]
        runs.setdefault(cell["task"], []).append((last["n_success"], last["n_episodes"]))
    return {t: sum(s / n for s, n in r) / len(r) for t, r in runs.items()}


def main():
    columns = []
    for model, (method, label) in METHODS.items():
        for chunk, folder in (("Th 8, Ta 2", os.path.join(HERE, "..", "cells")), ("Th 4, Ta 3", os.path.join(HERE, model, "cells"))):
            found = success(folder, model, method)
            if found:
                columns.append((f"{label}, {chunk}", found))
    tasks = sorted(set.intersection(*(set(c) for _, c in columns)))
    print("| task | " + " | ".join(name for name, _ in columns) + " |")
    print("|---" * (len(columns) + 1) + "|")
    for task in tasks:
        print(f"| {task[3:]} | " + " | ".join(f"{c[task]:.2f}" for _, c in columns) + " |")
    print(f"| mean of {len(tasks)} | " + " | ".join(f"{sum(c[t] for t in tasks) / len(tasks):.3f}" for _, c in columns) + " |")


if __name__ == "__main__":
    main()
