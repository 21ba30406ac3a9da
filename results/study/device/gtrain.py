# Device-side training only (no pybullet there): train.py's stage 1 with its evaluations skipped,
# then a slim checkpoint (EMA policy, config, run_config, task) to evaluate back home.
import os, sys, torch
import dbp, train, training
train.evaluate = lambda *a, **k: {"success_rate": float("nan"), "ci95": (0.0, 0.0), "n_episodes": 0, "mode_fractions": {}}
name, rest = sys.argv[1], sys.argv[2:]
out = f"runs/dev/{name}"
if not os.path.exists(f"{out}/slim.pt"):
    if os.path.exists(out):
        os.system(f"rm -rf {out}")
    train.main(rest + ["--out", out, "--eval-every", "15000"])
    ck = training.load_checkpoint(f"{out}/ckpt.pt")
    torch.save({k: v for k, v in ck.items() if k != "train"}, f"{out}/slim.pt")
    os.remove(f"{out}/ckpt.pt")
print("done", name, flush=True)
