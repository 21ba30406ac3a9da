"""Curves of DBPO on push with episodes that only truncate (--continue-after-success), rewards scaled by the reward
std (before) and by the discounted return's std (after), 3 seeds: evaluated success and value loss per iteration.

    cd results/dbpo/truncation && python plot.py        # reads {before,after}-seed{0,1,2}/log.csv, writes curves.png
"""
import csv

import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt


def column(rows, key):
    pts = [(int(r["iteration"]), float(r[key])) for r in rows if r[key] != ""]
    return [p[0] for p in pts], [p[1] for p in pts]


fig, (ax_s, ax_v) = plt.subplots(1, 2, figsize=(11, 4))
for version, colour in (("before", "tab:red"), ("after", "tab:blue")):
    for seed in range(3):
        try:
            rows = list(csv.DictReader(open(f"{version}-seed{seed}/log.csv")))
        except FileNotFoundError:
            continue
        label = f"{version} (reward std)" if version == "before" else f"{version} (return std)"
        ax_s.plot(*column(rows, "eval/success_rate"), color=colour, marker="o", ms=3, alpha=0.8,
                  label=label if seed == 0 else None)
        ax_v.plot(*column(rows, "losses/value"), color=colour, lw=0.7, alpha=0.7, label=label if seed == 0 else None)
ax_s.set(xlabel="iteration", ylabel="success (100 seeded episodes)", title="push, episodes only truncate: success")
ax_v.set(xlabel="iteration", ylabel="value loss", yscale="log", title="value loss (log scale)")
for ax in (ax_s, ax_v):
    ax.grid(alpha=0.3)
    ax.legend()
fig.tight_layout()
fig.savefig("curves.png", dpi=110)
print("wrote curves.png")
