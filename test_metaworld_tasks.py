"""Tests of the Meta-World adapter (metaworld_tasks.py) and the benchmark's Meta-World suite.

    python -m pytest -q test_metaworld_tasks.py        # under a minute on 2 CPU cores
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import bench
import bench_report
import demonstrations
import envs
import metaworld_tasks
import train

HERE = os.path.dirname(os.path.abspath(__file__))


def test_reset_is_seeded_and_step_follows_the_protocol():
    env = envs.make_env("mw-assembly").unwrapped
    obs, info = env.reset(seed=3)
    assert obs.shape == (39,) and obs.dtype == np.float32 and env.action_space.shape == (4,)
    assert info == {"success": False, "mode": -1} and env.mode_names == []
    assert np.array_equal(env.reset(seed=3)[0], obs)                          # the same layout for the same seed
    assert not np.allclose(env.reset(seed=4)[0][-3:], obs[-3:])               # a fresh goal for another
    obs2, reward, terminated, truncated, info = env.step(np.zeros(4, np.float32))
    assert obs2.shape == (39,) and np.isfinite(reward) and not terminated and not truncated
    assert np.array_equal(env.state(), obs2) and info["mode"] == -1 and info["success"] is False
    for step in range(1, metaworld_tasks.EPISODE_STEPS):                       # standing still never succeeds
        truncated = env.step(np.zeros(4, np.float32))[3]
        assert truncated == (step == metaworld_tasks.EPISODE_STEPS - 1)
    env.close()


def test_the_scripted_expert_succeeds_and_the_episode_ends_there_unless_asked_not_to():
    env = envs.make_env("mw-assembly")
    states, actions, info, images = envs.expert_episode(env, envs.demo_seed(0, 0))
    assert info["success"] and len(states) < metaworld_tasks.EPISODE_STEPS and images is None
    assert states.shape == (len(actions), 39) and actions.shape[1] == 4 and np.abs(actions).max() <= 1.0
    env = envs.make_env("mw-assembly", terminate_on_success=False)           # a task whose episodes only truncate
    env.reset(seed=envs.demo_seed(0, 0))
    for action in actions:
        _, _, terminated, truncated, info = env.step(action)
        assert not terminated
    assert info["success"] and not truncated


def test_demos_windows_and_bad_names(tmp_path):
    path = demonstrations.collect_demos("mw-push", 2, cache_dir=str(tmp_path), progress=False)
    demo = envs.load_demos(path)
    obs, actions = demonstrations.make_windows(demo, 2, 8)
    assert obs.shape == (len(demo["obs"]), 2, 39) and actions.shape == (len(demo["obs"]), 8, 4)
    assert list(demo["modes"]) == [-1, -1]
    with pytest.raises(ValueError, match="unknown Meta-World task 'mw-nope'"):
        envs.resolve_task("mw-nope")
    with pytest.raises(ValueError, match="obs_mode must be 'state'"):
        envs.make_env("mw-push", obs_mode="pixels")


def test_train_pretrains_and_evaluates_a_meta_world_task(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--task", "mw-assembly", "--demos", "3",
                          "--steps", "40", "--warmup-steps", "5", "--eval-episodes", "2", "--hidden-dim", "32",
                          "--demo-dir", str(tmp_path / "demos")], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.load(open(tmp_path / "runs" / "pretrain-mw-assembly-s0" / "eval.json"))
    assert result["task"] == "mw-assembly" and result["n_episodes"] == 2 and result["demos"] == 3
    assert os.path.exists(tmp_path / "demos" / "mw-assembly_n3_s0.npz")


def test_train_takes_the_protocol_demos_and_chunk_by_default():
    cfg = train.parse(["--task", "mw-assembly"])[1]
    assert (cfg.demos, cfg.steps, cfg.horizon, cfg.n_action_steps, cfg.n_obs_steps) == (10, 5000, 4, 3, 2)
    given = train.parse(["--task", "mw-assembly", "--demos", "4", "--horizon", "8", "--n-action-steps", "2"])[1]
    assert (given.demos, given.horizon, given.n_action_steps) == (4, 8, 2)
    default = train.parse([])[1]
    assert (default.demos, default.horizon, default.n_action_steps) == (200, 8, 2)


def test_group_summary_pools_the_tasks_of_each_group():
    def method(rates, n=150):
        by_step = [dict(step=s, mean=r, n_success=round(r * n), n_episodes=n) for s, r in zip((10, 20), rates)]
        return dict(by_step=by_step, best_step=max(by_step, key=lambda b: b["mean"])["step"])
    results = {"mw-assembly": dict(methods={"dbp": method([0.2, 0.6]), "mse": method([0.4, 0.2])}),
               "mw-push": dict(methods={"dbp": method([1.0, 1.0]), "mse": method([1.0, 0.8])}),
               "mw-shelf-place": dict(methods={"dbp": method([0.0, 0.1])})}
    cfg = bench.parse(["--suite", "metaworld", "--checkpoints", "10,20"])
    groups = bench.group_summary(cfg, results)
    assert set(groups["hard"]) == {"dbp", "mse"} and set(groups["very hard"]) == set(groups["all"]) == {"dbp"}
    hard = groups["hard"]
    assert hard["dbp"]["20"]["mean"] == pytest.approx(0.8) and hard["mse"]["best"]["mean"] == pytest.approx(0.7)
    assert hard["dbp"]["20"]["n_success"] == 240 and hard["dbp"]["20"]["n_episodes"] == 300
    assert "| hard (2) | DBP | 0.60 [" in bench_report.group_table(groups, cfg.steps)
