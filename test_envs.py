"""Tests of envs.py: the gymnasium API of every task (state and pixels), the scripted experts, seeding and
rewards.

    python -m pytest -q test_envs.py        # under a minute on 2 CPU cores
"""
import os

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

import envs
import rollouts


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
    chunked = rollouts.make_chunk_env(task, 2, 2, obs_mode="pixels")
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


@pytest.mark.parametrize("task", ["push", "lift"])
def test_without_termination_on_success_an_episode_runs_to_its_limit_and_its_success_sticks(task):
    ends, runs_on = envs.make_env(task), envs.make_env(task, terminate_on_success=False)
    seed = envs.eval_seed(0, 0)
    states, actions, info, _ = envs.expert_episode(ends, seed)
    assert info["success"] and len(actions) < 60                                     # the expert ends it early
    runs_on.reset(seed=seed)
    outcomes = [runs_on.step(a)[2:] for a in np.concatenate([actions, np.repeat(actions[-1:], 60, axis=0)])[:60]]
    assert [terminated for terminated, _, _ in outcomes] == [False] * 60 and outcomes[-1][1]   # truncated at 60
    successes = [info["success"] for _, _, info in outcomes]
    assert successes[len(actions) - 1] and all(successes[len(actions) - 1:])       # success at any step counts


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


def test_export_writes_the_scripted_demos_as_a_lerobot_dataset_that_reads_back_equal(tmp_path, monkeypatch, capsys):
    import dataset_io
    monkeypatch.chdir(tmp_path)
    envs.main(["--export", "ds", "--task", "lift", "--demos", "2"])
    assert "wrote 2 lift demos to ds (LeRobot v3)" in capsys.readouterr().out
    back, source = dataset_io.read_dataset(tmp_path / "ds"), envs.load_demos(str(tmp_path / "demos" / "lift_n2_s0.npz"))
    assert back["fps"] == 10 and all(np.array_equal(back[k], source[k]) for k in ("obs", "actions", "episode_ends"))
