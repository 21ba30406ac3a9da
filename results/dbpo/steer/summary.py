"""One line per stage-2 run directory (its log.csv and eval.json): start -> final success [95% CI], the best
evaluation and the largest fall below it afterwards, the first evaluation at or above 0.85 (iteration, minutes),
env steps, wall time, and on push each side's successes at the start and the end.
    python results/dbpo/steer/summary.py [RUN_DIR ...]      # default: every run directory beside this file"""
import csv, glob, json, os, sys

here = os.path.dirname(os.path.abspath(__file__))
for d in sys.argv[1:] or sorted(os.path.dirname(p) for p in glob.glob(os.path.join(here, "*", "log.csv"))):
    rows = [r for r in csv.DictReader(open(os.path.join(d, "log.csv"))) if r.get("eval/success_rate")]
    rates = [float(r["eval/success_rate"]) for r in rows]
    best = max(range(len(rates)), key=rates.__getitem__)
    fall = rates[best] - min(rates[best:])
    first = next((r for r, x in zip(rows, rates) if x >= 0.85), None)
    end = json.load(open(os.path.join(d, "eval.json"))) if os.path.exists(os.path.join(d, "eval.json")) else None
    line = (f"{os.path.basename(d):26s} {rates[0]:.2f} -> {rates[-1]:.2f}"
            + (f" [{end['ci95'][0]:.2f}, {end['ci95'][1]:.2f}]" if end else " (stopped)")
            + f"; best {rates[best]:.2f} at {rows[best]['iteration']}, then down {fall:.2f}; >= 0.85 "
            + (f"at {first['iteration']} ({float(first['minutes']):.1f} min)" if first else "never")
            + f"; {int(rows[-1]['env_steps']) / 1e3:.0f}k env steps, {float(rows[-1]['minutes']):.1f} min")
    if "eval/successes_left" in rows[0] and rows[0]["eval/successes_left"]:
        side = lambda r: f"{r['eval/successes_left']} left / {r['eval/successes_right']} right"
        line += f"; successes {side(rows[0])} -> {side(rows[-1])}"
    print(line)
