"""Two toys that check the whole method in seconds on a CPU: a bimodal toy for DBP (dbp.py) and a bandit for
DBPO (dbpo.py), whose stage-1 policy is the first toy's.

    python toys.py      # trains both and prints what they show

The bimodal toy: the action is +-0.8 at random whatever the observation. DBP keeps both modes; a regressor
(objective 'mse') averages them into the empty middle. The bandit: DBPO moves both modes to the rewarded
actions +-0.6 and keeps them. The tests train them for real (test_dbp.py, test_dbpo.py).
"""
import time

import numpy as np
import torch

import dbp
import dbpo


def bimodal_toy(steps=400, seed=0, objective="drift"):
    """Trains a small DBPPolicy on the bimodal toy (weighted neighbour positives, K = 16: every observation has
    one recorded action, its neighbours hold both modes; objective 'mse': regression, which averages them)
    -> (policy, seconds)."""
    torch.manual_seed(seed)
    N = 2000
    obs = torch.rand(N, 1, 1) * 2 - 1                                   # (N, To, Do)
    actions = (torch.randint(0, 2, (N, 1, 1)) * 1.6 - 0.8) + 0.02 * torch.randn(N, 1, 1)
    cfg = dbp.DBPConfig(horizon=1, n_obs_steps=1, n_action_steps=1, hidden_dim=128, k=16, objective=objective)
    policy = dbp.DBPPolicy(obs_dim=1, action_dim=1, cfg=cfg)
    policy.normalizer.fit(obs, actions)
    pos, w = policy.positives(obs, actions)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    t0 = time.time()
    for _ in range(steps):
        i = torch.randint(0, N, (64,))
        loss, _ = policy.compute_loss(obs[i], actions[i], pos[i], w[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy, time.time() - t0


def bimodal_bandit(iterations=80, seed=0, target=0.6, prefer=0.0, cfg=None, episode=1, offset=0.0, objective="drift"):
    """Toy check of the whole DBPO loop. Stage 1 is bimodal_toy (a = +-0.8 at random, whatever the obs); DBPO then
    fine-tunes it with reward -min(|a - target|, |a + target| + prefer) + offset per decision, so both
    modes should move inward to +-target and stay, even when prefer makes the positive (> 0) or negative
    mode (< 0) pay a little more. episode = 1: one-step episodes (terminated); episode > 1: episodes of that
    many decisions that end only at the limit (truncated, bootstrapped from V), a dense reward when offset != 0.
    A decision succeeds within 0.1 of +-target; its mode is the sign of a (SuccessReplay). objective "mse": stage 1 is
    a regressor instead (dbp.DBPConfig.objective), which starts at the modes' average. Returns the deployed
    policy's mean reward (without the offset) and fraction of positive actions, before and after, and the last
    stats."""
    policy, _ = bimodal_toy(seed=seed, objective=objective)

    reward = lambda a: -np.minimum(np.abs(a - target), np.abs(a + target) + prefer)
    def deployed(p):  # one pass of mu_theta(o, z), std head dropped
        a = p.predict_action(np.random.default_rng(seed).uniform(-1, 1, (1000, 1, 1)).astype(np.float32)).ravel()
        return dict(reward=float(reward(a).mean()), positive=float((a > 0).mean()))

    cfg = cfg or dbpo.DBPOConfig()
    agent = dbpo.DBPOAgent(policy, cfg)
    n_envs, T = 64, 4
    buffer, successes = agent.make_buffer(T, n_envs), dbpo.SuccessReplay(n_envs, cfg.imitation_capacity)
    optimizers, schedulers = dbpo.make_optimizers(agent, cfg, iterations)
    obs = lambda: torch.rand(n_envs, 1, 1) * 2 - 1
    for it in range(iterations):
        for t in range(T):
            a, step = agent.act(obs())                                            # (N, Ta=1, Da=1)
            end = torch.full((n_envs,), (it * T + t + 1) % episode == 0)
            final_value = agent.value(obs()) if episode > 1 and end.all() else torch.zeros(n_envs)
            buffer.add(**step, reward=reward(a[:, 0, 0]) + offset, terminated=end & (episode == 1),
                       truncated=end & (episode > 1), final_value=final_value)
            successes.record(step["c"], step["z"], step["na"])
            for i in range(n_envs):
                successes.end(i, min(abs(a[i, 0, 0] - target), abs(a[i, 0, 0] + target)) < 0.1, a[i, 0, 0] > 0)
        stats = dbpo.ppo_update(agent, buffer, agent.value(obs()), optimizers, schedulers, cfg,
                                critic_only=it < cfg.critic_warmup_iters, replay=successes)
        buffer.reset()
    return deployed(policy), deployed(agent.policy), stats


if __name__ == "__main__":
    policy, seconds = bimodal_toy()
    a = policy.predict_action(torch.rand(1000, 1, 1) * 2 - 1).flatten()
    print(f"bimodal toy, trained 400 steps in {seconds:.1f}s: {(a > 0.4).float().mean():.2f} of samples near +0.8, "
          f"{(a < -0.4).float().mean():.2f} near -0.8, {(a.abs() < 0.4).float().mean():.2f} in the empty middle")
    t0 = time.time()
    before, after, stats = bimodal_bandit()
    print(f"bandit, deployed mu(o, z): mean reward {before['reward']:.3f} -> {after['reward']:.3f}, "
          f"positive mode {before['positive']:.2f} -> {after['positive']:.2f}; last update {stats}; "
          f"{time.time() - t0:.1f}s")
