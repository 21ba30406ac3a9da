"""Tests of bench_report.py: DBP's verdicts against the other methods. (The tables and plots of a real run are
tested through bench.py --quick in test_bench.py.)

    python -m pytest -q test_bench_report.py        # a second
"""
import bench_report
import envs
import rollouts


def test_bench_verdicts_compare_pooled_intervals_at_the_best_and_the_last_checkpoint():
    def method(rates, n=150):  # success at checkpoints 1 and 2, pooled over n episodes
        by_step = [dict(step=s, mean=r, ci95=rollouts.wilson_interval(round(r * n), n)) for s, r in zip((1, 2), rates)]
        return dict(by_step=by_step, best_step=max(by_step, key=lambda b: b["mean"])["step"], latency_over_dbp_1thread=2.0)
    tasks = {"push": dict(methods={"dbp": method([0.90, 0.96]), "slow": method([0.50, 0.96]), "weak": method([0.40, 0.60]),
                                   "strong": method([1.00, 0.99])})}
    got = {v["method"]: (v["best"]["verdict"], v["last"]["verdict"]) for v in bench_report.verdicts(tasks)}
    assert got == {"slow": ("tie", "tie"), "weak": ("DBP wins", "DBP wins"), "strong": ("tie", "tie")}
    tasks["push"]["methods"]["dbp"] = method([0.70, 0.80])
    got = {v["method"]: (v["best"]["verdict"], v["last"]["verdict"]) for v in bench_report.verdicts(tasks)}
    assert got == {"slow": ("DBP loses", "DBP loses"), "weak": ("DBP wins", "DBP wins"), "strong": ("DBP loses", "DBP loses")}
    assert "| push | weak | 0.80 / 0.60 | DBP wins |" in bench_report.verdict_table(bench_report.verdicts(tasks))
