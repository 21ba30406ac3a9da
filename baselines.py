"""The policies DBP is measured against (bench.py), each a chunk policy with DBPPolicy's interface:
the same dims, chunk shape, dbp.Normalizer and predict_action (batched raw obs -> raw chunks).

- DiffusionPolicy: DDPM / DDIM (Chi et al. 2023, Diffusion Policy), on DBP's MLP or on ConvUnet1D.
- FlowPolicy: flow matching / rectified flow (Lipman et al. 2023; Liu et al. 2023), Euler steps.
- ShortcutPolicy: shortcut model (Frans et al. 2025, "One Step Diffusion via Shortcut Models"),
  a flow model trained from scratch to also take steps of any size, sampled in one.
- RegressionPolicy: behaviour cloning of the chunk with an MSE loss (one deterministic output).

Each class is written from its paper; nothing is copied. Imports torch, diffusers (schedulers) and dbp.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler

import dbp

TEMB_DIM = 64  # sinusoidal embedding width of a diffusion / flow time (and of a shortcut's step size)


def timestep_embedding(t, dim=TEMB_DIM):
    """Sinusoidal embedding (Vaswani et al. 2017; Diffusion Policy's SinusoidalPosEmb): t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    angles = t.float()[:, None] * freqs                                                # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


# ----------------------------------------------------------------------------- the U-Net backbone
class ConvBlock1D(nn.Sequential):
    """Conv1d -> GroupNorm -> Mish, length-preserving (Diffusion Policy's Conv1dBlock shape)."""

    def __init__(self, c_in, c_out, kernel, groups):
        super().__init__(nn.Conv1d(c_in, c_out, kernel, padding=kernel // 2), nn.GroupNorm(groups, c_out), nn.Mish())


class FiLMResBlock1D(nn.Module):
    """Two conv blocks; the condition scales and shifts the first one's channels (FiLM, Perez et al. 2018)."""

    def __init__(self, c_in, c_out, cond_dim, kernel, groups):
        super().__init__()
        self.blocks = nn.ModuleList([ConvBlock1D(c_in, c_out, kernel, groups), ConvBlock1D(c_out, c_out, kernel, groups)])
        self.film = nn.Sequential(nn.Mish(), nn.Linear(cond_dim, 2 * c_out))
        self.skip = nn.Conv1d(c_in, c_out, 1) if c_in != c_out else nn.Identity()

    def forward(self, x, e):                                                           # x (B, C, T), e (B, E)
        scale, shift = self.film(e)[..., None].chunk(2, dim=1)
        return self.blocks[1](self.blocks[0](x) * (1 + scale) + shift) + self.skip(x)


class ConvUnet1D(nn.Module):
    """1-D temporal conv U-Net with FiLM conditioning, the backbone shape of Diffusion Policy
    (Janner et al. 2022; Chi et al. 2023), sized for these tasks: x (B, Th*Da) and condition c
    (B, C) -> (B, Th*Da). Convolves over the Th time steps with the Da action dims as channels;
    each level halves the length, so Th must divide by 2^(len(dims) - 1)."""

    def __init__(self, horizon, action_dim, cond_dim, dims, kernel=5, groups=8):
        super().__init__()
        if horizon % 2 ** (len(dims) - 1):
            raise ValueError(f"ConvUnet1D: horizon {horizon} must divide by 2^{len(dims) - 1} (one halving per level)")
        self.horizon, self.action_dim = horizon, action_dim
        E = dims[0] * 4
        self.cond = nn.Sequential(nn.Linear(cond_dim, E), nn.Mish(), nn.Linear(E, E))
        block = lambda a, b: FiLMResBlock1D(a, b, E, kernel, groups)
        ins = (action_dim,) + tuple(dims[:-1])
        self.down = nn.ModuleList(nn.ModuleList([block(a, b), block(b, b)]) for a, b in zip(ins, dims))
        self.downsample = nn.ModuleList(nn.Conv1d(d, d, 3, stride=2, padding=1) for d in dims[:-1])
        self.mid = nn.ModuleList([block(dims[-1], dims[-1]), block(dims[-1], dims[-1])])
        self.up = nn.ModuleList(nn.ModuleList([block(2 * b, a), block(a, a)]) for a, b in zip(dims[:-1], dims[1:]))
        self.upsample = nn.ModuleList(nn.ConvTranspose1d(a, a, 4, stride=2, padding=1) for a in dims[:-1])
        self.out = nn.Sequential(ConvBlock1D(dims[0], dims[0], kernel, groups), nn.Conv1d(dims[0], action_dim, 1))

    def forward(self, x, c):
        B = len(x)
        e, h = self.cond(c), x.reshape(B, self.horizon, self.action_dim).transpose(1, 2)     # (B, Da, Th)
        skips = []                                   # as in Diffusion Policy, the top level's is not reused
        for i, (b1, b2) in enumerate(self.down):
            h = b2(b1(h, e), e)
            skips.append(h)
            if i < len(self.downsample):
                h = self.downsample[i](h)
        for b in self.mid:
            h = b(h, e)
        for i in reversed(range(len(self.up))):          # deepest first: with level i+1's skip, then up to level i
            b1, b2 = self.up[i]
            h = self.upsample[i](b2(b1(torch.cat([h, skips[i + 1]], dim=1), e), e))
        return self.out(h).transpose(1, 2).reshape(B, -1)


# ----------------------------------------------------------------------------- the policies
class ChunkBaseline(nn.Module):
    """What a baseline shares with DBPPolicy: dims, chunk shape, a dbp.Normalizer (fit it on the training
    data) and a backbone net(x (B, L), c (B, C)) -> (B, L): dbp.DriftNet at DBP's size ("mlp") or
    ConvUnet1D ("unet", channels hidden_dim / 8, / 4, / 2 per level: 32, 64, 128 at DBP's 256, about the MLP's
    parameter count; Diffusion Policy's 256, 512, 1024 train ~50x slower here), its condition widened by
    cond_extra. predict_action: dbp.predict_chunks around
    the subclass's sample(c); compute_loss(obs, actions) -> (loss, info) on raw batches."""
    BACKBONES = ("mlp", "unet")

    def __init__(self, obs_dim, action_dim, cfg, backbone="mlp", cond_extra=0, image_shape=None):
        super().__init__()
        if backbone not in self.BACKBONES:
            raise ValueError(f"backbone must be one of {self.BACKBONES}, got {backbone!r}")
        self.obs_dim, self.action_dim, self.image_shape = obs_dim, action_dim, image_shape and tuple(image_shape)
        self.horizon, self.n_obs_steps, self.n_action_steps = cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps
        self.normalizer = dbp.Normalizer(obs_dim, action_dim)
        per_step = obs_dim + (image_shape[0] * cfg.image_features if image_shape else 0)
        L, C = cfg.horizon * action_dim, cfg.n_obs_steps * per_step + cond_extra
        self.net = dbp.DriftNet(L, C, cfg.hidden_dim, cfg.n_blocks) if backbone == "mlp" else \
            ConvUnet1D(cfg.horizon, action_dim, C, (cfg.hidden_dim // 8, cfg.hidden_dim // 4, cfg.hidden_dim // 2))
        # from pixels: DBP's image encoder, built after the net as in DBPPolicy
        self.encoder = dbp.ImageEncoder(cfg.crop, cfg.encoder_channels, cfg.image_features) if image_shape else None

    @property
    def obs_mode(self):  # what rollouts.evaluate builds its envs for
        return "state" if self.encoder is None else "pixels"

    def condition(self, obs):
        """Raw obs (B, To, Do) or the pixel dict -> the condition (B, C), as DBPPolicy's (dbp.condition)."""
        return dbp.condition(self, obs)

    def normalized(self, obs, actions):
        """Raw training batch -> condition c (B, C) and normalized chunks (B, L)."""
        c = self.condition(obs)
        return c, self.normalizer.normalize_actions(actions).reshape(len(c), -1)

    def noise(self, c):
        return torch.randn(len(c), self.horizon * self.action_dim, device=c.device)

    @torch.inference_mode()
    def predict_action(self, obs):
        return dbp.predict_chunks(self, obs, self.sample)


class DiffusionPolicy(ChunkBaseline):
    """Diffusion Policy (Chi et al. 2023): the backbone predicts the noise in x_t given c and the timestep's
    sinusoidal embedding; DDPM's epsilon objective, Diffusion Policy's scheduler settings (diffusers,
    squaredcos_cap_v2, samples clipped to [-1, 1]). One trained model serves both samplers:
    use("ddpm") runs all diffusion_steps, use("ddim", n) n of them (NFE = steps)."""

    def __init__(self, obs_dim, action_dim, cfg, backbone="mlp", diffusion_steps=100, image_shape=None):
        super().__init__(obs_dim, action_dim, cfg, backbone, TEMB_DIM, image_shape)
        kw = dict(num_train_timesteps=diffusion_steps, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                  prediction_type="epsilon")
        self.schedulers = {"ddpm": DDPMScheduler(**kw), "ddim": DDIMScheduler(**kw)}
        self.use("ddpm")

    def use(self, sampler, n_steps=None):
        """Sample with "ddpm" (n_steps: all training steps) or "ddim" with n_steps; returns self."""
        self.sampler, self.n_steps = sampler, n_steps or self.schedulers["ddpm"].config.num_train_timesteps
        return self

    def eps(self, nx, t, c):
        return self.net(nx, torch.cat([c, timestep_embedding(t)], dim=-1))

    def compute_loss(self, obs, actions):
        """Ho et al. 2020, eq. 14: || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2."""
        c, nact = self.normalized(obs, actions)
        noise = torch.randn_like(nact)
        t = torch.randint(0, self.schedulers["ddpm"].config.num_train_timesteps, (len(c),), device=c.device)
        return F.mse_loss(self.eps(self.schedulers["ddpm"].add_noise(nact, noise, t), t, c), noise), {}

    def sample(self, c):
        scheduler = self.schedulers[self.sampler]
        scheduler.set_timesteps(self.n_steps)
        nx = self.noise(c)
        for t in scheduler.timesteps:
            nx = scheduler.step(self.eps(nx, t.expand(len(c)).to(c.device), c), t, nx).prev_sample
        return nx


class FlowPolicy(ChunkBaseline):
    """Flow matching with the straight (rectified-flow) path (Lipman et al. 2023; Liu et al. 2023):
    x_t = (1 - t) eps + t x, t ~ U[0, 1]; the backbone regresses the velocity x - eps given c and t.
    Sampling integrates it from noise at t = 0 with use(n) Euler steps (NFE = n)."""
    T_SCALE = 1000.0  # t in [0, 1] is embedded as t * T_SCALE, the range the sinusoid was made for

    def __init__(self, obs_dim, action_dim, cfg, backbone="mlp", extra=0, image_shape=None):
        super().__init__(obs_dim, action_dim, cfg, backbone, TEMB_DIM + extra, image_shape)
        self.n_steps = 1

    def use(self, n_steps):
        self.n_steps = n_steps
        return self

    def velocity(self, x, t, c):
        return self.net(x, torch.cat([c, timestep_embedding(t * self.T_SCALE)], dim=-1))

    def compute_loss(self, obs, actions):
        c, x1 = self.normalized(obs, actions)
        x0, t = torch.randn_like(x1), torch.rand(len(c), device=c.device)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        return F.mse_loss(self.velocity(xt, t, c), x1 - x0), {}

    def sample(self, c):
        x, dt = self.noise(c), 1.0 / self.n_steps
        for i in range(self.n_steps):
            x = x + dt * self.velocity(x, torch.full((len(c),), i * dt, device=c.device), c)
        return x


class ShortcutPolicy(FlowPolicy):
    """Shortcut model (Frans et al. 2025, ICLR): a flow model that also takes the step size d, trained
    from scratch to jump: s(x_t, t, 2d) regresses (no gradient) the mean of two chained d-steps,
    s(x_t, t, d) and s(x_t + d s(x_t, t, d), t + d, d), for d = 1/M ... 1/2; the smallest step d = 1/M
    regresses the flow-matching velocity. A consistency_fraction of each batch (the paper's 1/4) trains
    the jumps. use(n) samples with n steps of d = 1/n, n a power of 2 up to M (use(1): one NFE)."""

    def __init__(self, obs_dim, action_dim, cfg, backbone="mlp", max_steps=128, consistency_fraction=0.25,
                 image_shape=None):
        if max_steps & (max_steps - 1):
            raise ValueError(f"max_steps must be a power of 2, got {max_steps}")
        super().__init__(obs_dim, action_dim, cfg, backbone, TEMB_DIM, image_shape)
        self.log_m, self.consistency_fraction = int(math.log2(max_steps)), consistency_fraction

    def use(self, n_steps):
        if n_steps & (n_steps - 1) or n_steps > 2 ** self.log_m:
            raise ValueError(f"ShortcutPolicy steps must be a power of 2 up to {2 ** self.log_m}, got {n_steps}")
        return super().use(n_steps)

    def shortcut(self, x, t, log_n, c):
        """Velocity for a step d = 2^-log_n at (x, t); log_n (B,) is embedded like a timestep."""
        return self.net(x, torch.cat([c, timestep_embedding(t * self.T_SCALE), timestep_embedding(log_n)], dim=-1))

    def compute_loss(self, obs, actions):
        c, x1 = self.normalized(obs, actions)
        B, n_sc = len(c), round(self.consistency_fraction * len(c))
        x0 = torch.randn_like(x1)
        # jumps: d = 2^-j for j = 1..log_m, target step 2d; t on the grid of 2d-steps
        log_n2 = torch.randint(0, self.log_m, (n_sc,), device=c.device)  # log2 of 1/(2d): 2d = 1 ... 2/M
        two_d = 2.0 ** -log_n2.float()
        t_sc = torch.floor(torch.rand(n_sc, device=c.device) / two_d) * two_d
        # flow matching at the smallest step, t ~ U[0, 1]
        t = torch.cat([t_sc, torch.rand(B - n_sc, device=c.device)])
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        log_n = torch.cat([log_n2, torch.full((B - n_sc,), self.log_m, device=c.device)])
        with torch.no_grad():
            d, x_sc, c_sc, ln = (two_d / 2)[:, None], xt[:n_sc], c[:n_sc], log_n2 + 1
            s1 = self.shortcut(x_sc, t_sc, ln, c_sc)
            s2 = self.shortcut(x_sc + d * s1, t_sc + d[:, 0], ln, c_sc)
            target = torch.cat([(s1 + s2) / 2, (x1 - x0)[n_sc:]])
        return F.mse_loss(self.shortcut(xt, t, log_n, c), target), {}

    def sample(self, c):
        x, dt = self.noise(c), 1.0 / self.n_steps
        log_n = torch.full((len(c),), int(math.log2(self.n_steps)), device=c.device)
        for i in range(self.n_steps):
            x = x + dt * self.shortcut(x, torch.full((len(c),), i * dt, device=c.device), log_n, c)
        return x


class RegressionPolicy(ChunkBaseline):
    """Behaviour cloning of the chunk: the backbone fed x = 0, MSE to the recorded chunk.
    Deterministic, so where the demos hold two modes it predicts their mean."""

    def compute_loss(self, obs, actions):
        c, nact = self.normalized(obs, actions)
        return F.mse_loss(self.sample(c), nact), {}

    def sample(self, c):
        return self.net(torch.zeros_like(self.noise(c)), c)


if __name__ == "__main__":
    import time
    cfg = dbp.DBPConfig()                                                    # push-sized: Do=12, To=2, Th=8, Da=4
    obs, actions = torch.rand(64, cfg.n_obs_steps, 12), torch.rand(64, cfg.horizon, 4)
    torch.set_num_threads(1)
    for name, policy, nfe in (("DDPM-100, MLP", DiffusionPolicy(12, 4, cfg), 100),
                              ("DDIM-10, U-Net", DiffusionPolicy(12, 4, cfg, "unet").use("ddim", 10), 10),
                              ("flow, 1 Euler step", FlowPolicy(12, 4, cfg), 1),
                              ("shortcut, 1 step", ShortcutPolicy(12, 4, cfg), 1),
                              ("MSE regression", RegressionPolicy(12, 4, cfg), 1)):
        policy.normalizer.fit(obs, actions)
        loss, _ = policy.compute_loss(obs, actions)
        chunk = policy.eval().predict_action(obs[:1].numpy())               # (1, Th, Da)
        t0 = time.perf_counter()
        for _ in range(10):
            policy.predict_action(obs[:1].numpy())
        print(f"{name:20s} {sum(p.numel() for p in policy.parameters()):8d} params, loss {loss.item():.3f}, "
              f"chunk {tuple(chunk.shape)}, {nfe:3d} NFE: {(time.perf_counter() - t0) * 100:.1f} ms at batch 1, 1 thread")
