"""Drift-Based Policy Optimization (DBPO): online PPO fine-tuning of a one-step DBP policy.

Gao et al. 2026 (arXiv 2604.03540), section "DBPO"; ALGORITHM.md section 2 of this repository.
The actor's mean mu_theta(o, z) is a trainable copy of the stage-1 generator; a small head
gives a state-dependent std that does not see z, so pi(a | o, z) = N(mu_theta(o, z), sigma^2)
has an exact likelihood once z is stored with the decision. PPO updates the generator
through that Gaussian; an anchor loss keeps it near the frozen stage-1 copy. Deployment
stays one pass (eq. 16): the std head is dropped and policy.predict_action is used.
DBPOConfig(steer="latent") steers the noise instead (eq. 17): a Gaussian over z in front of the
frozen generator, folded into its input layer, so deployment is the same one pass.

This file needs torch, numpy and dbp.py only:
    agent = DBPOAgent(stage1_policy, DBPOConfig())
    buffer = agent.make_buffer(T, N)
    actions, step = agent.act(obs)             # rollout: (N, Ta, Da) raw actions + what to store
    buffer.add(**step, reward=r, terminated=term, truncated=trunc, final_value=agent.value(final_obs))
    stats = ppo_update(agent, buffer, agent.value(obs), optimizers, schedulers, cfg)
toys.py fine-tunes a bimodal toy on a bandit in seconds. "eq. (N)" refers to ALGORITHM.md of this repository.
Shape letters as in dbp.py; N envs, T decisions per env in a rollout, Ta executed steps.
"""
import copy
import math
import numbers
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

import dbp


NOBS_CLAMP = 5.0  # the critic sees normalized obs clipped to +-this (demo data spans +-1)
# What ppo_update returns, in log.csv's order (CleanRL's names).
METRICS = ("losses/policy", "losses/value", "losses/anchor", "losses/imitation", "losses/entropy", "losses/approx_kl",
           "losses/clipfrac", "losses/explained_variance", "charts/minibatches")
option = dbp.option


@dataclass
class DBPOConfig(dbp.Config):
    """PPO coefficients: ALGORITHM.md section 2, the paper's values unless marked ours or measured
    (README: with the paper's std, clip and actor lr, PRESETS["paper"], push stayed flat)."""
    gamma: float = option(0.99, "discount per decision (one decision = Ta env steps)", ge=0.0, le=1.0)
    gae_lambda: float = option(0.95, "GAE lambda", ge=0.0, le=1.0)
    clip_coef: float = option(0.1, "PPO clip on the ratio of per-dimension-averaged likelihoods, eq. (11) "
                              "(measured; the paper: 0.02)", gt=0.0)
    logprob_min: float = option(-2.0, "log-probs, averaged over the executed dims, are clamped below at this value "
                                "(eq. 6, as the authors' code)", lt=0.0)
    vf_coef: float = option(0.5, "value-loss coefficient on the MSE, eq. (15) (the authors' code: 0.5 on 0.5*MSE)",
                            gt=0.0)
    ent_coef: float = option(0.01, "entropy-bonus coefficient, eq. (15)", ge=0.0)
    anchor_coef: float = option(1.0, "anchor coefficient, eq. (14): squared error of mu_theta(o, z) against "
                                "mu_old(o, z) (normalized units) summed over the chunk, divided by the executed Ta*Da "
                                "dims (ours: each executed dim is held as when Th = Ta)", ge=0.0)
    anchor_over_chunk: bool = option(False, "divide the anchor by all Th*Da dims of the chunk instead, the paper's MSE: "
                                     "Th/Ta times weaker on what is executed")
    imitation_coef: float = option(0.0, "mode-balanced self-imitation (ours, off by default): the drift loss of "
                                   "mu_theta towards the actions of recent successful episodes, each mode weighted "
                                   "equally (SuccessReplay). Measured (README): 1 takes weak bimanual +35/+32 "
                                   "(off: +22/+29); on push 0.2 keeps a rare mode but costs success", ge=0.0)
    imitation_capacity: int = option(2048, "decisions of successful episodes kept per mode", ge=1)
    imitation_batch: int = option(64, "decisions drawn from each mode's successes per minibatch", ge=1)
    max_grad_norm: float = option(0.5, "gradient-norm clip, of the actor and of the critic each", gt=0.0)
    target_kl: float = option(0.02, "stop the update early once approx-KL exceeds this (inf: never)",
                              gt=0.0, le=math.inf)
    actor_lr: float = option(3e-5, "peak AdamW learning rate of the generator and std head (measured; the paper: "
                             "1e-5)", gt=0.0)
    critic_lr: float = option(1e-4, "peak AdamW learning rate of the critic", gt=0.0)
    lr_warmup_iters: int = option(10, "the actor lr rises linearly over its first updates, then follows a cosine", ge=0)
    lr_floor: float = option(0.3, "the cosine ends at this fraction of the peak lr (actor and critic)", ge=0.0, le=1.0)
    update_epochs: int = option(5, "passes over each rollout (ours)", ge=1)
    minibatch_size: int = option(128, "decisions per minibatch (ours); >= the rollout's N*T: one full-batch step per "
                                 "epoch (the authors')", ge=2)
    adv_norm: str = option("minibatch", "advantages normalized to mean 0, std 1 over each 'minibatch' or over the "
                           "whole 'rollout' (the authors', whose minibatch is the rollout)")
    reward_scale: str = option("return", "rewards divided by the running std of the discounted 'return' (per env, "
                               "carried across rollouts), or by the std of each 'rollout''s own rewards (the "
                               "authors': a dense reward whose episodes only truncate then drives the values to "
                               "r/(std*(1-gamma)))")
    weight_decay: float = option(0.01, "AdamW weight decay of actor and critic (the authors': 1e-6)", ge=0.0)
    critic_warmup_iters: int = option(5, "first iterations update the critic only (ours: 'a few')", ge=0)
    std_init: float = option(0.1, "initial action std in normalized units, eq. (5): the log-std head's bias is "
                             "log std_init (measured; the paper: 0.03)", gt=0.0)
    std_min: float = option(0.03, "lower clamp of the std (normalized units)", gt=0.0)
    std_max: float = option(0.10, "upper clamp of the std (normalized units)", gt=0.0)
    critic_hidden: int = option(256, "critic MLP width (3 hidden layers, Mish)", ge=1)
    steer: str = option("action", "PPO's Gaussian is over the 'action' around a trainable generator (the paper's), or "
                        "over the 'latent' noise z ~ N(A c + a, diag(s)^2) of the frozen generator (eq. 17, as DSRL), "
                        "folded into its input layer for deployment; the anchor then pulls A c + a to 0")
    latent_std_min: float = option(0.1, "with steer 'latent': lower clamp of s (it starts at 1, the prior's)",
                                   gt=0.0, le=1.0)

    def check(self):
        for name, allowed in (("adv_norm", ("minibatch", "rollout")), ("reward_scale", ("return", "rollout")),
                              ("steer", ("action", "latent"))):
            if getattr(self, name) not in allowed:
                raise dbp.ConfigError(name, getattr(self, name), f"must be one of {allowed}")
        if self.steer == "latent" and self.imitation_coef > 0:
            raise dbp.ConfigError("imitation_coef", self.imitation_coef, "must be 0 with steer 'latent' (the "
                                  "generator is frozen)")
        if not self.std_min <= self.std_init <= self.std_max:
            raise dbp.ConfigError("std_init", self.std_init,
                                  f"must lie in [std_min, std_max] = [{self.std_min}, {self.std_max}]")


# The authors' configuration (their configs/finetune.yaml) where our defaults differ: one full-batch step per epoch on
# advantages normalized over the rollout, value loss 0.5 * 0.5 * MSE, each rollout's rewards divided by their own std.
# Their rollouts (40 envs x 500 decisions) are train.py's PAPER_RUN, scaled down for 2 cores.
PRESETS = {"paper": dict(clip_coef=0.02, actor_lr=1e-5, std_init=0.03, anchor_over_chunk=True, minibatch_size=50000,
                         adv_norm="rollout", reward_scale="rollout", vf_coef=0.25, weight_decay=1e-6)}
# Latent steering as measured (RESULTS.md section 5): an anchor of 1 held the mean of z within ~0.05 of the prior.
PRESETS["latent"] = dict(steer="latent", actor_lr=1e-3, anchor_coef=0.0)


# ----------------------------------------------------------------------------- advantages
@torch.no_grad()
def gae(rewards, values, terminated, truncated, final_values, last_value, gamma, lam):
    """Generalized advantage estimation, eq. (9), over a rollout of T decisions from N envs.

    rewards, values, terminated, truncated, final_values: (T, N); last_value (N,) is V of the
    observation after the last decision. Where an episode ended at t, the next value is 0 if
    it terminated and V(final obs) = final_values[t] if it was truncated (the time limit is
    not part of the task, so we bootstrap); the trace never crosses an episode end.
    Returns (advantages, returns), both (T, N).
    """
    T = len(rewards)
    advantages = torch.zeros_like(rewards)
    last_gae = torch.zeros_like(last_value)
    for t in reversed(range(T)):
        next_value = last_value if t == T - 1 else values[t + 1]
        next_value = torch.where(truncated[t], final_values[t], next_value)
        next_value = torch.where(terminated[t], torch.zeros_like(next_value), next_value)
        delta = rewards[t] + gamma * next_value - values[t]
        ended = (terminated[t] | truncated[t]).float()
        last_gae = delta + gamma * lam * (1 - ended) * last_gae
        advantages[t] = last_gae
    return advantages, advantages + values


# ----------------------------------------------------------------------------- actor-critic
class DBPOAgent(nn.Module):
    """Gaussian actor around a trainable copy of a stage-1 DBPPolicy, a frozen anchor copy
    of its generator, a log-std head and a critic (both on the condition c (N, C): the normalized
    obs history flattened, C = To*Do; a pixel policy's c adds its image features, C = To*(Do + V*F)).
    A pixel policy's image encoder stays frozen here: c is then a fixed function of the obs, stored
    in the buffer and replayed as on state, and the critic sees the same (detached) features."""

    def __init__(self, policy, cfg=DBPOConfig()):
        super().__init__()
        if not isinstance(policy, dbp.DBPPolicy) or not isinstance(cfg, DBPOConfig):
            raise TypeError(f"DBPOAgent takes a dbp.DBPPolicy (the stage-1 policy, e.g. the EMA model) and a DBPOConfig; "
                            f"got {type(policy).__name__}, {type(cfg).__name__}")
        policy.normalizer.check_fitted()
        self.cfg = cfg
        self.policy = copy.deepcopy(policy).train().requires_grad_(True)    # mu_theta: deployed
        self.anchor = copy.deepcopy(policy.net).eval().requires_grad_(False)  # mu_old: frozen
        C, Th, Da = policy.net.cond[0].in_features, policy.horizon, policy.action_dim   # condition width
        self.Ta = policy.n_action_steps
        if self.policy.encoder is not None:                           # frozen, its centre crop (evaluation mode)
            self.policy.encoder.requires_grad_(False).eval()
        ex = policy.executed
        self.exec = slice(ex.start * Da, ex.stop * Da)                # executed steps of the flat chunk
        self.L = Th * Da                                              # noise and chunk length
        self.log_std = nn.Linear(C, Th * Da)                          # does not see z
        nn.init.zeros_(self.log_std.weight)
        nn.init.constant_(self.log_std.bias, math.log(cfg.std_init))
        if cfg.steer == "latent":                                     # z ~ N(A c + a, diag(s)^2): at first the prior
            self.policy.net.requires_grad_(False)
            self.steer_mean = nn.Linear(C, self.L)
            nn.init.zeros_(self.steer_mean.weight)
            nn.init.zeros_(self.steer_mean.bias)
            self.steer_log_std = nn.Parameter(torch.zeros(self.L))
        # env action bounds in normalized units, (Ta*Da,); unbounded until set_action_bounds
        self.register_buffer("nact_low", torch.full((self.Ta * Da,), -math.inf), persistent=False)
        self.register_buffer("nact_high", torch.full((self.Ta * Da,), math.inf), persistent=False)
        # reward_scale "return": rewards / the std of the discounted return G_t = r_t + gamma G_(t-1), reset at episode
        # ends and carried per env across rollouts (Gymnasium's NormalizeReward; why: ALGORITHM.md section 3)
        self.register_buffer("return_moments", torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))  # count, mean, var
        self.register_buffer("running_return", torch.zeros(0, dtype=torch.float64))  # (N,) G of each env's episode
        h = cfg.critic_hidden
        self.critic = nn.Sequential(nn.Linear(C, h), nn.Mish(), nn.Linear(h, h), nn.Mish(),
                                    nn.Linear(h, h), nn.Mish(), nn.Linear(h, 1))

    def actor_parameters(self):
        if self.cfg.steer == "latent":
            return [*self.steer_mean.parameters(), self.steer_log_std]
        return [p for p in self.policy.parameters() if p.requires_grad] + list(self.log_std.parameters())

    def make_buffer(self, T, N):
        """An empty rollout buffer for T decisions from N envs, sized for this agent, on its device."""
        for name, n in (("T", T), ("N", N)):
            if not isinstance(n, numbers.Integral) or isinstance(n, bool) or n < 1:
                raise TypeError(f"{name} must be an int >= 1; got {n!r}")
        if T * N < 2:
            raise ValueError("a rollout needs T * N >= 2 decisions (advantages are normalized by their std)")
        p = self.policy
        return RolloutBuffer(T, N, p.net.cond[0].in_features, self.L, self.Ta * p.action_dim, self.log_std.weight.device)

    @torch.no_grad()
    def condition(self, obs):
        """obs (N, To, Do) raw (or a pixel policy's dict) -> the condition c (N, C), as the policy computes it;
        the frozen image encoder in evaluation mode (its centre crop)."""
        if self.policy.encoder is not None:
            self.policy.encoder.eval()
        return self.policy.condition(obs)

    def distribution(self, c, z):
        """Mean of the executed steps (N, Ta*Da), its std (eq. 5), and the full-chunk mean (N, Th*Da)."""
        mu_chunk = self.policy.net(z, c)                                              # (N, Th*Da)
        log_std = self.log_std(c)[:, self.exec].clamp(math.log(self.cfg.std_min), math.log(self.cfg.std_max))
        return mu_chunk[:, self.exec], log_std.exp(), mu_chunk

    def latent(self, c):
        """With steer 'latent': the mean A c + a (N, L) and std s (L,) of the policy over z."""
        return self.steer_mean(c), self._latent_std()

    def _latent_std(self):
        return self.steer_log_std.clamp(math.log(self.cfg.latent_std_min), 0.0).exp()

    @torch.no_grad()
    def fold(self):
        """With steer 'latent': write the policy over z into the deployed generator's input layer, which sees z
        linearly: W_z (A c + a + s e) + W_c c + b = (W_z s) e + (W_c + W_z A) c + (b + W_z a). The deployed policy's
        z ~ N(0, I) is then e, and predict_action samples the latent policy exactly, in one pass as before."""
        if self.cfg.steer != "latent":
            return
        base, inp, L = self.anchor.inp, self.policy.net.inp, self.L
        W_z, W_c = base.weight[:, :L], base.weight[:, L:]
        inp.weight.copy_(torch.cat([W_z * self._latent_std(), W_c + W_z @ self.steer_mean.weight], dim=1))
        inp.bias.copy_(base.bias + W_z @ self.steer_mean.bias)

    def log_prob(self, mu, std, na):
        """Gaussian log-density averaged over the Ta*Da dims, then clamped below (eq. 6). Clamping each
        dim first would zero the gradient of a whole sample whenever one of its dims lies far out."""
        logp = -0.5 * ((na - mu) / std) ** 2 - std.log() - 0.5 * math.log(2 * math.pi)   # (N, Ta*Da)
        return logp.mean(-1).clamp_min(self.cfg.logprob_min)

    def observe_rewards(self, rewards, ended):
        """Fold a rollout's rewards (T, N) into each env's running discounted return (reset after the decisions
        where ended (T, N) is True) and every return into the moments behind reward_std."""
        if self.running_return.shape != rewards.shape[1:]:          # the first rollout, or another number of envs
            self.running_return = torch.zeros(rewards.shape[1:], dtype=torch.float64, device=rewards.device)
        G, returns = self.running_return, []
        for r, end in zip(rewards.double(), ended):
            G = self.cfg.gamma * G + r
            returns.append(G)
            G = torch.where(end, torch.zeros_like(G), G)
        self.running_return = G
        n, mean, var = self.return_moments.tolist()
        g = torch.stack(returns).flatten()
        m, total = len(g), n + len(g)
        delta = g.mean().item() - mean
        var = (n * var + m * g.var(unbiased=False).item() + delta ** 2 * n * m / total) / total  # parallel Welford
        self.return_moments.copy_(torch.tensor([total, mean + delta * m / total, var], dtype=torch.float64))

    @property
    def reward_std(self):
        """Std of the discounted returns observed so far: rewards are divided by it."""
        return math.sqrt(self.return_moments[2].item()) + 1e-8

    def _load_from_state_dict(self, state_dict, prefix, *args):
        # running_return's size is the number of envs of the run that saved it; a checkpoint written while rewards
        # were scaled by the reward std (its 'reward_moments') starts the return moments afresh
        if state_dict.pop(prefix + "reward_moments", None) is not None:
            state_dict.setdefault(prefix + "return_moments", torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64))
            state_dict.setdefault(prefix + "running_return", torch.zeros(0, dtype=torch.float64))
        if prefix + "running_return" in state_dict:
            self.running_return = torch.zeros_like(state_dict[prefix + "running_return"])
        super()._load_from_state_dict(state_dict, prefix, *args)

    def _value(self, c):
        # Clamped input: min-max ranges from a few demos are narrow (block cos-yaw spans ~0.01),
        # so a knocked-over block maps to |c| in the hundreds and the value would explode.
        return self.critic(c.clamp(-NOBS_CLAMP, NOBS_CLAMP)).squeeze(-1)

    @torch.no_grad()
    def value(self, obs):
        """V(o) (N,) of raw obs (N, To, Do), in scaled reward units."""
        return self._value(self.condition(obs))

    @torch.no_grad()
    def act(self, obs, generator=None):
        """Rollout decision for raw obs (N, To, Do): draw z, sample a ~ N(mu, std), clip it to
        mu +- 3 std and to the action bounds (eq. 7). Returns raw actions (N, Ta, Da) as numpy and a
        dict of what the buffer stores (c, z, na normalized, logprob, value)."""
        p = self.policy
        c = self.condition(obs)
        N = len(c)
        z = torch.randn(N, self.L, generator=generator).to(c.device)                 # (N, L), CPU stream on any device
        bounded = lambda na: torch.minimum(torch.maximum(na, self.nact_low), self.nact_high)
        if self.cfg.steer == "latent":                         # the sampled z is the action; the generator is fixed
            mean, s = self.latent(c)
            z = mean + s * z
            na, logprob = bounded(self.anchor(z, c)[:, self.exec]), self.log_prob(mean, s, z)
        else:
            mu, std, _ = self.distribution(c, z)
            na = mu + std * torch.randn(mu.shape, generator=generator).to(c.device)
            na = bounded(torch.minimum(torch.maximum(na, mu - 3 * std), mu + 3 * std))
            logprob = self.log_prob(mu, std, na)
        actions = p.normalizer.unnormalize_actions(na.reshape(N, self.Ta, p.action_dim))   # (N, Ta, Da)
        if not torch.isfinite(actions).all():      # never hand an env (or a robot) NaN
            raise ValueError("act: the sampled actions are not finite: obs far outside the training data?")
        step = dict(c=c, z=z, na=na, logprob=logprob, value=self._value(c))
        return actions.cpu().numpy(), step

    def set_action_bounds(self, low, high):
        """Raw action bounds (Da,) of the env (+-inf: unbounded); sampled actions are clipped to them."""
        p = self.policy
        low, high = (dbp.check_shape(name, b, (p.action_dim,), self.nact_low.device, finite=False)
                     for name, b in (("low", low), ("high", high)))
        if low.isnan().any() or high.isnan().any() or (low > high).any():
            raise ValueError(f"low and high must be numbers with low <= high; got {low.tolist()}, {high.tolist()}")
        for buf, bound in ((self.nact_low, low), (self.nact_high, high)):
            buf.copy_(p.normalizer.normalize_actions(bound).repeat(self.Ta))

    def recompute(self, c, z, na):
        """Recompute with the SAME stored z: log-prob (B,), entropy (B,), value (B,) and the anchor loss."""
        if self.cfg.steer == "latent":                          # z itself was the sampled action
            mean, s = self.latent(c)
            entropy = (0.5 * math.log(2 * math.pi * math.e) + s.log()).mean().expand(len(c))
            return self.log_prob(mean, s, z), entropy, self._value(c), mean.pow(2).mean()
        mu, std, mu_chunk = self.distribution(c, z)
        entropy = (0.5 * math.log(2 * math.pi * math.e) + std.log()).mean(-1)          # eq. (13)
        with torch.no_grad():
            mu_old = self.anchor(z, c)
        dims = mu_chunk.shape[1] if self.cfg.anchor_over_chunk else self.Ta * self.policy.action_dim
        sq = (mu_chunk - mu_old).pow(2).sum(-1)                        # eq. (14), the whole chunk in the sum
        return self.log_prob(mu, std, na), entropy, self._value(c), sq.mean() / dims

    def imitation(self, batches):
        """Mode-balanced self-imitation: for each mode's (c, z, na) from SuccessReplay.sample, the drift loss
        (dbp.drift_loss, the stage-1 objective) of G fresh-z samples of the executed steps of mu_theta(o, .)
        towards na, averaged over the modes, so a rare mode pulls as hard as a common one. Fresh z: the whole
        distribution at a visited state learns the successful actions, not only the z that produced them."""
        if not batches:
            return torch.zeros(())
        G, losses = self.policy.cfg.n_samples, []
        for c, _, na in batches:
            B = len(c)
            z = torch.randn(B * G, self.L, device=c.device)
            gen = self.policy.net(z, c.repeat_interleave(G, 0))[:, self.exec].reshape(B, G, -1)
            losses.append(dbp.drift_loss(gen, na[:, None], temperatures=self.policy.cfg.temperatures)[0])
        return torch.stack(losses).mean()


# ----------------------------------------------------------------------------- rollout buffer
class RolloutBuffer:
    """T decisions from N envs: everything needed to recompute the likelihood (z included)."""

    def __init__(self, T, N, cond_dim, noise_dim, act_dim, device="cpu"):
        shapes = dict(c=(cond_dim,), z=(noise_dim,), na=(act_dim,), logprob=(), value=(), reward=(),
                      final_value=())
        self.data = {k: torch.zeros(T, N, *s, device=device) for k, s in shapes.items()}
        self.data.update({k: torch.zeros(T, N, dtype=torch.bool, device=device) for k in ("terminated", "truncated")})
        self.T, self.N, self.t = T, N, 0

    def add(self, **step):
        """One decision of the N envs: c, z, na, logprob, value (from act), reward, terminated, truncated and
        final_value (N,) each. Shapes, dtypes and NaN or inf are ValueErrors that name the field."""
        if self.t >= self.T:
            raise ValueError(f"the buffer is full ({self.T} decisions): call reset() after the update")
        if set(step) != set(self.data):
            raise ValueError(f"add() needs exactly {sorted(self.data)}; got {sorted(step)}")
        for k, v in step.items():
            buf = self.data[k]
            if buf.dtype == torch.bool:
                v = torch.as_tensor(np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v))
                if v.dtype != torch.bool or v.shape != buf.shape[1:]:
                    raise ValueError(f"{k} must be booleans shaped {tuple(buf.shape[1:])}; got {v.dtype} {tuple(v.shape)}")
            else:
                v = dbp.check_shape(k, v, buf.shape[1:], buf.device)
            buf[self.t] = v
        self.t += 1

    def reset(self):
        self.t = 0

    def __getitem__(self, key):
        return self.data[key]


class SuccessReplay:
    """The decisions (c, z, na) of the latest successful episodes, kept per mode (info["mode"] at the episode's
    end; -1 for a task without modes), for DBPOAgent.imitation. PPO's gradient on the common mode's states
    carries over to the nearby states of a rare mode and erases it (README, "Keeping the modes"); imitating
    each mode's own successes with equal weight holds the rare one where it is visited."""

    def __init__(self, n_envs, capacity):
        self.capacity = capacity
        self.pending = [[] for _ in range(n_envs)]        # per env: its episode in progress, a list of (c, z, na)
        self.modes = {}                                   # mode -> [c (n, ...), z, na], the latest `capacity` decisions

    def record(self, c, z, na):
        """One decision of every env: (N, ...) each."""
        for i, decision in enumerate(zip(c, z, na)):
            self.pending[i].append(decision)

    def end(self, env, success, mode):
        """Env `env`'s episode ended (after its last decision was recorded): keep it if it succeeded."""
        if success:
            new = [torch.stack(x) for x in zip(*self.pending[env])]
            old = self.modes.get(int(mode))
            self.modes[int(mode)] = [torch.cat([o, n])[-self.capacity:] for o, n in zip(old, new)] if old else new
        self.pending[env] = []

    def sample(self, k, generator=None):
        """k decisions of each mode (with replacement): [(c, z, na)] in mode order."""
        out = []
        for mode in sorted(self.modes):
            data = self.modes[mode]
            idx = torch.randint(len(data[0]), (k,), generator=generator).to(data[0].device)
            out.append(tuple(x[idx] for x in data))
        return out

    def state_dict(self):
        pending = [[torch.stack(x) for x in zip(*p)] if p else [] for p in self.pending]
        return dict(pending=pending, modes=self.modes)

    def load_state_dict(self, state):
        self.pending = [list(zip(*p)) if p else [] for p in state["pending"]]
        self.modes = dict(state["modes"])


# ----------------------------------------------------------------------------- PPO update
def lr_factor(it, n, warmup, floor):
    """Learning rate of update `it` of n, as a fraction of the peak: linear warm-up over `warmup`
    updates, then a cosine from 1 down to `floor`."""
    if it < warmup:
        return (it + 1) / warmup
    if n is None:                                       # no planned length (a wall-clock budget): stay at the peak
        return 1.0
    progress = min(1.0, (it - warmup) / max(1, n - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_optimizers(agent, cfg, n_iterations):
    """AdamW for actor and critic, each with its schedule (lr_factor) over its own updates: the actor
    sits out the critic warm-up and then warms up itself. n_iterations None (a wall-clock budget, no length
    known): the lrs stay at their peaks after the warm-up. Returns (optimizers, schedulers) for ppo_update()."""
    if n_iterations is not None and (not isinstance(n_iterations, numbers.Integral) or n_iterations < 1):
        raise ValueError(f"n_iterations must be an int >= 1 or None; got {n_iterations!r}")
    opts = [torch.optim.AdamW(agent.actor_parameters(), lr=cfg.actor_lr, weight_decay=cfg.weight_decay),
            torch.optim.AdamW(agent.critic.parameters(), lr=cfg.critic_lr, weight_decay=cfg.weight_decay)]
    actor_updates = None if n_iterations is None else n_iterations - cfg.critic_warmup_iters
    plans = ((actor_updates, cfg.lr_warmup_iters), (n_iterations, 0))
    schedule = lambda n, w: lambda it: lr_factor(it, n, w, cfg.lr_floor)
    return opts, [torch.optim.lr_scheduler.LambdaLR(o, schedule(n, w)) for o, (n, w) in zip(opts, plans)]


def minibatches(B, size, generator, device):
    """Shuffled indices of B decisions in minibatches of `size`; a last one of a single decision joins the one
    before it (one decision has no advantage std: normalizing by it would turn every weight into NaN)."""
    parts = list(torch.randperm(B, generator=generator).to(device).split(size))
    if len(parts) > 1 and len(parts[-1]) == 1:
        parts[-2:] = [torch.cat(parts[-2:])]
    return parts


def normalized(x):
    return (x - x.mean()) / (x.std() + 1e-8)


def scaled_advantages(agent, buffer, last_value, cfg):
    """GAE advantages and returns (T, N) of the buffer's rewards scaled as cfg.reward_scale says, eq. (8): by the
    running std of the discounted return (folded in here), or by the std of this rollout's rewards. The critic
    learns values of scaled rewards, so the stored values are in scaled units already."""
    agent.observe_rewards(buffer["reward"], buffer["terminated"] | buffer["truncated"])
    scale = agent.reward_std if cfg.reward_scale == "return" else buffer["reward"].std().item() + 1e-8
    return gae(buffer["reward"] / scale, buffer["value"], buffer["terminated"], buffer["truncated"],
               buffer["final_value"], last_value, cfg.gamma, cfg.gae_lambda)


def ppo_update(agent, buffer, last_value, optimizers, schedulers, cfg, critic_only=False, generator=None, replay=None):
    """One PPO update on a full buffer, then one step of the lr schedules. last_value (N,): V of
    the obs after the last decision; critic_only: warm-up, the actor stays put; replay: a SuccessReplay
    for the self-imitation term (None: no term).
    Returns {key: value} for the keys of METRICS: means over the minibatches actually run."""
    if buffer.t != buffer.T:
        raise ValueError(f"ppo_update needs a full buffer: {buffer.t} of {buffer.T} decisions stored")
    last_value = dbp.check_shape("last_value", last_value, (buffer.N,), buffer["value"].device)
    (actor_opt, critic_opt), B = optimizers, buffer.T * buffer.N
    advantages, returns = scaled_advantages(agent, buffer, last_value, cfg)
    b = {k: buffer[k].reshape(B, *buffer[k].shape[2:]) for k in ("c", "z", "na", "logprob", "value")}
    b_advantages, b_returns = advantages.reshape(B), returns.reshape(B)
    if cfg.adv_norm == "rollout":
        b_advantages = normalized(b_advantages)
    stats, stop = [], False
    for _ in range(cfg.update_epochs):
        for mb in minibatches(B, cfg.minibatch_size, generator, b_advantages.device):
            new_logprob, entropy, new_value, anchor = agent.recompute(b["c"][mb], b["z"][mb], b["na"][mb])
            log_ratio = new_logprob - b["logprob"][mb]                   # eq. (10), same stored z
            ratio = log_ratio.exp()
            with torch.no_grad():
                approx_kl = ((ratio - 1) - log_ratio).mean()
                clipfrac = ((ratio - 1).abs() > cfg.clip_coef).float().mean()
            mb_adv = b_advantages[mb] if cfg.adv_norm == "rollout" else normalized(b_advantages[mb])
            pg_loss = torch.max(-mb_adv * ratio, -mb_adv * ratio.clamp(1 - cfg.clip_coef, 1 + cfg.clip_coef)).mean()  # (11)
            v_loss = F.mse_loss(new_value, b_returns[mb])                                                      # (12)
            loss = cfg.vf_coef * v_loss
            imitation = torch.zeros(())
            if not critic_only:                                                                   # eq. (15)
                loss = loss + pg_loss - cfg.ent_coef * entropy.mean() + cfg.anchor_coef * anchor
                if replay is not None and cfg.imitation_coef > 0:
                    imitation = agent.imitation(replay.sample(cfg.imitation_batch, generator))
                    loss = loss + cfg.imitation_coef * imitation
            for opt in optimizers:
                opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(agent.actor_parameters(), cfg.max_grad_norm)
            nn.utils.clip_grad_norm_(agent.critic.parameters(), cfg.max_grad_norm)
            critic_opt.step()
            if not critic_only:
                actor_opt.step()
            stats.append([pg_loss.item(), v_loss.item(), anchor.item(), imitation.item(), entropy.mean().item(),
                          approx_kl.item(), clipfrac.item()])                # METRICS[:-2]
            if not critic_only and approx_kl > cfg.target_kl:
                stop = True   # the policy moved far enough for this rollout
                break
        if stop:
            break
    agent.fold()                                   # steer 'latent': the deployed generator follows the update
    for sched, stepped in zip(schedulers, (not critic_only, True)):
        if stepped:
            sched.step()
    v, r = b["value"], b_returns
    explained_variance = float(1 - (r - v).var() / r.var().clamp_min(1e-8))
    return dict(zip(METRICS, [*np.mean(stats, axis=0).tolist(), explained_variance, len(stats)]))
