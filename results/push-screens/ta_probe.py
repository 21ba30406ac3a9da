"""Successes of 200 (eval seeds 0-3, 50 episodes each, as train.evaluate) of checkpoints executed with Ta = 2
and Ta = 1 steps per chunk (training does not depend on Ta). Run from the repository root:
    OMP_NUM_THREADS=1 PYTHONPATH=. python results/push-screens/ta_probe.py CKPT... [--ta 2 1]"""
import sys

import torch

import dbp
import train
import training

torch.set_num_threads(1)
args = sys.argv[1:]
tas = [2, 1]
if "--ta" in args:
    i = args.index("--ta")
    args, tas = args[:i], [int(a) for a in args[i + 1:]]
for ck in args:
    policy = dbp.DBPPolicy.from_checkpoint(ck).eval()
    task = training.load_checkpoint(ck)["task"]
    counts = []
    for ta in tas:
        policy.n_action_steps = ta
        counts.append(sum(train.evaluate(policy, task, 50, s)["n_success"] for s in range(4)))
    print(ck, " / ".join(f"Ta {ta}: {n}" for ta, n in zip(tas, counts)), flush=True)
