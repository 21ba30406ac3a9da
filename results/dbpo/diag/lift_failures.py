# Per lift checkpoint, 100 evaluation episodes: success, block lifted > 3 cm (failed), both fingers touched it, or never touched.
import sys, numpy as np, torch, dbp, envs, rollouts
torch.set_num_threads(1)
for ck in sys.argv[1:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck).eval(); torch.manual_seed(0)
    env = rollouts.make_chunk_env("lift", pol.n_obs_steps, pol.n_action_steps); u = env.unwrapped
    names = u.obs_names; iz = names.index("block_z"); tally = {}
    for i in range(100):
        obs, info = env.reset(seed=envs.eval_seed(0, i)); done = False; zmax = 0; touched = False
        while not done:
            chunk = pol.predict_action(obs[None])[0]
            obs, r, te, tr, info = env.step(chunk[pol.n_obs_steps - 1:pol.n_obs_steps - 1 + pol.n_action_steps]); done = te or tr
            zmax = max(zmax, obs[-1][iz]); touched |= u.arms[0].touches(u.block)
        key = "success" if info["success"] else ("lifted>3cm" if zmax > 0.02 + 0.03 else "touched" if touched else "never touched")
        tally[key] = tally.get(key, 0) + 1
    print(ck, sorted(tally.items()), flush=True)
