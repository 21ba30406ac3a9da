"""Push expert variants (issue 10): success over 1200 seeded episodes (eval seeds 0-3, 300 each).

AHEAD: how far past the block centre the pushing hand aims (m); LATERAL: how far off the push line
(m) the hand may be before it backs off and re-approaches. Version 1 of the expert used (0.005, 0.02);
version 2 (envs.DEMO_VERSION) uses (0.03, 0.01). Run from the repository root:
    PYTHONPATH=. python results/push-screens/expert_variants.py
"""
import numpy as np

import envs

VARIANTS = [(0.005, 0.02), (0.02, 0.02), (0.04, 0.02), (0.03, 0.015), (0.03, 0.012), (0.03, 0.01), (0.05, 0.01),
            (0.03, 0.008)]
env = envs.make_env("push")
for ahead, lateral in VARIANTS:
    envs.PushExpert.AHEAD, envs.PushExpert.LATERAL = ahead, lateral
    lengths, n = [], 0
    for s in range(4):
        for i in range(300):
            obs, _, info = envs.expert_episode(env, envs.eval_seed(s, i))
            n += 1
            if info["success"]:
                lengths.append(len(obs))
    print(f"AHEAD {ahead:.3f} LATERAL {lateral:.3f}: success {len(lengths)}/{n} = {len(lengths) / n:.3f}, "
          f"steps per successful episode {np.mean(lengths):.1f} (p95 {np.percentile(lengths, 95):.0f})", flush=True)
