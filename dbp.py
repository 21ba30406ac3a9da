"""Drift-Based Policy (DBP): a one-step generative policy trained with a drifting objective.

Gao et al. 2026, "Drift-Based Policy Optimization" (arXiv 2604.03540), built on Deng et al.
2026, "Generative Modeling via Drifting" (arXiv 2602.04770); the method is written out in
ALGORITHM.md. A network a = f(obs, z) maps noise z to an action chunk in ONE forward pass.
Training attracts generated chunks to demonstrated ones and repels them from each other
(the drift field V); the network regresses onto its own drifted samples (stop-gradient).

This file stands alone (torch, numpy, stdlib): copy it into your codebase and use
    policy = DBPPolicy(obs_dim, action_dim, horizon, n_obs_steps)
    policy.fit_normalizer(obs, actions)
    loss, info = policy.compute_loss(obs, actions, pos_actions, pos_weights)
    actions = policy.predict_action(obs)          # exactly one network evaluation
Run `python dbp.py` for a seconds-long demo and the batch-1 latency.

Shape letters, used in comments at every reshape:
    B batch of observations, G generated samples per observation, K positives per
    observation, To obs steps, Do obs dim, Th action horizon (chunk length), Da action dim,
    L = Th*Da, N dataset size (or envs). An `n` prefix marks normalized data.
"""
import copy
import math
import os
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

CKPT_FORMAT = "dbp-checkpoint-v1"
TEMPERATURES = (0.02, 0.05, 0.2)  # kernel temperatures tau, in units of the mean distance
SELF_MASK = 100.0                 # added to self-distances so a sample does not repel itself


# ----------------------------------------------------------------------------- drift field
# The algorithm (ALGORITHM.md section 1). Everything but the final MSE is computed without
# gradient: the target is stopgrad(x + V).

@torch.no_grad()
def _drift_target(x, pos, pos_weights, temperatures):
    """Drifted target for detached samples x (B, G, L) and positives pos (B, K, L).

    Returns (target, unit, raw_rms): target (B, G, L) in scaled units (vectors / unit), the
    scale `unit` (a scalar tensor), and the raw RMS of each temperature's force, for logging.
    """
    B, G, L = x.shape
    Y = torch.cat([x, pos], dim=1)                          # (B, G+K, L)
    d = torch.cdist(x, Y)                                   # (B, G, G+K)
    s = d.mean().clamp_min(1e-8)                            # batch-global distance scale
    unit = s / math.sqrt(L)                                 # vectors / unit -> per-dim RMS ~1
    nx, nY = x / unit, Y / unit
    nd = d / s
    eye = torch.arange(G, device=x.device)
    nd[:, eye, eye] += SELF_MASK                            # mask self-pairs
    V = torch.zeros_like(nx)
    raw_rms = []
    for tau in temperatures:
        logits = -nd / tau
        # doubly normalized affinity: geometric mean of the softmax over targets and over samples
        A = (logits.softmax(dim=-1) * logits.softmax(dim=-2)).clamp_min(1e-6).sqrt()
        A_neg = A[..., :G]                                  # (B, G, G)
        A_pos = A[..., G:] * pos_weights[:, None, :]        # (B, G, K) weights scale positive columns
        S_neg = A_neg.sum(-1, keepdim=True)                 # (B, G, 1)
        S_pos = A_pos.sum(-1, keepdim=True)
        # F_i = sum_k A+_ik S-_i (y_k - x_i) - sum_j A-_ij S+_i (x_j - x_i); the x_i terms cancel
        force = (A_pos * S_neg) @ nY[:, G:] - (A_neg * S_pos) @ nx    # (B, G, L)
        rms = force.pow(2).mean().sqrt()
        raw_rms.append(rms)
        V += force / rms.clamp_min(1e-12)                   # unit RMS per temperature
    return nx + V, unit, raw_rms


def drift_loss(gen, pos, pos_weights=None, temperatures=TEMPERATURES):
    """Drifting loss: MSE between generated samples and their drifted, detached targets.

    gen (B, G, L) carries gradient; pos (B, K, L) are positives (data); pos_weights (B, K)
    scales how much each positive attracts (None = all 1). Returns a scalar. Its value stays
    near a constant however good the fit: log the force RMS (DBPPolicy.compute_loss) instead.
    """
    return _drift_loss(gen, pos, pos_weights, temperatures)[0]


def _drift_loss(gen, pos, pos_weights, temperatures):
    if gen.dim() != 3 or pos.dim() != 3 or gen.shape[0] != pos.shape[0] or gen.shape[2] != pos.shape[2]:
        raise ValueError(f"drift_loss expects gen (B, G, L) and pos (B, K, L); got {tuple(gen.shape)} and {tuple(pos.shape)}")
    if pos_weights is None:
        pos_weights = torch.ones(pos.shape[:2], dtype=pos.dtype, device=pos.device)
    if pos_weights.shape != pos.shape[:2]:
        raise ValueError(f"pos_weights must be (B, K) = {tuple(pos.shape[:2])}; got {tuple(pos_weights.shape)}")
    target, unit, raw_rms = _drift_target(gen.detach(), pos, pos_weights, temperatures)
    return F.mse_loss(gen / unit, target), raw_rms


# ----------------------------------------------------------------------------- positives
@torch.no_grad()
def neighbor_positives(query_obs, data_obs, data_actions, k, bandwidth=0.02, chunk=1024):
    """Positive set for each query: the action chunks of its k nearest demonstration observations.

    query_obs (B, To, Do) and data_obs (N, To, Do) must be in the same (normalized) space;
    data_actions (N, Th, Da). Returns pos_actions (B, k, Th, Da) and pos_weights (B, k).
    Weights are a Gaussian kernel on the distance beyond the nearest neighbour's, with width
    `bandwidth` per obs dimension: the nearest (for a dataset sample: its own recorded chunk)
    always counts 1, neighbours in the same situation ~1 (this keeps the modes of a
    multimodal task), neighbours in a different situation ~0 (this keeps the precision of a
    unimodal one). bandwidth=None gives plain unweighted kNN; k=1 the paper's setting.
    """
    query_obs, data_obs, data_actions = (torch.as_tensor(t, dtype=torch.float32) for t in (query_obs, data_obs, data_actions))
    if query_obs.dim() != 3 or data_obs.dim() != 3 or query_obs.shape[1:] != data_obs.shape[1:]:
        raise ValueError(f"query_obs (B, To, Do) and data_obs (N, To, Do) must agree; got {tuple(query_obs.shape)}, {tuple(data_obs.shape)}")
    if data_actions.dim() != 3 or len(data_actions) != len(data_obs):
        raise ValueError(f"data_actions must be (N, Th, Da) with N = {len(data_obs)}; got {tuple(data_actions.shape)}")
    if not 1 <= k <= len(data_obs):
        raise ValueError(f"k must be in [1, {len(data_obs)}]; got {k}")
    flat = data_obs.flatten(1)                                       # (N, To*Do)
    idx, dist = [], []
    for q in query_obs.flatten(1).split(chunk):                     # batched cdist + topk
        d, i = torch.cdist(q, flat).topk(k, dim=1, largest=False)    # (b, k) nearest first
        idx.append(i)
        dist.append(d)
    idx, dist = torch.cat(idx), torch.cat(dist)
    if bandwidth is None:
        weights = torch.ones_like(dist)
    else:
        h2 = bandwidth ** 2 * flat.shape[1]                          # per-dim width -> squared distance
        weights = torch.exp(-0.5 * (dist ** 2 - dist[:, :1] ** 2) / h2)
    return data_actions[idx], weights                                # (B, k, Th, Da), (B, k)


# ----------------------------------------------------------------------------- network
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

    An MLP with FiLM conditioning and no timestep input: on CPU it is ~10x cheaper than the
    paper's 1-D conv U-Net at batch 1, and the tasks here are low-dimensional. c may hold one
    row per observation, (B, 1, To*Do), against z (B, G, L): the condition path then runs
    once per observation and broadcasts over the G samples (SiLU, not Mish: 4x faster on CPU).
    """

    def __init__(self, noise_dim, cond_dim, hidden_dim=256, n_blocks=3):
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

    obs_dim Do, action_dim Da, horizon Th, n_obs_steps To; n_action_steps Ta (executed slice
    [To-1, To-1+Ta) of each chunk, default Th - To + 1); hidden_dim / n_blocks size the net;
    n_samples G generated chunks per observation in training; temperatures of the kernel.
    Observations and actions are min-max normalized to [-1, 1] by buffers saved with weights.
    """

    def __init__(self, obs_dim, action_dim, horizon, n_obs_steps=1, n_action_steps=None,
                 hidden_dim=256, n_blocks=3, n_samples=4, temperatures=TEMPERATURES):
        super().__init__()
        n_action_steps = horizon - n_obs_steps + 1 if n_action_steps is None else n_action_steps
        if min(obs_dim, action_dim, horizon, n_obs_steps, n_action_steps, n_samples) < 1:
            raise ValueError("obs_dim, action_dim, horizon, n_obs_steps, n_action_steps, n_samples must be >= 1")
        if n_obs_steps - 1 + n_action_steps > horizon:
            raise ValueError(f"n_obs_steps - 1 + n_action_steps = {n_obs_steps - 1 + n_action_steps} exceeds horizon {horizon}")
        self.config = dict(obs_dim=obs_dim, action_dim=action_dim, horizon=horizon, n_obs_steps=n_obs_steps,
                           n_action_steps=n_action_steps, hidden_dim=hidden_dim, n_blocks=n_blocks,
                           n_samples=n_samples, temperatures=list(temperatures))
        self.obs_dim, self.action_dim, self.horizon, self.n_obs_steps = obs_dim, action_dim, horizon, n_obs_steps
        self.n_action_steps, self.n_samples, self.temperatures = n_action_steps, n_samples, tuple(temperatures)
        self.net = DriftNet(horizon * action_dim, n_obs_steps * obs_dim, hidden_dim, n_blocks)
        for name, dim in (("obs", obs_dim), ("act", action_dim)):
            self.register_buffer(f"{name}_center", torch.zeros(dim))
            self.register_buffer(f"{name}_half_range", torch.ones(dim))

    # --- normalizer: min-max to [-1, 1], per dimension
    def fit_normalizer(self, obs, actions):
        """obs (N, To, Do) or (N, Do), actions (N, Th, Da) or (N, Da): raw data."""
        for name, x, dim in (("obs", obs, self.obs_dim), ("act", actions, self.action_dim)):
            x = torch.as_tensor(x, dtype=torch.float32).reshape(-1, x.shape[-1])
            if x.shape[-1] != dim or len(x) == 0 or not torch.isfinite(x).all():
                raise ValueError(f"fit_normalizer: {name} must be finite with last dim {dim}; got {tuple(x.shape)}")
            lo, hi = x.min(0).values, x.max(0).values
            half = (hi - lo) / 2
            getattr(self, f"{name}_center").copy_((hi + lo) / 2)
            getattr(self, f"{name}_half_range").copy_(torch.where(half < 1e-4, torch.ones_like(half), half))  # constant dims stay put

    def normalize_obs(self, obs):
        return (obs - self.obs_center) / self.obs_half_range

    def normalize_actions(self, actions):
        return (actions - self.act_center) / self.act_half_range

    def unnormalize_actions(self, nactions):
        return nactions * self.act_half_range + self.act_center

    def _check(self, name, x, shape):
        x = torch.as_tensor(x, dtype=torch.float32, device=self.obs_center.device)
        if x.dim() != len(shape) or any(s is not None and s != n for s, n in zip(shape, x.shape)):
            want = ", ".join("B" if s is None else f"{s}" for s in shape)
            raise ValueError(f"{name} must be shaped ({want}); got {tuple(x.shape)}")
        if not torch.isfinite(x).all():
            raise ValueError(f"{name} contains NaN or inf")
        return x

    # --- training: compute_loss
    def compute_loss(self, obs, actions, pos_actions=None, pos_weights=None):
        """obs (B, To, Do), actions (B, Th, Da) raw; pos_actions (B, K, Th, Da) raw positives
        (None = the recorded chunk alone, the paper's K = 1), pos_weights (B, K) or None.
        Returns (loss, info) with info the per-temperature raw force RMS (the signal to log)."""
        To, Do, Th, Da, G = self.n_obs_steps, self.obs_dim, self.horizon, self.action_dim, self.n_samples
        obs = self._check("obs", obs, (None, To, Do))
        actions = self._check("actions", actions, (len(obs), Th, Da))
        if pos_actions is None:
            pos_actions = actions[:, None]                          # (B, 1, Th, Da)
        pos_actions = self._check("pos_actions", pos_actions, (len(obs), None, Th, Da))
        if pos_weights is not None:
            pos_weights = self._check("pos_weights", pos_weights, (len(obs), pos_actions.shape[1]))
        B = len(obs)
        nobs = self.normalize_obs(obs).reshape(B, 1, To * Do)                         # (B, 1, To*Do)
        z = torch.randn(B, G, Th * Da, device=nobs.device)                           # (B, G, L)
        ngen = self.net(z, nobs)                                                      # (B, G, L)
        npos = self.normalize_actions(pos_actions).reshape(B, -1, Th * Da)           # (B, K, L)
        loss, raw_rms = _drift_loss(ngen, npos, pos_weights, self.temperatures)
        info = {f"force_rms/tau{tau:g}": r.item() for tau, r in zip(self.temperatures, raw_rms)}
        return loss, info

    # --- inference: exactly one network evaluation
    @torch.inference_mode()
    def predict_action(self, obs, noise=None):
        """obs (B, To, Do) raw -> action chunk (B, Th, Da) raw; numpy in gives numpy out.
        noise (B, Th, Da) fixes z (None draws z ~ N(0, I)). Execute [To-1, To-1+Ta)."""
        as_numpy = isinstance(obs, np.ndarray)
        obs = self._check("obs", obs, (None, self.n_obs_steps, self.obs_dim))
        B, shape = len(obs), (len(obs), self.horizon, self.action_dim)
        z = torch.randn(shape, device=obs.device) if noise is None else self._check("noise", noise, shape)
        nact = self.net(z.reshape(B, -1), self.normalize_obs(obs).reshape(B, -1))      # (B, Th*Da)
        actions = self.unnormalize_actions(nact.reshape(shape))                       # (B, Th, Da)
        return actions.cpu().numpy() if as_numpy else actions

    # --- checkpoints: self-describing, loaded with weights_only=True
    @classmethod
    def from_checkpoint(cls, ckpt, expect=None):
        """Rebuild a policy from a checkpoint path or dict (see save_checkpoint).
        expect: dict of config fields that must match (e.g. obs_dim, action_dim)."""
        ckpt = load_checkpoint(ckpt) if isinstance(ckpt, (str, os.PathLike)) else ckpt
        config = ckpt["config"]
        for key, want in (expect or {}).items():
            if config.get(key) != want:
                raise ValueError(f"checkpoint field '{key}' is {config.get(key)!r}, expected {want!r}")
        try:
            policy = cls(**config)
        except TypeError as e:
            raise ValueError(f"checkpoint config does not describe a DBPPolicy: {e}") from None
        try:
            policy.load_state_dict(ckpt["state_dict"])
        except RuntimeError as e:  # missing, unexpected or mis-shaped tensors
            raise ValueError(f"checkpoint weights do not match its config: {str(e)[:500]}") from None
        return policy.eval()


class EMA:
    """Exponential moving average of a model's weights (Diffusion Policy's schedule):
    decay = 1 - (1 + step)^-power, capped at max_decay; evaluation and checkpoints use it."""

    def __init__(self, model, power=0.75, max_decay=0.9999):
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


def save_checkpoint(path, policy, **extra):
    """Atomically write {format, config, state_dict, **extra} (plain tensors and values)."""
    ckpt = {"format": CKPT_FORMAT, "config": dict(policy.config), "state_dict": policy.state_dict(), **extra}
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp"
    torch.save(ckpt, tmp)
    os.replace(tmp, path)  # a crash mid-write never leaves a half checkpoint at `path`


def load_checkpoint(path):
    """Load a checkpoint dict safely (weights_only=True) and check it is one of ours."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path} is not a readable checkpoint ({type(e).__name__}: {str(e)[:200]})") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != CKPT_FORMAT:
        found = ckpt.get("format") if isinstance(ckpt, dict) else type(ckpt).__name__
        raise ValueError(f"{path} is not a {CKPT_FORMAT} checkpoint (format: {found!r})")
    for key in ("config", "state_dict"):
        if key not in ckpt:
            raise ValueError(f"{path} is missing the field '{key}'")
    return ckpt


# ----------------------------------------------------------------------------- demo
def bimodal_toy(steps=400, seed=0):
    """Conditional bimodal toy: action = +-0.8 at random whatever the observation. Trains a
    small DBPPolicy on it (weighted neighbour positives) -> (policy, seconds). Also the
    stage-1 policy of dbpo.py's demo."""
    torch.manual_seed(seed)
    N = 2000
    obs = torch.rand(N, 1, 1) * 2 - 1                                   # (N, To, Do)
    actions = (torch.randint(0, 2, (N, 1, 1)) * 1.6 - 0.8) + 0.02 * torch.randn(N, 1, 1)
    policy = DBPPolicy(obs_dim=1, action_dim=1, horizon=1, hidden_dim=128)
    policy.fit_normalizer(obs, actions)
    pos, w = neighbor_positives(policy.normalize_obs(obs), policy.normalize_obs(obs), actions, k=16)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    t0 = time.time()
    for _ in range(steps):
        i = torch.randint(0, N, (64,))
        loss, _ = policy.compute_loss(obs[i], actions[i], pos[i], w[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy, time.time() - t0


if __name__ == "__main__":
    policy, seconds = bimodal_toy()
    a = policy.predict_action(torch.rand(1000, 1, 1) * 2 - 1).flatten()
    print(f"bimodal toy, trained 400 steps in {seconds:.1f}s: {(a > 0.4).float().mean():.2f} of samples near +0.8, "
          f"{(a < -0.4).float().mean():.2f} near -0.8, {(a.abs() < 0.4).float().mean():.2f} in the empty middle")
    # batch-1 latency of the default network (Push-sized: Do=12, To=2, Th=16, Da=4)
    torch.set_num_threads(1)
    policy = DBPPolicy(obs_dim=12, action_dim=4, horizon=16, n_obs_steps=2).eval()
    o = np.zeros((1, 2, 12), np.float32)
    for _ in range(50):
        policy.predict_action(o)
    times = []
    for _ in range(500):
        t = time.perf_counter()
        policy.predict_action(o)
        times.append(time.perf_counter() - t)
    print(f"predict_action batch 1, default net ({sum(p.numel() for p in policy.parameters())} params, 1 thread): "
          f"median {np.median(times) * 1e3:.3f} ms, p99 {np.percentile(times, 99) * 1e3:.3f} ms")
