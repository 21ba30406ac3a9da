# Per checkpoint: episodes by side the block ended on (y > 0.02 left, < -0.02 right, else middle) and success.
import sys, numpy as np, torch, dbp, envs, rollouts
torch.set_num_threads(1)
for ck in sys.argv[1:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck).eval(); torch.manual_seed(0)
    env = rollouts.make_chunk_env("push", pol.n_obs_steps, pol.n_action_steps)
    tally = {}
    for i in range(100):
        obs, info = env.reset(seed=envs.eval_seed(0, i)); done = False
        while not done:
            chunk = pol.predict_action(obs[None])[0]
            obs, r, term, trunc, info = env.step(chunk[pol.n_obs_steps - 1:pol.n_obs_steps - 1 + pol.n_action_steps]); done = term or trunc
        y = obs[-1][5]; side = "left" if y > 0.02 else "right" if y < -0.02 else "middle"
        key = (side, bool(info["success"])); tally[key] = tally.get(key, 0) + 1
    print(ck, sorted(tally.items()), flush=True)
