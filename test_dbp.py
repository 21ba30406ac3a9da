"""Test suite: drift-loss properties, small real learning checks, envs, checkpoints, CLI, robot loop, bench.

    python -m pytest -q test_dbp.py        # a few minutes on 2 CPU cores
"""
import csv
import dataclasses
import json
import math
import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import baselines
import bench
import dbp
import dbpo
import envs
import robot
import robot_io
import train

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- drift loss
def test_drift_loss_shape_finite_and_gradient_only_through_gen():
    gen = torch.randn(8, 4, 6, requires_grad=True)
    pos = torch.randn(8, 3, 6, requires_grad=True)
    w = torch.rand(8, 3, requires_grad=True)
    loss, _ = dbp.drift_loss(gen, pos, w)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    assert pos.grad is None and w.grad is None  # the target is stop-gradient


def test_drift_field_vanishes_between_symmetric_positives_and_points_to_the_nearer():
    pos = torch.tensor([[[1.0, 0.5], [-1.0, -0.5]]])                  # (B=1, K=2, L=2)
    gen = torch.zeros(1, 1, 2, requires_grad=True)                      # on the midpoint
    loss, _ = dbp.drift_loss(gen, pos)
    loss.backward()
    assert loss.item() == 0.0 and gen.grad.abs().max() == 0.0
    gen = torch.tensor([[[0.2, 0.1]]], requires_grad=True)              # nearer to +pos
    dbp.drift_loss(gen, pos)[0].backward()
    assert (gen.grad < 0).all()  # descending the loss moves x toward the nearer positive


def test_drift_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, G, L\)"):
        dbp.drift_loss(torch.randn(4, 6), torch.randn(4, 2, 6))
    with pytest.raises(ValueError, match="pos_weights"):
        dbp.drift_loss(torch.randn(4, 2, 6), torch.randn(4, 3, 6), torch.ones(4, 2))


def test_neighbor_positives_weights_self_first_and_far_neighbours_down():
    data = torch.tensor([[0.0], [0.01], [0.02], [1.0]]).reshape(4, 1, 1)      # (N, To, Do)
    acts = torch.arange(4.0).reshape(4, 1, 1)                                 # (N, Th, Da)
    pos, w = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=0.02)
    assert pos.shape == (4, 4, 1, 1) and w.shape == (4, 4)
    assert torch.equal(pos[:, 0], acts) and torch.all(w[:, 0] == 1)        # own chunk, full weight
    assert w[0, 1] > 0.8 and w[0, 3] < 1e-6                                  # near ~1, far ~0
    _, w_plain = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=math.inf)
    assert torch.all(w_plain == 1)


# ----------------------------------------------------------------------------- learning toys
def _train_toy(obs, actions, mode, steps, k=16):
    """mode: 'k1' (paper), 'knn' (unweighted), 'weighted' (our default) or 'mse' (regression)."""
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(horizon=1, n_obs_steps=1, n_action_steps=1, hidden_dim=64, n_blocks=2, k=k,
                        bandwidth=math.inf if mode == "knn" else 0.02)
    policy = dbp.DBPPolicy(obs_dim=1, action_dim=1, cfg=cfg)
    policy.normalizer.fit(obs, actions)
    nobs = policy.normalizer.normalize_obs(obs)
    pos = w = None
    if mode in ("knn", "weighted"):
        pos, w = policy.positives(obs, actions)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(obs), (64,))
        if mode == "mse":  # plain regression of the chunk: the same network fed z = 0
            pred = policy.net(torch.zeros(64, 1), nobs[i].reshape(64, 1))
            loss = torch.nn.functional.mse_loss(pred, policy.normalizer.normalize_actions(actions[i]).reshape(64, 1))
        else:
            loss, _ = policy.compute_loss(obs[i], actions[i], None if pos is None else pos[i], None if w is None else w[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy


def test_bimodal_toy_neighbor_positives_keep_both_modes_and_regression_averages():
    torch.manual_seed(0)
    obs = torch.rand(1000, 1, 1) * 2 - 1                               # (N, To, Do)
    actions = torch.randint(0, 2, (1000, 1, 1)) * 1.6 - 0.8            # +-0.8, independent of obs
    q = torch.rand(2000, 1, 1) * 2 - 1
    a = _train_toy(obs, actions, "weighted", 300).predict_action(q).flatten()
    up, down, middle = (a > 0.4).float().mean(), (a < -0.4).float().mean(), (a.abs() < 0.4).float().mean()
    assert up > 0.35 and down > 0.35 and middle < 0.1, (up, down, middle)
    policy = _train_toy(obs, actions, "mse", 300)
    nq = policy.normalizer.normalize_obs(q).reshape(-1, 1)
    a_mse = policy.normalizer.unnormalize_actions(policy.net(torch.zeros(len(q), 1), nq).reshape(-1, 1, 1)).flatten()
    assert (a_mse.abs() < 0.4).float().mean() > 0.9                    # regression sits in the empty middle


def test_sparse_unimodal_toy_weighting_keeps_the_precision_plain_knn_loses():
    torch.manual_seed(0)
    obs = torch.rand(64, 1, 1) * 2 - 1                                 # sparse: 64 samples
    actions = 0.8 * torch.sin(3 * obs)                                 # precise, unimodal
    q = obs.repeat(8, 1, 1)

    def error(mode):
        return (_train_toy(obs, actions, mode, 600).predict_action(q) - 0.8 * torch.sin(3 * q)).abs().mean().item()

    weighted, plain = error("weighted"), error("knn")
    assert weighted < 0.6 * plain, (weighted, plain)


# ----------------------------------------------------------------------------- policy API
def _tiny_policy(**kw):
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(horizon=4, n_obs_steps=2, n_action_steps=3, hidden_dim=32, n_blocks=1, **kw)
    policy = dbp.DBPPolicy(obs_dim=3, action_dim=2, cfg=cfg)
    policy.normalizer.fit(torch.rand(50, 2, 3) * 5, torch.rand(50, 4, 2) - 3)
    return policy


def test_predict_action_is_one_network_evaluation_and_unnormalized():
    policy = _tiny_policy()
    calls = []
    policy.net.register_forward_hook(lambda *_: calls.append(1))
    a = policy.predict_action(np.random.rand(5, 2, 3).astype(np.float32))
    assert isinstance(a, np.ndarray) and a.shape == (5, 4, 2) and len(calls) == 1
    z = torch.randn(5, 4, 2)
    obs = torch.rand(5, 2, 3)
    assert torch.equal(policy.predict_action(obs, z), policy.predict_action(obs, z))   # z fixes the action
    assert policy.predict_action(obs).mean() < -1.5                                     # in raw action units


@pytest.mark.parametrize("call, match", [
    (lambda p: p.predict_action(torch.rand(5, 3)), r"obs must be shaped \(B, 2, 3\)"),
    (lambda p: p.predict_action(torch.full((1, 2, 3), float("nan"))), "NaN"),
    (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 5, 2)), r"actions must be shaped \(4, 4, 2\)"),
    (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2), torch.rand(4, 3, 4, 2), torch.rand(4, 2)),
     "pos_weights"),
    (lambda p: p.normalizer.fit(torch.rand(10, 2, 4), torch.rand(10, 4, 2)), "last dim 3"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_tiny_policy())


def _pixel_policy(seed=0):
    """A small pixel DBPPolicy (V = 1 camera of 3 x 32 x 32, agent_pos Do = 4, To = 2, Th = 4, Da = 2), normalizer fit."""
    torch.manual_seed(seed)
    cfg = dbp.DBPConfig(obs="pixels", horizon=4, n_obs_steps=2, n_action_steps=2, hidden_dim=32, n_blocks=1, crop=28,
                        encoder_channels=8, image_features=8)
    policy = dbp.DBPPolicy(4, 2, cfg, image_shape=(1, 3, 32, 32))
    policy.normalizer.fit(torch.rand(50, 2, 4), torch.rand(50, 4, 2))
    return policy


def _pixel_obs(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randint(0, 256, (B, 2, 1, 3, 32, 32), dtype=torch.uint8, generator=g),
            "agent_pos": torch.rand(B, 2, 4, generator=g)}


def test_pixel_policy_trains_round_trips_and_refuses_the_other_kind_of_obs(tmp_path):
    policy, obs = _pixel_policy(), _pixel_obs(8)
    loss, _ = policy.compute_loss(obs, torch.rand(8, 4, 2))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.encoder.parameters())  # pixels are used
    # random crops in training, the centre crop in evaluation: the condition varies only in training
    assert not torch.equal(policy.condition(obs), policy.condition(obs))
    policy.eval()
    assert torch.equal(policy.condition(obs), policy.condition(obs))
    z = torch.randn(8, 4, 2)
    chunk = policy.predict_action({k: v.numpy() for k, v in obs.items()}, z.numpy())
    assert isinstance(chunk, np.ndarray) and chunk.shape == (8, 4, 2)
    dbp.save_checkpoint(str(tmp_path / "px.pt"), policy, task="lift")
    loaded = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "px.pt"))
    assert loaded.obs_mode == "pixels" and loaded.image_shape == (1, 3, 32, 32)
    assert torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))
    with pytest.raises(ValueError, match="trained on pixels"):
        loaded.predict_action(torch.rand(1, 2, 4))
    with pytest.raises(ValueError, match="uint8 of shape"):
        loaded.predict_action({"image": obs["image"][:, :, :, :, :30], "agent_pos": obs["agent_pos"]})
    with pytest.raises(ValueError, match="trained on state"):
        _tiny_policy().predict_action({k: v[:1] for k, v in obs.items()})
    with pytest.raises(ValueError, match="NumpyPolicy mirrors the state network"):
        dbp.NumpyPolicy(policy)
    with pytest.raises(dbp.ConfigError, match="k = 4: must be 1 with obs 'pixels'"):
        dbp.DBPConfig(obs="pixels", k=4)


def test_a_checkpoint_from_before_pixels_loads_as_a_state_policy(tmp_path):
    policy = _tiny_policy()
    ckpt = {"format": dbp.CKPT_FORMAT, "state_dict": policy.state_dict(),
            "config": {k: v for k, v in policy.config.items() if k not in dbp.PIXEL_FIELDS + ("image_shape",)}}
    loaded = dbp.DBPPolicy.from_checkpoint(ckpt)
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    assert loaded.obs_mode == "state" and torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))


def test_checkpoint_round_trip_and_mismatch_errors(tmp_path):
    policy = _tiny_policy()
    path = str(tmp_path / "ckpt.pt")
    dbp.save_checkpoint(path, policy, step=7)
    loaded = dbp.DBPPolicy.from_checkpoint(path, expect={"obs_dim": 3, "action_dim": 2})
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    assert torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))
    with pytest.raises(ValueError, match="'obs_dim' is 3, expected 9"):
        dbp.DBPPolicy.from_checkpoint(path, expect={"obs_dim": 9})
    ckpt = dbp.load_checkpoint(path)
    ckpt["config"]["hidden_dim"] = 64                                   # config no longer fits weights
    with pytest.raises(ValueError, match="do not match"):
        dbp.DBPPolicy.from_checkpoint(ckpt)
    for config, message in ((dict(ckpt["config"], extra=1), "unknown field 'extra'"),
                            ({k: v for k, v in ckpt["config"].items() if k != "k"}, "lacks field 'k'"),
                            (dict(ckpt["config"], horizon=0), "horizon = 0: must be >= 1")):
        with pytest.raises(ValueError, match=message):                  # strict: each field named
            dbp.DBPPolicy.from_checkpoint(dict(ckpt, config=config))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        dbp.load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format"):
        dbp.load_checkpoint(str(tmp_path / "other.pt"))
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())  # atomic write left no temp file


def test_ema_tracks_the_model():
    policy = _tiny_policy()
    ema = dbp.EMA(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    for _ in range(200):
        ema.update(policy)
    gap = max((e - p).abs().max().item() for e, p in zip(ema.model.parameters(), policy.parameters()))
    assert 0 < gap < 0.3


def test_dbp_py_alone_in_an_empty_folder_learns_a_bimodal_distribution(tmp_path):
    """Copied alone, dbp.py runs its demo: a conditional bimodal toy learned without averaging."""
    (tmp_path / "dbp.py").write_text(open(os.path.join(HERE, "dbp.py")).read())
    out = subprocess.run([sys.executable, "dbp.py"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stderr
    up, down, middle = map(float, re.search(r"([\d.]+) of samples near \+0.8, ([\d.]+) near -0.8, ([\d.]+) in the empty middle",
                                            out.stdout).groups())
    assert up > 0.35 and down > 0.35 and middle < 0.1, out.stdout


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


def test_unknown_task_is_a_clear_error():
    with pytest.raises(ValueError, match="known tasks"):
        envs.make_env("nope")


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


# ----------------------------------------------------------------------------- train.py
TINY = ["--demos", "5", "--steps", "2000", "--eval-every", "500", "--eval-episodes-periodic", "1",
        "--eval-episodes", "3", "--hidden-dim", "32", "--n-blocks", "1", "--batch-size", "16"]


def _train(tmp_path, *args, **kw):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--stage", "pretrain", *TINY,
           "--demo-dir", str(tmp_path / "demos"), *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def test_torchrun_two_processes_train_the_weights_of_one(tmp_path):
    """Two gloo processes, each on its half of every global batch, the drift loss's statistics all-reduced:
    after K steps the weights equal one process's on the whole batches, to float tolerance."""
    args = ["--stage", "pretrain", *TINY, "--steps", "25", "--warmup-steps", "5", "--eval-episodes", "1",
            "--demo-dir", str(tmp_path / "demos"), "--device", "cpu"]
    one = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), *args, "--out", "one"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(HERE, "train.py"), *args, "--out", "two"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2 processes" in two.stdout and two.stdout.count("success ") == 1       # rank 0 alone reports
    a, b = (dbp.load_checkpoint(str(tmp_path / d / "ckpt.pt")) for d in ("one", "two"))
    assert a["train"]["step"] == b["train"]["step"] == 25
    for key in ("model", "optimizer"):
        flat = lambda sd: [v for v in (sd["state"].values() if key == "optimizer" else [sd]) for v in v.values()
                           if torch.is_tensor(v) and v.is_floating_point()]
        pairs = list(zip(flat(a["train"][key]), flat(b["train"][key])))
        assert pairs and all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in pairs), key
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a["state_dict"].values(), b["state_dict"].values()))
    assert all(v["exp_avg"].abs().sum() > 0 for v in a["train"]["optimizer"]["state"].values())  # it did train
    odd = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(HERE, "train.py"), *args, "--batch-size", "15", "--out", "odd"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert odd.returncode != 0 and "error: --batch-size 15 must split evenly over the 2 processes" in odd.stderr


def test_torchrun_run_stops_together_on_a_signal_and_resumes(tmp_path):
    args = ["--stage", "pretrain", *TINY, "--steps", "1500", "--eval-every", "100000", "--eval-episodes", "1",
            "--save-every-s", "0.5", "--demo-dir", str(tmp_path / "demos"), "--device", "cpu", "--out", "r"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              os.path.join(HERE, "train.py"), *args]
    run = subprocess.Popen(launch, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    for _ in range(2400):                                  # wait for a first checkpoint (<= 120 s), then Ctrl-C
        if (tmp_path / "r" / "ckpt.pt").exists() or run.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)                      # as a terminal's Ctrl-C: torchrun and its workers
    out, err = run.communicate(timeout=300)
    stopped = dbp.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))["train"]["step"]
    assert 0 < stopped < 1500 and not (tmp_path / "r" / "eval.json").exists(), err[-2000:]
    assert (out + err).count("continue with: torchrun --nproc_per_node=2 train.py") == 1   # rank 0 says it
    resumed = subprocess.run(launch + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "r" / "log.csv")) if r["loss"]]
    assert steps == list(range(100, 1501, 100))                        # nothing lost, nothing repeated


def test_train_both_stages_from_pixels_run_end_to_end(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--stage", "pretrain", "--obs", "pixels",
                          "--task", "lift", "--demos", "2", "--steps", "6", "--warmup-steps", "2", "--batch-size", "8",
                          "--eval-episodes", "1", "--hidden-dim", "32", "--n-blocks", "1", "--encoder-channels", "8",
                          "--out", "px", "--demo-dir", str(tmp_path / "demos"), "--device", "cpu"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.load(open(tmp_path / "px" / "eval.json"))["n_episodes"] == 1
    policy = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "px" / "ckpt.pt"))
    assert policy.obs_mode == "pixels" and policy.image_shape == (1, 3, 64, 64) and policy.obs_dim == 4
    assert (tmp_path / "demos" / "lift_n2_s0_pixels64x64.npz").exists()
    # stage 2 from the pixel policy: its encoder frozen, the envs render, the checkpoint stays a pixel policy
    dbpo_run = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--stage", "dbpo", "--ckpt", "px/ckpt.pt",
                               "--iterations", "2", "--n-envs", "2", "--n-decisions", "4", "--eval-every", "1",
                               "--eval-episodes", "1", "--critic-warmup-iters", "1", "--minibatch-size", "4", "--out", "rl",
                               "--device", "cpu"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert dbpo_run.returncode == 0, dbpo_run.stderr[-3000:]
    tuned = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "rl" / "ckpt.pt"))
    assert tuned.obs_mode == "pixels"
    assert all(torch.equal(a, b) for a, b in zip(tuned.encoder.state_dict().values(), policy.encoder.state_dict().values()))


def _ctrl_c_once_saved(run, ckpt_path):
    """Ctrl-C a training subprocess once its first checkpoint exists: it must save and exit, hinting --resume."""
    deadline = time.time() + 120
    while not ckpt_path.exists() and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "--resume" in err, err


def gif_frames(path):
    """The frames of an animated GIF as (H, W, 3) uint8 arrays."""
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def test_train_pretrain_runs_and_a_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = _train(tmp_path, "--out", "a", "--video", "1")
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    result = json.load(open(tmp_path / "a" / "eval.json"))
    for key in ("success_rate", "ci95", "n_episodes", "mode_fractions", "train_seconds"):
        assert key in result
    assert result["n_episodes"] == 3 and set(result["mode_fractions"]) == {"left", "right"}
    (video,) = (tmp_path / "a" / "videos").iterdir()                  # --video 1: the first episode only
    assert re.fullmatch(r"push_seed0_(failure|success-(left|right))\.gif", video.name), video.name
    frames = gif_frames(video)                                        # one per env step, the reset included
    assert len(frames) > 1 and frames[0].shape == (240, 320, 3) and not np.array_equal(frames[0], frames[-1])
    assert open(tmp_path / "a" / "log.csv").readline().startswith("step,loss,lr,force_rms")

    # SIGKILL (no chance to save) after a checkpoint taken on the clock, not at eval_every. Ctrl-C,
    # which saves first, goes through the same Run plumbing: the DBPO test below sends it.
    killed, ckpt_path = _train(tmp_path, "--out", "c", "--save-every-s", "0.3"), tmp_path / "c" / "ckpt.pt"
    deadline = time.time() + 120
    while killed.poll() is None and time.time() < deadline:
        if ckpt_path.exists() and dbp.load_checkpoint(str(ckpt_path))["train"]["step"] % 500:
            killed.kill()
        time.sleep(0.02)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    resumed = _train(tmp_path, "--out", "c", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a, c = (dbp.load_checkpoint(str(tmp_path / d / "ckpt.pt")) for d in "ac")
    assert all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])
    assert json.load(open(tmp_path / "c" / "eval.json"))["success_rate"] == result["success_rate"]
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "c" / "log.csv")) if r["loss"]]
    assert steps == list(range(100, 2001, 100)), steps                  # each row once, none lost
    assert not (tmp_path / "c" / "videos").exists()                     # no --video, no rendering


def test_resumed_log_drops_rows_past_the_checkpoint_and_a_cut_line(tmp_path):
    (tmp_path / "log.csv").write_text("step,loss\n100,1\n200,2\n300,3\n40")   # killed mid-row
    log_file, log = train.open_log(str(tmp_path), ["step", "loss"], resume_at=200)
    log.writerow(dict(step=300, loss=9))
    log_file.close()
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step,loss", "100,1", "200,2", "300,9"]


@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "known tasks"),
    (["--stepz", "5"], "unrecognized arguments"),
    (["--steps", "ten"], "invalid int value"),
    (["--out", "missing", "--resume"], "no checkpoint"),
    (["--steps", "-5"], "error: --steps -5: must be >= 1"),
])
def test_train_cli_errors_are_clear(tmp_path, args, message):
    run = _train(tmp_path, *args)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and message in err and "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.strip() and not line.startswith("pybullet build time")]
    assert len(said) == 1, err                                          # one line, no usage dump


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "error: --steps -5: must be >= 1"),
    (["--demos", "0"], "error: --demos 0: must be >= 1"),
    (["--horizon", "1"], "error: --horizon 1: must be >= n_obs_steps - 1 + n_action_steps = 3"),
    (["--eval-episodes", "0"], "error: --eval-episodes 0: must be >= 1"),
    (["--bandwidth", "nan"], "error: --bandwidth nan: must be > 0.0 and <= inf"),
    (["--k", "100000"], "error: --k 100000: must be <= the"),
])
def test_bad_input_ends_in_one_line(tmp_path, args, message):
    with pytest.raises(SystemExit) as e:    # the command line prints the exit message alone (test_train_cli_errors_are_clear)
        train.main([*TINY, "--demo-dir", str(tmp_path / "demos"), "--out", str(tmp_path / "r"), *args])
    assert str(e.value.code).startswith(message) and "\n" not in str(e.value.code), e.value.code


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


# Every numeric flag of every entry point, given -1, nan or 0: a one-line refusal naming the flag,
# except where the value means something. Those are listed here, so a new flag without a range fails.
MEANINGFUL = {("seed", "0"), ("weight_decay", "0"), ("warmup_steps", "0"), ("critic_warmup_iters", "0"), ("lr_warmup_iters", "0"), ("lr_floor", "0"),
              ("ent_coef", "0"), ("anchor_coef", "0"), ("imitation_coef", "0"), ("gamma", "0"), ("gae_lambda", "0"), ("logprob_min", "-1"),
              ("joint_margin_rad", "0"), ("spin_s", "0"), ("rt_priority", "0"), ("rt_priority", "-1"), ("ur_gripper_pin", "0"),
              ("workspace_low_m", "0"), ("video", "0"), ("episodes", "0")}


@pytest.mark.parametrize("parse, cls", [
    (lambda a: train.parse(["--stage", "pretrain", *a]), train.PretrainConfig),
    (lambda a: train.parse(["--stage", "dbpo", *a]), train.DBPOStageConfig),
    (robot.parse, robot.RobotConfig),
    (bench.parse, bench.BenchConfig),
])
def test_every_numeric_flag_refuses_meaningless_values_in_one_line(parse, cls):
    accepted = set()
    for f in dataclasses.fields(cls):
        if f.type not in (int, float, tuple):
            continue
        flag = "--" + f.name.replace("_", "-")
        for value in ("-1", "nan", "0"):
            try:
                parse([flag, *[value] * (len(f.default) if f.type is tuple else 1)])
                accepted.add((f.name, value))
            except SystemExit as e:
                assert str(e.code).startswith(f"error: {flag} ") or str(e.code).startswith(f"error: argument {flag}")
                assert "\n" not in str(e.code), e.code
    assert accepted == {a for a in MEANINGFUL if a[0] in {f.name for f in dataclasses.fields(cls)}}, accepted


@pytest.mark.parametrize("parse", [lambda a: train.parse(["--stage", "pretrain", *a]),
                                   lambda a: train.parse(["--stage", "dbpo", *a]), robot.parse, bench.parse])
def test_device_flag_takes_what_this_machine_has_and_refuses_the_rest_in_one_line(parse):
    assert dbp.resolve_device("cpu") == torch.device("cpu")
    assert dbp.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = parse(["--device", "cpu"])
    assert (cfg[1] if isinstance(cfg, tuple) else cfg).device == "cpu"
    with pytest.raises(SystemExit, match="^error: --device tpu: must be auto, cpu, cuda, cuda:N or mps$"):
        parse(["--device", "tpu"])
    with pytest.raises(SystemExit, match="error: --device cuda:99: not available here"):  # no machine has 100 GPUs
        parse(["--device", "cuda:99"])


@pytest.mark.parametrize("stage, cls", [("pretrain", train.PretrainConfig), ("dbpo", train.DBPOStageConfig)])
def test_train_help_explains_every_flag_with_its_default_and_range(stage, cls, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--stage", stage, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--stage NAME --help" in out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert out.count("(default:") == sum(f.type is not bool for f in dataclasses.fields(cls))
    assert "15000; >= 1)" in out or stage == "dbpo"                            # --steps: default and range


# ----------------------------------------------------------------------------- robot.py
def _robot_state(**kw):
    """A healthy two-arm state at the homes, stamped now."""
    state = dict(stamp_s=0.0, joint_pos=np.zeros((2, 7)), ee_pos=np.array([[0.5, -0.15, 0.2], [0.5, 0.15, 0.2]]),
                 gripper=np.array([0.08, 0.08]), obs=np.zeros(14, np.float32))
    state.update(kw)
    return state


def _safety(**kw):
    cfg = robot.RobotConfig(**kw)
    return robot.Safety(cfg, 1.0 / cfg.hz, np.full((2, 7), -2.0), np.full((2, 7), 2.0))


def _target(xyz0=(0.5, -0.15, 0.2), xyz1=(0.5, 0.15, 0.2), g=(0.0, 0.0)):
    return np.array([[*xyz0, g[0]], [*xyz1, g[1]]])


# ----------------------------------------------------------------------------- safety layer
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_and_state_are_faults(bad):
    safety = _safety()
    target = _target()
    target[1, 2] = bad
    safe, fault = safety.filter(target)
    assert safe is None and "non-finite" in fault
    assert "non-finite" in safety.check_state(_robot_state(ee_pos=np.array([[0.5, 0.0, bad], [0.5, 0.1, 0.2]])), 0.0)
    assert "non-finite" in safety.check_state(_robot_state(obs=np.full(14, bad)), 0.0)
    assert safety.check_state(_robot_state(), 0.0) is None


def test_out_of_box_targets_are_clipped_into_the_workspace():
    safety = _safety()
    safe, fault = safety.filter(_target(xyz0=(2.0, -1.0, -0.5), xyz1=(0.0, 1.0, 3.0)))
    assert fault is None
    lo, hi = np.array(safety.box_lo), np.array(safety.box_hi)
    assert np.allclose(safe[0, :3], [hi[0], lo[1], lo[2]]) and np.allclose(safe[1, :3], [lo[0], hi[1], hi[2]])
    assert safety.clips["workspace"] == 1


def test_huge_steps_are_limited_per_tick_and_small_ones_pass():
    safety = _safety(hz=100.0, max_ee_speed_m_s=0.5)                  # 5 mm per tick
    start, _ = safety.filter(_target())
    safe, fault = safety.filter(_target(xyz0=(0.6, -0.15, 0.2), xyz1=(0.5, 0.15, 0.0)))  # 10 cm, 20 cm jumps
    assert fault is None
    assert np.allclose(np.linalg.norm(safe[:, :3] - start[:, :3], axis=1), 0.005)
    assert np.allclose(safe[0, :3], [0.505, -0.15, 0.2])                # along the commanded direction
    small = safe.copy()
    small[:, 0] += 0.001
    assert np.allclose(safety.filter(small)[0], small) and safety.clips["step"] == 1


def test_gripper_is_bounded():
    safe, fault = _safety().filter(_target(g=(1.7, -0.3)))
    assert fault is None and safe[0, 3] == 1.0 and safe[1, 3] == 0.0


def test_stale_state_and_joint_limits_are_faults():
    safety = _safety(state_timeout_s=0.05)
    assert safety.check_state(_robot_state(stamp_s=10.0), 10.04) is None
    assert "stale" in safety.check_state(_robot_state(stamp_s=10.0), 10.06)
    joints = np.zeros((2, 7))
    joints[1, 3] = 1.99                                                # 1 cm from the 2 rad limit
    assert "arm 1 joint 3" in safety.check_state(_robot_state(joint_pos=joints), 0.0)


def test_overrun_streak_is_a_fault_and_a_met_deadline_resets_it():
    safety = _safety(max_overrun_streak=3)
    assert [safety.check_timing(m) for m in (True, True, False, True, True)] == [None] * 5
    assert "3 consecutive missed deadlines" in safety.check_timing(True)


class FakeArms:
    """A backend that goes bad after some reads: the loop must hold and stop."""
    max_policy_steps = None
    joint_lower, joint_upper = np.full((2, 7), -2.0), np.full((2, 7), 2.0)

    def __init__(self, spoil, after=20):
        self.spoil, self.after, self.reads, self.commands, self.stopped = spoil, after, 0, [], False

    def reset(self, seed):
        pass

    def sync(self, now_s):
        return 0

    def read_state(self):
        self.reads += 1
        state = _robot_state(stamp_s=robot.time.monotonic())
        if self.reads > self.after:
            self.spoil(state)
        return state

    def command(self, target):
        self.commands.append(np.array(target))

    def success(self):
        return False

    def stop(self):
        self.stopped = True


def _raise(state):
    raise RuntimeError("connection lost")


@pytest.mark.parametrize("spoil, message", [
    (lambda s: s["ee_pos"].__setitem__((0, 0), np.nan), "non-finite"),
    (lambda s: s.__setitem__("stamp_s", s["stamp_s"] - 1.0), "stale"),
])
def test_loop_holds_and_stops_on_a_fault(spoil, message):
    arms = FakeArms(spoil)
    stats = robot.run(robot.RobotConfig(hz=200.0, duration_s=5.0), arms)
    assert message in stats["fault"] and arms.stopped and stats["ticks"] == 20
    assert np.allclose(arms.commands[-1], robot.Safety.hold(_robot_state()))  # last command: hold where the arms were


def test_a_backend_exception_is_a_fault_that_holds_and_stops_both_arms():
    arms = FakeArms(_raise)
    stats = robot.run(robot.RobotConfig(hz=200.0, duration_s=5.0), arms)
    assert stats["fault"] == "RuntimeError: connection lost" and arms.stopped and stats["ticks"] == 20
    assert np.allclose(arms.commands[-1], robot.Safety.hold(_robot_state()))  # last command: hold where the arms were
    assert 0 <= stats["fault_to_hold_ms"] < 5 and stats["fault_to_stop_ms"] >= stats["fault_to_hold_ms"]


class StepPolicy:
    """Stub policy: chunk c holds the targets of policy steps c*Ta .. c*Ta+Ta-1, arm 0 moving +1 mm in x per step."""
    n_obs_steps, n_action_steps, horizon, executed = 2, 2, 3, slice(1, 3)

    def __init__(self, delay_s=0.0):
        self.obs_shapes, self.delay_s = [], delay_s

    def predict_action(self, obs):
        self.obs_shapes.append(obs.shape)
        j0 = len(self.obs_shapes) - 1
        chunk = np.tile(robot.Safety.hold(_robot_state()).ravel(), (1, self.horizon, 1))   # (1, Th, Da)
        chunk[0, 1:, 0] += 0.001 * (j0 * self.n_action_steps + 1 + np.arange(self.horizon - 1))  # executed slice [To-1, To-1+Ta)
        return chunk


def _episode(worker, hz, seconds):
    cfg, arms = robot.RobotConfig(hz=hz), FakeArms(spoil=None, after=10 ** 9)
    counts, lat = dict(ticks=0, missed=0, skipped=0, actions_skipped=0), {s: [] for s in robot.LATENCY_KEYS}
    safety = robot.Safety(cfg, 1 / cfg.hz, arms.joint_lower, arms.joint_upper)
    outcome, fault = robot.run_episode(cfg, arms, worker, safety, lat, counts, robot.time.monotonic() + seconds)
    assert outcome == "unfinished" and fault is None and counts["skipped"] == 0
    return np.array([c[0, 0] for c in arms.commands[:-1]]), counts     # the last command is the final hold


def test_loop_interpolates_between_policy_targets_and_infers_once_per_chunk():
    policy = StepPolicy()
    worker = robot.InlinePolicy(policy, np.zeros((1, 2, 14), np.float32))
    policy.obs_shapes.clear()                                          # the warm-up calls
    x, counts = _episode(worker, hz=20.0, seconds=0.49)                # 2 ticks per policy step
    assert np.allclose(x, 0.5 + 0.0005 * np.arange(len(x)))            # a straight ramp through the targets
    assert len(x) == 10 and len(policy.obs_shapes) == 3 and policy.obs_shapes[0] == (1, 2, 14)  # steps 0, 2, 4
    assert counts["actions_skipped"] == 0


class SlowWorker:
    """PolicyWorker's interface around StepPolicy, each chunk delay_s late: a slow inference off the loop's thread."""
    n_obs_steps, n_action_steps = StepPolicy.n_obs_steps, StepPolicy.n_action_steps

    def __init__(self, delay_s):
        self.policy, self.delay_s, self.job = StepPolicy(), delay_s, None

    def submit(self, obs, stamp_s, j0):
        self.job = (robot.time.monotonic() + self.delay_s, self.policy.predict_action(obs)[0, 1:3], stamp_s, j0)

    def busy(self):
        return self.job is not None

    def poll(self):
        if self.job is None or robot.time.monotonic() < self.job[0]:
            return None
        (_, chunk, stamp_s, j0), self.job = self.job, None
        return chunk, stamp_s, j0, self.delay_s

    def check(self, now_s):
        return None


def test_a_late_chunk_skips_the_targets_whose_time_has_passed_and_no_tick_waits_for_it():
    x, counts = _episode(SlowWorker(delay_s=0.135), hz=100.0, seconds=0.69)  # chunks of steps 0, 2, 4: 1 step late
    assert counts["actions_skipped"] == 3 and counts["ticks"] == 69     # every tick ran while the chunks were late
    assert np.allclose(x[:14], 0.5)                                    # step 0 and the tick the chunk came: hold
    # from tick 14 the chunk's target for step 1 (0.502, its step-0 target 0.501 skipped) at 0.4 of the step
    assert np.allclose(x[14:20], 0.5 + 0.002 * np.arange(4, 10) / 10)


def _robot_pixel_policy(hw=(32, 32)):
    """An untrained pixel policy with the robot's layout: agent_pos 8, action 8, one camera."""
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(obs="pixels", horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=1,
                        crop=hw[0] - 4, encoder_channels=8, image_features=8)
    policy = dbp.DBPPolicy(8, 8, cfg, image_shape=(1, 3, *hw))
    pos, act = _robot_state()["obs"][:8] + np.array([0.5, -0.15, 0.2, 0.04, 0.5, 0.15, 0.2, 0.04]), _target().ravel()
    policy.normalizer.fit(pos + 0.02 * torch.randn(64, 2, 8).numpy(), act + 0.02 * torch.randn(64, 16, 8).numpy())
    return policy.eval()


def _grab_until(seconds, fail=None):
    """A camera that gives frames for `seconds`, then hangs (fail None) or raises fail."""
    t_end_s = robot.time.monotonic() + seconds

    def grab():
        robot.time.sleep(0.01)
        if robot.time.monotonic() > t_end_s:
            if fail:
                raise fail
            robot.time.sleep(60)
        return np.zeros((1, 3, 32, 32), np.uint8)
    return grab


@pytest.mark.parametrize("fail, message", [(None, "stale camera frame"), (OSError("USB unplugged"), "USB unplugged")])
def test_a_stale_camera_frame_stops_the_loop(fail, message):
    arms, policy = FakeArms(spoil=None, after=10 ** 9), _robot_pixel_policy()
    camera = robot.ThreadCamera(_grab_until(1.0, fail))
    cfg = robot.RobotConfig(hz=100.0, duration_s=5.0, camera_timeout_s=0.1, inference="inline")
    stats = robot.run(cfg, arms, policy, camera)
    assert message in stats["fault"] and "stale camera frame" in stats["fault"] and arms.stopped
    assert stats["duration_s"] < 1.5 and stats["inference_calls"] >= 1         # it ran on frames, then stopped
    assert np.allclose(arms.commands[-1], robot.Safety.hold(_robot_state()))   # last command: hold where the arms were
    assert stats["latency_ms"]["camera"]["n"] >= 5 and stats["camera"]["frames"] >= 20


def test_a_pixel_policy_waits_for_each_steps_frame_and_needs_a_camera():
    arms, policy = FakeArms(spoil=None, after=10 ** 9), _robot_pixel_policy()
    with pytest.raises(ValueError, match="pixel policy needs a camera"):
        robot.run(robot.RobotConfig(duration_s=0.5), arms, policy)
    stats = robot.run(robot.RobotConfig(hz=100.0, duration_s=1.0), arms, policy, robot.ThreadCamera(_grab_until(10)))
    assert stats["fault"] is None and stats["inference_calls"] == 2            # policy steps 0 and 8, in the worker
    assert stats["inference"] == "process" and stats["actions_skipped"] == 0
    cam, e2e = stats["latency_ms"]["camera"], stats["latency_ms"]["end_to_end"]
    assert cam["n"] == 10 and cam["max"] < 50 and e2e["n"] == 2                # one frame per policy step
    assert stats["camera"]["source"] == "callable" and stats["camera"]["shape"] == [1, 3, 32, 32]


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(14, 8, dbp.DBPConfig(horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=1))
    home = np.array([0.5, -0.15, 0.2, 0.04, 0.5, 0.15, 0.2, 0.04, 0.5, -0.18, 0.02, 0.5, 0.18, 0.02])
    act = np.array([0.5, -0.15, 0.15, 0.0, 0.5, 0.15, 0.15, 0.0])
    policy.normalizer.fit(home + 0.02 * torch.randn(64, 2, 14).numpy(), act + 0.02 * torch.randn(64, 16, 8).numpy())
    path = str(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")
    dbp.save_checkpoint(path, policy, task="bimanual")
    return path


def test_short_sim_run_writes_the_stats(tiny_ckpt, tmp_path):
    out = str(tmp_path / "stats.json")
    assert robot.main(["--ckpt", tiny_ckpt, "--duration-s", "2.5", "--stats-json", out, "--device", "cpu"]) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and not stats["dry_run"] and stats["hz"] == 100.0
    assert stats["ticks"] > 100 and 0 <= stats["deadline_met_fraction"] <= 1 and stats["achieved_hz"] > 0
    assert stats["inference_calls"] >= 3                               # one chunk per 8 policy steps (0.8 s)
    for stage in ("state_read", "inference", "command", "tick", "end_to_end"):
        assert set(stats["latency_ms"][stage]) == {"p50", "p99", "max", "n"}
    assert stats["sim"]["physics_ms"]["n"] > 200 and stats["inference"] == "process"   # 120 Hz in its own process
    assert stats["episodes"] + stats["episodes_unfinished"] >= 1 and len(stats["ci95"]) == 2
    assert set(stats["safety_clips"]) == {"workspace", "gripper", "step"}
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:                                                 # the loop thread has a CPU to itself
        assert stats["cpus"] == dict(loop=cpus[-1:], workers=cpus[:-1])


def test_the_loop_cpu_plan_keeps_the_workers_off_the_loops_cpu():
    cpus = sorted(os.sched_getaffinity(0))
    assert robot_io.cpu_plan("off") == (None, None)
    assert robot_io.cpu_plan(str(cpus[0])) == ({cpus[0]}, set(cpus[1:]) or None)
    assert robot_io.cpu_plan("auto") == ((({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else (None, None)))
    with pytest.raises(ValueError, match="this process runs on CPUs"):
        robot_io.cpu_plan("4096")
    with pytest.raises(SystemExit, match="must be 'auto', 'off' or a CPU index"):
        robot.parse(["--loop-cpu", "last"])


def test_video_run_writes_a_gif_per_episode_and_keeps_its_deadlines(tiny_ckpt, tmp_path):
    out = str(tmp_path / "stats.json")
    args = ["--ckpt", tiny_ckpt, "--duration-s", "1.0", "--video", "1", "--video-dir", str(tmp_path / "v"), "--stats-json", out]
    assert robot.main(args) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and stats["video_render_s"] > 0 and stats["ticks"] > 50  # rendered off the clock
    (video,) = (tmp_path / "v").iterdir()
    assert video.name == "bimanual_seed0_unfinished.gif"               # 1 s of a 6 s episode
    frames = gif_frames(video)
    assert len(frames) >= 5 and frames[0].shape == (240, 320, 3)       # one per policy step (10 Hz)


def test_pixel_checkpoint_drives_the_sim_from_its_rendered_cameras(tmp_path):
    path, out = str(tmp_path / "px.pt"), str(tmp_path / "stats.json")
    dbp.save_checkpoint(path, _robot_pixel_policy(hw=(64, 64)), task="bimanual")
    assert robot.main(["--ckpt", path, "--duration-s", "2.0", "--stats-json", out]) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and stats["inference_calls"] >= 2 and stats["camera"]["frames"] >= 5
    assert stats["camera"]["shape"] == [1, 3, 64, 64] and stats["camera"]["render_ms"]["p50"] > 0
    assert stats["latency_ms"]["camera"]["n"] >= 5 and stats["latency_ms"]["end_to_end"]["n"] >= 2
    assert stats["latency_ms"]["end_to_end"]["p50"] >= stats["latency_ms"]["camera"]["p50"]  # frame, then inference
    small = str(tmp_path / "px32.pt")
    dbp.save_checkpoint(small, _robot_pixel_policy(hw=(32, 32)), task="bimanual")
    for args, message in [(["--ckpt", small], "takes images (1, 3, 32, 32); the sim's cameras give (1, 3, 64, 64)"),
                          (["--ckpt", path, "--backend", "ur", "--ur-ips", "a,b"], "needs --camera"),
                          (["--ckpt", path, "--backend", "ur", "--camera", "0,1"], "takes 1 camera view(s); --camera names 2")]:
        with pytest.raises(SystemExit) as e:
            robot.main(args)
        assert message in str(e.value.code)
    with pytest.raises(SystemExit):  # the sim renders its own: --camera is a ur flag
        robot.parse(["--camera", "0"])


def test_scene_pose_mirrors_a_scene_to_the_same_image():
    a, b = (envs.make_env("bimanual", obs_mode="pixels").unwrapped for _ in range(2))
    a.reset(seed=3)
    b.reset(seed=4)
    for _ in range(5):
        a.step(a.action_space.sample())
    assert not np.array_equal(a.camera_images(), b.camera_images())
    b.set_scene_pose(a.scene_pose())
    assert np.array_equal(a.camera_images(), b.camera_images())


def test_dry_run_holds_without_a_policy(tmp_path):
    out = str(tmp_path / "stats.json")
    assert robot.main(["--dry-run", "--duration-s", "1.0", "--stats-json", out]) == 0
    stats = json.load(open(out))
    assert stats["dry_run"] and stats["inference_calls"] == 0 and stats["latency_ms"]["inference"] is None
    assert stats["fault"] is None and stats["ticks"] > 50 and stats["safety_clips"]["step"] == 0


@pytest.mark.parametrize("fault, message", [
    ("disconnect", "ConnectionError: lost the connection to the robot"),
    ("read-timeout", "TimeoutError: no state from the robot in time"),
    ("refuse", "RuntimeError: the controller refused the command"),
    ("freeze", "stale robot state"),
    ("clock-jump", "the robot's clock jumped"),
    ("worker-crash", "the policy worker died (exit code 3)"),
    ("worker-hang", "the policy worker gave no chunk"),
])
def test_each_injected_fault_holds_and_stops_both_arms(tiny_ckpt, tmp_path, fault, message):
    out = str(tmp_path / "stats.json")
    run = ["--ckpt", tiny_ckpt] if fault.startswith("worker") else ["--dry-run"]
    assert robot.main([*run, "--duration-s", "10", "--inject", f"{fault}@0.3", "--stats-json", out]) == 1
    stats = json.load(open(out))
    assert message in stats["fault"] and stats["injected"] == dict(fault=f"{fault}@0.3", at_s=pytest.approx(0.3, abs=0.05))
    assert stats["duration_s"] < 2.5                                   # detected at once (a hang: at its next chunk)
    if fault in ("disconnect", "refuse"):                              # no command gets through: the sim's own stop
        assert stats["fault_to_hold_ms"] is None
    else:                                                              # the hold: in the tick that found the fault
        assert 0 <= stats["fault_to_hold_ms"] < 10
    assert stats["fault_to_stop_ms"] < 50 and stats["sim"]["physics_ms"]["n"] > 10    # and the sim confirmed it


def test_inject_is_checked_before_anything_starts():
    for flags, message in [(["--inject", "melt@1"], "FAULT one of"), (["--inject", "freeze"], "FAULT@SECONDS"),
                           (["--inject", "worker-crash@1", "--dry-run"], "needs a policy"),
                           (["--inject", "freeze@1", "--backend", "ur"], "needs --backend sim")]:
        with pytest.raises(SystemExit) as e:
            robot.parse(flags)
        assert message in str(e.value.code)


def test_record_writes_labelled_demos_that_append_replay_and_train(tmp_path):
    rec, out = str(tmp_path / "rec"), str(tmp_path / "stats.json")
    assert robot.main(["--record", rec, "--episodes", "2", "--duration-s", "60", "--stats-json", out]) == 0
    path = os.path.join(rec, "bimanual_recorded.npz")
    demo = envs.load_demos(path)
    assert json.load(open(out))["recorded"] == dict(path=path, teleop="expert", episodes=2, before=0)
    assert demo["success"].tolist() == [True, True] and demo["seeds"].tolist() == [envs.demo_seed(0, i) for i in (0, 1)]
    first = demo["stamps_s"][:demo["episode_ends"][0]]                 # stamped at the policy rate
    assert first[0] == 0 and np.allclose(np.diff(first), 0.1, atol=0.02) and demo["obs"].shape[1:] == (14,)
    steps, _, _, _ = envs.expert_episode(envs.make_env("bimanual"), envs.demo_seed(0, 0))
    assert len(steps) <= len(first) <= 2 * len(steps)                  # the expert's episode (the loop ramps to each
                                                                       # target over its step, envs jumps: a bit slower)
    # a replay of the file is a teleoperation source; the new episodes are appended, seeded after the old
    args = ["--record", rec, "--teleop", f"replay:{path}", "--episodes", "1", "--duration-s", "60", "--stats-json", out]
    assert robot.main(args) == 0
    again = envs.load_demos(path)
    assert len(again["episode_ends"]) == 3 and again["seeds"][2] == envs.demo_seed(0, 2) and again["success"][2]
    assert np.array_equal(again["actions"][len(demo["obs"]):][:5], demo["actions"][:5])   # episode 0's actions
    for flags, message in [(["--teleop", "joystick"], "must be 'expert' or 'replay:FILE'"),
                           (["--record", rec, "--dry-run"], "leave out --ckpt and --dry-run")]:
        with pytest.raises(SystemExit) as e:
            robot.parse(flags)
        assert message in str(e.value.code)
    train.main(["--stage", "pretrain", *TINY, "--steps", "50", "--demos-file", path, "--task", "bimanual",
                "--out", str(tmp_path / "r")])
    assert json.load(open(tmp_path / "r" / "eval.json"))["demos"] == 3
    with pytest.raises(SystemExit) as e:                               # a file of another task's dims
        train.main(["--stage", "pretrain", *TINY, "--demos-file", path, "--task", "push", "--out", str(tmp_path / "p")])
    assert "holds obs/action dims (14, 8); task 'push' with --obs state needs (9, 4)" in str(e.value.code)


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


# ----------------------------------------------------------------------------- checkpoints
def _save(path, task, obs_dim, action_dim):
    policy = dbp.DBPPolicy(obs_dim, action_dim, dbp.DBPConfig(horizon=4, n_obs_steps=2, hidden_dim=16, n_blocks=1))
    dbp.save_checkpoint(path, policy, **({} if task is None else {"task": task}))
    return path


@pytest.mark.parametrize("make, message", [
    (lambda d: _save(d + "/push.pt", "push", 9, 4), "trained for task 'push'"),
    (lambda d: _save(d + "/notask.pt", None, 14, 8), "trained for task None"),
    (lambda d: _save(d + "/dims.pt", "DBPBimanual-v0", 9, 8), "'obs_dim' is 9, expected 14"),
    (lambda d: open(d + "/junk.pt", "wb").write(b"junk") and d + "/junk.pt", "not a readable checkpoint"),
    (lambda d: d + "/missing.pt", "no checkpoint at"),
])
def test_mismatched_checkpoints_are_refused(tmp_path, make, message):
    path = make(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        robot.main(["--ckpt", path, "--duration-s", "1"])
    assert str(e.value.code).startswith("error:") and message in str(e.value.code)


def test_refusal_from_the_command_line_is_one_line_without_traceback(tmp_path):
    path = _save(str(tmp_path / "push.pt"), "push", 9, 4)
    proc = subprocess.run([sys.executable, "robot.py", "--ckpt", path], cwd=HERE, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "'push'" in proc.stderr
    proc = subprocess.run([sys.executable, "robot.py", "--dry-run", "--no-such-flag"], cwd=HERE, capture_output=True, text=True)
    assert proc.returncode != 0 and "unrecognized arguments" in proc.stderr


# ----------------------------------------------------------------------------- bench.py
QUICK_METHODS = {"dbp": 1, "dp-unet-ddpm20": 20, "dp-unet-ddim5": 5, "dp-mlp-ddpm20": 20, "dp-mlp-ddim5": 5, "flow-1": 1,
                 "flow-4": 4, "shortcut-1": 1, "mse": 1}  # bench.py --quick: method -> NFE


def test_bench_verdicts_compare_pooled_intervals_at_the_best_and_the_last_checkpoint():
    def method(rates, n=150):  # success at checkpoints 1 and 2, pooled over n episodes
        by_step = [dict(step=s, mean=r, ci95=envs.wilson_interval(round(r * n), n)) for s, r in zip((1, 2), rates)]
        return dict(by_step=by_step, best_step=max(by_step, key=lambda b: b["mean"])["step"], latency_over_dbp_1thread=2.0)
    tasks = {"push": dict(methods={"dbp": method([0.90, 0.96]), "slow": method([0.50, 0.96]), "weak": method([0.40, 0.60]),
                                   "strong": method([1.00, 0.99])})}
    got = {v["method"]: (v["best"]["verdict"], v["last"]["verdict"]) for v in bench.verdicts(tasks)}
    assert got == {"slow": ("tie", "tie"), "weak": ("DBP wins", "DBP wins"), "strong": ("tie", "tie")}
    tasks["push"]["methods"]["dbp"] = method([0.70, 0.80])
    got = {v["method"]: (v["best"]["verdict"], v["last"]["verdict"]) for v in bench.verdicts(tasks)}
    assert got == {"slow": ("DBP loses", "DBP loses"), "weak": ("DBP wins", "DBP wins"), "strong": ("DBP loses", "DBP loses")}
    assert "| push | weak | 0.80 / 0.60 | DBP wins |" in bench.verdict_table(bench.verdicts(tasks))


def test_bench_quick_json_has_every_field_and_a_stopped_run_continues_from_its_cells(tmp_path):
    path, out = tmp_path / "bench.json", tmp_path / "bq"
    cmd = [sys.executable, os.path.join(HERE, "bench.py"), "--quick", "--out", str(out), "--demo-dir", str(tmp_path / "demos"),
           "--device", "cpu"]
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
        assert [b["step"] for b in r["by_step"]] == [100, 200, 300] and r["seeds"] == [0], name
        for b in r["by_step"]:
            assert b["n_episodes"] == 5 and 0 <= b["mean"] <= 1 and b["ci95"][0] <= b["mean"] <= b["ci95"][1]
            assert set(b["mode_counts"]) == {"left", "right"} and sum(b["mode_counts"].values()) == b["n_success"]
            assert set(b["chunk_modes"]) == {"left", "right", "between"} and abs(sum(b["chunk_modes"].values()) - 1) < 1e-6
        assert r["best_step"] in (100, 200, 300) and r["by_step"][-1]["train_seconds"] > r["by_step"][0]["train_seconds"] > 0
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
        assert f"| push | {bench.label(v['method'])} | {v['best']['dbp']:.2f} / {v['best']['other']:.2f} | " in run.stdout
    assert len(os.listdir(out / "cells")) == 6                                      # one per trained model
    # a rerun trains nothing: it reads the cells back
    again = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0 and "6 of 6 cells already" in again.stdout and "cells:" not in again.stderr
    assert [r["by_step"] for r in json.load(open(out / "bench.json"))["tasks"]["push"]["methods"].values()] == \
        [r["by_step"] for r in task["methods"].values()]
    empty = subprocess.run(cmd + ["--report", "--out", str(tmp_path / "empty")], cwd=tmp_path, capture_output=True,
                           text=True, timeout=300)
    assert empty.returncode == 0 and "0 of 6 cells" in empty.stdout and "nothing to report" in empty.stdout
    # cells measured with other settings are not mixed in
    other = subprocess.run(cmd + ["--eval-episodes", "6"], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert other.returncode != 0 and "eval_episodes = 5" in other.stderr and "Traceback" not in other.stderr


def _die(job):
    os._exit(9)  # what the kernel's out-of-memory kill looks like to the pool


def test_bench_a_worker_that_dies_ends_the_run_with_a_message_instead_of_a_hang(tmp_path):
    cfg = bench.parse(["--quick", "--demos", "1", "--demo-dir", str(tmp_path), "--out", str(tmp_path / "b"), "--workers", "1"])
    with pytest.raises(SystemExit, match="a worker process died .* rerun with fewer --workers"):
        bench.run_cells(cfg, [("push", "dbp", 0)], fn=_die)


def test_bench_runs_from_pixels_with_the_encoder_in_every_model(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(HERE, "bench.py"), "--quick", "--obs", "pixels", "--models",
                          "dbp,dp-mlp", "--checkpoints", "2,4", "--demos", "3", "--eval-episodes", "2", "--out", "bqp",
                          "--demo-dir", str(tmp_path / "demos")], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    task = json.load(open(tmp_path / "bqp" / "bench.json"))["tasks"]["push"]
    assert set(task["methods"]) == {"dbp", "dp-mlp-ddpm20", "dp-mlp-ddim5"}
    assert task["methods"]["dp-mlp-ddpm20"]["latency_over_dbp_1thread"] > 2     # the encoder runs once per call
    assert (tmp_path / "demos" / "push_n3_s0_pixels64x64.npz").exists()


def _toy_chunks(policy, steps=600, seed=0):
    """Train a chunk policy on a bimodal toy (every chunk all +0.8 or all -0.8, whatever the observation);
    return the shares of 500 sampled chunks (mean over the chunk) near +0.8, near -0.8 and in between."""
    torch.manual_seed(seed)
    N, Th = 2000, 4
    obs = torch.rand(N, 1, 1) * 2 - 1
    actions = (torch.randint(0, 2, (N, 1, 1)) * 1.6 - 0.8).expand(N, Th, 1) + 0.02 * torch.randn(N, Th, 1)
    policy.normalizer.fit(obs, actions)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, N, (128,))
        loss, _ = policy.compute_loss(obs[i], actions[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    policy.eval()

    def shares(*use):
        a = (policy.use(*use) if use else policy).predict_action(torch.rand(500, 1, 1) * 2 - 1)[:, :, 0].mean(1)
        return [(a > 0.4).float().mean().item(), (a < -0.4).float().mean().item(), (a.abs() <= 0.4).float().mean().item()]
    return shares


def test_baselines_learn_both_modes_of_a_toy_and_one_euler_step_or_regression_averages_them():
    cfg = dbp.DBPConfig(horizon=4, n_obs_steps=1, n_action_steps=1, hidden_dim=64, n_blocks=2)
    both = lambda s: s[0] > 0.3 and s[1] > 0.3 and s[2] < 0.15
    diffusion = _toy_chunks(baselines.DiffusionPolicy(1, 1, cfg, "mlp", 100))
    assert both(diffusion("ddpm")) and both(diffusion("ddim", 10)), (diffusion("ddpm"), diffusion("ddim", 10))
    unet = _toy_chunks(baselines.DiffusionPolicy(1, 1, dataclasses.replace(cfg, hidden_dim=128), "unet", 100))  # 16-64 ch.
    assert both(unet("ddim", 10)), unet("ddim", 10)
    flow = _toy_chunks(baselines.FlowPolicy(1, 1, cfg))
    assert both(flow(10)) and flow(1)[2] > 0.9, (flow(10), flow(1))      # one Euler step lands on the mean
    shortcut = _toy_chunks(baselines.ShortcutPolicy(1, 1, cfg), steps=1500)
    assert both(shortcut(1)), shortcut(1)                               # trained to jump: one step keeps the modes
    assert _toy_chunks(baselines.RegressionPolicy(1, 1, cfg))()[2] > 0.9


def test_unet_needs_a_horizon_it_can_halve():
    with pytest.raises(ValueError, match="horizon 6 must divide by 2"):
        baselines.DiffusionPolicy(3, 2, dbp.DBPConfig(horizon=6), "unet")
    with pytest.raises(ValueError, match="backbone"):
        baselines.FlowPolicy(3, 2, dbp.DBPConfig(), "transformer")


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


def test_numpy_forward_pass_equals_the_torch_policy():
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(14, 8, dbp.DBPConfig(horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=2))
    policy.normalizer.fit(torch.rand(50, 2, 14), torch.rand(50, 16, 8))
    with torch.no_grad():  # move every weight off its init so the check covers all of them
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, z = np.random.rand(3, 2, 14).astype(np.float32), np.random.randn(3, 16, 8).astype(np.float32)
    fast = dbp.NumpyPolicy(policy)
    assert np.allclose(fast.predict_action(obs, z), policy.predict_action(obs, z), atol=1e-5)
    assert fast.predict_action(obs).shape == (3, 16, 8) and (fast.n_obs_steps, fast.n_action_steps) == (2, 8)


# ----------------------------------------------------------------------------- dbpo.py
def _agent(seed=0, **cfg):
    """A DBPO agent around a randomly perturbed stage-1 policy (To=2, Th=6, Ta=3, Da=2)."""
    torch.manual_seed(seed)
    policy = dbp.DBPPolicy(3, 2, dbp.DBPConfig(horizon=6, n_obs_steps=2, n_action_steps=3, hidden_dim=32, n_blocks=1))
    policy.normalizer.fit(torch.rand(50, 2, 3) * 4, torch.rand(50, 6, 2) - 0.5)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    return dbpo.DBPOAgent(policy, dbpo.DBPOConfig(**cfg))


def _rollout(agent, T=4, N=5):
    buffer = agent.make_buffer(T, N)
    for t in range(T):
        actions, step = agent.act(torch.rand(N, 2, 3) * 4)
        assert actions.shape == (N, 3, 2)
        done = torch.tensor([t == 1, False, t == 2, False, False])
        buffer.add(**step, reward=torch.randn(N), terminated=done, truncated=torch.zeros(N, dtype=torch.bool),
                   final_value=torch.zeros(N))
    return buffer


def test_dbpo_logprobs_recomputed_from_the_stored_z_reproduce_the_rollout():
    agent = _agent()
    b = _rollout(agent)
    c, z, na = (b[k].flatten(0, 1) for k in ("c", "z", "na"))
    logprob, entropy, value, anchor = agent.recompute(c, z, na)
    assert torch.allclose(logprob, b["logprob"].flatten(), atol=1e-6) and torch.allclose(value, b["value"].flatten(), atol=1e-6)
    other, *_ = agent.recompute(c, torch.randn_like(z), na)                 # z matters: a fresh z changes them
    assert (other - logprob).abs().max() > 0.1
    mu, std, _ = agent.distribution(c, z)                                  # sampled within mu +- 3 std
    assert ((na - mu).abs() <= 3 * std + 1e-6).all() and torch.allclose(std, torch.full_like(std, agent.cfg.std_init))


def test_dbpo_first_update_has_ratio_one_and_zero_anchor_then_moves_the_actor():
    agent = _agent(update_epochs=1, minibatch_size=20, critic_warmup_iters=0)
    before = {k: v.clone() for k, v in agent.policy.state_dict().items()}
    buffer = _rollout(agent)
    optimizers, schedulers = dbpo.make_optimizers(agent, agent.cfg, 10)
    stats = dbpo.ppo_update(agent, buffer, torch.zeros(5), optimizers, schedulers, agent.cfg)
    assert list(stats) == list(dbpo.METRICS) and stats["charts/minibatches"] == 1
    assert stats["losses/approx_kl"] == 0 and stats["losses/clipfrac"] == 0 and stats["losses/anchor"] == 0
    assert any(not torch.equal(before[k], v) for k, v in agent.policy.state_dict().items())
    assert all(not p.requires_grad for p in agent.anchor.parameters())
    critic_only = _agent(critic_warmup_iters=1)                             # warm-up: the actor stays put
    before = {k: v.clone() for k, v in critic_only.policy.state_dict().items()}
    dbpo.ppo_update(critic_only, _rollout(critic_only), torch.zeros(5), *dbpo.make_optimizers(critic_only, critic_only.cfg, 10),
                    critic_only.cfg, critic_only=True)
    assert all(torch.equal(before[k], v) for k, v in critic_only.policy.state_dict().items())


def test_dbpo_logprob_clamps_the_average_so_one_far_dimension_keeps_its_gradient():
    agent = _agent(logprob_min=-2.0)
    std = torch.full((2, 8), 0.1)
    mu = torch.zeros(2, 8, requires_grad=True)
    na = torch.zeros(2, 8)
    na[0, 0] = 0.3                      # sample 0: one dim 3 std out (-3.1 there, below -2; the average is 0.8)
    na[1] = 0.3                         # sample 1: every dim 3 std out, the average is below -2
    logp = agent.log_prob(mu, std, na)
    logp.sum().backward()
    assert logp[0] > -2 and logp[1] == -2.0
    assert mu.grad[0, 0] != 0           # a per-dimension clamp would have zeroed it
    assert torch.all(mu.grad[1] == 0)   # a sample clamped as a whole gives no gradient


@pytest.mark.parametrize("over_chunk, scale", [(False, 6 / 3), (True, 1.0)])
def test_dbpo_anchor_holds_each_executed_dim_as_if_the_chunk_were_executed(over_chunk, scale):
    agent = _agent(anchor_over_chunk=over_chunk)                            # Th = 6, Ta = 3
    with torch.no_grad():
        agent.policy.net.out[1].bias.add_(0.1)                               # every output 0.1 off the anchor
    c, z = torch.rand(5, 6), torch.randn(5, 12)
    anchor = agent.recompute(c, z, torch.zeros(5, 6))[3]
    assert anchor.item() == pytest.approx(0.01 * scale, rel=1e-4)          # default: summed / (Ta*Da) = 0.01 * Th/Ta


def test_success_replay_keeps_successful_episodes_per_mode_and_survives_a_checkpoint(tmp_path):
    replay = dbpo.SuccessReplay(n_envs=2, capacity=5)
    decision = lambda v: (torch.full((2, 3), v), torch.full((2, 4), v), torch.full((2, 2), v))
    for v in range(3):                                                  # env 0: 3 decisions, env 1: 3 decisions
        replay.record(*decision(float(v)))
    replay.end(0, success=True, mode=1)
    replay.end(1, success=False, mode=0)                                # a failure is dropped
    assert list(replay.modes) == [1] and replay.modes[1][0][:, 0].tolist() == [0.0, 1.0, 2.0]
    replay.record(*decision(7.0))                                       # an episode in progress crosses a save
    path = str(tmp_path / "r.pt")
    torch.save(replay.state_dict(), path)
    back = dbpo.SuccessReplay(n_envs=2, capacity=5)
    back.load_state_dict(torch.load(path, weights_only=True))
    for r in (replay, back):
        for v in (8.0, 9.0):
            r.record(*decision(v))
        r.end(1, success=True, mode=-1)
        r.end(0, success=True, mode=1)                                  # 3 more: the oldest one is dropped
        assert sorted(r.modes) == [-1, 1] and r.modes[1][2][:, 0].tolist() == [1.0, 2.0, 7.0, 8.0, 9.0]
        assert r.modes[-1][1][:, 0].tolist() == [7.0, 8.0, 9.0] and r.pending == [[], []]
    batches = back.sample(4, torch.Generator().manual_seed(0))         # k per mode, mode order
    assert [b[0].shape for b in batches] == [(4, 3), (4, 3)] and set(batches[0][0][:, 0].tolist()) <= {7.0, 8.0, 9.0}


def test_dbpo_imitation_weighs_each_mode_alike_however_many_successes_it_has():
    agent = _agent()
    c, z = torch.rand(40, 6), torch.randn(40, 12)
    with torch.no_grad():
        mu = agent.distribution(c, z)[0]
    near, far = (c[:20], z[:20], mu[:20] + 0.01), (c[20:], z[20:], mu[20:] + 1.0)
    one = lambda x, n: tuple(t[:n] for t in x)
    assert agent.imitation([]).item() == 0.0                          # nothing succeeded yet: no term
    torch.manual_seed(1)                                                # the same fresh z in both evaluations
    both = agent.imitation([near, one(far, 2)]).item()                  # 2 successes of the far mode weigh as 20
    torch.manual_seed(1)
    each = [agent.imitation([near]).item(), agent.imitation([one(far, 2)]).item()]
    assert both == pytest.approx(sum(each) / 2, rel=1e-5)                # not (20 * near + 2 * far) / 22
    loss = agent.imitation([far])
    loss.backward()
    assert loss.item() > 0 and agent.policy.net.out[1].bias.grad.abs().sum() > 0


@pytest.mark.filterwarnings("ignore:Detected call of")
def test_dbpo_lr_warms_up_then_follows_a_cosine_to_its_floor():
    agent = _agent(lr_warmup_iters=4, lr_floor=0.3, actor_lr=1e-4, critic_lr=1e-3, critic_warmup_iters=2)
    (actor, critic), schedulers = dbpo.make_optimizers(agent, agent.cfg, 22)   # the actor gets 20 updates
    lrs = []
    for _ in range(20):
        lrs.append((actor.param_groups[0]["lr"], critic.param_groups[0]["lr"]))
        for sched in schedulers:
            sched.step()
    a, c = np.array(lrs).T
    assert np.allclose(a[:4], 1e-4 * np.arange(1, 5) / 4)                   # warm-up: peak/4 .. peak
    assert np.all(np.diff(a[3:]) <= 0) and a[-1] > 0.3e-4 and a[-1] < 0.35e-4
    assert c[0] == 1e-3 and np.all(np.diff(c) <= 0) and c[-1] > 0.3e-3     # the critic does not warm up
    for _ in range(10):
        for sched in schedulers:
            sched.step()
    assert actor.param_groups[0]["lr"] == pytest.approx(0.3e-4) and critic.param_groups[0]["lr"] == pytest.approx(0.3e-3)


def test_gae_matches_a_plain_reference_loop_with_termination_and_truncation():
    g = torch.Generator().manual_seed(0)
    T, N, gamma, lam = 12, 3, 0.9, 0.8
    rewards, values, final_values, last_value = (torch.randn(T, N, generator=g) for _ in range(4))
    last_value = last_value[0]
    terminated, truncated = torch.zeros(T, N, dtype=torch.bool), torch.zeros(T, N, dtype=torch.bool)
    terminated[3, 0] = terminated[7, 1] = True
    truncated[5, 0] = truncated[2, 2] = truncated[T - 1, 1] = True
    adv, ret = dbpo.gae(rewards, values, terminated, truncated, final_values, last_value, gamma, lam)
    for n in range(N):                     # reference: walk each env's episodes forward, one at a time
        t0 = 0
        for t in range(T):
            if terminated[t, n] or truncated[t, n] or t == T - 1:
                seg = range(t0, t + 1)
                tail = 0.0 if terminated[t, n] else float(final_values[t, n] if truncated[t, n] else last_value[n])
                nxt = [float(values[k + 1, n]) for k in seg[:-1]] + [tail]
                deltas = [float(rewards[k, n]) + gamma * nxt[i] - float(values[k, n]) for i, k in enumerate(seg)]
                for i, k in enumerate(seg):
                    want = sum((gamma * lam) ** j * deltas[i + j] for j in range(len(deltas) - i))
                    assert abs(float(adv[k, n]) - want) < 1e-5, (k, n)
                t0 = t + 1
    assert torch.allclose(ret, adv + values)


def test_dbpo_deployed_action_is_the_mean_of_the_generator():
    agent = _agent()
    obs, z = torch.rand(4, 2, 3) * 4, torch.randn(4, 6, 2)
    mu, _, mu_chunk = agent.distribution(agent.condition(obs), z.reshape(4, -1))
    deployed = agent.policy.predict_action(obs, noise=z)                   # (B, Th, Da): one pass, no std
    unnormalize = agent.policy.normalizer.unnormalize_actions
    assert torch.allclose(deployed, unnormalize(mu_chunk.reshape(4, 6, 2)), atol=1e-6)
    assert torch.allclose(deployed[:, agent.policy.executed], unnormalize(mu.reshape(4, 3, 2)), atol=1e-6)


@pytest.mark.parametrize("prefer", [0.0, 0.1])
def test_dbpo_bandit_moves_both_modes_to_the_rewarded_actions(prefer):
    # Stage 1 learns a = +-0.8; the reward prefers +-0.6 (the positive mode by `prefer`); DBPO with
    # its defaults must move the deployed mu(o, z) there and keep both modes.
    before, after, _ = dbpo.bimodal_bandit(iterations=80, prefer=prefer)
    assert before["reward"] < -0.15 and after["reward"] > before["reward"] + 0.1, (before, after)
    assert 0.3 < after["positive"] < 0.7, after


def _dbpo(tmp_path, *args):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--stage", "dbpo", "--n-envs", "2", "--n-decisions", "4",
           "--eval-episodes", "1", "--critic-warmup-iters", "1", "--minibatch-size", "4", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_train_dbpo_runs_end_to_end_and_an_interrupted_run_resumes(tmp_path):
    stage1 = _save(str(tmp_path / "bimanual.pt"), "bimanual", 14, 8)
    _ctrl_c_once_saved(_dbpo(tmp_path, "--ckpt", stage1, "--iterations", "60", "--eval-every", "3", "--out", "r"),
                       tmp_path / "r" / "ckpt.pt")
    stopped = dbp.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))["train"]["iteration"]
    assert 3 <= stopped < 60
    resumed = _dbpo(tmp_path, "--out", "r", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    for key in ("losses/policy", "losses/value", "losses/anchor", "losses/entropy", "losses/approx_kl",
                "losses/clipfrac", "charts/success_rate", "charts/return", "charts/SPS", "eval/success_rate",
                "eval/ci95_low", "eval/ci95_high", "time/rollout_s", "time/update_s"):
        assert key in rows[0], key
    assert all(float(r["time/rollout_s"]) > 0 and float(r["time/update_s"]) > 0 for r in rows if r["losses/policy"])
    assert (tmp_path / "r" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    iters = [int(r["iteration"]) for r in rows if r["losses/policy"]]
    assert iters == list(range(1, 61))                                    # nothing lost, nothing repeated
    # the resumed run continued its episodes where they were: it matches an uninterrupted run row for row
    _, err = _dbpo(tmp_path, "--ckpt", stage1, "--iterations", "60", "--eval-every", "3", "--out", "u").communicate(timeout=300)
    same = [k for k in rows[0] if k not in ("minutes", "charts/SPS", "time/rollout_s", "time/update_s")]
    assert [[r[k] for k in same] for r in csv.DictReader(open(tmp_path / "u" / "log.csv"))] == [[r[k] for k in same] for r in rows]
    result = json.load(open(tmp_path / "r" / "eval.json"))
    assert result["stage"] == "dbpo" and result["iterations"] == 60 and result["history"][0]["iteration"] == 0
    assert {"success_rate", "ci95", "n_episodes", "env_steps", "history"} <= set(result)
    ckpt = dbp.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))            # loads as a plain DBP policy
    policy = dbp.DBPPolicy.from_checkpoint(ckpt, expect=dict(obs_dim=14, action_dim=8))
    assert ckpt["task"] == "bimanual" and policy.predict_action(np.zeros((1, 2, 14), np.float32)).shape == (1, 4, 8)
    assert not torch.equal(policy.net.out[1].weight, dbp.DBPPolicy.from_checkpoint(stage1).net.out[1].weight)
    deployed = robot.load_policy(str(tmp_path / "r" / "ckpt.pt"))           # and as robot.py's policy
    assert all(torch.equal(a, b) for a, b in zip(deployed.state_dict().values(), policy.state_dict().values()))


def test_plot_overlays_runs_with_their_intervals_and_modes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header = "iteration,env_steps,losses/policy,eval/success_rate,eval/ci95_low,eval/ci95_high,eval/mode_left,eval/mode_right\n"
    for name, rates in (("a", (0.4, 0.6, 0.9)), ("b", (0.5, 0.5, 0.7))):
        os.makedirs(name)
        with open(f"{name}/log.csv", "w") as f:
            f.write(header + "".join(f"{i},{i * 100},{'' if i % 2 else 0.1},{r},{r - 0.1},{r + 0.05},0.3,0.7\n"
                                     for i, r in enumerate(rates)) + "7,700,0.1,,,,,\n")
    os.makedirs("pre")
    with open("pre/log.csv", "w") as f:
        f.write("step,loss,success_rate\n100,0.5,\n5000,0.4,0.6\n15000,0.3,0.9\n")
    train.main(["--plot", "a", "b", "pre"])
    assert open("curves.png", "rb").read(4) == b"\x89PNG"
    assert train.read_evaluations("a")[:2] == ("env_steps", "eval/success_rate") and len(train.read_evaluations("a")[2]) == 3
    assert train.read_evaluations("pre")[:2] == ("step", "success_rate") and len(train.read_evaluations("pre")[2]) == 2
    with pytest.raises(SystemExit, match="error: nothing/log.csv does not exist"):
        train.main(["--plot", "nothing"])


def test_paper_preset_sets_the_papers_coefficients_and_flags_still_apply():
    _, cfg, _ = train.parse(["--stage", "dbpo", "--preset", "paper", "--actor-lr", "2e-5"])
    assert (cfg.clip_coef, cfg.std_init, cfg.actor_lr, cfg.anchor_over_chunk) == (0.02, 0.03, 2e-5, True)
    _, cfg, _ = train.parse(["--stage", "dbpo"])
    assert (cfg.clip_coef, cfg.std_init, cfg.actor_lr, cfg.anchor_over_chunk) == (0.1, 0.1, 3e-5, False)
    with pytest.raises(SystemExit, match="--preset best: must be '' or one of \\['paper'\\]"):
        train.parse(["--stage", "dbpo", "--preset", "best"])


def test_pixels_bring_their_own_step_defaults_and_flags_still_apply():
    _, cfg, _ = train.parse(["--obs", "pixels"])
    assert (cfg.steps, cfg.warmup_steps, cfg.eval_every) == (6000, 300, 2000)
    _, cfg, _ = train.parse(["--obs", "pixels", "--steps", "100"])
    assert (cfg.steps, cfg.warmup_steps) == (100, 300)
    _, cfg, _ = train.parse([])
    assert (cfg.obs, cfg.steps, cfg.warmup_steps, cfg.eval_every) == ("state", 15000, 500, 5000)


def test_train_dbpo_finds_the_default_stage1_run_and_checks_the_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _save("runs/pretrain-push-s3/ckpt.pt", "push", 9, 4)                 # where `--stage pretrain --seed 3` saves
    _, cfg, given = train.parse(["--stage", "dbpo", "--seed", "3"])
    policy, task = train.load_stage1(cfg, given)
    assert task == "push" and cfg.ckpt == os.path.join("runs", "pretrain-push-s3", "ckpt.pt") and policy.obs_dim == 9
    _, cfg, given = train.parse(["--stage", "dbpo", "--ckpt", _save("lift.pt", "lift", 9, 4)])
    assert train.load_stage1(cfg, given)[1] == "lift" and cfg.task == "lift"    # recorded in the run's config
    _, cfg, given = train.parse(["--stage", "dbpo", "--ckpt", "runs/pretrain-push-s3/ckpt.pt", "--task", "lift"])
    with pytest.raises(ValueError, match="--task lift disagrees with the task of .* \\(push\\)"):
        train.load_stage1(cfg, given)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no stage-1 checkpoint at runs/pretrain-push-s0/ckpt.pt; make it with `python train.py "
                     "--stage pretrain --task push --seed 0`"),
    (lambda d: d + "/missing.pt", "no checkpoint at"),
    (lambda d: open(d + "/junk.pt", "wb").write(b"junk") and d + "/junk.pt", "not a readable checkpoint"),
    (lambda d: _save(d + "/notask.pt", None, 9, 4), "missing the field 'task'"),
    (lambda d: _save(d + "/dims.pt", "lift", 14, 4), "'obs_dim' is 14, expected 9"),
])
def test_train_dbpo_refuses_bad_checkpoints_clearly(tmp_path, make, message, monkeypatch):
    monkeypatch.chdir(tmp_path)                                             # no runs/ here: the default --ckpt is missing
    path = make(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        train.main(["--stage", "dbpo", "--out", str(tmp_path / "run")] + ([] if path is None else ["--ckpt", path]))
    assert str(e.value.code).startswith("error:") and message in str(e.value.code), e.value.code
