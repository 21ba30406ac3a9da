"""How steady a stage-2 run is, from its log.csv: the evaluations (start, final, best, the mean over the second half
of the env steps, the largest fall between neighbouring evaluations) and the rollouts' success per 100k env steps.
Runs with other rollout sizes compare at equal env steps.

    python results/dbpo/metaworld/stability.py RUN_DIR [RUN_DIR ...]
"""
import csv
import os
import statistics
import sys

WINDOW = 102_400    # env steps per rollout-success window (200 iterations of the defaults' 512 env steps)


def summary(run_dir):
    rows = list(csv.DictReader(open(os.path.join(run_dir, "log.csv"))))
    evals = [(int(r["env_steps"]), float(r["eval/success_rate"])) for r in rows if r.get("eval/success_rate")]
    rates = [x for _, x in evals]
    last = evals[-1][0]
    late = [x for s, x in evals if s > last / 2]
    fall = max((a - b for a, b in zip(rates, rates[1:])), default=0.0)
    windows = []
    for lo in range(0, last, WINDOW):
        part = [float(r["charts/success_rate"]) for r in rows
                if lo < int(r["env_steps"]) <= lo + WINDOW and r["charts/success_rate"] not in ("", "nan")]
        windows.append(f"{statistics.mean(part):.2f}" if part else "-")
    return (f"{os.path.basename(os.path.normpath(run_dir)):28s} {rates[0]:.2f} -> {rates[-1]:.2f}, best {max(rates):.2f}, "
            f"second-half mean {statistics.mean(late):.2f} (min {min(late):.2f}), largest fall between neighbouring "
            f"evaluations {fall:.2f} ({len(rates)} evaluations, {last / 1e3:.0f}k env steps); rollout success per "
            f"{WINDOW // 1000}k env steps: {', '.join(windows)}")


if __name__ == "__main__":
    for d in sys.argv[1:]:
        print(summary(d))
