"""Training stages of Drift-Based Policy, wired to the command line.

    python train.py --stage pretrain                 # DBP from scripted demos, default task
    python train.py --stage pretrain --task lift --demos 200 --steps 30000
    python train.py --stage pretrain --out runs/x --resume    # continue an interrupted run
    python train.py --stage pretrain --help          # every flag of a stage, with its meaning

Each stage's settings are one dataclass below; the CLI is generated from its fields, so each
default lives in one place. A run directory holds ckpt.pt (self-describing, EMA weights for
deployment plus the training state for --resume), log.csv and eval.json.
"""
import argparse
import csv
import dataclasses
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from tqdm import tqdm

import dbp
import envs


def arg(default, help):
    return field(default=default, metadata={"help": help})


@dataclass
class PretrainConfig:
    task: str = arg(envs.DEFAULT_TASK, f"task short name or gym id, one of {sorted(envs.TASKS)}")
    demos: int = arg(200, "expert demonstrations to train on (generated and cached if missing)")
    steps: int = arg(15000, "gradient steps")
    seed: int = arg(0, "seed of demos, initialization, batches and evaluation resets")
    batch_size: int = arg(64, "observations per batch (B); each gets n_samples generated chunks")
    lr: float = arg(3e-4, "AdamW peak learning rate (cosine schedule after warmup)")
    weight_decay: float = arg(1e-6, "AdamW weight decay")
    warmup_steps: int = arg(500, "linear learning-rate warmup steps")
    grad_clip: float = arg(10.0, "gradient-norm clip")
    horizon: int = arg(16, "action chunk length Th predicted per network evaluation")
    n_obs_steps: int = arg(2, "observation history To fed to the policy")
    n_action_steps: int = arg(2, "actions Ta executed from each chunk before re-planning (short: closed loop)")
    hidden_dim: int = arg(256, "width of the generator MLP")
    n_blocks: int = arg(3, "residual FiLM blocks in the generator")
    n_samples: int = arg(4, "generated chunks G per observation in the drift loss")
    k: int = arg(16, "positives per observation: action chunks of the k nearest demo observations (1 = paper)")
    bandwidth: float = arg(0.02, "neighbour weight kernel width per normalized obs dim (0 = unweighted kNN)")
    eval_every: int = arg(5000, "steps between periodic evaluations and checkpoints")
    eval_episodes_periodic: int = arg(10, "episodes per periodic evaluation")
    eval_episodes: int = arg(50, "episodes of the final evaluation (seeded resets)")
    out: str = arg("", "run directory (default: runs/pretrain-<task>-s<seed>)")
    resume: bool = arg(False, "continue the run in --out from its checkpoint")
    demo_dir: str = arg("demos", "cache directory of demonstration files")


# ----------------------------------------------------------------------------- CLI
def add_config_args(parser, cls):
    """One flag per dataclass field (--snake-case), its help text and default shown."""
    for f in dataclasses.fields(cls):
        flag = "--" + f.name.replace("_", "-")
        if f.type is bool:
            parser.add_argument(flag, action="store_true", help=f.metadata["help"])
        else:
            parser.add_argument(flag, type=f.type, metavar=f.name.upper(), help=f"{f.metadata['help']} (default: {f.default!r})")
    return parser


def build_parser(stage_cls, stage):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                argument_default=argparse.SUPPRESS)  # only flags given end up in the namespace
    p.add_argument("--stage", choices=sorted(STAGES), default=stage, help="which stage to run; "
                   "`--stage NAME --help` lists that stage's flags")
    return add_config_args(p, stage_cls)


def parse(argv):
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--stage", choices=sorted(STAGES), default="pretrain")
    stage = pre.parse_known_args(argv)[0].stage
    cls, run = STAGES[stage]
    given = vars(build_parser(cls, stage).parse_args(argv))
    given.pop("stage", None)
    return cls, run, given


def resolve_config(cls, given, default_out):
    """New run: defaults + flags. --resume: the saved config, and flags must agree with it."""
    cfg = cls(**given)
    cfg.out = cfg.out or default_out(cfg)
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")
    if not cfg.resume:
        if os.path.exists(ckpt_path):
            sys.exit(f"error: {ckpt_path} exists; pass --resume to continue it or choose another --out")
        return cfg, None
    if not os.path.exists(ckpt_path):
        sys.exit(f"error: --resume given but there is no checkpoint at {ckpt_path}")
    ckpt = dbp.load_checkpoint(ckpt_path)
    saved = cls(**{**ckpt["run_config"], "out": cfg.out, "resume": True})
    for key, value in given.items():
        if key not in ("out", "resume") and getattr(saved, key) != value:
            sys.exit(f"error: --{key.replace('_', '-')} {value!r} disagrees with the run being resumed ({getattr(saved, key)!r})")
    return saved, ckpt


# ----------------------------------------------------------------------------- data
def make_windows(demo, n_obs_steps, horizon):
    """Every time step of every episode -> obs window (N, To, Do) and action chunk (N, Th, Da).
    Windows start To-1 steps in the past; indices are clamped to the episode (edge padding)."""
    starts = np.concatenate([[0], demo["episode_ends"][:-1]])
    obs_idx, act_idx = [], []
    for s, e in zip(starts, demo["episode_ends"]):
        t = np.arange(s, e)[:, None]
        obs_idx.append(np.clip(t + np.arange(-n_obs_steps + 1, 1), s, e - 1))
        act_idx.append(np.clip(t + np.arange(-n_obs_steps + 1, horizon - n_obs_steps + 1), s, e - 1))
    obs_idx, act_idx = np.concatenate(obs_idx), np.concatenate(act_idx)
    return torch.from_numpy(demo["obs"][obs_idx]), torch.from_numpy(demo["actions"][act_idx])


def evaluate_policy(policy, task, n_episodes, seed, progress=False):
    """Seeded evaluation of a DBP policy (z drawn from a seeded generator: repeatable)."""
    To, Ta = policy.n_obs_steps, policy.n_action_steps

    def act_fn(obs_hist):
        return policy.predict_action(obs_hist[None].astype(np.float32))[0, To - 1:To - 1 + Ta]

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return envs.evaluate(task, act_fn, n_episodes=n_episodes, seed=seed, n_obs_steps=To,
                             n_action_steps=Ta, progress=progress)


def positives(policy, obs, actions, cfg):
    """Neighbour positives of every training window, in normalized obs space (bandwidth 0 = unweighted)."""
    nobs = policy.normalize_obs(obs)
    return dbp.neighbor_positives(nobs, nobs, actions, cfg.k, cfg.bandwidth if cfg.bandwidth > 0 else None)


def lr_lambda(cfg):
    def f(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))))
    return f


def update(policy, loss, opt, sched, ema, grad_clip):
    """One optimizer step: backward, grad-norm clip, AdamW, lr schedule, EMA of the weights."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    opt.step()
    sched.step()
    ema.update(policy)


# ----------------------------------------------------------------------------- stage 1
def pretrain(cfg, ckpt):
    os.makedirs(cfg.out, exist_ok=True)
    torch.manual_seed(cfg.seed)
    demo = envs.load_demos(envs.collect_demos(cfg.task, cfg.demos, seed=cfg.seed, cache_dir=cfg.demo_dir))
    obs, actions = make_windows(demo, cfg.n_obs_steps, cfg.horizon)        # (N, To, Do), (N, Th, Da)
    policy = dbp.DBPPolicy(obs.shape[-1], actions.shape[-1], cfg.horizon, cfg.n_obs_steps, cfg.n_action_steps,
                           cfg.hidden_dim, cfg.n_blocks, cfg.n_samples)
    policy.fit_normalizer(obs, actions)
    pos, pos_w = positives(policy, obs, actions, cfg)                      # (N, K, Th, Da), (N, K)
    ema = dbp.EMA(policy)
    opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay, fused=True)  # fused: 5x faster on CPU
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lr_lambda(cfg))
    sampler = torch.Generator().manual_seed(cfg.seed)
    step, train_seconds = 0, 0.0
    if ckpt is not None:                                                   # --resume: restore everything
        t = ckpt["train"]
        policy.load_state_dict(t["model"])
        ema.model.load_state_dict(ckpt["state_dict"])
        ema.step, step, train_seconds = t["ema_step"], t["step"], t["train_seconds"]
        opt.load_state_dict(t["optimizer"])
        sched.load_state_dict(t["scheduler"])
        torch.set_rng_state(t["rng"])
        sampler.set_state(t["sampler_rng"])

    def save():
        dbp.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), ema.model, run_config=dataclasses.asdict(cfg),
                            task=cfg.task, train=dict(step=step, model=policy.state_dict(), ema_step=ema.step,
                            optimizer=opt.state_dict(), scheduler=sched.state_dict(), rng=torch.get_rng_state(),
                            sampler_rng=sampler.get_state(), train_seconds=train_seconds))

    log_path = os.path.join(cfg.out, "log.csv")
    keys = ["step", "loss", "lr"] + [f"force_rms/tau{t:g}" for t in policy.temperatures] + ["success_rate", "train_seconds"]
    new_log = not (ckpt and os.path.exists(log_path))
    log_file = open(log_path, "w" if new_log else "a", newline="")
    log = csv.DictWriter(log_file, keys)
    if new_log:
        log.writeheader()
    print(f"{cfg.task}: {len(demo['episode_ends'])} demos, {len(obs)} windows, obs dim {obs.shape[-1]}, "
          f"action dim {actions.shape[-1]}; run dir {cfg.out}")
    bar = tqdm(total=cfg.steps, initial=step, desc="pretrain", unit="step", dynamic_ncols=True)
    t0 = time.time() - train_seconds
    interrupted = []  # Ctrl-C finishes the current step, saves, and exits: nothing is lost
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    while step < cfg.steps and not interrupted:
        i = torch.randint(0, len(obs), (cfg.batch_size,), generator=sampler)
        loss, info = policy.compute_loss(obs[i], actions[i], pos[i], pos_w[i])
        update(policy, loss, opt, sched, ema, cfg.grad_clip)
        step += 1
        bar.update()
        row = None
        if step % 100 == 0 or step == cfg.steps:
            row = dict(step=step, loss=f"{loss.item():.4f}", lr=f"{sched.get_last_lr()[0]:.3g}",
                       **{k: f"{v:.4g}" for k, v in info.items()})
        if step % cfg.eval_every == 0 and step < cfg.steps:
            result = evaluate_policy(ema.model, cfg.task, cfg.eval_episodes_periodic, cfg.seed)
            row = {**(row or dict(step=step)), "success_rate": result["success_rate"]}
            bar.set_postfix(success=f"{result['success_rate']:.2f}")
        train_seconds = time.time() - t0
        if row:
            log.writerow({**row, "train_seconds": f"{train_seconds:.1f}"})
            log_file.flush()
        if step % cfg.eval_every == 0:
            save()
    signal.signal(signal.SIGINT, signal.default_int_handler)
    bar.close()
    save()
    if interrupted:
        log_file.close()
        sys.exit(f"interrupted at step {step}; checkpoint saved; continue with: "
                 f"python train.py --stage pretrain --out {cfg.out} --resume")
    t1 = time.time()
    result = evaluate_policy(ema.model, cfg.task, cfg.eval_episodes, cfg.seed, progress=True)
    result.update(task=cfg.task, steps=step, demos=cfg.demos, train_seconds=round(train_seconds, 1),
                  eval_seconds=round(time.time() - t1, 1), ckpt=os.path.join(cfg.out, "ckpt.pt"))
    log.writerow(dict(step=step, success_rate=result["success_rate"], train_seconds=f"{train_seconds:.1f}"))
    log_file.close()
    with open(os.path.join(cfg.out, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    lo, hi = result["ci95"]
    print(f"success {result['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] over {result['n_episodes']} episodes; "
          f"modes {result['mode_fractions']}; trained {train_seconds:.0f}s; wrote {cfg.out}/eval.json")
    return result


STAGES = {"pretrain": (PretrainConfig, pretrain)}


def main(argv=None):
    cls, run, given = parse(sys.argv[1:] if argv is None else argv)
    cfg, ckpt = resolve_config(cls, given, lambda c: os.path.join("runs", f"pretrain-{c.task}-s{c.seed}"))
    try:
        envs.make_env(cfg.task).close()
    except ValueError as e:
        sys.exit(f"error: {e}")
    return run(cfg, ckpt)


if __name__ == "__main__":
    main()
