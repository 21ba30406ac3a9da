"""The report of bench.py, from the summaries of its finished cells: the tables (success by checkpoint and at each
method's best, latency, training cost), DBP's verdict against every other method, the Meta-World groups' table, and
the plots bench.png, bench_steps.png and bench_groups.png.

A verdict compares pooled 95 % intervals (Wilson, over every seed's episodes): 'DBP wins' or 'DBP loses' where they do
not overlap, else 'tie'.

    python bench_report.py      # the tables of a made-up task with three methods
"""
import numpy as np

import envs
import rollouts
import metaworld_tasks
import training


def label(name):
    """A method's name in the tables and plots."""
    return name.upper() if name in ("dbp", "mse") else name


def pooled(rows):
    """Rows of several tasks (mean, n_success, n_episodes) -> the mean of their means and the pooled 95 % interval."""
    k, n = sum(r["n_success"] for r in rows), sum(r["n_episodes"] for r in rows)
    return dict(mean=float(np.mean([r["mean"] for r in rows])), n_success=k, n_episodes=n, ci95=rollouts.wilson_interval(k, n))


def compare(a, b):
    """DBP's row a against another's b: 'DBP wins' or 'DBP loses' where their 95 % intervals do not overlap."""
    return "DBP wins" if a["ci95"][0] > b["ci95"][1] else "DBP loses" if a["ci95"][1] < b["ci95"][0] else "tie"


def table(tasks, steps, threads):
    """The table of every task and method: success over seeds at each checkpoint, the best, latency (threads: the
    torch threads of the *_default latencies) and the training step's cost."""
    rows = ["| task | method | NFE | " + " | ".join(f"success at {s} steps" for s in steps) + " | best [pooled 95% CI] | "
            f"still rising | modes of successes at best | p50 ms, 1 thread | p50 ms, {threads} threads | "
            "train ms/step, 1 thread |",
            "|" + "---|" * (9 + len(steps))]
    for task, t in tasks.items():
        for name, r in t["methods"].items():
            best = next(b for b in r["by_step"] if b["step"] == r["best_step"])
            modes = " / ".join(f"{k} {v}" for k, v in best["mode_counts"].items()) or "–"
            rows.append(f"| {task} | {label(name)} | {r['nfe']} | "
                        + " | ".join(f"{b['mean']:.2f} ± {b['std']:.2f}" for b in r["by_step"])
                        + f" | {best['mean']:.2f} [{best['ci95'][0]:.2f}, {best['ci95'][1]:.2f}] at {r['best_step']} | "
                        f"{'yes' if r['still_rising'] else 'no'} | {modes} | "
                        f"{r.get('latency_p50_ms_1thread', float('nan')):.2f} | "
                        f"{r.get('latency_p50_ms_default', float('nan')):.2f} | "
                        f"{r.get('train_ms_per_step_1thread', float('nan')):.1f} |")
    return "\n".join(rows)


def verdicts(tasks):
    """DBP against every other method of each task, at each one's best checkpoint and at the last (equal steps):
    'DBP wins' or 'DBP loses' where the pooled 95 % intervals do not overlap, else 'tie'."""
    pick = dict(best=lambda r: next(b for b in r["by_step"] if b["step"] == r["best_step"]), last=lambda r: r["by_step"][-1])
    rows = []
    for task, t in tasks.items():
        if "dbp" not in t["methods"]:
            continue
        for name, r in t["methods"].items():
            if name == "dbp":
                continue
            row = dict(task=task, method=name, latency_over_dbp=r.get("latency_over_dbp_1thread"))
            for key, at in pick.items():
                a, b = at(t["methods"]["dbp"]), at(r)
                row[key] = dict(dbp=a["mean"], other=b["mean"], verdict=compare(a, b))
            rows.append(row)
    return rows


def verdict_table(rows):
    """The table of verdicts()."""
    lines = ["| task | against | at each one's best: DBP / it | verdict | at the last checkpoint: DBP / it | verdict | "
             "its latency / DBP's |", "|---|---|---|---|---|---|---|"]
    for v in rows:
        ratio = f"{v['latency_over_dbp']:.0f}x" if v["latency_over_dbp"] else "–"
        lines.append(f"| {v['task']} | {label(v['method'])} | {v['best']['dbp']:.2f} / {v['best']['other']:.2f} | "
                     f"{v['best']['verdict']} | {v['last']['dbp']:.2f} / {v['last']['other']:.2f} | {v['last']['verdict']} | "
                     f"{ratio} |")
    return "\n".join(lines)


def group_table(groups, steps):
    """The table of group_summary's groups: each method's pooled success at every checkpoint and at each task's best."""
    cols = [str(s) for s in steps] + ["best"]
    rows = ["| group | method | " + " | ".join(f"at {c} steps" if c != "best" else "at each task's best" for c in cols)
            + " | DBP against it, at each one's best |", "|" + "---|" * (3 + len(cols))]
    for group, ms in groups.items():
        for name, r in ms.items():
            dbp_best = ms.get("dbp", {}).get("best")
            verdict = "–" if name == "dbp" or dbp_best is None else compare(dbp_best, r["best"])
            rows.append(f"| {group} ({r['n_tasks']}) | {label(name)} | " + " | ".join(
                f"{r[c]['mean']:.2f} [{r[c]['ci95'][0]:.2f}, {r[c]['ci95'][1]:.2f}]" for c in cols) + f" | {verdict} |")
    return "\n".join(rows)


def plot(tasks, path_pareto, path_steps):
    """bench.png: best success against latency (log axis), one marker per method, a panel per task;
    bench_steps.png: success against gradient steps per method (mean over seeds, ± std shaded)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(n for t in tasks.values() for n in t["methods"]))
    style = {n: (f"C{i % 10}", "os^vDP*Xhd"[i % 10]) for i, n in enumerate(names)}
    for path, steps_plot in ((path_pareto, False), (path_steps, True)):
        cols = min(len(tasks), 4)
        rows = -(-len(tasks) // cols)
        fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 4 * rows), squeeze=False)
        for ax in axes.flat[len(tasks):]:
            ax.axis("off")
        for ax, (task, t) in zip(axes.flat, tasks.items()):
            for name, r in t["methods"].items():
                color, marker = style[name]
                if steps_plot:
                    x = [b["step"] for b in r["by_step"]]
                    mean, std = np.array([b["mean"] for b in r["by_step"]]), np.array([b["std"] for b in r["by_step"]])
                    ax.plot(x, mean, "-", marker=marker, color=color, ms=4, label=label(name))
                    ax.fill_between(x, mean - std, mean + std, color=color, alpha=0.12, lw=0)
                elif "latency_p50_ms_1thread" in r:
                    best = next(b for b in r["by_step"] if b["step"] == r["best_step"])
                    ax.errorbar(r["latency_p50_ms_1thread"], best["mean"], yerr=best["std"], fmt=marker, color=color,
                                ms=7, capsize=3, label=label(name))
            ax.set(title=task, xscale="log", ylim=(-0.02, 1.02), ylabel="success (mean over seeds)",
                   xlabel="gradient steps" if steps_plot else "latency per action chunk, p50 ms at batch 1, 1 thread")
            if steps_plot:                                                     # the checkpoints, as 2.5k, 5k, ...
                ax.set_xticks(x, [f"{s / 1000:g}k" for s in x])
                ax.minorticks_off()
            ax.grid(alpha=0.3, which="both")
        axes.flat[len(tasks) - 1].legend(fontsize=7, loc="lower right")
        save_figure(fig, path)


def plot_groups(groups, expert, path, seeds):
    """bench_groups.png: per group, each method's mean success at each task's best (bars) with the pooled 95 %
    interval, beside the scripted expert's."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    names = list(dict.fromkeys(n for ms in groups.values() for n in ms))
    fig, ax = plt.subplots(figsize=(2.2 + 1.3 * len(groups) * (len(names) + 1) / 3, 4))
    width = 0.8 / (len(names) + 1)
    for g, (group, ms) in enumerate(groups.items()):
        tasks = [t for t in expert if group == "all" or t[len(metaworld_tasks.PREFIX):] in metaworld_tasks.GROUPS[group]]
        bars = [("expert", pooled([dict(mean=expert[t]["success_rate"], **expert[t]) for t in tasks]) if tasks else None)]
        for i, (name, r) in enumerate(bars + [(n, ms[n]["best"] if n in ms else None) for n in names]):
            if r is not None:
                x = g + (i - (len(names) + 1) / 2 + 0.5) * width
                ax.bar(x, r["mean"], width, color="0.6" if name == "expert" else f"C{names.index(name) % 10}",
                       label=label(name) if g == 0 else None)
                ax.errorbar(x, r["mean"], [[r["mean"] - r["ci95"][0]], [r["ci95"][1] - r["mean"]]], color="k", capsize=2)
    ax.set_xticks(range(len(groups)), [f"{g} ({next(iter(ms.values()))['n_tasks']} tasks)" for g, ms in groups.items()])
    ax.set(ylim=(0, 1.05), ylabel="success, mean over tasks (each at its best checkpoint)",
           title=f"Meta-World, state, {seeds} seed{'s' if seeds > 1 else ''} (pooled 95 % intervals)")
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    ax.grid(alpha=0.3, axis="y")
    save_figure(fig, path)


def save_figure(fig, path):
    """Write a matplotlib figure to path atomically, then close it."""
    import matplotlib.pyplot as plt
    fig.tight_layout()
    training.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
    plt.close(fig)


# ----------------------------------------------------------------------------- quick demo
if __name__ == "__main__":
    def made_up(rates, latency_ms, nfe=1, n=150):
        """A method's summary (bench.summarize's fields that the tables read) with success `rates` at steps 1, 2."""
        by_step = [dict(step=s, mean=r, std=0.05, n_success=round(r * n), n_episodes=n,
                        ci95=rollouts.wilson_interval(round(r * n), n), mode_counts={}) for s, r in zip((1, 2), rates)]
        return dict(nfe=nfe, by_step=by_step, best_step=max(by_step, key=lambda b: b["mean"])["step"], still_rising=False,
                    latency_p50_ms_1thread=latency_ms, latency_p50_ms_default=latency_ms, train_ms_per_step_1thread=9.0)
    tasks = {"push": dict(methods={"dbp": made_up([0.80, 0.90], 0.5), "dp-unet-ddim10": made_up([0.70, 0.92], 6.0, nfe=10),
                                   "mse": made_up([0.50, 0.60], 0.4)})}
    for r in tasks["push"]["methods"].values():
        r["latency_over_dbp_1thread"] = r["latency_p50_ms_1thread"] / 0.5
    print(table(tasks, [1, 2], threads=2) + "\n\n" + verdict_table(verdicts(tasks)))
