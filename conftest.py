"""Helpers shared by the test files of train.py and robot.py (test_dbp.py uses none: it runs beside dbp.py alone)."""
import os

import numpy as np

import dbp
import training

# the device of the tests marked `device`: cpu here and in CI; gpu_check.sh sets cuda on a lent GPU machine
DEVICE = os.environ.get("DBP_TEST_DEVICE", "cpu")

# a pretraining run small enough for a test: few demos, a tiny network, short evaluations
TINY = ["--demos", "5", "--steps", "2000", "--eval-every", "500", "--eval-episodes-periodic", "1",
        "--eval-episodes", "3", "--hidden-dim", "32", "--n-blocks", "1", "--batch-size", "16"]


def gif_frames(path):
    """The frames of an animated GIF as (H, W, 3) uint8 arrays."""
    from PIL import Image, ImageSequence
    with Image.open(path) as im:
        return [np.asarray(f.convert("RGB")) for f in ImageSequence.Iterator(im)]


def save_tiny_policy(path, task, obs_dim, action_dim):
    """Save an untrained small DBPPolicy checkpoint (its normalizer fit on uniform data in [-1, 1]) for `task` (None: no task field); returns the path."""
    policy = dbp.DBPPolicy(obs_dim, action_dim, dbp.DBPConfig(horizon=4, n_obs_steps=2, hidden_dim=16, n_blocks=1))
    rng = np.random.default_rng(0)
    policy.normalizer.fit(rng.uniform(-1, 1, (64, 2, obs_dim)), rng.uniform(-1, 1, (64, 4, action_dim)))
    training.save_checkpoint(path, policy, **({} if task is None else {"task": task}))
    return path
