# Episodes of the DBPO rollout policy (Gaussian around mu, std 0.1) from a checkpoint: the worst returns and where the block ended.
import sys, numpy as np, torch, dbp, dbpo, envs, rollouts
torch.set_num_threads(1); torch.manual_seed(0)
pol = dbp.DBPPolicy.from_checkpoint(sys.argv[1]).eval(); agent = dbpo.DBPOAgent(pol, dbpo.DBPOConfig())
env = rollouts.make_chunk_env("push", pol.n_obs_steps, pol.n_action_steps); out = []
agent.set_action_bounds(env.action_space.low[0], env.action_space.high[0])
for i in range(int(sys.argv[2])):
    obs, info = env.reset(seed=1000 + i); done = False; rets = []
    while not done:
        a, _ = agent.act(torch.as_tensor(obs[None]))
        obs, r, term, trunc, info = env.step(a[0]); done = term or trunc; rets.append(r)
    out.append((sum(rets), min(rets), info["success"], np.round(obs[-1][4:7], 3), np.round(obs[-1][:3], 3)))
out.sort(key=lambda t: t[0])
for o in out[:6]: print("return %.1f worst decision %.2f success %s block %s ee %s" % o)
print("median return %.1f" % np.median([o[0] for o in out]))
