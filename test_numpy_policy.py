"""Tests of numpy_policy.py: the NumPy forward pass equals the torch policy's, and bad input is refused."""
import numpy as np
import pytest
import torch

import dbp
from numpy_policy import NumpyPolicy


def _policy(obs_dim=14, action_dim=8, **cfg):
    torch.manual_seed(0)
    cfg = dict(dict(horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=2), **cfg)
    policy = dbp.DBPPolicy(obs_dim, action_dim, dbp.DBPConfig(**cfg))
    policy.normalizer.fit(torch.rand(50, cfg["n_obs_steps"], obs_dim), torch.rand(50, cfg["horizon"], action_dim))
    return policy


def test_numpy_forward_pass_equals_the_torch_policy():
    policy = _policy()
    with torch.no_grad():  # move every weight off its init so the check covers all of them
        for p in policy.parameters():
            p.add_(0.1 * torch.randn_like(p))
    obs, z = np.random.rand(3, 2, 14).astype(np.float32), np.random.randn(3, 16, 8).astype(np.float32)
    fast = NumpyPolicy(policy)
    assert np.allclose(fast.predict_action(obs, z), policy.predict_action(obs, z), atol=1e-5)
    assert fast.predict_action(obs).shape == (3, 16, 8) and (fast.n_obs_steps, fast.n_action_steps) == (2, 8)


def test_numpy_policy_refuses_bad_obs_a_pixel_policy_and_never_returns_a_non_finite_chunk():
    fast = NumpyPolicy(_policy(3, 2, horizon=4, n_action_steps=2, hidden_dim=16, n_blocks=1))
    for obs, match in ((np.zeros((1, 1, 3)), r"obs must be real numbers shaped \(B, 2, 3\)"),
                       (np.zeros((0, 2, 3)), "B >= 1"), (np.full((1, 2, 3), "a"), "real numbers"),
                       (np.full((1, 2, 3), np.nan), "obs contains NaN or inf")):
        with pytest.raises(ValueError, match=match):
            fast.predict_action(obs)
    fast.act_center = np.full_like(fast.act_center, np.inf)
    with pytest.raises(ValueError, match="the chunk is not finite"):
        fast.predict_action(np.zeros((1, 2, 3), np.float32))
    pixels = dbp.DBPPolicy(2, 2, dbp.DBPConfig(obs="pixels", horizon=4, hidden_dim=16, n_blocks=1, crop=28),
                           image_shape=(1, 3, 32, 32))
    with pytest.raises(ValueError, match="NumpyPolicy mirrors the state network"):
        NumpyPolicy(pixels)
