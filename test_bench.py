"""Tests of bench.py: a --quick run's JSON and report, stopping and continuing from its cells, a dying
worker, pixels, and the command line and recipe overrides.

    python -m pytest -q test_bench.py       # a few minutes on 2 CPU cores
"""
import json
import os
import subprocess
import sys
import time

import pytest

import bench
import bench_report
from conftest import DEVICE

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- bench.py
QUICK_METHODS = {"dbp": 1, "dp-unet-ddpm20": 20, "dp-unet-ddim5": 5, "dp-mlp-ddpm20": 20, "dp-mlp-ddim5": 5, "flow-1": 1,
                 "flow-4": 4, "shortcut-1": 1, "mse": 1}  # bench.py --quick: method -> NFE


@pytest.mark.slow
@pytest.mark.device
def test_bench_quick_json_has_every_field_and_a_stopped_run_continues_from_its_cells(tmp_path, capsys):
    path, out = tmp_path / "bench.json", tmp_path / "bq"
    cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--quick", "--out", str(out), "--demo-dir", str(tmp_path / "demos"),
           "--device", DEVICE, "--checkpoints", "100,200", "--eval-episodes", "3"]   # lighter than --quick alone
    # stopped (as a scheduler stops a job) once a cell is saved: the finished cells stay, the workers go at once
    first = subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    while not (out / "cells").exists() or not os.listdir(out / "cells"):
        assert first.poll() is None, first.communicate()[1][-3000:]
        time.sleep(0.2)
    first.terminate()
    stopped = first.communicate(timeout=30)[1]
    saved = len(os.listdir(out / "cells"))
    assert first.returncode == 1 and f"interrupted: {saved} of 6 cells are saved" in stopped, stopped[-3000:]
    run = subprocess.run(cmd + ["--json", str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0 and f"{saved} of 6 cells already" in run.stdout, run.stderr[-3000:]
    result = json.load(open(path))
    assert result["config"]["quick"] and result["machine"]["torch_threads_default"] >= 1
    assert result == json.load(open(out / "bench.json")) and (out / "bench.png").exists() and (out / "bench_steps.png").exists()
    task = result["tasks"]["push"]
    assert {n: r["nfe"] for n, r in task["methods"].items()} == QUICK_METHODS
    for name, r in task["methods"].items():
        assert [b["step"] for b in r["by_step"]] == [100, 200] and r["seeds"] == [0], name
        for b in r["by_step"]:
            assert b["n_episodes"] == 3 and 0 <= b["mean"] <= 1 and b["ci95"][0] <= b["mean"] <= b["ci95"][1]
            assert set(b["mode_counts"]) == {"left", "right"} and sum(b["mode_counts"].values()) == b["n_success"]
            assert set(b["chunk_modes"]) == {"left", "right", "between"} and abs(sum(b["chunk_modes"].values()) - 1) < 1e-6
        assert r["best_step"] in (100, 200) and r["by_step"][-1]["train_seconds"] > r["by_step"][0]["train_seconds"] > 0
        assert 0 < r["latency_p50_ms_1thread"] <= r["latency_p99_ms_1thread"]
        assert 0 < r["latency_p50_ms_default"] <= r["latency_p99_ms_default"] and r["train_ms_per_step_1thread"] > 0
    ddpm = task["methods"]["dp-mlp-ddpm20"]
    assert ddpm["train_ms_per_step_1thread"] == task["methods"]["dp-mlp-ddim5"]["train_ms_per_step_1thread"]
    assert ddpm["by_step"][-1]["train_seconds"] == task["methods"]["dp-mlp-ddim5"]["by_step"][-1]["train_seconds"]  # one model
    assert ddpm["latency_over_dbp_1thread"] > 2, ddpm       # 20 NFE against 1; loose, as the machine may be loaded
    assert "| push | DBP | 1 |" in run.stdout and "DBP against each method" in run.stdout
    assert [v["method"] for v in result["verdicts"]] == [m for m in QUICK_METHODS if m != "dbp"]
    for v in result["verdicts"]:
        for at in ("best", "last"):
            assert v[at]["verdict"] in ("DBP wins", "DBP loses", "tie") and 0 <= v[at]["other"] <= 1, v
        assert f"| push | {bench_report.label(v['method'])} | {v['best']['dbp']:.2f} / {v['best']['other']:.2f} | " in run.stdout
    assert len(os.listdir(out / "cells")) == 6                                      # one per trained model
    # a rerun trains nothing: it reads the cells back (in this process: the checks below need no fresh interpreter)
    capsys.readouterr()
    bench.main(cmd[2:])
    again = capsys.readouterr()
    assert "6 of 6 cells already" in again.out and "cells:" not in again.err
    assert [r["by_step"] for r in json.load(open(out / "bench.json"))["tasks"]["push"]["methods"].values()] == \
        [r["by_step"] for r in task["methods"].values()]
    assert bench.main(cmd[2:] + ["--report", "--out", str(tmp_path / "empty")]) is None
    empty = capsys.readouterr().out
    assert "0 of 6 cells" in empty and "nothing to report" in empty
    # cells measured with other settings are not mixed in
    with pytest.raises(SystemExit, match="eval_episodes = 3"):
        bench.main(cmd[2:] + ["--eval-episodes", "6"])

def _die(job):
    os._exit(9)  # what the kernel's out-of-memory kill looks like to the pool


def test_bench_a_worker_that_dies_ends_the_run_with_a_message_instead_of_a_hang(tmp_path):
    cfg = bench.parse(["--quick", "--demos", "1", "--demo-dir", str(tmp_path), "--out", str(tmp_path / "b"), "--workers", "1"])
    with pytest.raises(SystemExit, match="a worker process died .* rerun with fewer --workers"):
        bench.run_cells(cfg, [("push", "dbp", 0)], fn=_die)


@pytest.mark.slow
def test_bench_runs_from_pixels_with_the_encoder_in_every_model(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "--quick", "--obs", "pixels", "--models",
                          "dbp,dp-mlp", "--checkpoints", "2,4", "--demos", "3", "--eval-episodes", "2", "--out", "bqp",
                          "--demo-dir", str(tmp_path / "demos")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    task = json.load(open(tmp_path / "bqp" / "bench.json"))["tasks"]["push"]
    assert set(task["methods"]) == {"dbp", "dp-mlp-ddpm20", "dp-mlp-ddim5"}
    assert task["methods"]["dp-mlp-ddpm20"]["latency_over_dbp_1thread"] > 2     # the encoder runs once per call
    assert (tmp_path / "demos" / "push_n3_s0_pixels64x64.npz").exists()


# ----------------------------------------------------------------------------- command line
def test_bench_cli_errors_are_clear():
    for args, message in ((["--tasks", "push,nope"], "known tasks"), (["--stepz", "5"], "unrecognized arguments"),
                          (["--models", "dbp,gan"], "unknown ['gan']"), (["--checkpoints", "5000,2500"], "increasing"),
                          (["--checkpoints", "1e4"], "integers"), (["--recipe", "kk=3"], "'kk' is not a recipe field"),
                          (["--recipe", "steps=9"], "not a recipe field"), (["--recipe", "k=1.5"], "is not a int"),
                          (["--recipe", "n_samples=1"], "n_samples = 1: must be >= 2"),
                          (["--eval-methods", "dbp,dbp-z1"], "unknown ['dbp-z1']"), (["--suite", "atari"], "one of")):
        with pytest.raises(SystemExit) as e:
            bench.recipe("push", 0, bench.parse(args))
        assert str(e.value.code).startswith("error:") and message in str(e.value.code), e.value.code


def test_bench_recipe_overrides_reach_every_model_and_the_suite_sets_the_protocol():
    cfg = bench.parse(["--suite", "metaworld", "--recipe", "k=16,horizon=12,temperatures=0.01/0.05"])
    pcfg = bench.recipe("mw-push", 1, cfg)
    assert (pcfg.k, pcfg.horizon, pcfg.temperatures, pcfg.demos, pcfg.steps, pcfg.seed) == (16, 12, (0.01, 0.05), 10, 5000, 1)
    assert cfg.tasks.split(",")[0] == "mw-assembly" and len(cfg.tasks.split(",")) == 11 and cfg.out == "runs/bench-metaworld"
    assert set(bench.methods(cfg)) == {"dbp", "mse", "flow-1", "shortcut-1", "dp-unet-ddim10"}
    assert set(bench.methods(bench.parse(["--suite", "metaworld", "--ddim-steps", "5"]))) >= {"dp-unet-ddim5"}
