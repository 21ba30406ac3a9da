"""Benchmark: DBP (1 NFE) against Diffusion Policy (DDPM-100, DDIM-10) and MSE regression.

Checks the headline of Gao et al. 2026 (arXiv 2604.03540; ALGORITHM.md section 3) on our own
tasks: one network evaluation matches or beats a 100-step diffusion policy in success at a
fraction of its latency, and a regression policy fails where demonstrations are multimodal.
Every method gets the same cached demos, the same backbone (dbp.DriftNet at PretrainConfig's
size), the same normalizer, gradient steps, batch, lr schedule, EMA and seeds; everything in
the table is measured by this run.

    python bench.py --json bench.json                # all tasks, the README table (13-35 min on 2 idle cores)
    python bench.py --quick --json bench.json        # reduced run in a few minutes (the test's)
    python bench.py --help                           # every flag, with its meaning
"""
import dataclasses
import importlib.metadata
import json
import math
import os
import platform
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler
from tqdm import tqdm

import dbp
import envs
import train
from dbp import option

DEFAULT_THREADS = torch.get_num_threads()  # read before any set_num_threads
TEMB_DIM = 64                              # sinusoidal timestep embedding width (Diffusion Policy only)
WARMUP_CALLS = 20                          # untimed predict_action calls before latency timing
METHODS = {"dbp": "dbp", "ddpm": "diffusion", "ddim": "diffusion", "mse": "mse"}  # method -> the model it samples


@dataclass
class BenchConfig(train.EvalConfig, train.DemoConfig):
    """The benchmark; demos, seed and evaluation episodes as in train.py."""
    tasks: str = option(",".join(envs.TASKS), f"comma-separated tasks, from {sorted(envs.TASKS)}")
    methods: str = option(",".join(METHODS), f"comma-separated methods, from {list(METHODS)} (DDPM and DDIM sample "
                          "the same trained diffusion model)")
    steps: int = option(8000, "gradient steps per model, the same for all (train.py's DBP default is 15000; "
                        "8000 keep the full run at 13-35 min on 2 idle cores, by VM)", ge=1)
    latency_calls: int = option(200, "timed predict_action calls at batch 1 per method and thread setting", ge=1)
    diffusion_steps: int = option(100, "DDPM training timesteps, all of them sampled by DDPM (its NFE)", ge=1)
    ddim_steps: int = option(10, "DDIM sampling steps from the same trained diffusion model (its NFE)", ge=1)
    quick: bool = option(False, "reduced run: push, 20 demos, 300 steps, 5 episodes, 50 latency calls "
                         "(flags given explicitly win)")
    json: str = option("", "write the results to this JSON file")

    def check(self):
        if unknown := set(self.methods.split(",")) - set(METHODS):
            raise dbp.ConfigError("methods", self.methods, f"unknown {sorted(unknown)}; known: {list(METHODS)}")
        for task in self.tasks.split(","):
            try:
                envs.resolve_task(task)
            except ValueError as e:
                raise dbp.ConfigError("tasks", self.tasks, str(e)) from None


QUICK = dict(tasks="push", demos=20, steps=300, eval_episodes=5, latency_calls=50)


def parse(argv):
    given = vars(dbp.add_config_args(dbp.make_parser(__doc__), BenchConfig).parse_args(argv))
    return dbp.build_config(BenchConfig, {**(QUICK if given.get("quick") else {}), **given})


# ----------------------------------------------------------------------------- baselines
class Baseline(nn.Module):
    """What a baseline shares with DBPPolicy, by composition: dims, chunk shape, a dbp.Normalizer
    and a dbp.DriftNet backbone of the same size (its condition widened by cond_extra).
    predict_action is dbp.predict_chunks around the subclass's sample(c)."""

    def __init__(self, obs_dim, action_dim, cfg, cond_extra=0):
        super().__init__()
        self.obs_dim, self.action_dim = obs_dim, action_dim
        self.horizon, self.n_obs_steps, self.n_action_steps = cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps
        self.normalizer = dbp.Normalizer(obs_dim, action_dim)
        self.net = dbp.DriftNet(cfg.horizon * action_dim, cfg.n_obs_steps * obs_dim + cond_extra, cfg.hidden_dim, cfg.n_blocks)

    def normalized(self, obs, actions):
        """Raw training batch -> condition c (B, To*Do) and normalized chunks (B, L)."""
        B = len(obs)
        return (self.normalizer.normalize_obs(obs).reshape(B, -1), self.normalizer.normalize_actions(actions).reshape(B, -1))

    @torch.inference_mode()
    def predict_action(self, obs):
        return dbp.predict_chunks(self, obs, self.sample)


def timestep_embedding(t, dim=TEMB_DIM):
    """Sinusoidal embedding (Vaswani et al. 2017; Diffusion Policy's SinusoidalPosEmb): t (B,) -> (B, dim)."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, device=t.device) / (half - 1))
    angles = t.float()[:, None] * freqs                                                # (B, dim/2)
    return torch.cat([angles.sin(), angles.cos()], dim=-1)


class DiffusionPolicy(Baseline):
    """Diffusion Policy (Chi et al. 2023) on DBP's backbone: the DriftNet with the timestep
    embedding appended to its (FiLM) condition; input = noisy chunk x_t, output = predicted noise.
    Trained with DDPM's epsilon objective; sampled by `sampler`, DDPM (all steps) or DDIM (few
    steps), n_steps NFE, with Diffusion Policy's scheduler settings (diffusers, squaredcos_cap_v2,
    clip to [-1, 1]). The same weights serve both samplers (load_state_dict)."""

    def __init__(self, obs_dim, action_dim, cfg, diffusion_steps, sampler="ddpm", n_steps=None):
        super().__init__(obs_dim, action_dim, cfg, cond_extra=TEMB_DIM)
        kw = dict(num_train_timesteps=diffusion_steps, beta_schedule="squaredcos_cap_v2", clip_sample=True,
                  prediction_type="epsilon")
        self.scheduler = {"ddpm": DDPMScheduler, "ddim": DDIMScheduler}[sampler](**kw)
        self.n_steps = n_steps or diffusion_steps

    def eps(self, nx, t, c):
        """Predicted noise for noisy chunks nx (B, L) at timesteps t (B,) given c (B, To*Do)."""
        return self.net(nx, torch.cat([c, timestep_embedding(t)], dim=-1))

    def compute_loss(self, obs, actions):
        """DDPM loss (Ho et al. 2020, eq. 14): || eps - eps_theta(sqrt(abar_t) x0 + sqrt(1 - abar_t) eps, t) ||^2."""
        c, nact = self.normalized(obs, actions)                                        # (B, To*Do), (B, L)
        noise = torch.randn_like(nact)
        t = torch.randint(0, self.scheduler.config.num_train_timesteps, (len(c),))     # t ~ U{0..T-1}
        nx = self.scheduler.add_noise(nact, noise, t)                                  # q(x_t | x_0)
        return F.mse_loss(self.eps(nx, t, c), noise), {}

    def sample(self, c):
        """n_steps denoising steps from x_T ~ N(0, I): (B, To*Do) -> (B, L), n_steps NFE."""
        self.scheduler.set_timesteps(self.n_steps)
        nx = torch.randn(len(c), self.horizon * self.action_dim)
        for t in self.scheduler.timesteps:
            nx = self.scheduler.step(self.eps(nx, t.expand(len(c)), c), t, nx).prev_sample
        return nx


class RegressionPolicy(Baseline):
    """Behaviour cloning of the chunk: the DriftNet fed z = 0, MSE to the recorded chunk.
    Deterministic, so where the demos hold two modes it predicts their mean."""

    def compute_loss(self, obs, actions):
        c, nact = self.normalized(obs, actions)
        return F.mse_loss(self.sample(c), nact), {}

    def sample(self, c):
        return self.net(c.new_zeros(len(c), self.horizon * self.action_dim), c)


# ----------------------------------------------------------------------------- measurements
def train_policy(policy, loss_fn, n_windows, pcfg, desc):
    """train.py's pretrain loop stripped to the budget: AdamW, lr schedule, grad clip, EMA.
    loss_fn(idx) -> (loss, info) on a batch of window indices. Returns (EMA policy, seconds)."""
    torch.manual_seed(pcfg.seed)                        # the same noise stream for every method
    ema = dbp.EMA(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=pcfg.lr, weight_decay=pcfg.weight_decay, fused=True)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, train.lr_lambda(pcfg))
    batches = torch.Generator().manual_seed(pcfg.seed)  # the same batch sequence for every method
    t0 = time.perf_counter()
    for _ in tqdm(range(pcfg.steps), desc=desc, unit="step", dynamic_ncols=True, leave=False):
        idx = torch.randint(0, n_windows, (pcfg.batch_size,), generator=batches)
        train.optimizer_step(policy, loss_fn(idx)[0], opt, sched, ema, pcfg.grad_clip)
    return ema.model.eval(), time.perf_counter() - t0


def latency(policy, obs, calls, threads):
    """p50 / p99 (ms) of predict_action at batch 1 on `threads` torch threads, after warm-up."""
    torch.set_num_threads(threads)
    try:
        for _ in range(WARMUP_CALLS):
            policy.predict_action(obs)
        times = []
        for _ in range(calls):
            t0 = time.perf_counter()
            policy.predict_action(obs)
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(DEFAULT_THREADS)
    return float(np.percentile(times, 50) * 1e3), float(np.percentile(times, 99) * 1e3)


@torch.no_grad()
def chunk_modes(policy, demo, obs, actions, mode_names, seed):
    """Where the first chunk goes at every demonstrated start state of a two-mode task: each
    chunk is placed on the axis from mode 0's mean demonstrated first chunk (0) to mode 1's (1);
    < 1/3 counts as mode 0, > 2/3 as mode 1, else 'between' (the averaged, empty middle)."""
    starts = np.concatenate([[0], demo["episode_ends"][:-1]])                         # window index = time index
    modes = torch.from_numpy(demo["modes"])
    first = actions[starts].flatten(1)                                                 # (E, Th*Da) demonstrated
    m0, m1 = first[modes == 0].mean(0), first[modes == 1].mean(0)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        x = torch.as_tensor(policy.predict_action(obs[starts].numpy())).flatten(1)     # (E, Th*Da) generated
    s = (x - m0) @ (m1 - m0) / (m1 - m0).pow(2).sum()
    return {mode_names[0]: (s < 1 / 3).float().mean().item(), mode_names[1]: (s > 2 / 3).float().mean().item(),
            "between": ((s >= 1 / 3) & (s <= 2 / 3)).float().mean().item()}


# ----------------------------------------------------------------------------- one task
def bench_task(task, cfg):
    """Train the three models on one task's demos, then evaluate and time the four methods."""
    # DBP's exact pretrain recipe; the baselines share its size, optimizer, schedule and batches.
    pcfg = train.PretrainConfig(task=task, demos=cfg.demos, steps=cfg.steps, seed=cfg.seed, demo_dir=cfg.demo_dir)
    pcfg = dataclasses.replace(pcfg, warmup_steps=min(pcfg.warmup_steps, cfg.steps // 10))  # shortens --quick's only
    demo, obs, actions = train.windows(pcfg, task)                                     # (N, To, Do), (N, Th, Da)
    Do, Da = obs.shape[-1], actions.shape[-1]
    env = envs.make_env(task)
    mode_names = env.unwrapped.mode_names
    env.close()
    print(f"\n{task}: {len(demo['episode_ends'])} demos, {len(obs)} windows, Do={Do} Da={Da}, {cfg.steps} steps per model")

    def build(make):
        torch.manual_seed(cfg.seed)                                                  # same seed for every init
        policy = make()
        policy.normalizer.fit(obs, actions)
        return policy

    # --- training: DBP's neighbour search is part of its training time
    t0 = time.perf_counter()
    dbp_policy = build(lambda: dbp.DBPPolicy(Do, Da, pcfg))
    pos, pos_w = dbp_policy.positives(obs, actions)
    prep_s = time.perf_counter() - t0
    diffusion = build(lambda: DiffusionPolicy(Do, Da, pcfg, cfg.diffusion_steps))
    regression = build(lambda: RegressionPolicy(Do, Da, pcfg))
    models = {"dbp": (dbp_policy, lambda i: dbp_policy.compute_loss(obs[i], actions[i], pos[i], pos_w[i])),
              "diffusion": (diffusion, lambda i: diffusion.compute_loss(obs[i], actions[i])),
              "mse": (regression, lambda i: regression.compute_loss(obs[i], actions[i]))}
    wanted = cfg.methods.split(",")
    trained, train_s = {}, {}
    for name, (policy, loss_fn) in [(m, models[m]) for m in models if m in {METHODS[w] for w in wanted}]:
        trained[name], train_s[name] = train_policy(policy, loss_fn, len(obs), pcfg, f"{task} {name}")
        print(f"  trained {name:9s} {train_s[name]:6.1f} s  ({cfg.steps / train_s[name]:.1f} steps/s)")
    if "dbp" in train_s:
        train_s["dbp"] += prep_s
    ddim = DiffusionPolicy(Do, Da, pcfg, cfg.diffusion_steps, "ddim", cfg.ddim_steps)
    if "diffusion" in trained:
        ddim.load_state_dict(trained["diffusion"].state_dict())                      # the same trained model
    methods = {"dbp": (trained.get("dbp"), 1, "dbp"),                              # (policy, NFE, trained model)
               "ddpm": (trained.get("diffusion"), cfg.diffusion_steps, "diffusion"),
               "ddim": (ddim.eval(), cfg.ddim_steps, "diffusion"),
               "mse": (trained.get("mse"), 1, "mse")}
    methods = {name: methods[name] for name in METHODS if name in wanted}

    # --- evaluation (seeded resets and sampling noise) and the multimodality diagnostic
    results = {}
    for name, (policy, nfe, model) in methods.items():
        t0 = time.perf_counter()
        r = train.evaluate(policy, task, cfg.eval_episodes, cfg.seed, progress=True)
        results[name] = dict(
            nfe=nfe, success_rate=r["success_rate"], ci95=r["ci95"], n_episodes=r["n_episodes"],
            n_success=r["n_success"], mean_return=r["mean_return"], mode_fractions=r["mode_fractions"],
            mode_counts=r["mode_counts"],
            chunk_modes=chunk_modes(policy, demo, obs, actions, mode_names, cfg.seed) if len(mode_names) == 2 else None,
            train_seconds=round(train_s[model], 1), train_steps=cfg.steps, trained_model=model,
            eval_seconds=round(time.perf_counter() - t0, 1))
        print(f"  evaluated {name:8s} success {r['success_rate']:.2f} in {results[name]['eval_seconds']:.0f} s")

    # --- latency at batch 1, all methods back to back on the same observation window
    obs1 = obs[:1].numpy()                                                             # (1, To, Do)
    for threads, key in ((1, "1thread"), (DEFAULT_THREADS, "default")):
        for name, (policy, _, _) in methods.items():
            p50, p99 = latency(policy, obs1, cfg.latency_calls, threads)
            results[name].update({f"latency_p50_ms_{key}": p50, f"latency_p99_ms_{key}": p99})
    ratio = {f"latency_ratio_ddpm_over_dbp_{key}": results["ddpm"][f"latency_p50_ms_{key}"]
             / results["dbp"][f"latency_p50_ms_{key}"] for key in ("1thread", "default") if {"dbp", "ddpm"} <= set(results)}
    return dict(n_demos=len(demo["episode_ends"]), n_windows=len(obs), obs_dim=obs.shape[-1],
                action_dim=actions.shape[-1], recipe=dataclasses.asdict(pcfg), methods=results, **ratio)


# ----------------------------------------------------------------------------- report
def label(name, r):
    return {"dbp": "DBP", "ddpm": f"DP DDPM-{r['nfe']}", "ddim": f"DP DDIM-{r['nfe']}", "mse": "MSE regression"}[name]


def table(tasks):
    fmt = lambda d: " / ".join(f"{k} {v:.2f}" for k, v in d.items())
    rows = [f"| task | method | NFE | success [95% CI] | modes of successes | first-chunk modes | "
            f"p50/p99 ms, 1 thread | p50/p99 ms, {DEFAULT_THREADS} threads | train s |", "|" + "---|" * 9]
    for task, t in tasks.items():
        for name, r in t["methods"].items():
            lo, hi = r["ci95"]
            modes = (" / ".join(f"{k} {v}" for k, v in r["mode_counts"].items()) + f" of {r['n_episodes']}"
                     if r["mode_counts"] else "–")
            rows.append(f"| {task} | {label(name, r)} | {r['nfe']} | {r['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] | "
                        f"{modes} | {fmt(r['chunk_modes']) if r['chunk_modes'] else '–'} | "
                        f"{r['latency_p50_ms_1thread']:.2f} / {r['latency_p99_ms_1thread']:.2f} | "
                        f"{r['latency_p50_ms_default']:.2f} / {r['latency_p99_ms_default']:.2f} | "
                        f"{r['train_seconds']:.0f}{' (shared)' if r['trained_model'] == 'diffusion' else ''} |")
    lines = [f"{task}: DDPM-{t['methods']['ddpm']['nfe']} / DBP latency at batch 1 (p50): "
             f"{t['latency_ratio_ddpm_over_dbp_1thread']:.0f}x on 1 thread, "
             f"{t['latency_ratio_ddpm_over_dbp_default']:.0f}x on {DEFAULT_THREADS} threads" for task, t in tasks.items()
             if "latency_ratio_ddpm_over_dbp_default" in t]
    return "\n".join(rows) + "\n\n" + "\n".join(lines)


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads_default=DEFAULT_THREADS,
                load_average_at_start=list(os.getloadavg()), python=platform.python_version(),
                torch=torch.__version__, diffusers=importlib.metadata.version("diffusers"), platform=platform.platform())


def main(argv=None):
    cfg = parse(sys.argv[1:] if argv is None else argv)
    info, t0 = machine(), time.perf_counter()
    tasks = {}
    for task in cfg.tasks.split(","):
        tasks[envs.resolve_task(task)[0]] = bench_task(task, cfg)
    out = dict(config=dataclasses.asdict(cfg), machine=info,
               wall_seconds=round(time.perf_counter() - t0, 1), tasks=tasks)
    print(f"\n{'quick run (--quick): reduced, not the benchmark' if cfg.quick else 'benchmark'}; "
          f"{cfg.steps} steps per model, {cfg.eval_episodes} episodes, {cfg.latency_calls} latency calls; "
          f"{info['cpu']} ({info['cpu_count']} cores); wall {out['wall_seconds'] / 60:.1f} min\n")
    print(table(tasks))
    if cfg.json:
        with open(cfg.json, "w") as f:
            json.dump(out, f, indent=2)
        print(f"\nwrote {cfg.json}")
    return out


if __name__ == "__main__":
    main()
