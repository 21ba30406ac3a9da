"""Drift-Based Policy (DBP): a one-step generative policy trained with a drifting objective.

Gao et al. 2026, "Drift-Based Policy Optimization" (arXiv 2604.03540), built on Deng et al. 2026, "Generative
Modeling via Drifting" (arXiv 2602.04770). A network a = f(obs, z) maps noise z to an action chunk in ONE forward
pass. Training attracts generated chunks to demonstrated ones and repels them from each other (the drift field V);
the network regresses onto its own drifted samples (stop-gradient). "eq. (N)" refers to ALGORITHM.md of this
repository; the comments here suffice to read the code without it.

This file stands alone (torch, numpy, stdlib): copy it into your codebase and use
    policy = DBPPolicy(obs_dim, action_dim, DBPConfig(horizon=8, n_obs_steps=2))
    policy.normalizer.fit(obs, actions)
    pos, w = policy.positives(obs, actions)       # optional: neighbour positives (K = cfg.k)
    loss, info = policy.compute_loss(obs, actions, pos, w)
    actions = policy.predict_action(obs)          # exactly one network evaluation
From cameras (DBPConfig(obs="pixels")), obs is {"image": (B, To, V, 3, H, W) uint8, "agent_pos": (B, To, Do)}:
    policy = DBPPolicy(Do, action_dim, DBPConfig(obs="pixels"), image_shape=(V, 3, H, W))
    policy.normalizer.fit(obs["agent_pos"], actions)   # then as above
test_dbp.py, copied beside it, is its tests; example.py runs both stages with it, dbpo.py and training.py.

Shape letters, used in comments at every reshape: B batch of observations, G generated samples per observation,
K positives per observation, To obs steps, Do obs dim, Th action horizon (chunk length), Da action dim, Ta executed
steps per chunk, L = Th*Da, N dataset size (or envs). An `n` prefix marks normalized data.
"""
import dataclasses
import math
import numbers
import os
import pickle
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.distributed as dist
import torch.nn as nn
import torch.nn.functional as F

CKPT_FORMAT = "dbp-checkpoint-v2"
OBS_MODES = ("state", "pixels")   # as envs.OBS_MODES
PIXEL_FIELDS = ("obs", "crop", "encoder_channels", "image_features")  # DBPConfig's fields for pixel observations
TEMPERATURES = (0.02, 0.05, 0.2)  # kernel temperatures tau, in units of the mean distance
SELF_MASK = 100.0                 # added to self-distances so a sample does not repel itself
INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


# ----------------------------------------------------------------------------- config
# Every setting is a dataclass field with its default, meaning and valid range (checked when built; cli.py's flags).

def option(default, help, ge=None, gt=None, le=None, lt=None, nargs=None):
    """A config field: default, meaning (the --help text) and valid range (ge/gt/le/lt).
    Floats are finite unless a bound admits inf (le=math.inf); NaN is never valid."""
    return field(default=default, metadata=dict(help=help, ge=ge, gt=gt, le=le, lt=lt, nargs=nargs))


class ConfigError(ValueError):
    """A config value outside its valid range; `name` is the field."""

    def __init__(self, name, value, rule):
        super().__init__(f"{name} = {value!r}: {rule}")
        self.name, self.value, self.rule = name, value, rule


BOUNDS = (("ge", ">=", float.__ge__), ("gt", ">", float.__gt__), ("le", "<=", float.__le__), ("lt", "<", float.__lt__))


def range_rule(meta):
    rule = [f"{sym} {meta[key]}" for key, sym, _ in BOUNDS if meta.get(key) is not None]
    return "must be " + " and ".join(rule) if rule else "must be finite"


def _in_range(v, meta):
    if math.isnan(v) or (math.isinf(v) and v not in (meta.get("ge"), meta.get("le"))):
        return False
    return all(meta.get(key) is None or test(v, float(meta[key])) for key, _, test in BOUNDS)


class ConfigTypeError(ConfigError, TypeError):
    """A config value of the wrong type (a float for an int field, a str for a number...)."""


def _typed(name, value, kind):
    """value as the field's type kind (int, float, bool, str or tuple of floats), or a ConfigTypeError."""
    real = lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool)
    if kind is int and isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    if kind is float and real(value):
        return float(value)
    if kind is tuple and isinstance(value, (tuple, list)) and value and all(map(real, value)):
        return tuple(float(v) for v in value)
    if kind in (bool, str) and isinstance(value, kind):
        return value
    want = {int: "an int", float: "a float", bool: "a bool", str: "a str", tuple: "a non-empty tuple of numbers"}[kind]
    raise ConfigTypeError(name, value, f"must be {want}")


class Config:
    """Base of every config dataclass: each field's type and range are checked when the config is built,
    then the cross-field rules: the `check` method of every class in the hierarchy that has one."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.type in (int, float, bool, str, tuple):
                value = _typed(f.name, value, f.type)
                setattr(self, f.name, value)
            for v in value if isinstance(value, tuple) else (value,):
                if isinstance(v, (int, float)) and not isinstance(v, bool) and not _in_range(float(v), f.metadata):
                    raise ConfigError(f.name, value, range_rule(f.metadata))
        for cls in reversed(type(self).__mro__):
            if "check" in vars(cls):
                vars(cls)["check"](self)


@dataclass
class DBPConfig(Config):
    """The policy and its drift loss (ALGORITHM.md section 1); train.py's stage config inherits it."""
    horizon: int = option(8, "action chunk length Th per network evaluation (paper: 16; 8: more precise on push)", ge=1)
    n_obs_steps: int = option(2, "observation history To fed to the policy", ge=1)
    n_action_steps: int = option(2, "actions Ta executed from each chunk before re-planning (short: closed loop)", ge=1)
    hidden_dim: int = option(256, "width of the generator MLP", ge=1)
    n_blocks: int = option(3, "residual FiLM blocks in the generator", ge=1)
    temperatures: tuple = option(TEMPERATURES, "kernel temperatures tau of the drift field, in units of the mean "
                                 "distance", gt=0.0, nargs="+")
    n_samples: int = option(4, "generated chunks G per observation in the drift loss (repulsion needs 2)", ge=2)
    k: int = option(1, "positives per observation: action chunks of the k nearest demo observations (1: the recorded "
                    "chunk, as in the paper; > 1: see neighbor_positives)", ge=1)
    bandwidth: float = option(0.02, "k > 1: neighbour weight kernel width per normalized obs dim (inf = unweighted kNN)",
                              gt=0.0, le=math.inf)
    obs: str = option("state", "what the policy sees: 'state' (the task's obs vector) or 'pixels' (camera images and "
                      "the arms' own pose: {'image': (To, V, 3, H, W) uint8, 'agent_pos': (To, Do)})")
    crop: int = option(58, "pixels: side (px) of each image's random crop in training, of its centre crop in "
                       "evaluation (Diffusion Policy's augmentation); >= 21 leaves the 3 convs a map to attend over", ge=21)
    encoder_channels: int = option(32, "pixels: channels of each of the image encoder's 3 conv layers", ge=1)
    image_features: int = option(64, "pixels: features per camera image out of the encoder", ge=1)
    objective: str = option("drift", "'drift': the drift loss (DBP); 'mse': each generated chunk regresses onto the "
                            "recorded one, so the network learns to ignore z: an MSE regressor with DBP's network and "
                            "interface (DBPO from it is PPO from regression, the Gaussian baseline of DPPO)")

    def check(self):
        if self.obs not in OBS_MODES:
            raise ConfigError("obs", self.obs, f"must be one of {OBS_MODES}")
        if self.objective not in ("drift", "mse"):
            raise ConfigError("objective", self.objective, "must be 'drift' or 'mse'")
        if self.obs == "pixels" and self.k != 1:  # neighbours in image space mean nothing
            raise ConfigError("k", self.k, "must be 1 with obs 'pixels'")
        if self.n_obs_steps - 1 + self.n_action_steps > self.horizon:  # the executed slice must fit in the chunk
            raise ConfigError("horizon", self.horizon, f"must be >= n_obs_steps - 1 + n_action_steps = "
                              f"{self.n_obs_steps - 1 + self.n_action_steps}")


# ----------------------------------------------------------------------------- drift field
# The algorithm (ALGORITHM.md section 1). Everything but the final MSE is computed without
# gradient: the target is stopgrad(x + V).

def global_mean(x, group):
    """Mean of x over the processes of a torch.distributed group (None: this process's x). Each process holds an
    equal share of the batch, so the mean of their means is the whole batch's mean."""
    if group is None:
        return x
    x = x.clone()
    dist.all_reduce(x, group=group)
    return x / dist.get_world_size(group)


@torch.no_grad()
def _drift_target(x, pos, pos_weights, temperatures, group=None):
    """Drifted target for detached samples x (B, G, L) and positives pos (B, K, L) -> (target, unit, force_rms):
    target (B, G, L) in scaled units (vectors / unit), the scale `unit` (a scalar tensor), and the raw RMS of each
    temperature's force, for logging. group: see drift_loss."""
    B, G, L = x.shape
    Y = torch.cat([x, pos], dim=1)                          # (B, G+K, L)
    d = torch.cdist(x, Y)                                   # (B, G, G+K)
    s = global_mean(d.mean(), group).clamp_min(1e-8)        # batch-global distance scale
    unit = s / math.sqrt(L)                                 # vectors / unit -> per-dim RMS ~1
    nx, nY = x / unit, Y / unit
    nd = d / s
    eye = torch.arange(G, device=x.device)
    nd[:, eye, eye] += SELF_MASK                            # mask self-pairs
    V = torch.zeros_like(nx)
    force_rms = []
    for tau in temperatures:
        logits = -nd / tau                                  # kernel exp(-d / tau), eq. (1)
        # doubly normalized affinity: geometric mean of the softmax over targets and over samples, eq. (2)
        A = (logits.softmax(dim=-1) * logits.softmax(dim=-2)).clamp_min(1e-6).sqrt()
        A_neg = A[..., :G]                                  # (B, G, G)
        A_pos = A[..., G:] * pos_weights[:, None, :]        # (B, G, K) weights scale positive columns
        S_neg = A_neg.sum(-1, keepdim=True)                 # (B, G, 1)
        S_pos = A_pos.sum(-1, keepdim=True)
        # eq. (3): F_i = sum_k A+_ik S-_i (y_k - x_i) - sum_j A-_ij S+_i (x_j - x_i); the x_i terms cancel
        force = (A_pos * S_neg) @ nY[:, G:] - (A_neg * S_pos) @ nx    # (B, G, L)
        rms = global_mean(force.pow(2).mean(), group).sqrt()
        force_rms.append(rms)
        V += force / rms.clamp_min(1e-12)                   # unit RMS per temperature
    return nx + V, unit, force_rms


def drift_loss(gen, pos, pos_weights=None, temperatures=TEMPERATURES, group=None):
    """Drifting loss, eq. (4): MSE between generated samples and their drifted, detached targets.
    gen (B, G, L) carries gradient; pos (B, K, L) are positives (data); pos_weights (B, K) scales how much each
    positive attracts (None = all 1). Returns (loss, force_rms): the loss stays near a constant however good the
    fit, so log force_rms (one per temperature). group: under data parallelism, the processes holding the batch's
    other (equal) shares; the distance scale and force RMS are then the whole batch's, so P processes train the
    objective of one process with the whole batch (a test compares the weights)."""
    if gen.dim() != 3 or pos.dim() != 3 or gen.shape[0] != pos.shape[0] or gen.shape[2] != pos.shape[2]:
        raise ValueError(f"drift_loss expects gen (B, G, L) and pos (B, K, L); got {tuple(gen.shape)} and {tuple(pos.shape)}")
    if len(temperatures) == 0 or not all(isinstance(t, numbers.Real) and 0 < t < math.inf for t in temperatures):
        raise ValueError(f"temperatures must be a non-empty sequence of finite numbers > 0; got {temperatures!r}")
    if pos_weights is None:
        pos_weights = torch.ones(pos.shape[:2], dtype=pos.dtype, device=pos.device)
    if pos_weights.shape != pos.shape[:2]:
        raise ValueError(f"pos_weights must be (B, K) = {tuple(pos.shape[:2])}; got {tuple(pos_weights.shape)}")
    if not (torch.isfinite(pos_weights) & (pos_weights >= 0)).all() or not (pos_weights > 0).any(-1).all():
        raise ValueError("pos_weights must be finite and >= 0, with a positive weight in every row")
    target, unit, force_rms = _drift_target(gen.detach(), pos, pos_weights, temperatures, group)
    return F.mse_loss(gen / unit, target), force_rms


# ----------------------------------------------------------------------------- positives
@torch.no_grad()
def neighbor_positives(query_obs, data_obs, data_actions, k, bandwidth, chunk=1024):
    """Positive set for each query: the action chunks of its k nearest demonstration observations.
    query_obs (B, To, Do) and data_obs (N, To, Do) in the same (normalized) space, data_actions (N, Th, Da)
    -> pos_actions (B, k, Th, Da), pos_weights (B, k). Weights are a Gaussian kernel on the distance beyond the
    nearest neighbour's, of width `bandwidth` per obs dimension: the nearest (for a dataset sample: its own
    recorded chunk) counts 1, neighbours in the same situation ~1, in a different one ~0. bandwidth=inf: plain
    kNN; k=1: the paper's setting. RESULTS.md (the positives study): k=16 helps with few demos on some tasks and
    costs precision on others; unweighted kNN costs precision everywhere."""
    device = torch.as_tensor(data_obs).device
    query_obs = check_shape("query_obs", query_obs, (None, None, None), device)
    data_obs = check_shape("data_obs", data_obs, (None, *query_obs.shape[1:]), device)
    data_actions = check_shape("data_actions", data_actions, (len(data_obs), None, None), device)
    if not isinstance(k, numbers.Integral) or not 1 <= k <= len(data_obs):
        raise ValueError(f"k must be an int in [1, {len(data_obs)}] (the number of demonstration windows); got {k!r}")
    if not (isinstance(bandwidth, numbers.Real) and bandwidth > 0):
        raise ValueError(f"bandwidth must be a number > 0 (inf: unweighted); got {bandwidth!r}")
    flat = data_obs.flatten(1)                                       # (N, To*Do)
    found = [torch.cdist(q, flat).topk(k, dim=1, largest=False) for q in query_obs.flatten(1).split(chunk)]  # batched
    dist, idx = torch.cat([d for d, _ in found]), torch.cat([i for _, i in found])   # (B, k) each, nearest first
    h2 = bandwidth ** 2 * flat.shape[1]                              # per-dim width -> squared distance
    weights = torch.exp(-0.5 * (dist ** 2 - dist[:, :1] ** 2) / h2)  # inf width: all 1
    return data_actions[idx], weights                                # (B, k, Th, Da), (B, k)


# ----------------------------------------------------------------------------- data plumbing
def check_shape(name, x, shape, device=None, finite=True):
    """x as a float32 tensor shaped `shape` (None = any size, at least 1) and finite, or a TypeError (not real
    numbers) or ValueError (shape, NaN, inf) naming it. finite=False leaves the values to the caller."""
    kind = x.dtype if isinstance(x, torch.Tensor) else np.asarray(x).dtype
    if not (kind.is_floating_point or kind in INT_DTYPES) if isinstance(kind, torch.dtype) else kind.kind not in "fiu":
        raise TypeError(f"{name} must hold real numbers (float or int); got dtype {kind}")
    x = torch.as_tensor(x, dtype=torch.float32, device=device)
    if x.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)) or 0 in x.shape:
        want = tuple(("B" if i == 0 else "_") if s is None else s for i, s in enumerate(shape))  # _: any size
        raise ValueError(f"{name} must be shaped {want}".replace("'", "") + (", no size 0" if None in shape else "")
                         + f"; got {tuple(x.shape)}")
    if finite and not torch.isfinite(x).all():
        raise ValueError(f"{name} contains NaN or inf")
    return x


class Normalizer(nn.Module):
    """Min-max normalization of obs and actions to [-1, 1] per dimension; buffers, saved with the weights."""

    def __init__(self, obs_dim, action_dim):
        super().__init__()
        self.dims = dict(obs=obs_dim, act=action_dim)
        for name, dim in self.dims.items():
            self.register_buffer(f"{name}_center", torch.zeros(dim))
            self.register_buffer(f"{name}_half_range", torch.ones(dim))
        self.register_buffer("fitted", torch.tensor(False))   # saved: a loaded policy knows it was fit

    def _load_from_state_dict(self, state_dict, prefix, *args):
        state_dict.setdefault(prefix + "fitted", torch.tensor(True))   # a checkpoint from before the flag: trained
        super()._load_from_state_dict(state_dict, prefix, *args)

    def check_fitted(self):
        if not self.fitted:
            raise ValueError("the normalizer is not fit: call policy.normalizer.fit(obs, actions) on the training "
                             "data first (predict_action and compute_loss work in its units)")

    def fit(self, obs, actions):
        """obs (N, To, Do) or (N, Do), actions (N, Th, Da) or (N, Da): raw data."""
        for name, x in (("obs", obs), ("act", actions)):
            x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, np.shape(x)[-1])
            if x.shape[-1] != self.dims[name] or len(x) == 0 or not torch.isfinite(x).all():
                raise ValueError(f"Normalizer.fit: {name} must be finite with last dim {self.dims[name]}; got {tuple(x.shape)}")
            lo, hi = x.min(0).values, x.max(0).values
            half = (hi - lo) / 2
            getattr(self, f"{name}_center").copy_((hi + lo) / 2)
            getattr(self, f"{name}_half_range").copy_(torch.where(half < 1e-4, torch.ones_like(half), half))  # constant dims stay put
        self.fitted.fill_(True)

    def normalize_obs(self, obs):
        return (obs - self.obs_center) / self.obs_half_range

    def normalize_actions(self, actions):
        return (actions - self.act_center) / self.act_half_range

    def unnormalize_actions(self, nactions):
        return nactions * self.act_half_range + self.act_center


def condition(policy, obs, finite=True):
    """The network's condition (B, C) of raw obs (B, To, Do), or of the pixel dict, for any chunk policy with
    n_obs_steps, obs_dim, normalizer, encoder (an ImageEncoder or None) and image_shape: normalized obs, and for
    pixels each step's image features beside its normalized agent_pos. finite=False: the caller checks the
    values (predict_chunks checks its output, which NaN or inf in obs reaches)."""
    To, Do, device = policy.n_obs_steps, policy.obs_dim, policy.normalizer.obs_center.device
    policy.normalizer.check_fitted()
    if policy.encoder is None:
        if isinstance(obs, dict):
            raise ValueError(f"this policy was trained on state observations (B, {To}, {Do}); got a dict "
                             f"with {sorted(obs)} (a pixel policy takes those)")
        obs = check_shape("obs", obs, (None, To, Do), device, finite)
        return policy.normalizer.normalize_obs(obs).reshape(len(obs), -1)
    if not isinstance(obs, dict) or set(obs) != {"image", "agent_pos"}:
        raise ValueError("this policy was trained on pixels: obs must be a dict with 'image' (B, To, V, 3, H, W) and "
                         f"'agent_pos' (B, To, Do); got {sorted(obs) if isinstance(obs, dict) else type(obs).__name__}")
    agent_pos = check_shape("obs['agent_pos']", obs["agent_pos"], (None, To, Do), device, finite)
    B = len(agent_pos)
    images = torch.as_tensor(obs["image"], device=device)
    if images.dtype != torch.uint8 or tuple(images.shape) != (B, To, *policy.image_shape):
        raise ValueError(f"obs['image'] must be uint8 of shape {(B, To, *policy.image_shape)}; "
                         f"got {images.dtype} {tuple(images.shape)}")
    features = policy.encoder(images.reshape(B * To, *policy.image_shape)).reshape(B, To, -1)   # (B, To, V*F)
    return torch.cat([features, policy.normalizer.normalize_obs(agent_pos)], dim=-1).reshape(B, -1)


def predict_chunks(policy, obs, sample):
    """predict_action plumbing of every chunk policy (DBPPolicy, the benchmark's baselines):
    raw obs (B, To, Do) (or a pixel policy's dict), numpy or torch -> sample(c) with c = condition(policy, obs)
    (B, C) -> normalized chunks (B, Th*Da) -> raw chunks (B, Th, Da); numpy in gives numpy out."""
    state = obs["agent_pos"] if isinstance(obs, dict) else obs
    c = condition(policy, obs, finite=False)   # one finiteness check, of the output, on the hot path
    B = len(c)
    nact = sample(c)                                                                        # (B, Th*Da)
    actions = policy.normalizer.unnormalize_actions(nact.reshape(B, policy.horizon, policy.action_dim))
    if not torch.isfinite(actions).all():      # never hand a robot NaN: finite obs far outside the data can do it
        check_shape("obs['agent_pos']" if isinstance(obs, dict) else "obs", state, (None, None, None))  # NaN in?
        raise ValueError(f"predict_action: the chunk is not finite; the normalized condition reaches "
                         f"{c.abs().max().item():.3g} (the training data spans +-1): obs far outside the data?")
    return actions.cpu().numpy() if isinstance(state, np.ndarray) else actions


# ----------------------------------------------------------------------------- network
class ImageEncoder(nn.Module):
    """Camera images -> features, in the spirit of Diffusion Policy's (GroupNorm instead of BatchNorm,
    spatial softmax), small enough for batch-1 CPU inference: three conv layers shared by the V cameras,
    each image's keypoints (expected x, y of every channel's softmax) -> `features`.
    Training takes a random crop of each image (augmentation), evaluation the centre crop."""

    def __init__(self, crop, channels, features):
        super().__init__()
        c, groups = channels, min(8, channels)
        self.crop = crop
        # no conv bias: the GroupNorm after each conv removes it (and has its own)
        self.convs = nn.Sequential(nn.Conv2d(3, c, 5, stride=2, bias=False), nn.GroupNorm(groups, c), nn.SiLU(),
                                   nn.Conv2d(c, c, 3, stride=2, bias=False), nn.GroupNorm(groups, c), nn.SiLU(),
                                   nn.Conv2d(c, c, 3, bias=False), nn.GroupNorm(groups, c), nn.SiLU())
        self.out = nn.Linear(2 * c, features)
        n = ((crop - 5) // 2 + 1 - 3) // 2 + 1 - 2                                       # the conv map's side
        ys, xs = torch.meshgrid(torch.linspace(-1, 1, n), torch.linspace(-1, 1, n), indexing="ij")
        self.register_buffer("grid", torch.stack([xs.flatten(), ys.flatten()], -1), persistent=False)  # (n*n, 2)

    def forward(self, images):
        """images (B, V, 3, H, W) uint8 -> (B, V * features)."""
        B, V, _, H, W = images.shape
        x, k = images.reshape(B * V, 3, H, W), self.crop                                 # crop first, then float
        if self.training:                                                                 # a random crop per image
            oy, ox = (torch.randint(0, n - k + 1, (B * V,), device=x.device) for n in (H, W))
            rows, cols = (o[:, None] + torch.arange(k, device=x.device) for o in (oy, ox))   # (B*V, k)
            x = x[torch.arange(B * V, device=x.device)[:, None, None], :, rows[:, :, None], cols[:, None, :]]
            x = x.permute(0, 3, 1, 2)                                                     # (B*V, 3, k, k)
        else:
            x = x[:, :, (H - k) // 2:(H - k) // 2 + k, (W - k) // 2:(W - k) // 2 + k]
        h = self.convs(x.float() / 127.5 - 1)                                             # (B*V, C, n, n), input in [-1, 1]
        keypoints = h.flatten(2).softmax(-1) @ self.grid                                  # spatial softmax: (B*V, C, 2)
        return self.out(keypoints.transpose(1, 2).flatten(1)).reshape(B, -1)             # x of every channel, then y


class FiLMBlock(nn.Module):
    """Pre-norm residual MLP block whose features are scaled and shifted by the condition."""

    def __init__(self, dim):
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.film = nn.Linear(dim, 2 * dim)
        self.fc1, self.fc2 = nn.Linear(dim, dim), nn.Linear(dim, dim)

    def forward(self, h, c):
        gamma, beta = self.film(c).chunk(2, dim=-1)
        return h + self.fc2(F.silu(self.fc1(self.norm(h) * (1 + gamma) + beta)))


class DriftNet(nn.Module):
    """Generator f(z, c): noise z (.., L) and condition c (.., To*Do) -> action chunk (.., L).
    An MLP with FiLM conditioning and no timestep input: on CPU ~10x cheaper than the paper's 1-D conv U-Net at
    batch 1, and the tasks here are low-dimensional. c may hold one row per observation, (B, 1, To*Do), against
    z (B, G, L): the condition path then runs once per observation and broadcasts over the G samples (SiLU, not
    Mish: 4x faster on CPU). numpy_policy.NumpyPolicy mirrors this forward pass: change the two together."""

    def __init__(self, noise_dim, cond_dim, hidden_dim, n_blocks):
        super().__init__()
        self.cond = nn.Sequential(nn.Linear(cond_dim, hidden_dim), nn.SiLU(), nn.Linear(hidden_dim, hidden_dim))
        self.inp = nn.Linear(noise_dim + cond_dim, hidden_dim)
        self.blocks = nn.ModuleList(FiLMBlock(hidden_dim) for _ in range(n_blocks))
        self.out = nn.Sequential(nn.LayerNorm(hidden_dim), nn.Linear(hidden_dim, noise_dim))

    def forward(self, z, c):
        e = self.cond(c)
        h = self.inp(torch.cat([z, c.expand(*z.shape[:-1], c.shape[-1])], dim=-1))
        for block in self.blocks:
            h = block(h, e)
        return self.out(h)


# ----------------------------------------------------------------------------- policy
class DBPPolicy(nn.Module):
    """One-step generative policy: predict_action = one DriftNet evaluation.
    obs_dim Do and action_dim Da come from the data; cfg (DBPConfig) sizes the chunk, the net and the drift loss.
    Observations and actions are min-max normalized to [-1, 1] by `self.normalizer` (fit it on the training
    data), saved with the weights. With cfg.obs = "pixels", obs is a dict {"image": (B, To, V, 3, H, W) uint8,
    "agent_pos": (B, To, Do)}: image_shape = (V, 3, H, W), and an ImageEncoder's features join the normalized
    agent_pos in the condition."""

    def __init__(self, obs_dim, action_dim, cfg=DBPConfig(), image_shape=None):
        super().__init__()
        for name, dim in (("obs_dim", obs_dim), ("action_dim", action_dim)):
            if not isinstance(dim, numbers.Integral) or isinstance(dim, bool) or dim < 1:
                raise TypeError(f"{name} must be an int >= 1; got {dim!r}")
        if not isinstance(cfg, DBPConfig):
            raise TypeError(f"cfg must be a DBPConfig (or a config that inherits it); got {type(cfg).__name__}")
        # cfg may be a stage config that inherits DBPConfig: keep the policy's fields only
        self.cfg = DBPConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(DBPConfig)})
        if (cfg.obs == "pixels") != (image_shape is not None):
            raise ValueError(f"image_shape (V, 3, H, W) goes with obs 'pixels' only; got {image_shape} with obs {cfg.obs!r}")
        self.obs_dim, self.action_dim, self.image_shape = obs_dim, action_dim, image_shape and tuple(image_shape)
        self.horizon, self.n_obs_steps, self.n_action_steps = cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps
        self.normalizer = Normalizer(obs_dim, action_dim)
        per_step = obs_dim
        if image_shape is not None:
            if len(image_shape) != 4 or image_shape[1] != 3 or min(image_shape[2:]) < cfg.crop:
                raise ValueError(f"image_shape must be (V, 3, H, W) with H, W >= crop = {cfg.crop}; got {image_shape}")
            per_step += image_shape[0] * cfg.image_features
        self.net = DriftNet(cfg.horizon * action_dim, cfg.n_obs_steps * per_step, cfg.hidden_dim, cfg.n_blocks)
        # after the net: a state policy draws the same initial weights as before pixels existed
        self.encoder = ImageEncoder(cfg.crop, cfg.encoder_channels, cfg.image_features) if image_shape else None

    @property
    def config(self):  # everything needed to rebuild the policy, as plain values (saved in checkpoints)
        return dict(obs_dim=self.obs_dim, action_dim=self.action_dim,
                    image_shape=self.image_shape and list(self.image_shape), **dataclasses.asdict(self.cfg))

    @property
    def obs_mode(self):  # what rollouts.evaluate builds its envs for
        return self.cfg.obs

    def condition(self, obs):
        return condition(self, obs)

    @property
    def executed(self):  # the steps of a chunk that are executed: [To-1, To-1+Ta) (receding horizon; To-1 is 'now')
        return slice(self.n_obs_steps - 1, self.n_obs_steps - 1 + self.n_action_steps)

    @property
    def info_keys(self):  # of compute_loss's info: the raw force RMS per temperature (none for objective 'mse')
        return [f"force_rms/tau{tau:g}" for tau in self.cfg.temperatures] if self.cfg.objective == "drift" else []

    # --- training
    def positives(self, obs, actions):
        """Neighbour positives (cfg.k, cfg.bandwidth) of training windows obs (N, To, Do), actions
        (N, Th, Da), searched in normalized obs space -> (N, K, Th, Da), (N, K). Pixels: the recorded chunk."""
        device = self.normalizer.obs_center.device
        actions = torch.as_tensor(actions, dtype=torch.float32, device=device)
        if self.encoder is not None:                                                  # cfg.k == 1 (checked)
            return actions[:, None], torch.ones(len(actions), 1, device=device)
        nobs = self.normalizer.normalize_obs(torch.as_tensor(obs, dtype=torch.float32, device=device))
        return neighbor_positives(nobs, nobs, actions, self.cfg.k, self.cfg.bandwidth)

    def compute_loss(self, obs, actions, pos_actions=None, pos_weights=None, noise=None, group=None):
        """obs (B, To, Do) (or the pixel dict), actions (B, Th, Da) raw; pos_actions (B, K, Th, Da) raw positives
        (None = the recorded chunk alone, the paper's K = 1), pos_weights (B, K) or None; noise (B, G, Th, Da)
        fixes the generator's z (None draws it); group: see drift_loss (data parallelism).
        Returns (loss, info) with info the per-temperature raw force RMS (0-dim tensors, the signal to log)."""
        Th, Da, G = self.horizon, self.action_dim, self.cfg.n_samples
        device = self.normalizer.obs_center.device
        c = self.condition(obs)                                                       # (B, C)
        B = len(c)
        actions = check_shape("actions", actions, (B, Th, Da), device)
        pos_actions = actions[:, None] if pos_actions is None else pos_actions                # (B, K, Th, Da)
        pos_actions = check_shape("pos_actions", pos_actions, (B, None, Th, Da), device)
        if pos_weights is not None:        # drift_loss checks their values (>= 0, a positive one per row)
            pos_weights = check_shape("pos_weights", pos_weights, (B, pos_actions.shape[1]), device, finite=False)
        z = torch.randn(B, G, Th * Da, device=device) if noise is None else \
            check_shape("noise", noise, (B, G, Th, Da), device).reshape(B, G, Th * Da)   # (B, G, L)
        ngen = self.net(z, c[:, None])                                                # (B, G, L)
        npos = self.normalizer.normalize_actions(pos_actions).reshape(B, -1, Th * Da)  # (B, K, L)
        if self.cfg.objective == "mse":                                               # onto the recorded chunk
            return F.mse_loss(ngen, self.normalizer.normalize_actions(actions).reshape(B, 1, -1).expand_as(ngen)), {}
        loss, force_rms = drift_loss(ngen, npos, pos_weights, self.cfg.temperatures, group)
        return loss, dict(zip(self.info_keys, force_rms))          # tensors: read them (a device sync) to log only

    # --- inference: exactly one network evaluation
    @torch.inference_mode()
    def predict_action(self, obs, noise=None):
        """obs (B, To, Do) raw (or the pixel dict) -> action chunk (B, Th, Da) raw; numpy in gives numpy out.
        noise (B, Th, Da) fixes z (None draws z ~ N(0, I)). Execute chunk[:, self.executed]."""
        def sample(c):                                                                # c (B, C)
            shape = (len(c), self.horizon * self.action_dim)
            z = torch.randn(shape, device=c.device) if noise is None else \
                check_shape("noise", noise, (len(c), self.horizon, self.action_dim), c.device).reshape(shape)
            return self.net(z, c)                                                     # (B, Th*Da)

        return predict_chunks(self, obs, sample)

    # --- checkpoints: self-describing, loaded with weights_only=True
    def checkpoint(self, **extra):
        """{format, config, state_dict, **extra}: torch.save it (training.save_checkpoint: atomically)."""
        return {"format": CKPT_FORMAT, "config": self.config, "state_dict": self.state_dict(), **extra}

    @classmethod
    def from_checkpoint(cls, ckpt, expect=None):
        """Rebuild a policy from a checkpoint dict (policy.checkpoint()) or its file, read with weights_only=True.
        Every config field must be present and known; expect: fields that must have these values."""
        if isinstance(ckpt, (str, os.PathLike)):
            try:
                ckpt = torch.load(ckpt, map_location="cpu", weights_only=True)
            except (pickle.UnpicklingError, RuntimeError, EOFError) as e:  # not a torch file, or unsafe to load
                raise ValueError(f"{ckpt} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
        if not isinstance(ckpt, dict) or not {"config", "state_dict"} <= set(ckpt) or ckpt.get("format") not in (None, CKPT_FORMAT):
            raise ValueError(f"ckpt must be a {CKPT_FORMAT} checkpoint: a path, or a dict with 'config' and 'state_dict'")
        config = dict(ckpt["config"])
        if "obs" not in config:  # written before pixel observations: a state policy, whose defaults these are
            config.update(image_shape=None, **{k: getattr(DBPConfig(), k) for k in PIXEL_FIELDS})
        config.setdefault("objective", "drift")   # written before the objective was a field
        for key, want in (expect or {}).items():
            if config.get(key) != want:
                raise ValueError(f"checkpoint field '{key}' is {config.get(key)!r}, expected {want!r}")
        known = {"obs_dim", "action_dim", "image_shape"} | {f.name for f in dataclasses.fields(DBPConfig)}
        if odd := sorted(known ^ set(config)):
            raise ValueError(f"checkpoint config {'lacks' if odd[0] in known else 'has an unknown'} field '{odd[0]}'")
        config["temperatures"] = tuple(config["temperatures"])
        if bad := [k for k, v in ckpt["state_dict"].items() if v.is_floating_point() and not torch.isfinite(v).all()]:
            raise ValueError(f"checkpoint weight '{bad[0]}' holds NaN or inf: the run that wrote it diverged")
        dims = [config.pop(k) for k in ("obs_dim", "action_dim", "image_shape")]
        policy = cls(dims[0], dims[1], DBPConfig(**config), dims[2])
        try:
            policy.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
            raise ValueError(f"checkpoint weights do not match its config: {str(e)[:500]}") from None
        return policy.eval()
