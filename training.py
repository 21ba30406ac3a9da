"""What a training run around dbp.py needs beyond the policy: an EMA of the weights and files a crash cannot tear.

Copy it beside dbp.py (it imports torch, dbp and the standard library) for the recipe of train.py and example.py:
    ema = EMA(policy)                        # after each optimizer step: ema.update(policy)
    save_checkpoint("ckpt.pt", ema.model)    # atomic; DBPPolicy.from_checkpoint("ckpt.pt") rebuilds the policy
dbp.py alone saves with torch.save(policy.checkpoint(), path) and loads the same way.
"""
import copy
import math
import numbers
import os

import torch

import dbp


EMA_MAX_DECAY = 0.9999   # the default cap of EMA's decay (train.py's --ema-max-decay)


class EMA:
    """Exponential moving average of a model's weights (Diffusion Policy's schedule):
    decay = 1 - (1 + step)^-power, capped at max_decay; evaluation and checkpoints use it."""

    def __init__(self, model, power=0.75, max_decay=EMA_MAX_DECAY):
        if not (isinstance(power, numbers.Real) and 0 < power < math.inf):
            raise ValueError(f"power must be a finite number > 0; got {power!r}")
        if not (isinstance(max_decay, numbers.Real) and 0 <= max_decay < 1):
            raise ValueError(f"max_decay must be a number in [0, 1); got {max_decay!r}")
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.power, self.max_decay, self.step = power, max_decay, 0

    @torch.no_grad()
    def update(self, model):
        self.step += 1
        decay = min(self.max_decay, 1 - (1 + self.step) ** -self.power)
        for e, p in zip(self.model.parameters(), model.parameters()):
            e.lerp_(p, 1 - decay)
        for e, b in zip(self.model.buffers(), model.buffers()):
            e.copy_(b)


def atomic_write(path, write, suffix=""):
    """write(tmp) writes the file at tmp, which then replaces `path` at once: a crash mid-write never leaves a half
    file at `path`. suffix: the tmp file's extension, for writers that choose the format by it."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{suffix}"
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def save_checkpoint(path, policy, **extra):
    """Atomically write policy.checkpoint(**extra): {format, config, state_dict, **extra}, plain tensors and values."""
    ckpt = policy.checkpoint(**extra)
    atomic_write(path, lambda tmp: torch.save(ckpt, tmp))


def load_checkpoint(path):
    """A checkpoint file's dict, loaded safely (weights_only=True) and checked to be one of ours; its extra fields
    (a run's config, its training state) are the caller's. DBPPolicy.from_checkpoint takes the dict or the path."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != dbp.CKPT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a {dbp.CKPT_FORMAT} checkpoint (format: {found!r}); retrain with this version")
    for key in ("config", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path} is missing the field '{key}'")
    return ckpt
