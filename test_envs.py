"""Tests of envs.py: the gymnasium API of every task (state and pixels), the scripted experts, seeding,
the chunk env and its replay, demo files and their cache, and evaluation.

    python -m pytest -q test_envs.py        # under a minute on 2 CPU cores
"""
import os

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs


# ----------------------------------------------------------------------------- envs
TASKS = sorted(envs.TASKS)


@pytest.mark.parametrize("task", TASKS)
def test_env_api_passes_gymnasium_checker(task):
    env = envs.make_env(task)
    check_env(env.unwrapped, skip_render_check=True)
    u = env.unwrapped
    obs, info = env.reset(seed=0)
    assert obs.shape == (len(u.obs_names),) and obs.dtype == np.float32
    assert env.action_space.shape == (4 * u.n_arms,)
    assert info["success"] is False and info["mode"] == -1
    assert len(u.arm_state()) == u.n_arms and u.arm_state()[0]["joint_pos"].shape == (7,)
    env.close()


def test_an_env_that_draws_nothing_loads_no_visual_meshes_and_steps_exactly_as_one_that_draws():
    import pybullet
    plain, drawn = envs.make_env("bimanual").unwrapped, envs.make_env("bimanual", render_mode="rgb_array").unwrapped
    def meshes(env):  # the folders of the arm's meshes that would be drawn
        return {os.path.basename(os.path.dirname(d[4])) for d in pybullet.getVisualShapeData(env.arms[0].body,
                                                                                          physicsClientId=env.cid) if d[4]}
    assert meshes(plain) == {b"collision"} and b"visual" in meshes(drawn)   # the visual meshes: most of its memory
    a, b = envs.expert_episode(plain, 3), envs.expert_episode(drawn, 3)
    assert a[2]["success"] and np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])     # states, actions
    assert drawn.render().std() > 5


@pytest.mark.parametrize("task", TASKS)
def test_pixel_env_passes_gymnasium_checker_and_hides_the_object_state(task):
    env = envs.make_env(task, obs_mode="pixels")
    check_env(env.unwrapped, skip_render_check=True)
    u = env.unwrapped
    obs, _ = env.reset(seed=0)
    H, W = u.cfg.camera_hw
    assert obs["image"].shape == (len(u.CAMERAS), 3, H, W) and obs["image"].dtype == np.uint8
    assert np.array_equal(obs["agent_pos"], u.state()[:4 * u.n_arms])          # the arms' own pose, nothing else
    assert obs["image"].std() > 5                                                # a scene, not a blank frame
    state = envs.make_env(task)
    assert np.array_equal(state.reset(seed=0)[0], u.state())                     # the same world in both modes
    before = obs["image"]
    for _ in range(3):
        obs, *_ = env.step(env.action_space.sample())
    assert not np.array_equal(before, obs["image"])                              # the arm moved: the image follows
    chunked = envs.make_chunk_env(task, 2, 2, obs_mode="pixels")
    o, _ = chunked.reset(seed=1)
    assert chunked.observation_space.contains(o) and o["image"].shape == (2, len(u.CAMERAS), 3, H, W)
    o, *_ = chunked.step(np.stack([env.action_space.sample()] * 2))
    assert chunked.observation_space.contains(o)
    for e in (env, state, chunked):
        e.close()
    with pytest.raises(ValueError, match="obs_mode"):
        envs.make_env(task, obs_mode="depth")


@pytest.mark.parametrize("task", TASKS)
def test_scripted_expert_succeeds(task):
    env = envs.make_env(task)
    success = [envs.expert_episode(env, envs.eval_seed(0, i))[2]["success"] for i in range(20)]
    env.close()
    assert np.mean(success) >= 0.95


@pytest.mark.parametrize("task", TASKS)
def test_seeded_reset_and_actions_are_repeatable(task):
    env = envs.make_env(task)
    rng = np.random.default_rng(0)
    actions = [env.action_space.low + rng.random(env.action_space.shape) * (env.action_space.high - env.action_space.low)
               for _ in range(10)]
    o1, _ = env.reset(seed=3)
    t1 = [env.step(a)[0] for a in actions]
    env.reset(seed=99)
    for a in actions[:5]:
        env.step(a)
    o2, _ = env.reset(seed=3)
    t2 = [env.step(a)[0] for a in actions]
    env.close()
    assert np.array_equal(o1, o2) and all(np.array_equal(a, b) for a, b in zip(t1, t2))


def test_render_returns_an_rgb_image():
    env = envs.make_env("push", render_mode="rgb_array")
    env.reset(seed=0)
    img = env.render()
    env.close()
    assert img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3


def test_scene_pose_mirrors_a_scene_to_the_same_image():
    a, b = (envs.make_env("bimanual", obs_mode="pixels").unwrapped for _ in range(2))
    a.reset(seed=3)
    b.reset(seed=4)
    for _ in range(5):
        a.step(a.action_space.sample())
    assert not np.array_equal(a.camera_images(), b.camera_images())
    b.set_scene_pose(a.scene_pose())
    assert np.array_equal(a.camera_images(), b.camera_images())


@pytest.mark.parametrize("task, worst", [("push", -0.45), ("lift", -0.9), ("bimanual", -0.9)])
def test_a_lost_object_costs_a_bounded_reward(task, worst):
    import pybullet as p
    env = envs.make_env(task)
    env.reset(seed=0)
    u = env.unwrapped
    body = u.objects[0] if task != "push" else u.block
    p.resetBasePositionAndOrientation(body, [0.3, 0.5, -4.0], [0, 0, 0, 1], physicsClientId=u.cid)  # fell through
    reward = env.step(env.action_space.sample())[1]
    env.close()
    assert worst <= reward < -0.2, reward                                  # unbounded, it was below -4


def test_chunk_env_brings_an_episode_in_progress_back_in_a_fresh_env():
    rng = np.random.default_rng(0)
    a, b = envs.make_chunk_env("push", 2, 2), envs.make_chunk_env("push", 2, 2)
    chunks = rng.uniform(a.action_space.low, a.action_space.high, (70, 2, 4)).astype(np.float32)

    def play(env, chunks):
        out = []
        for chunk in chunks:
            obs, reward, terminated, truncated, _ = env.step(chunk)
            out.append((obs, reward))
            if terminated or truncated:
                out.append((env.reset()[0], None))                        # autoreset: the next episode's seed
        return out

    a.reset(seed=7)
    first = play(a, chunks[:40])                                          # one episode ended, the next is running
    state = a.replay_state()
    assert state["count"] == 1 and len(state["actions"]) == 20 and len(first) == 41
    obs, _ = b.reset(seed=7, options={"replay": {7: state}})
    assert np.array_equal(obs, first[-1][0])
    for (x, rx), (y, ry) in zip(play(a, chunks[40:]), play(b, chunks[40:])):   # and on, past the next reset
        assert np.array_equal(x, y) and rx == ry


def test_push_info_names_the_side_once_the_block_leaves_the_start_line():
    env = envs.make_env("push")
    for i in range(4):
        obs, info = env.reset(seed=envs.demo_seed(0, i))
        expert, seen, done = envs.make_expert(env, np.random.default_rng([i, 1])), [info], False
        while not done:
            obs, _, terminated, truncated, info = env.step(expert.act(obs))
            seen, done = seen + [info], terminated or truncated
        modes = [s["mode"] for s in seen]
        first = next(t for t, m in enumerate(modes) if m != -1)
        assert info["success"] and modes[-1] == expert.mode and set(modes[first:]) == {expert.mode}
        assert first < len(modes) - 1 and not any(s["success"] for s in seen[:first + 1])   # named before success


def test_push_experts_use_both_modes_and_averaging_them_fails():
    env = envs.make_env("push")
    u = env.unwrapped
    modes = [envs.expert_episode(env, envs.demo_seed(0, i))[2]["mode"] for i in range(20)]
    assert 5 <= sum(m == 0 for m in modes) <= 15 and all(m in (0, 1) for m in modes)
    (wall_x, wall_y), (wall_hx, wall_hy, _) = u.POCKET[1]           # a side wall of the pocket
    mouth_x, inner_y = wall_x - wall_hx, wall_y - wall_hy
    n_success, n_pocketed = 0, 0
    for i in range(10):
        experts = [envs.make_expert(env, np.random.default_rng(i)) for _ in range(3)]
        for mode, expert in enumerate(experts[:2]):
            expert.goal = u.GOALS[mode]
        experts[2].goal = np.array([1.0, 0.0])                      # the mean of the two routes: straight ahead
        for average in (lambda o: (experts[0].act(o) + experts[1].act(o)) / 2, experts[2].act):
            obs, _ = env.reset(seed=envs.eval_seed(0, i))
            done = False
            while not done:
                obs, _, terminated, truncated, info = env.step(average(obs))
                done = terminated or truncated
            n_success += info["success"]
        n_pocketed += obs[4] > mouth_x and abs(obs[5]) < inner_y   # the mean route ends in the pocket
    env.close()
    assert n_success == 0 and n_pocketed >= 8


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="known tasks"):
        envs.make_env("nope")


# ----------------------------------------------------------------------------- demo files
def test_pixel_demo_file_holds_images_and_windows_stack_them(tmp_path):
    path = envs.collect_demos("lift", 2, seed=0, cache_dir=str(tmp_path), progress=False, obs_mode="pixels")
    assert path.endswith("lift_n2_s0_pixels64x64.npz")
    d = envs.load_demos(path)
    T = len(d["obs"])
    assert d["image"].shape == (T, 1, 3, 64, 64) and d["image"].dtype == np.uint8 and d["agent_pos"].shape == (T, 4)
    state = envs.load_demos(envs.collect_demos("lift", 2, seed=0, cache_dir=str(tmp_path), progress=False))
    assert np.array_equal(state["actions"], d["actions"]) and "image" not in state      # same expert, same episodes
    obs, actions = envs.make_windows(d, 2, 8, obs_mode="pixels")
    assert obs["image"].shape == (T, 2, 1, 3, 64, 64) and obs["agent_pos"].shape == (T, 2, 4) and actions.shape == (T, 8, 4)
    assert np.array_equal(obs["image"][1, 1], d["image"][1]) and np.array_equal(obs["image"][0, 0], d["image"][0])
    np.savez(tmp_path / "bad.npz", **{k: v for k, v in d.items() if k != "image"}, image=d["image"][:-1])
    with pytest.raises(ValueError, match="image"):
        envs.load_demos(str(tmp_path / "bad.npz"))


def test_demo_file_round_trip_cache_and_validation(tmp_path):
    path = envs.collect_demos("push", 4, seed=0, cache_dir=str(tmp_path), progress=False)
    assert path.endswith("push_n4_s0.npz")
    d = envs.load_demos(path)
    assert d["obs"].shape[1] == 9 and d["actions"].shape[1] == 4
    assert d["episode_ends"][-1] == len(d["obs"]) and d["modes"].shape == (4,)
    mtime = os.path.getmtime(path)
    assert envs.collect_demos("DBPPush-v0", 4, seed=0, cache_dir=str(tmp_path)) == path
    assert os.path.getmtime(path) == mtime                                  # cached, not rewritten
    np.savez(tmp_path / "bad.npz", obs=np.zeros((3, 9), np.float32))
    with pytest.raises(ValueError, match="missing"):
        envs.load_demos(str(tmp_path / "bad.npz"))


def test_a_truncated_demo_cache_is_moved_aside_and_regenerated(tmp_path, capsys):
    path = envs.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False)
    good = envs.load_demos(path)
    data = open(path, "rb").read()
    open(path, "wb").write(data[:len(data) // 2])                      # a crash mid-write, say
    with pytest.raises(ValueError, match="unreadable"):
        envs.load_demos(path)
    assert envs.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False) == path
    said = capsys.readouterr().out.splitlines()
    assert len(said) == 1 and said[0].startswith("warning:") and "moved it to" in said[0], said
    assert os.path.exists(path + ".corrupt") and all(np.array_equal(good[k], envs.load_demos(path)[k]) for k in good)


def test_a_demo_cache_from_an_older_expert_is_regenerated(tmp_path, capsys):
    path = envs.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False)
    good = envs.load_demos(path)
    assert int(good["version"]) == envs.DEMO_VERSION
    np.savez(path, **{k: v for k, v in good.items() if k != "version"}, actions_old=good["actions"])  # version 1: none
    assert envs.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False) == path
    assert "older expert" in capsys.readouterr().out
    new = envs.load_demos(path)
    assert "actions_old" not in new and int(new["version"]) == envs.DEMO_VERSION
    assert all(np.array_equal(good[k], new[k]) for k in good)


def test_only_the_successful_episodes_of_a_demo_file_are_trained_on():
    demo = dict(obs=np.arange(10.0)[:, None], actions=np.arange(10.0)[:, None], stamps_s=np.arange(10.0),
                episode_ends=np.array([3, 7, 10]), modes=np.array([-1, -1, -1]), success=np.array([True, False, True]),
                seeds=np.array([5, 6, 7]), version=np.array(2))
    kept = envs.successful(demo)
    assert kept["obs"][:, 0].tolist() == [0, 1, 2, 7, 8, 9] and kept["episode_ends"].tolist() == [3, 6]
    assert kept["seeds"].tolist() == [5, 7] and kept["version"] == 2
    demo["success"][:] = False
    with pytest.raises(ValueError, match="no successful episode"):
        envs.successful(demo)


# ----------------------------------------------------------------------------- evaluate
class HoldPolicy:
    """Any object with predict_action, n_obs_steps and n_action_steps is a policy for envs.evaluate."""
    n_obs_steps, n_action_steps = 2, 3

    def __init__(self, delay_s=0.0):
        self.obs_shapes, self.delay_s = [], delay_s

    def predict_action(self, obs):
        self.obs_shapes.append(obs.shape)
        return np.tile([0.5, 0.0, 0.2, 0.0], (1, 8, 1)).astype(np.float32)     # (1, Th, Da)


def test_evaluate_reports_interval_and_modes():
    policy = HoldPolicy()
    r = envs.evaluate("push", policy, n_episodes=2, seed=0)
    assert set(policy.obs_shapes) == {(1, 2, 9)} and len(policy.obs_shapes) == 2 * 20  # 60 steps, Ta = 3
    assert r["n_success"] == 0 and r["success_rate"] == 0 and r["mode_fractions"] == {"left": 0.0, "right": 0.0}
    assert r["ci95"][0] == 0 and 0.5 < r["ci95"][1] < 0.9
    lo, hi = envs.wilson_interval(19, 20)
    assert 0.76 < lo < 0.77 and 0.99 < hi < 1.0
