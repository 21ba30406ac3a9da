"""Tests of example.py, the whole loop with dbp.py, dbpo.py and training.py that the README points users to.

    python -m pytest -q test_example.py
"""
import numpy as np
import torch

import dbp
import example


def test_the_example_runs_both_stages_end_to_end_and_its_windows_align_as_train_py_does():
    obs, actions = example.demos(2, seed=0)
    assert obs.shape == (2 * example.LIMIT, example.To, 4) and actions.shape == (2 * example.LIMIT, example.Th, 2)
    assert np.array_equal(obs[0, 0], obs[0, 1])                    # the first window's history: padded with obs 0
    assert np.array_equal(actions[1, 1], actions[2, 0])            # the chunk of step t starts at t - To + 1
    torch.manual_seed(0)
    policy = example.pretrain(*example.demos(3, seed=0), steps=300)
    assert example.success(policy) >= 0.1         # untrained: 0.01; 300 steps on 3 demos: 0.20-0.34 over seeds 0-2
    tuned = example.finetune(policy, iterations=3, n_envs=4, T=10)
    assert isinstance(tuned, dbp.DBPPolicy) and all(torch.isfinite(p).all() for p in tuned.parameters())
    assert 0 <= example.success(tuned) <= 1
