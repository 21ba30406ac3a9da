"""Tests of baselines.py: diffusion (MLP and U-Net), flow, shortcut and regression policies on a bimodal toy,
and their config checks.

    python -m pytest -q test_baselines.py   # under a minute on 2 CPU cores
"""
import dataclasses

import pytest
import torch

import baselines
import dbp


# ----------------------------------------------------------------------------- baselines.py
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


@pytest.mark.slow
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
