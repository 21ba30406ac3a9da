"""One line per stage-2 run under results/dbpo/ (its log.csv and eval.json): start -> final success,
the lowest evaluation, the right-mode share of successes (push) and the wall time.
    python results/dbpo/summary.py"""
import csv, glob, json, os

for d in sorted(glob.glob(os.path.join(os.path.dirname(os.path.abspath(__file__)), "*", ""))):
    if not os.path.exists(d + "eval.json"):
        continue
    rows = [r for r in csv.DictReader(open(d + "log.csv")) if r.get("eval/success_rate")]
    result = json.load(open(d + "eval.json"))
    rates = [float(r["eval/success_rate"]) for r in rows]
    line = (f"{os.path.basename(d[:-1]):22s} {rates[0]:.2f} -> {rates[-1]:.2f} [{result['ci95'][0]:.2f}, {result['ci95'][1]:.2f}], lowest {min(rates[1:]):.2f}, "
            f"{result['env_steps'] / 1e3:.0f}k env steps, {result['train_seconds'] / 60:.1f} min")
    if "eval/mode_right" in rows[0]:
        shares = [float(r["eval/mode_right"]) for r in rows]
        line += f"; right share {shares[0]:.2f} -> {shares[-1]:.2f} (range after start {min(shares[1:]):.2f}-{max(shares[1:]):.2f})"
    print(line)
    print("   ", " ".join(f"{r['iteration']}:{float(r['eval/success_rate']):.2f}" for r in rows))
