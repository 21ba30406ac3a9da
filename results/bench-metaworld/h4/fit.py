"""How closely DBP fits demonstrated chunks on shelf-place (Th = 4, Ta = 3, 10 demos), against MSE: the RMS error
of the EMA policy's executed steps against the recorded chunk (normalized units, 8 draws of z per window), split
into the bias of the samples' mean and their spread, on the training demos (seed 0) and on seed 1's demos (new
layouts), at 1000 / 2500 / 5000 steps of train.py's recipe; 'flow1' is bench.py's flow-1 (one Euler step) trained
with the same recipe. Writes fit.json beside this file; a rerun skips the
settings already in it.

    python results/bench-metaworld/h4/fit.py
"""
import dataclasses
import json
import os
import sys
import time

import torch

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "..")
sys.path.insert(0, ROOT)
import bench  # noqa: E402
import demonstrations  # noqa: E402
import train  # noqa: E402

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fit.json")
SETTINGS = dict(base={}, mse=dict(objective="mse"), lr1e3=dict(lr=1e-3), w512=dict(hidden_dim=512),
                tau_hi=dict(temperatures=(0.05, 0.2, 0.5)), tau02=dict(temperatures=(0.2,)),
                tau_wide=dict(temperatures=(0.2, 0.5, 1.0)), steps15k=dict(steps=15000), flow1=dict(model="flow"))


def errors(policy, obs, actions, executed):
    torch.manual_seed(0)
    samples = torch.stack([policy.predict_action(obs) for _ in range(8)])[:, :, executed]   # (8, N, Ta, Da)
    actions = actions[:, executed]
    rms = lambda x: x.pow(2).mean().sqrt().item()
    return dict(err=rms(samples - actions), spread=rms(samples.std(0)), bias=rms(samples.mean(0) - actions))


def run(name, model="dbp", **over):
    cfg = train.PretrainConfig(**{**dict(task="mw-shelf-place", demos=10, steps=5000, horizon=4, n_action_steps=3,
                                         demo_dir=os.path.join(ROOT, "demos")), **over})
    torch.manual_seed(0)
    _, obs, actions = demonstrations.load_windows(cfg, cfg.task)
    _, new_obs, new_actions = demonstrations.load_windows(dataclasses.replace(cfg, seed=1), cfg.task)
    policy = bench.build(model, obs, actions, cfg, None)
    state = train.Pretraining(policy, cfg, torch.device("cpu"))
    pos, w = policy.positives(obs, actions) if model == "dbp" else (None, None)       # the baselines take none
    executed = slice(cfg.n_obs_steps - 1, cfg.n_obs_steps - 1 + cfg.n_action_steps)
    t0, rows = time.time(), []
    for step in range(1, cfg.steps + 1):
        i = torch.randint(0, len(actions), (cfg.batch_size,), generator=state.sampler)
        loss, _ = policy.compute_loss(obs[i], actions[i], *(() if pos is None else (pos[i], w[i])))
        train.optimizer_step(policy, loss, state.opt, state.sched, state.ema, cfg.grad_clip)
        if step in (1000, 2500, 5000, 10000, 15000):
            rows.append(dict(step=step, train=errors(state.ema.model, obs, actions, executed),
                             held_out=errors(state.ema.model, new_obs, new_actions, executed)))
            print(name, rows[-1], f"{time.time() - t0:.0f}s", flush=True)
    return rows


if __name__ == "__main__":
    torch.set_num_threads(1)
    done = json.load(open(OUT)) if os.path.exists(OUT) else {}
    for name, over in SETTINGS.items():
        if name not in done:
            done[name] = dict(settings=over, rows=run(name, **over))
            with open(OUT + ".tmp", "w") as f:
                json.dump(done, f, indent=1)
            os.replace(OUT + ".tmp", OUT)
