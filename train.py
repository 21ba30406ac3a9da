"""Training stages of Drift-Based Policy, wired to the command line.

    python train.py --stage pretrain                 # DBP from scripted demos, default task
    python train.py --stage pretrain --task lift --demos 200 --steps 30000
    python train.py --stage pretrain --out runs/x --resume    # continue an interrupted run
    python train.py --stage dbpo --ckpt runs/pretrain-push-s0/ckpt.pt   # stage 2: PPO fine-tuning
    python train.py --stage dbpo --help              # every flag of a stage, with its meaning

Each stage's settings are one dataclass below; the CLI is generated from its fields, so each
default lives in one place. A run directory holds ckpt.pt (self-describing: the deployable
policy weights, EMA in stage 1, plus the training state for --resume), log.csv and eval.json.
Stage 2 checkpoints load like stage 1's (DBPPolicy.from_checkpoint, robot.py): the std head and
critic live only in the training state.
"""
import argparse
import csv
import dataclasses
import functools
import json
import math
import os
import signal
import sys
import time
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np
import torch
from tqdm import tqdm

import dbp
import dbpo
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


@dataclass
class DBPOStageConfig(dbpo.DBPOConfig):
    """Stage 2 run settings; the PPO coefficients above them come from dbpo.DBPOConfig."""
    ckpt: str = arg("", "stage-1 (or DBPO) checkpoint to fine-tune; required for a new run")
    iterations: int = arg(300, "PPO iterations, each a rollout of n_envs x n_decisions then an update")
    n_envs: int = arg(8, "parallel environments N, each in its own worker process")
    n_decisions: int = arg(32, "decisions T per env per iteration; a decision executes Ta env steps")
    seed: int = arg(0, "seed of rollouts, sampling and evaluation resets (evaluation = stage 1's seeds)")
    eval_every: int = arg(20, "iterations between evaluations and checkpoints")
    eval_episodes: int = arg(50, "episodes per evaluation, the same seeded resets every time")
    out: str = arg("", "run directory (default: runs/dbpo-<task>-s<seed>)")
    resume: bool = arg(False, "continue the run in --out from its checkpoint")


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
    cls, run, default_out = STAGES[stage]
    given = vars(build_parser(cls, stage).parse_args(argv))
    given.pop("stage", None)
    return cls, run, default_out, given


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


def open_log(out, keys, resume):
    """A run's log.csv -> (file, csv.DictWriter): a new file with its header, appended to on --resume."""
    path = os.path.join(out, "log.csv")
    append = resume and os.path.exists(path)
    log_file = open(path, "a" if append else "w", newline="")
    log = csv.DictWriter(log_file, keys)
    if not append:
        log.writeheader()
    return log_file, log


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

    keys = ["step", "loss", "lr"] + [f"force_rms/tau{t:g}" for t in policy.temperatures] + ["success_rate", "train_seconds"]
    log_file, log = open_log(cfg.out, keys, resume=ckpt is not None)
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


# ----------------------------------------------------------------------------- stage 2
class ChunkEnv(gym.Wrapper):
    """One decision of DBPO: execute an action chunk (Ta, Da) step by step, stopping where the
    episode ends; reward = their sum; observation = the last To observations (To, Do)."""

    def __init__(self, env, n_obs_steps, n_action_steps):
        super().__init__(env)
        self.To, space = n_obs_steps, env.observation_space
        self.observation_space = gym.spaces.Box(np.stack([space.low] * n_obs_steps), np.stack([space.high] * n_obs_steps))
        low, high = env.action_space.low, env.action_space.high
        self.action_space = gym.spaces.Box(np.stack([low] * n_action_steps), np.stack([high] * n_action_steps))

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        self.hist, self.ret, self.length = [obs] * self.To, 0.0, 0
        return np.stack(self.hist), {**info, "chunk_steps": 0}

    def step(self, chunk):
        total, n = 0.0, 0
        for action in chunk:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.hist.append(obs)
            total, n = total + reward, n + 1
            if terminated or truncated:
                break
        self.hist = self.hist[-self.To:]
        self.ret, self.length = self.ret + total, self.length + n
        info = {**info, "chunk_steps": n, "episode_return": self.ret, "episode_length": self.length}
        return np.stack(self.hist), total, terminated, truncated, info


def chunk_env(task, n_obs_steps, n_action_steps):
    # Runs in the worker: Ctrl-C goes to the whole process group, only the trainer handles it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    return ChunkEnv(envs.make_env(task), n_obs_steps, n_action_steps)


@functools.lru_cache(maxsize=1)  # main() checks the checkpoint, finetune() uses it: read it once
def load_stage1(path):
    """The checkpoint to fine-tune, checked against its task's env -> (policy, task)."""
    if not path:
        raise ValueError("--ckpt PATH is required: the stage-1 checkpoint to fine-tune (or --out DIR --resume)")
    ckpt = dbp.load_checkpoint(path)
    if "task" not in ckpt:
        raise ValueError(f"{path} is missing the field 'task' (not written by train.py?)")
    env = envs.make_env(ckpt["task"])
    dims = dict(obs_dim=env.observation_space.shape[0], action_dim=env.action_space.shape[0])
    env.close()
    return dbp.DBPPolicy.from_checkpoint(ckpt, expect=dims), ckpt["task"]


def finetune(cfg, ckpt):
    os.makedirs(cfg.out, exist_ok=True)
    torch.manual_seed(cfg.seed)
    # One torch thread: a second one fights the env workers for the cores (measured on 2 cores,
    # 8 envs: a batch-8 forward took 168 ms instead of 3.5 ms).
    torch.set_num_threads(1)
    if ckpt is None:
        policy, task = load_stage1(cfg.ckpt)
    else:  # --resume: the architecture from our own checkpoint, all weights from its train state
        policy, task = dbp.DBPPolicy.from_checkpoint(ckpt), ckpt["task"]
    agent = dbpo.DBPOAgent(policy, cfg)
    To, Ta, N, T = policy.n_obs_steps, policy.n_action_steps, cfg.n_envs, cfg.n_decisions
    optimizers, schedulers = dbpo.make_optimizers(agent, cfg, cfg.iterations)
    gen = torch.Generator().manual_seed(cfg.seed)
    it, env_steps, train_seconds, history = 0, 0, 0.0, []
    if ckpt is not None:
        t = ckpt["train"]
        agent.load_state_dict(t["agent"])
        for o, s, o_state, s_state in zip(optimizers, schedulers, t["optimizers"], t["schedulers"]):
            o.load_state_dict(o_state)
            s.load_state_dict(s_state)
        it, env_steps, train_seconds, history = t["iteration"], t["env_steps"], t["train_seconds"], t["history"]
        torch.set_rng_state(t["rng"])
        gen.set_state(t["sampler_rng"])

    def save():
        dbp.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), agent.policy, run_config=dataclasses.asdict(cfg),
                            task=task, stage="dbpo", train=dict(iteration=it, env_steps=env_steps, agent=agent.state_dict(),
                            optimizers=[o.state_dict() for o in optimizers], schedulers=[s.state_dict() for s in schedulers],
                            rng=torch.get_rng_state(), sampler_rng=gen.get_state(), train_seconds=train_seconds,
                            history=history))

    def evaluation(progress=False):
        r = evaluate_policy(agent.policy, task, cfg.eval_episodes, cfg.seed, progress)
        history.append(dict(iteration=it, env_steps=env_steps, minutes=round(train_seconds / 60, 2),
                            success_rate=r["success_rate"], ci95=r["ci95"]))
        return r

    vec = gym.vector.AsyncVectorEnv([functools.partial(chunk_env, task, To, Ta)] * N,
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    agent.set_action_bounds(vec.single_action_space.low[0], vec.single_action_space.high[0])
    obs, _ = vec.reset(seed=[cfg.seed * 100_000 + it * N + i for i in range(N)])  # resumed runs re-seed here
    buffer = dbpo.RolloutBuffer(T, N, To * policy.obs_dim, policy.horizon * policy.action_dim, Ta * policy.action_dim)
    keys = ["iteration", "env_steps"] + [f"losses/{k}" for k in ("policy", "value", "anchor", "entropy", "approx_kl", "clipfrac")] \
        + ["losses/explained_variance", "charts/success_rate", "charts/return", "charts/episodes", "charts/SPS",
           "eval/success_rate", "minutes"]
    log_file, log = open_log(cfg.out, keys, resume=ckpt is not None)
    print(f"{task}: fine-tuning {cfg.ckpt or ckpt['run_config']['ckpt']} with {N} envs x {T} decisions x Ta={Ta} "
          f"steps per iteration; run dir {cfg.out}")
    t0 = time.time() - train_seconds  # wall clock of the run, evaluations included
    if it == 0:
        first = evaluation()
        log.writerow(dict(iteration=0, env_steps=0, minutes=0.0, **{"eval/success_rate": first["success_rate"]}))
        print(f"start: success {first['success_rate']:.2f} over {cfg.eval_episodes} episodes")
    bar = tqdm(total=cfg.iterations, initial=it, desc="dbpo", unit="iter", dynamic_ncols=True)
    interrupted = []  # Ctrl-C finishes the current iteration, saves, and exits
    signal.signal(signal.SIGINT, lambda *_: interrupted.append(True))
    try:
        while it < cfg.iterations and not interrupted:
            t_iter, n_steps, episodes = time.time(), 0, []
            for _ in range(T):  # ---- rollout: one decision per env per step
                actions, step = agent.act(obs, generator=gen)
                obs, reward, terminated, truncated, info = vec.step(actions)
                done = terminated | truncated
                final_value = torch.zeros(N)
                if done.any():
                    final = info["final_info"]
                    n_steps += int(final["chunk_steps"][done].sum())
                    episodes += [(final["success"][i], final["episode_return"][i]) for i in np.flatnonzero(done)]
                    if truncated.any():  # bootstrap from the last observation of truncated episodes
                        with torch.no_grad():
                            last = np.stack(info["final_obs"][truncated])
                            final_value[truncated] = agent.value(agent.normalize_obs(last))
                n_steps += int(info["chunk_steps"][~done].sum())
                buffer.add(**step, reward=reward, terminated=terminated, truncated=truncated, final_value=final_value)
            with torch.no_grad():
                last_value = agent.value(agent.normalize_obs(obs))
            stats = dbpo.update(agent, buffer, last_value, optimizers, schedulers, cfg,
                                critic_only=it < cfg.critic_warmup_iters, generator=gen)
            buffer.reset()
            it, env_steps, train_seconds = it + 1, env_steps + n_steps, time.time() - t0
            row = dict(iteration=it, env_steps=env_steps, minutes=f"{train_seconds / 60:.2f}",
                       **{f"losses/{k}": f"{v:.4g}" for k, v in stats.items() if k not in ("minibatches", "early_stop")},
                       **{"charts/SPS": f"{n_steps / (time.time() - t_iter):.0f}", "charts/episodes": len(episodes)})
            if episodes:
                row.update({"charts/success_rate": f"{np.mean([s for s, _ in episodes]):.3f}",
                            "charts/return": f"{np.mean([r for _, r in episodes]):.3f}"})
            if it % cfg.eval_every == 0 and it < cfg.iterations:
                row["eval/success_rate"] = evaluation()["success_rate"]
                bar.set_postfix(success=row["eval/success_rate"], rollout=row.get("charts/success_rate"))
                save()
            log.writerow(row)
            log_file.flush()
            bar.update()
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        vec.close()
        bar.close()
    save()
    if interrupted:
        log_file.close()
        sys.exit(f"interrupted at iteration {it}; checkpoint saved; continue with: "
                 f"python train.py --stage dbpo --out {cfg.out} --resume")
    result = evaluation(progress=True)
    save()
    log.writerow(dict(iteration=it, env_steps=env_steps, minutes=f"{train_seconds / 60:.2f}",
                      **{"eval/success_rate": result["success_rate"]}))
    log_file.close()
    result.update(task=task, stage="dbpo", iterations=it, env_steps=env_steps, train_seconds=round(train_seconds, 1),
                  start_ckpt=cfg.ckpt, ckpt=os.path.join(cfg.out, "ckpt.pt"), history=history)
    with open(os.path.join(cfg.out, "eval.json"), "w") as f:
        json.dump(result, f, indent=2)
    lo, hi = result["ci95"]
    print(f"success {history[0]['success_rate']:.2f} -> {result['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] over "
          f"{result['n_episodes']} episodes; {env_steps} env steps in {train_seconds / 60:.1f} min; wrote {cfg.out}/eval.json")
    return result


def dbpo_out(cfg):
    return os.path.join("runs", f"dbpo-{load_stage1(cfg.ckpt)[1]}-s{cfg.seed}")


# stage -> (config dataclass, run function, default run directory)
STAGES = {"pretrain": (PretrainConfig, pretrain, lambda c: os.path.join("runs", f"pretrain-{c.task}-s{c.seed}")),
          "dbpo": (DBPOStageConfig, finetune, dbpo_out)}


def main(argv=None):
    cls, run, default_out, given = parse(sys.argv[1:] if argv is None else argv)
    try:  # bad tasks and checkpoints end here with one clear line
        cfg, ckpt = resolve_config(cls, given, default_out)
        if isinstance(cfg, PretrainConfig):
            envs.make_env(cfg.task).close()
        elif ckpt is None:
            load_stage1(cfg.ckpt)  # a bad checkpoint fails here, before any worker starts
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    return run(cfg, ckpt)


if __name__ == "__main__":
    main()
