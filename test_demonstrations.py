"""Tests of demonstrations.py: the expert's demo files (state and pixels) and their cache, their windows, and the
successful episodes of a recorded file.

    python -m pytest -q test_demonstrations.py      # under a minute on 2 CPU cores
"""
import os

import numpy as np
import pytest

import demonstrations
import envs


def test_pixel_demo_file_holds_images_and_windows_stack_them(tmp_path):
    path = demonstrations.collect_demos("lift", 2, seed=0, cache_dir=str(tmp_path), progress=False, obs_mode="pixels")
    assert path.endswith("lift_n2_s0_pixels64x64.npz")
    d = envs.load_demos(path)
    T = len(d["obs"])
    assert d["image"].shape == (T, 1, 3, 64, 64) and d["image"].dtype == np.uint8 and d["agent_pos"].shape == (T, 4)
    state = envs.load_demos(demonstrations.collect_demos("lift", 2, seed=0, cache_dir=str(tmp_path), progress=False))
    assert np.array_equal(state["actions"], d["actions"]) and "image" not in state      # same expert, same episodes
    obs, actions = demonstrations.make_windows(d, 2, 8, obs_mode="pixels")
    assert obs["image"].shape == (T, 2, 1, 3, 64, 64) and obs["agent_pos"].shape == (T, 2, 4) and actions.shape == (T, 8, 4)
    assert np.array_equal(obs["image"][1, 1], d["image"][1]) and np.array_equal(obs["image"][0, 0], d["image"][0])
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in d.items() if k != "image"}, image=d["image"][:-1])
    with pytest.raises(ValueError, match="image"):
        envs.load_demos(str(tmp_path / "bad.npz"))


def test_demo_file_round_trip_cache_and_validation(tmp_path):
    path = demonstrations.collect_demos("push", 4, seed=0, cache_dir=str(tmp_path), progress=False)
    assert path.endswith("push_n4_s0.npz")
    d = envs.load_demos(path)
    assert d["obs"].shape[1] == 9 and d["actions"].shape[1] == 4
    assert d["episode_ends"][-1] == len(d["obs"]) and d["modes"].shape == (4,)
    mtime = os.path.getmtime(path)
    assert demonstrations.collect_demos("DBPPush-v0", 4, seed=0, cache_dir=str(tmp_path)) == path
    assert os.path.getmtime(path) == mtime                                  # cached, not rewritten
    np.savez(tmp_path / "bad.npz", obs=np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match="missing"):
        envs.load_demos(str(tmp_path / "bad.npz"))


def test_a_truncated_demo_cache_is_moved_aside_and_regenerated(tmp_path, capsys):
    path = demonstrations.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False)
    good = envs.load_demos(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])                      # a crash mid-write, say
    with pytest.raises(ValueError, match="unreadable"):
        envs.load_demos(path)
    assert demonstrations.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False) == path
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("warning:") and "moved it to" in said[0], said
    assert os.path.exists(path + ".corrupt") and all(np.array_equal(good[k], envs.load_demos(path)[k]) for k in good)


def test_a_demo_cache_from_an_older_expert_is_regenerated(tmp_path, capsys):
    path = demonstrations.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False)
    good = envs.load_demos(path)
    assert int(good["version"]) == envs.DEMO_VERSION
    np.savez(path, **{k: v for k, v in good.items() if k != "version"}, actions_old=good["actions"])  # version 1: none
    assert demonstrations.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False) == path
    assert "older expert" in capsys.readouterr().out
    new = envs.load_demos(path)
    assert "actions_old" not in new and int(new["version"]) == envs.DEMO_VERSION
    assert all(np.array_equal(good[k], new[k]) for k in good)


def test_only_the_successful_episodes_of_a_demo_file_are_trained_on():
    demo = dict(obs=np.arange(10.0)[:, None], actions=np.arange(10.0)[:, None], stamps_s=np.arange(10.0),
                episode_ends=np.array([3, 7, 10]), modes=np.array([-1, -1, -1]), success=np.array([True, False, True]),
                seeds=np.array([5, 6, 7]), version=np.array(2))
    kept = demonstrations.successful(demo)
    assert kept["obs"][:, 0].tolist() == [0, 1, 2, 7, 8, 9] and kept["episode_ends"].tolist() == [3, 6]
    assert kept["seeds"].tolist() == [5, 7] and kept["version"] == 2
    demo["success"][:] = False
    with pytest.raises(ValueError, match="no successful episode"):
        demonstrations.successful(demo)
