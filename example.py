"""Both stages with dbp.py, dbpo.py and training.py: demos -> windows -> DBP -> DBPO, on a toy reaching task.

Copy dbp.py, dbpo.py, training.py (the EMA) and this file anywhere (torch and numpy are all they need) and run
`python example.py`.
The toy stands in for your env: a point in the plane moves towards a goal, the reward is the negative
distance every step, and an episode ends only at its time limit (a truncation, never a termination), so the
critic bootstraps at every episode end. What this file shows is what train.py does for the tasks of envs.py:
    windows        the chunk of step t starts at the oldest observation step t-To+1; the history before an
                   episode's first step is padded with its first observation, the actions past its end with
                   its last action
    stage 1        AdamW (lr 3e-4, weight decay 1e-6), linear warm-up then cosine, grad-norm clip 10, an EMA
                   of the weights (training.EMA); the EMA model is what you evaluate, save and fine-tune
    rollouts       each decision executes the Ta steps chunk[:, To-1 : To-1+Ta]; an episode that ends inside
                   a chunk stops there: its reward is the sum over the steps executed, terminated/truncated
                   say how it ended, and final_value = V(its last obs history) when it was truncated (0 else)
    updates        ppo_update(..., critic_only=True) for the first critic_warmup_iters iterations
"""
import numpy as np
import torch

import dbp
import dbpo
import training

To, Th, Ta, LIMIT = 2, 8, 2, 40                 # obs history, chunk length, executed steps, episode length


class Reach:
    """N toy envs at once: obs (N, 4) = position and goal, action (N, 2) = a velocity in [-1, 1]^2."""

    def __init__(self, n, seed):
        self.rng, self.n = np.random.default_rng(seed), n
        self.pos, self.goal, self.t = np.zeros((n, 2)), np.zeros((n, 2)), np.zeros(n, int)
        self.hist = np.zeros((n, To, 4), np.float32)
        for i in range(n):
            self.reset(i)

    def reset(self, i):
        self.pos[i], self.goal[i], self.t[i] = self.rng.uniform(-1, 1, 2), self.rng.uniform(-1, 1, 2), 0
        self.hist[i] = np.concatenate([self.pos[i], self.goal[i]])      # the history padded with the first obs

    def expert(self):
        return np.clip((self.goal - self.pos) / 0.1 + self.rng.normal(0, 0.3, (self.n, 2)), -1, 1)

    def step(self, i, action):
        """One step of env i -> (reward, success, truncated)."""
        self.pos[i] = np.clip(self.pos[i] + 0.05 * np.clip(action, -1, 1), -1.5, 1.5)
        self.t[i] += 1
        self.hist[i] = np.roll(self.hist[i], -1, axis=0)
        self.hist[i, -1] = np.concatenate([self.pos[i], self.goal[i]])
        dist = np.linalg.norm(self.goal[i] - self.pos[i])
        return -dist, dist < 0.05, self.t[i] >= LIMIT


def demos(n_episodes, seed):
    """Scripted episodes -> obs windows (M, To, 4) and action chunks (M, Th, 2), aligned as train.py aligns them."""
    env, obs, acts = Reach(n_episodes, seed), [], []
    episode_obs, episode_act = [[] for _ in range(n_episodes)], [[] for _ in range(n_episodes)]
    for _ in range(LIMIT):
        a = env.expert()
        for i in range(n_episodes):
            episode_obs[i].append(env.hist[i, -1].copy())
            episode_act[i].append(a[i])
            env.step(i, a[i])
    for o, a in zip(map(np.array, episode_obs), map(np.array, episode_act)):
        t = np.arange(len(o))[:, None]
        obs.append(o[np.clip(t + np.arange(1 - To, 1), 0, len(o) - 1)])            # (T, To, 4)
        acts.append(a[np.clip(t + np.arange(1 - To, Th - To + 1), 0, len(a) - 1)])  # (T, Th, 2): starts at t-To+1
    return np.concatenate(obs).astype(np.float32), np.concatenate(acts).astype(np.float32)


def pretrain(obs, actions, steps, batch=128, warmup=100):
    """Stage 1, train.py's recipe -> the EMA policy."""
    policy = dbp.DBPPolicy(4, 2, dbp.DBPConfig(horizon=Th, n_obs_steps=To, n_action_steps=Ta, hidden_dim=128))
    policy.normalizer.fit(obs, actions)
    ema = training.EMA(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-4, weight_decay=1e-6)
    cosine = lambda s: (s + 1) / warmup if s < warmup else 0.5 * (1 + np.cos(np.pi * (s - warmup) / max(1, steps - warmup)))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, cosine)
    obs, actions = torch.as_tensor(obs), torch.as_tensor(actions)
    for _ in range(steps):
        i = torch.randint(0, len(obs), (batch,))
        loss, _ = policy.compute_loss(obs[i], actions[i])
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(policy.parameters(), 10.0)
        opt.step()
        sched.step()
        ema.update(policy)
    return ema.model


def run_chunk(env, agent, obs):
    """One decision in every env: sample, execute Ta steps (fewer where an episode ends), auto-reset."""
    actions, step = agent.act(obs)                                          # (N, Ta, 2) raw
    reward, truncated, final_value = np.zeros(env.n), np.zeros(env.n, bool), torch.zeros(env.n)
    for i in range(env.n):
        for a in actions[i]:
            r, _, truncated[i] = env.step(i, a)
            reward[i] += r                                                  # the sum over the steps executed
            if truncated[i]:
                break
        if truncated[i]:                                                    # bootstrap from its last obs
            final_value[i] = agent.value(env.hist[i:i + 1].copy())[0]
            env.reset(i)
    return step, dict(reward=reward, terminated=np.zeros(env.n, bool), truncated=truncated, final_value=final_value)


def finetune(policy, iterations, n_envs=16, T=20, cfg=dbpo.DBPOConfig(), seed=0):
    """Stage 2 -> the fine-tuned policy (agent.policy: deploy it as any DBPPolicy)."""
    agent = dbpo.DBPOAgent(policy, cfg)
    agent.set_action_bounds(-np.ones(2), np.ones(2))
    buffer, env = agent.make_buffer(T, n_envs), Reach(n_envs, seed)
    optimizers, schedulers = dbpo.make_optimizers(agent, cfg, iterations)
    for it in range(iterations):
        for _ in range(T):
            step, outcome = run_chunk(env, agent, env.hist.copy())
            buffer.add(**step, **outcome)
        dbpo.ppo_update(agent, buffer, agent.value(env.hist.copy()), optimizers, schedulers, cfg,
                        critic_only=it < cfg.critic_warmup_iters)
        buffer.reset()
    return agent.policy


def success(policy, episodes=100, seed=1000):
    """Share of episodes that come within 0.05 of the goal, the deployed policy (one pass, no std head)."""
    env, reached = Reach(episodes, seed), np.zeros(episodes, bool)
    for _ in range(LIMIT // Ta):
        chunk = policy.predict_action(env.hist.copy())[:, policy.executed]  # (N, Ta, 2)
        for i in range(episodes):
            for a in chunk[i]:
                reached[i] |= env.step(i, a)[1]
    return float(reached.mean())


def main(n_demos=3, steps=1000, iterations=30, seed=0):
    torch.manual_seed(seed)
    policy = pretrain(*demos(n_demos, seed), steps)
    before = success(policy)
    after = success(finetune(policy, iterations, seed=seed + 1))
    print(f"{n_demos} demos, {steps} DBP steps: success {before:.2f}; after {iterations} DBPO iterations: {after:.2f}")
    return before, after


if __name__ == "__main__":
    main()
