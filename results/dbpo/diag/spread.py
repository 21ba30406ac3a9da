# Spread of the frozen generator's chunks along episodes of a checkpoint (decision index -> spread).
import sys, numpy as np, torch, dbp, dbpo, envs, rollouts
torch.set_num_threads(1)
pol = dbp.DBPPolicy.from_checkpoint(sys.argv[1]).eval(); agent = dbpo.DBPOAgent(pol, dbpo.DBPOConfig())
env = rollouts.make_chunk_env("push", pol.n_obs_steps, pol.n_action_steps); rows = []
for i in range(10):
    obs, info = env.reset(seed=envs.eval_seed(0, i)); done = False; sp = []
    while not done:
        sp.append(agent.spread(agent.condition(torch.as_tensor(obs[None])), torch.Generator().manual_seed(0)).item())
        chunk = pol.predict_action(obs[None])[0]
        obs, r, term, trunc, info = env.step(chunk[1:3]); done = term or trunc
    rows.append(sp); print(info["success"], info["mode"], " ".join(f"{v:.2f}" for v in sp[:16]))
allv = np.concatenate(rows); print("median %.3f mean %.3f p90 %.3f max %.3f" % (np.median(allv), allv.mean(), np.quantile(allv, .9), allv.max()))
