"""Test suite: drift-loss properties, small real learning checks, envs, checkpoints, CLI.

    python -m pytest -q test_dbp.py        # a few minutes on 2 CPU cores
"""
import json
import os
import signal
import subprocess
import sys
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

import dbp
import envs
import train

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- drift loss
def test_drift_loss_shape_finite_and_gradient_only_through_gen():
    gen = torch.randn(8, 4, 6, requires_grad=True)
    pos = torch.randn(8, 3, 6, requires_grad=True)
    w = torch.rand(8, 3, requires_grad=True)
    loss = dbp.drift_loss(gen, pos, w)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    assert pos.grad is None and w.grad is None  # the target is stop-gradient


def test_drift_field_vanishes_between_symmetric_positives_and_points_to_the_nearer():
    pos = torch.tensor([[[1.0, 0.5], [-1.0, -0.5]]])                  # (B=1, K=2, L=2)
    gen = torch.zeros(1, 1, 2, requires_grad=True)                      # on the midpoint
    loss = dbp.drift_loss(gen, pos)
    loss.backward()
    assert loss.item() == 0.0 and gen.grad.abs().max() == 0.0
    gen = torch.tensor([[[0.2, 0.1]]], requires_grad=True)              # nearer to +pos
    dbp.drift_loss(gen, pos).backward()
    assert (gen.grad < 0).all()  # descending the loss moves x toward the nearer positive


def test_drift_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, G, L\)"):
        dbp.drift_loss(torch.randn(4, 6), torch.randn(4, 2, 6))
    with pytest.raises(ValueError, match="pos_weights"):
        dbp.drift_loss(torch.randn(4, 2, 6), torch.randn(4, 3, 6), torch.ones(4, 2))


def test_neighbor_positives_weights_self_first_and_far_neighbours_down():
    data = torch.tensor([[0.0], [0.01], [0.02], [1.0]]).reshape(4, 1, 1)      # (N, To, Do)
    acts = torch.arange(4.0).reshape(4, 1, 1)                                 # (N, Th, Da)
    pos, w = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=0.05)
    assert pos.shape == (4, 4, 1, 1) and w.shape == (4, 4)
    assert torch.equal(pos[:, 0], acts) and torch.all(w[:, 0] == 1)        # own chunk, full weight
    assert w[0, 1] > 0.9 and w[0, 3] < 1e-6                                  # near ~1, far ~0
    _, w_plain = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=None)
    assert torch.all(w_plain == 1)


# ----------------------------------------------------------------------------- learning toys
def _train_toy(obs, actions, mode, steps, k=16):
    """mode: 'k1' (paper), 'knn' (unweighted), 'weighted' (our default) or 'mse' (regression)."""
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(obs_dim=1, action_dim=1, horizon=1, hidden_dim=64, n_blocks=2)
    policy.fit_normalizer(obs, actions)
    nobs = policy.normalize_obs(obs)
    pos = w = None
    if mode in ("knn", "weighted"):
        pos, w = dbp.neighbor_positives(nobs, nobs, actions, k, bandwidth=0.05 if mode == "weighted" else None)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(obs), (64,))
        if mode == "mse":  # plain regression of the chunk: the same network fed z = 0
            pred = policy.net(torch.zeros(64, 1), nobs[i].reshape(64, 1))
            loss = torch.nn.functional.mse_loss(pred, policy.normalize_actions(actions[i]).reshape(64, 1))
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
    nq = policy.normalize_obs(q).reshape(-1, 1)
    a_mse = policy.unnormalize_actions(policy.net(torch.zeros(len(q), 1), nq).reshape(-1, 1, 1)).flatten()
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
    policy = dbp.DBPPolicy(obs_dim=3, action_dim=2, horizon=4, n_obs_steps=2, hidden_dim=32, n_blocks=1, **kw)
    policy.fit_normalizer(torch.rand(50, 2, 3) * 5, torch.rand(50, 4, 2) - 3)
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
    (lambda p: p.fit_normalizer(torch.rand(10, 2, 4), torch.rand(10, 4, 2)), "last dim 3"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_tiny_policy())


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
