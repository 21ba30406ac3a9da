"""DBPO on example.py's Reach toy, whose episodes only truncate (reward: minus the distance every step): success of
the deployed policy before and after, and the value loss per iteration.

    python results/dbpo/truncation/toy.py SRC_DIR OUT.json [SEED [ITERATIONS [FIELD=VALUE ...]]]
SRC_DIR holds the dbp.py, dbpo.py and example.py to run; FIELD=VALUE override DBPOConfig's defaults. "return" is
the deployed policy's mean episode return over 200 seeded episodes (minus the summed distance to the goal).
"""
import json, sys, time

src, out = sys.argv[1], sys.argv[2]
seed, iterations = (int(sys.argv[3]) if len(sys.argv) > 3 else 0), (int(sys.argv[4]) if len(sys.argv) > 4 else 60)
overrides = {k: int(v) if v.isdigit() else float(v) for k, v in (a.split("=") for a in sys.argv[5:])}
sys.path.insert(0, src)
import numpy as np, torch
import dbpo, example

torch.manual_seed(seed)
policy = example.pretrain(*example.demos(3, seed), steps=300)
cfg, T, n_envs = dbpo.DBPOConfig(**overrides), 20, 16


def mean_return(policy, episodes=200, seed=1000):
    env, total = example.Reach(episodes, seed), np.zeros(episodes)
    for _ in range(example.LIMIT // example.Ta):
        chunk = policy.predict_action(env.hist.copy())[:, policy.executed]
        for i in range(episodes):
            for a in chunk[i]:
                total[i] += env.step(i, a)[0]
    return float(total.mean())


agent = dbpo.DBPOAgent(policy, cfg)
agent.set_action_bounds(-np.ones(2), np.ones(2))
buffer, env = agent.make_buffer(T, n_envs), example.Reach(n_envs, seed + 1)
optimizers, schedulers = dbpo.make_optimizers(agent, cfg, iterations)
log, t0 = [], time.time()
before, return_before = example.success(policy, episodes=200), mean_return(policy)
for it in range(iterations):
    for _ in range(T):
        step, outcome = example.run_chunk(env, agent, env.hist.copy())
        buffer.add(**step, **outcome)
    stats = dbpo.ppo_update(agent, buffer, agent.value(env.hist.copy()), optimizers, schedulers, cfg,
                            critic_only=it < cfg.critic_warmup_iters)
    buffer.reset()
    log.append(dict(iteration=it, value_loss=stats["losses/value"], reward_std=agent.reward_std,
                    explained_variance=stats["losses/explained_variance"]))
after, return_after = example.success(agent.policy, episodes=200), mean_return(agent.policy)
res = dict(src=src, seed=seed, iterations=iterations, overrides=overrides, success_before=before, success_after=after,
           return_before=return_before, return_after=return_after, seconds=time.time() - t0,
           max_value_loss=max(r["value_loss"] for r in log), last_value_loss=log[-1]["value_loss"], log=log)
print(json.dumps({k: v for k, v in res.items() if k != "log"}))
json.dump(res, open(out, "w"), indent=1)
