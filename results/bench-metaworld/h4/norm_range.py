"""Do new layouts leave the normalizer's range? Per task, seed 0's 10 demos fit the min-max normalizer; seed 1's 10
demos (other layouts) are mapped through it, and the largest |normalized obs| and its 99th percentile are printed.

    python results/bench-metaworld/h4/norm_range.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import dbp  # noqa: E402
import demonstrations  # noqa: E402
import envs  # noqa: E402

for task in ("mw-push", "mw-pick-place", "mw-hand-insert", "mw-shelf-place"):
    train, new = (envs.load_demos(demonstrations.collect_demos(task, 10, seed=s, progress=False)) for s in (0, 1))
    norm = dbp.Normalizer(train["obs"].shape[-1], train["actions"].shape[-1])
    norm.fit(train["obs"], train["actions"])
    x = norm.normalize_obs(torch.as_tensor(new["obs"])).abs()
    print(f"{task}: max |normalized obs| {x.max():.2f}, p99 {x.quantile(0.99):.2f}, dims over 2: {int((x.max(0).values > 2).sum())}")
