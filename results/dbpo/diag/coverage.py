# Does a few-demo policy fail where its demos did not reach? For each checkpoint, 100 evaluation episodes, success
# split by whether the object starts inside the box its demos' object positions span (the min-max range the
# normalizer was fit on, +5 mm) or outside it, with the median of arm 0's closest xy approach to the block (lift)
# or to bar end 0 (bimanual; it grips 4 cm in from the end). Object xy: lift's block, bimanual's two bar ends.
#   python results/dbpo/diag/coverage.py TASK CKPT [CKPT ...]     (from the repository root, PYTHONPATH=.)
import sys, numpy as np, torch, dbp, envs, rollouts
torch.set_num_threads(1)
OBJECT_XY = {"lift": ["block_x", "block_y"], "bimanual": ["bar_end0_x", "bar_end0_y", "bar_end1_x", "bar_end1_y"]}
task = sys.argv[1]
for ck in sys.argv[2:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck).eval(); torch.manual_seed(0)
    env = rollouts.make_chunk_env(task, pol.n_obs_steps, pol.n_action_steps)
    idx = [env.unwrapped.obs_names.index(n) for n in OBJECT_XY[task]]
    c, h = (getattr(pol.normalizer, f"obs_{k}")[idx].numpy() for k in ("center", "half_range"))
    split = {True: [], False: []}
    for i in range(100):
        obs, info = env.reset(seed=envs.eval_seed(0, i)); done = False; reach = np.inf
        inside = bool((np.abs(obs[-1][idx] - c) <= h + 0.005).all())
        while not done:
            chunk = pol.predict_action(obs[None])[0]
            obs, r, te, tr, info = env.step(chunk[pol.executed]); done = te or tr
            reach = min(reach, float(np.linalg.norm(obs[-1][0:2] - obs[-1][idx[:2]])))
        split[inside].append((info["success"], reach))
    print(ck, "; ".join(f"object starts {'inside' if k else 'outside'} the demos' box: {sum(s for s, _ in v)}/{len(v)} "
                        f"succeed, closest approach median {100 * np.median([d for _, d in v]):.1f} cm"
                        for k, v in split.items()), flush=True)
