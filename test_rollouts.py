"""Tests of rollouts.py: the chunk env and the replay of an episode in progress, and evaluation.

    python -m pytest -q test_rollouts.py    # a few seconds on 2 CPU cores
"""
import numpy as np

import envs
import rollouts


def test_chunk_env_brings_an_episode_in_progress_back_in_a_fresh_env():
    rng = np.random.default_rng(0)
    a, b = rollouts.make_chunk_env("push", 2, 2), rollouts.make_chunk_env("push", 2, 2)
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


class HoldPolicy:
    """Any object with predict_action, n_obs_steps and n_action_steps is a policy for rollouts.evaluate."""
    n_obs_steps, n_action_steps = 2, 3

    def __init__(self, delay_s=0.0):
        self.obs_shapes, self.delay_s = [], delay_s

    def predict_action(self, obs):
        self.obs_shapes.append(obs.shape)
        return np.tile([0.5, 0.0, 0.2, 0.0], (1, 8, 1)).astype(np.float32)     # (1, Th, Da)


class LeftExpertPolicy:
    """push's scripted expert, always toward the left goal, as a chunk policy (its target held over the chunk)."""
    n_obs_steps, n_action_steps = 1, 2

    def __init__(self):
        self.expert = envs.make_expert(envs.PushEnv, np.random.default_rng(0), noise_m=0.0)
        self.expert.mode, self.expert.goal = 0, envs.PushEnv.GOALS[0]

    def predict_action(self, obs):
        return np.tile(self.expert.act(obs[0, -1]), (1, 2, 1)).astype(np.float32)


def test_evaluate_counts_each_modes_attempts_and_successes():
    r = rollouts.evaluate("push", LeftExpertPolicy(), n_episodes=4, seed=0)
    assert r["mode_attempts"] == {"left": 4, "right": 0} and r["mode_counts"]["right"] == 0
    assert r["mode_counts"]["left"] == r["n_success"] >= 3


def test_evaluate_reports_interval_and_modes():
    policy = HoldPolicy()
    r = rollouts.evaluate("push", policy, n_episodes=2, seed=0)
    assert set(policy.obs_shapes) == {(1, 2, 9)} and len(policy.obs_shapes) == 2 * 20  # 60 steps, Ta = 3
    assert r["n_success"] == 0 and r["success_rate"] == 0 and r["mode_fractions"] == {"left": 0.0, "right": 0.0}
    assert r["mode_attempts"] == {"left": 0, "right": 0}                    # the block never left the middle
    assert r["ci95"][0] == 0 and 0.5 < r["ci95"][1] < 0.9
    lo, hi = rollouts.wilson_interval(19, 20)
    assert 0.76 < lo < 0.77 and 0.99 < hi < 1.0
