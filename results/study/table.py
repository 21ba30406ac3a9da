"""Print the README's study table from results/study/TASK-dDEMOS/SETTING-sSEED/ (eval.json or bench.json)."""
import json
import os
import statistics

HERE = os.path.dirname(os.path.abspath(__file__))
NAMES = {"k1": "K = 1 (default)", "w02": "K = 16, bandwidth 0.02", "w05": "K = 16, bandwidth 0.05",
         "plain": "K = 16 unweighted", "mse": "MSE regression"}


def result(path):
    """(success, left share of successes or None) of one run."""
    if os.path.exists(os.path.join(path, "eval.json")):
        r = json.load(open(os.path.join(path, "eval.json")))
    else:
        r = next(iter(json.load(open(os.path.join(path, "bench.json")))["tasks"].values()))["methods"]["mse"]
    return r["success_rate"], r["mode_fractions"].get("left")


print("| task | demos | method | success, seeds 0 / 1 / 2 | mean ± std | left share of successes |")
print("|---|---|---|---|---|---|")
for task in ("push", "lift", "bimanual"):
    for demos in (200, 20):
        for setting in NAMES:
            runs = [os.path.join(HERE, f"{task}-d{demos}", f"{setting}-s{seed}") for seed in range(3)]
            if not all(os.path.isdir(r) and os.listdir(r) for r in runs):
                continue
            res = [result(r) for r in runs]
            s = [x for x, _ in res]
            left = " / ".join(f"{m:.2f}" for _, m in res) if task == "push" else "–"
            print(f"| {task} | {demos} | {NAMES[setting]} | {' / '.join(f'{x:.2f}' for x in s)} | "
                  f"{statistics.mean(s):.2f} ± {statistics.stdev(s):.2f} | {left} |")
