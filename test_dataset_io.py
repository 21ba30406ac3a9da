"""Tests of dataset_io.py: a LeRobot v3 round trip (read back by us and by plain pyarrow), robomimic HDF5 and .npz
reading, crash safety of lerobot_writer.LeRobotWriter, and each kind of bad data raising one ValueError naming its file and key.

    python -m pytest -q test_dataset_io.py
"""
import json
import os
import re

import numpy as np
import pytest

import dataset_io
import lerobot_writer

CAM = dataset_io.CAMERA_KEY.format(0)


def make_demo(seed=0, lengths=(12, 7, 10), image_hw=(64, 64), agent_pos_dim=None):
    """A random demo dict; images of 8x8-pixel blocks of random colour (video keeps them within a few levels)."""
    rng, T = np.random.default_rng(seed), sum(lengths)
    demo = {"obs": rng.normal(size=(T, 5)).astype(np.float32), "actions": rng.uniform(-1, 1, (T, 3)).astype(np.float32),
            "episode_ends": np.cumsum(lengths), "modes": np.arange(len(lengths)) % 2}
    if image_hw:
        blocks = rng.integers(0, 256, (T, 1, 3, image_hw[0] // 8, image_hw[1] // 8), dtype=np.uint8)
        demo.update(image=blocks.repeat(8, axis=3).repeat(8, axis=4), agent_pos=demo["obs"][:, :agent_pos_dim])
    return demo


def make_robomimic(path, lengths=(6, 4, 5), mask=("demo_0", "demo_2"), bad=None):
    """A robomimic-layout HDF5 written with h5py directly: data/demo_i/{actions, obs/{eef_pos, gripper, cam_image}}."""
    import h5py
    rng, demos = np.random.default_rng(1), []
    with h5py.File(path, "w") as f:
        f.create_group("data").attrs["env_args"] = json.dumps({"env_kwargs": {"control_freq": 20}})
        for i, T in enumerate(lengths):
            d = {"actions": rng.normal(size=(T, 2)), "eef_pos": rng.normal(size=(T, 3)), "gripper": rng.normal(size=T),
                 "cam_image": rng.integers(0, 256, (T, 8, 8, 3), dtype=np.uint8)}
            if bad and i == 0:
                bad(d)
            f[f"data/demo_{i}/actions"] = d.pop("actions")
            for k, v in d.items():
                f[f"data/demo_{i}/obs/{k}"] = v
            demos.append(d)
        if mask:
            f["mask/train"] = np.array([m.encode() for m in mask])
    return demos


def test_lerobot_round_trip(tmp_path):
    demo = make_demo()
    lerobot_writer.write_lerobot(tmp_path / "ds", demo, fps=10)
    back = dataset_io.read_dataset(tmp_path / "ds", image_keys=[CAM])
    for key in ("obs", "actions", "agent_pos", "episode_ends", "modes"):
        np.testing.assert_array_equal(back[key], demo[key], err_msg=key)
    assert back["image"].shape == demo["image"].shape == (29, 1, 3, 64, 64) and back["image"].dtype == np.uint8
    assert np.abs(back["image"].astype(int) - demo["image"]).mean() < 8   # lossy video: a few levels of 255
    assert back["fps"] == 10 and back["source"]["format"] == "lerobot" and "success" not in back
    assert back["source"]["shapes"] == {"observation.state": [5], "action": [3], CAM: [3, 64, 64]}
    state = dataset_io.read_dataset(tmp_path / "ds")   # the same dataset without its camera
    assert "image" not in state and np.array_equal(state["obs"], demo["obs"])


def test_read_dataset_feeds_the_training_windows(tmp_path):
    import demonstrations
    lerobot_writer.write_lerobot(tmp_path / "ds", make_demo(image_hw=(16, 16)), fps=10)
    obs, actions = demonstrations.make_windows(dataset_io.read_dataset(tmp_path / "ds"), n_obs_steps=2, horizon=8)
    assert obs.shape == (29, 2, 5) and actions.shape == (29, 8, 3)
    pixels = dataset_io.read_dataset(tmp_path / "ds", image_keys=[CAM])
    obs, actions = demonstrations.make_windows(pixels, n_obs_steps=2, horizon=8, obs_mode="pixels")
    assert obs["image"].shape == (29, 2, 1, 3, 16, 16) and obs["agent_pos"].shape == (29, 2, 5)


def test_lerobot_pixel_demo_keeps_agent_pos_and_state(tmp_path):
    demo = make_demo(image_hw=(16, 16), agent_pos_dim=2)   # a sim's pixel demo: agent_pos is part of the state
    lerobot_writer.write_lerobot(tmp_path / "ds", demo, fps=10)
    back = dataset_io.read_dataset(tmp_path / "ds", image_keys=[CAM], obs_keys=[dataset_io.ENV_STATE_KEY])
    assert np.array_equal(back["obs"], demo["obs"]) and np.array_equal(back["agent_pos"], demo["agent_pos"])


def test_lerobot_files_read_by_plain_pyarrow(tmp_path):
    import pyarrow.parquet as pq
    demo, root = make_demo(), tmp_path / "ds"
    lerobot_writer.write_lerobot(root, demo, fps=10, task="push the block")
    data = pq.read_table(root / "data/chunk-000/file-000.parquet").to_pydict()
    episode = np.repeat(np.arange(3), np.diff(demo["episode_ends"], prepend=0))
    frame = np.arange(29) - np.concatenate([[0], demo["episode_ends"][:-1]])[episode]
    np.testing.assert_array_equal(np.array(data["observation.state"], np.float32), demo["obs"])
    np.testing.assert_array_equal(np.array(data["action"], np.float32), demo["actions"])
    assert data["episode_index"] == episode.tolist() and data["frame_index"] == frame.tolist()
    assert data["index"] == list(range(29)) and data["task_index"] == [0] * 29
    np.testing.assert_allclose(data["timestamp"], frame / 10, atol=1e-6)
    eps = pq.read_table(root / "meta/episodes/chunk-000/file-000.parquet").to_pydict()
    assert eps["length"] == [12, 7, 10] and eps["dataset_to_index"] == [12, 19, 29]
    assert eps["tasks"] == [["push the block"]] * 3
    np.testing.assert_allclose(eps[f"videos/{CAM}/from_timestamp"], [0.0, 1.2, 1.9])
    assert pq.read_table(root / "meta/tasks.parquet").to_pydict() == {"task_index": [0], "task": ["push the block"]}
    info = json.loads((root / "meta/info.json").read_text())
    assert (info["codebase_version"], info["total_episodes"], info["total_frames"], info["fps"]) == ("v3.0", 3, 29, 10)
    assert info["features"][CAM]["shape"] == [64, 64, 3] and info["features"]["action"]["shape"] == [3]
    stats = json.loads((root / "meta/stats.json").read_text())
    np.testing.assert_allclose(stats["observation.state"]["mean"], demo["obs"].mean(0), atol=1e-5)
    np.testing.assert_allclose(stats["observation.state"]["std"], demo["obs"].std(0), atol=1e-5)
    assert stats["action"]["count"] == [29] and np.array(stats[CAM]["mean"]).shape == (3, 1, 1)


def test_robomimic(tmp_path):
    demos = make_robomimic(tmp_path / "lift.hdf5")
    back = dataset_io.read_dataset(tmp_path / "lift.hdf5", obs_keys=["eef_pos", "gripper"], image_keys=["cam_image"])
    picked = [demos[0], demos[2]]   # mask/train
    np.testing.assert_allclose(back["obs"], np.concatenate([np.c_[d["eef_pos"], d["gripper"]] for d in picked]), 1e-6)
    images = np.concatenate([d["cam_image"] for d in picked]).transpose(0, 3, 1, 2)   # (T, H, W, 3) -> (T, 3, H, W)
    np.testing.assert_array_equal(back["image"][:, 0], images)
    assert back["episode_ends"].tolist() == [6, 11] and back["fps"] == 20 and back["actions"].shape == (11, 2)
    every = dataset_io.read_dataset(tmp_path / "lift.hdf5", obs_keys=["eef_pos"], split=None)
    assert every["episode_ends"].tolist() == [6, 10, 15] and every["modes"].tolist() == [-1] * 3


def test_npz_passes_through_and_converts(tmp_path):
    import envs
    demo = make_demo(image_hw=None) | {"success": np.array([True, False, True])}
    np.savez(tmp_path / "rec.npz", **demo)
    back = dataset_io.read_dataset(tmp_path / "rec.npz")
    for key, value in envs.load_demos(tmp_path / "rec.npz").items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
    assert back["fps"] is None and back["source"]["format"] == "npz"
    lerobot_writer.write_lerobot(tmp_path / "ds", back, fps=10)   # and on to LeRobot, success labels kept
    assert dataset_io.read_dataset(tmp_path / "ds")["success"].tolist() == [True, False, True]


def test_writer_killed_mid_episode_leaves_the_episodes_before(tmp_path, monkeypatch):
    import pyarrow.parquet as pq
    demo, root = make_demo(image_hw=(16, 16)), tmp_path / "ds"
    eps = np.split(np.arange(29), demo["episode_ends"][:-1])
    writer = lerobot_writer.LeRobotWriter(root, 10, 5, 3, image_shape=(1, 3, 16, 16))
    for i in (0, 1):
        writer.add_episode(demo["obs"][eps[i]], demo["actions"][eps[i]], demo["image"][eps[i]])
    replace = os.replace

    def killed_before_info(tmp, path):   # the video, data and episodes files are in place; info.json never comes
        if str(path).endswith("info.json"):
            raise KeyboardInterrupt
        replace(tmp, path)
    monkeypatch.setattr(lerobot_writer.os, "replace", killed_before_info)
    with pytest.raises(KeyboardInterrupt):
        writer.add_episode(demo["obs"][eps[2]], demo["actions"][eps[2]], demo["image"][eps[2]])
    monkeypatch.undo()
    (root / "data/chunk-000/file-000.parquet.tmp").write_bytes(b"half a file")   # as a kill mid-write leaves
    assert len(pq.read_table(root / "data/chunk-000/file-000.parquet")) == 29   # the killed episode's rows are there
    back = dataset_io.read_dataset(root, image_keys=[CAM])
    assert back["episode_ends"].tolist() == [12, 19] and np.array_equal(back["obs"], demo["obs"][:19])
    writer = lerobot_writer.LeRobotWriter(root, 10, 5, 3, image_shape=(1, 3, 16, 16))   # reopening drops them
    assert len(pq.read_table(root / "data/chunk-000/file-000.parquet")) == 19
    assert not list(root.glob("**/*.tmp"))
    writer.add_episode(demo["obs"][eps[2]], demo["actions"][eps[2]], demo["image"][eps[2]])
    back = dataset_io.read_dataset(root, image_keys=[CAM])
    assert back["episode_ends"].tolist() == [12, 19, 29] and np.array_equal(back["actions"], demo["actions"])
    assert np.abs(back["image"].astype(int) - demo["image"]).mean() < 8


def test_writer_rejects_bad_arguments(tmp_path):
    writer = lerobot_writer.LeRobotWriter(tmp_path / "ds", 10, 5, 3)
    with pytest.raises(ValueError, match="actions must be"):
        writer.add_episode(np.zeros((4, 5)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="states holds NaN"):
        writer.add_episode(np.full((4, 5), np.nan), np.zeros((4, 3)))
    with pytest.raises(ValueError, match="images must be none"):
        writer.add_episode(np.zeros((4, 5)), np.zeros((4, 3)), images=np.zeros((4, 1, 3, 8, 8), np.uint8))
    with pytest.raises(ValueError, match="fps must be"):
        lerobot_writer.LeRobotWriter(tmp_path / "other", 7.5, 5, 3)


# ----------------------------------------------------------------------------- bad data: a ValueError naming file, key
def lerobot(tmp_path):
    return lerobot_writer.write_lerobot(tmp_path / "ds", make_demo(image_hw=(16, 16)), fps=10)


def rewrite_data(root, state_row=None, value=None, n_rows=None):
    """The data file rewritten by pyarrow: observation.state[state_row] = value, only its first n_rows rows."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    path = root / "data/chunk-000/file-000.parquet"
    table = pq.read_table(path)
    state = np.array(table["observation.state"].to_pylist(), np.float32)
    if state_row is not None:
        state[state_row] = value
    column = pa.FixedSizeListArray.from_arrays(pa.array(state.ravel()), state.shape[1])
    pq.write_table(table.set_column(0, "observation.state", column).slice(0, n_rows), path)
    return path


def truncate(path):
    with open(path, "r+b") as f:
        f.truncate(os.path.getsize(path) // 2)
    return path


def case_not_a_dataset(tmp_path):
    (tmp_path / "empty").mkdir()
    return dict(path=tmp_path / "empty"), rf"{tmp_path / 'empty'}: no meta/info\.json"


def case_missing_key(tmp_path):
    root = lerobot(tmp_path)
    return dict(path=root, image_keys=["observation.images.top"]), \
        rf"{root / 'meta/info.json'}: no feature 'observation\.images\.top'; the features are .*'observation\.state'"


def case_empty_episode(tmp_path):
    make_robomimic(tmp_path / "r.hdf5", lengths=(6, 0, 5), mask=None)
    return dict(path=tmp_path / "r.hdf5", obs_keys=["eef_pos"]), rf"{tmp_path / 'r.hdf5'} data/demo_1: 0 steps"


def case_shorter_than_horizon(tmp_path):
    root = lerobot(tmp_path)
    where = rf"{root / 'meta/episodes/chunk-000/file-000.parquet'} episode_index 1"
    return dict(path=root, min_length=8), rf"{where}: 7 steps, fewer than min_length=8"


def case_nan_action(tmp_path):
    make_robomimic(tmp_path / "r.hdf5", bad=lambda d: d["actions"].__setitem__((2, 1), np.nan))
    return dict(path=tmp_path / "r.hdf5", obs_keys=["eef_pos"]), \
        rf"{tmp_path / 'r.hdf5'}: 'data/demo_0/actions' holds NaN"


def case_inf_state(tmp_path):
    path = rewrite_data(lerobot(tmp_path), state_row=(3, 1), value=np.inf)
    return dict(path=tmp_path / "ds"), rf"{path}: 'observation\.state' holds NaN or inf \(first in row 3\)"


def case_nan_npz_state(tmp_path):
    demo = make_demo(image_hw=None)
    demo["obs"][5, 0] = np.nan
    np.savez(tmp_path / "d.npz", **demo)
    return dict(path=tmp_path / "d.npz"), rf"{tmp_path / 'd.npz'}: 'obs' holds NaN"


def case_lengths_disagree_hdf5(tmp_path):
    make_robomimic(tmp_path / "r.hdf5", bad=lambda d: d.__setitem__("eef_pos", d["eef_pos"][:-1]))
    return dict(path=tmp_path / "r.hdf5", obs_keys=["eef_pos"]), \
        rf"{tmp_path / 'r.hdf5'}: data/demo_0/obs/eef_pos has 5 steps, data/demo_0/actions 6"


def case_lengths_disagree_parquet(tmp_path):
    path = rewrite_data(lerobot(tmp_path), n_rows=28)   # the last frame's row lost
    return dict(path=tmp_path / "ds"), rf"{path}: 'index' has 9 rows of episode_index 2, whose 'length' .* is 10"


def case_truncated_parquet(tmp_path):
    path = truncate(lerobot(tmp_path) / "data/chunk-000/file-000.parquet")
    return dict(path=tmp_path / "ds"), rf"{path}: unreadable parquet"


def case_truncated_hdf5(tmp_path):
    make_robomimic(tmp_path / "r.hdf5")
    return dict(path=truncate(tmp_path / "r.hdf5"), obs_keys=["eef_pos"]), rf"{tmp_path / 'r.hdf5'}: unreadable HDF5"


def case_truncated_mp4(tmp_path):
    path = truncate(lerobot(tmp_path) / f"videos/{CAM}/chunk-000/file-000.mp4")
    return dict(path=tmp_path / "ds", image_keys=[CAM]), rf"{path}: '{CAM}' video unreadable"


def case_action_dim(tmp_path):
    return dict(path=lerobot(tmp_path), action_dim=4), rf"{tmp_path / 'ds'}: 'action' has dimension 3; action_dim=4"


CASES = {name[5:]: case for name, case in globals().items() if name.startswith("case_")}


@pytest.mark.parametrize("case", sorted(CASES))
def test_bad_data_raises_one_value_error_naming_file_and_key(tmp_path, case):
    kwargs, message = CASES[case](tmp_path)
    with pytest.raises(ValueError, match=message.replace(str(tmp_path), re.escape(str(tmp_path)))) as e:
        dataset_io.read_dataset(**kwargs)
    assert "\n" not in str(e.value)
