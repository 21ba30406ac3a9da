"""A copy of a checkpoint for code from before DBPConfig.objective: the field dropped (it must be 'drift')."""
import sys
import torch
src, dst = sys.argv[1:]
ckpt = torch.load(src, map_location="cpu", weights_only=True)
assert ckpt["config"].pop("objective", "drift") == "drift"
for key in ("run_config",):
    if isinstance(ckpt.get(key), dict):
        ckpt[key].pop("objective", None)
torch.save(ckpt, dst)
print("wrote", dst)
