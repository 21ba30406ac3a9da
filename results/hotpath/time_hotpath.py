"""Time dbp.py's hot paths from one source tree: predict_action at batch 1 (torch and NumpyPolicy, 1 thread,
p50 of 2000 calls after 200 warm-up) and training steps/s (batch 128, 1 thread: compute_loss with K = 16
positives, backward, AdamW, EMA). Synthetic data with push-like dimensions.

    python results/hotpath/time_hotpath.py SRC_DIR OUT.json     # SRC_DIR holds the dbp.py to time
"""
import importlib, json, sys, time

import numpy as np
import torch

src, out = sys.argv[1], sys.argv[2]
sys.path.insert(0, src)
dbp = importlib.import_module("dbp")
torch.set_num_threads(1)
torch.manual_seed(0)
Do, Da, N = 9, 4, 4000                                                   # push: obs 9, action 4
cfg = dbp.DBPConfig()
obs = torch.randn(N, cfg.n_obs_steps, Do)
actions = torch.randn(N, cfg.horizon, Da)
policy = dbp.DBPPolicy(Do, Da, cfg)
policy.normalizer.fit(obs, actions)


def p50_ms(fn, calls=2000, warmup=200):
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return float(np.percentile(times, 50) * 1e3)


one = obs[:1].numpy()
NumpyPolicy = getattr(dbp, "NumpyPolicy", None) or importlib.import_module("numpy_policy").NumpyPolicy  # older trees
fast = NumpyPolicy(policy)
res = dict(src=src, predict_action_b1_ms=p50_ms(lambda: policy.predict_action(one)),
           numpy_policy_b1_ms=p50_ms(lambda: fast.predict_action(one)))
pos, w = policy.positives(obs, actions)
opt = torch.optim.AdamW(policy.parameters(), lr=1e-4)
ema = (getattr(dbp, "EMA", None) or importlib.import_module("training").EMA)(policy)  # older trees: dbp.EMA
gen = torch.Generator().manual_seed(0)


def step():
    i = torch.randint(0, N, (128,), generator=gen)
    loss, info = policy.compute_loss(obs[i], actions[i], pos[i], w[i])
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    ema.update(policy)


for _ in range(20):
    step()
t0 = time.perf_counter()
for _ in range(300):
    step()
res["train_steps_per_s_b128"] = 300 / (time.perf_counter() - t0)
res["cpu"] = next(l.split(":")[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name"))
res["torch"] = torch.__version__
print(json.dumps(res, indent=1))
json.dump(res, open(out, "w"), indent=1)
