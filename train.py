"""Training stages of Drift-Based Policy, wired to the command line.

    python train.py --stage pretrain                 # DBP from scripted demos, default task
    python train.py --stage pretrain --task lift --demos 200 --steps 30000
    python train.py --stage pretrain --obs pixels    # from a 64x64 camera and the arms' pose, no object state
    python train.py --stage pretrain --out runs/x --resume    # continue an interrupted run
    python train.py --stage dbpo                     # stage 2: PPO fine-tuning of runs/pretrain-push-s0
    python train.py --stage dbpo --preset paper      # ... with the authors' configuration
    python train.py --stage dbpo --preset latent     # ... steering the frozen generator's noise z instead
    python train.py --stage dbpo --help              # every flag of a stage, with its meaning and range
    python train.py --plot runs/dbpo-push-s0 runs/x  # overlay learning curves -> curves.png

Each stage's settings are one dataclass below, built from dbp.DBPConfig / dbpo.DBPOConfig and the
shared run fields; the CLI is generated from their fields, so each default lives in one place.
A run directory (run_dir.py) holds ckpt.pt (self-describing: the deployable policy weights, EMA in
stage 1, plus the training state for --resume; saved every eval_every and every save_every_s),
log.csv and eval.json; stage 2 also draws curve.png at every evaluation. Stage 2 checkpoints load
like stage 1's (DBPPolicy.from_checkpoint, robot.py): the std head and critic live only in the
training state. The demonstrations and their windows come from demonstrations.py, the rollouts
and evaluations from rollouts.py; stage 2 (DBPO) is finetune.py.
"""
import argparse
import dataclasses
import math
import os
import sys
import time
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

import cli
import dbp
import dbpo
import demonstrations
import envs
import finetune
import metaworld_tasks
import run_dir
import training
from dbp import option


# ----------------------------------------------------------------------------- configs
@dataclass
class EvalConfig(cli.SeedConfig):
    """Seeded evaluation, shared by both stages and bench.py."""
    eval_episodes: int = option(50, "episodes of each evaluation, the same seeded resets every time", ge=1)


@dataclass
class DemoConfig(dbp.Config):
    """Scripted demonstrations, shared by stage 1 and bench.py."""
    demos: int = option(200, "expert demonstrations to train on (generated and cached if missing; Meta-World "
                        "tasks: 10, the protocol)", ge=1)
    demo_dir: str = option("demos", "cache directory of demonstration files")


@dataclass
class RunConfig(EvalConfig):
    """A run directory that survives interruption, shared by both stages."""
    out: str = option("", "run directory ('': runs/<stage>-<task>-s<seed>)")
    resume: bool = option(False, "continue the run in --out from its checkpoint")
    save_every_s: float = option(60.0, "checkpoint at least this often (s of wall time) besides every eval_every",
                                 gt=0.0)
    video: int = option(0, "render the first N episodes of the final evaluation to OUT/videos/*.gif, named by reset "
                        "seed and outcome (0: no rendering cost)", ge=0)

    def check(self):
        if self.video > self.eval_episodes:
            raise dbp.ConfigError("video", self.video, f"must be <= eval_episodes = {self.eval_episodes}")


@dataclass
class PretrainConfig(RunConfig, DemoConfig, dbp.DBPConfig, cli.DeviceConfig):
    """Stage 1: DBP from demonstrations; the policy and drift-loss fields come from dbp.DBPConfig."""
    task: str = option(envs.DEFAULT_TASK, f"task short name or gym id, one of {sorted(envs.TASKS)}, or mw-<name> (then by default "
                       "10 demos, 5000 steps, horizon 4, n_action_steps 3: the DP3/MP1 protocol); "
                       "with --dataset and no --task: none (the run trains and saves, with no env to evaluate in)")
    steps: int = option(15000, "gradient steps (6000 with --obs pixels, 5000 with --task mw-*)", ge=1)
    batch_size: int = option(128, "observations per batch (B); each gets n_samples (G) generated chunks, so a step "
                             "runs the generator on B*G samples", ge=1)
    lr: float = option(3e-4, "AdamW peak learning rate (cosine schedule after warmup)", gt=0.0)
    weight_decay: float = option(1e-6, "AdamW weight decay", ge=0.0)
    warmup_steps: int = option(500, "linear learning-rate warmup steps (300 with --obs pixels)", ge=0)
    grad_clip: float = option(10.0, "gradient-norm clip", gt=0.0)
    ema_max_decay: float = option(training.EMA_MAX_DECAY, "cap of the decay of the weights' EMA, the policy evaluated and saved (decay "
                                  "1 - (1 + step)^-0.75, Diffusion Policy's schedule; 0: no averaging)", ge=0.0, lt=1.0)
    eval_every: int = option(5000, "steps between periodic evaluations (of eval_episodes_periodic episodes) and "
                             "checkpoints (2000 with --obs pixels)", ge=1)
    eval_episodes_periodic: int = option(10, "episodes per periodic evaluation", ge=1)
    demos_file: str = option("", "train on the successful episodes of this demo file (robot.py --record's, or envs' "
                             "format) instead of the scripted expert's demos (--demos, --demo-dir unused)")
    dataset: str = option("", "train on this dataset instead of the scripted expert's demos: a LeRobot v3 directory, a "
                          "robomimic .hdf5 or an .npz demo file (the format from the path); its successful episodes "
                          "where it labels them. With --task, its obs and action dims and fps must be the task's")
    dataset_obs_keys: str = option("", "--dataset's observation keys, comma-separated, concatenated in order ('': "
                                   "observation.state for LeRobot; robomimic needs them)")
    dataset_action_key: str = option("", "--dataset's action key ('': action for LeRobot, actions for robomimic)")
    dataset_image_keys: str = option("", "--dataset's camera keys, comma-separated, for --obs pixels (LeRobot's are "
                                     "decoded from their mp4)")

    def check(self):
        if not self.task and not self.dataset:
            raise dbp.ConfigError("task", self.task, "may be empty only with --dataset (a run without an env)")


# --preset paper's rollouts: the authors' 40 envs x 500 decisions (20,000 per iteration) scaled down 10x to what two
# cores roll out in seconds, 8 x 250, with about the defaults' env steps in all (100 x 2,000 decisions against 800 x 256)
# and between evaluations (flags given still apply)
PAPER_RUN = dict(n_envs=8, n_decisions=250, iterations=100, eval_every=5)
# --obs pixels: a step costs ~10x a state step (the image encoder), so fewer of them (flags given still apply)
PIXEL_DEFAULTS = dict(steps=6000, warmup_steps=300, eval_every=2000)
# --task mw-<name>: the Meta-World protocol of DP3 and MP1, 10 scripted demos and their 4-step chunk of which 3 steps
# run (DBP over the 11 hard tasks x 3 seeds: 0.80 against 0.77 with Th 8, Ta 2; RESULTS.md section 4), and the steps
# of the last checkpoint of `bench.py --suite metaworld` (flags given still apply)
METAWORLD_DEFAULTS = dict(demos=10, steps=5000, horizon=4, n_action_steps=3)


@dataclass
class DBPOStageConfig(RunConfig, dbpo.DBPOConfig, cli.DeviceConfig):
    """Stage 2 run settings; the PPO coefficients come from dbpo.DBPOConfig."""
    ckpt: str = option("", "stage-1 (or DBPO) checkpoint to fine-tune ('': runs/pretrain-<task>-s<seed>/ckpt.pt, "
                       "where `--stage pretrain` with the same --task and --seed saves it)")
    task: str = option(envs.DEFAULT_TASK, "task of the default --ckpt; a checkpoint given by --ckpt brings its own")
    preset: str = option("", "'paper': the authors' configuration where our defaults differ ("
                         + ", ".join(f"{k}={v}" for k, v in {**dbpo.PRESETS["paper"], **PAPER_RUN}.items())
                         + "); 'latent': latent steering (" + ", ".join(f"{k}={v}" for k, v in dbpo.PRESETS["latent"].items())
                         + "); flags given still apply")
    iterations: int = option(800, "PPO iterations, each a rollout of n_envs x n_decisions then an update", ge=1)
    n_envs: int = option(8, "parallel environments N, each in its own worker process", ge=1)
    n_decisions: int = option(32, "decisions T per env per iteration; a decision executes Ta env steps", ge=1)
    continue_after_success: bool = option(False, "rollout episodes end only at the time limit (truncated, bootstrapped "
                                          "from V): rewards run on after a success, which counts at any step. "
                                          "Evaluations still end at success")
    eval_every: int = option(40, "iterations between evaluations and checkpoints", ge=1)
    eval_episodes: int = option(100, "episodes of each evaluation, the same seeded resets every time", ge=1)

    def check(self):
        if self.preset and self.preset not in dbpo.PRESETS:
            raise dbp.ConfigError("preset", self.preset, f"must be '' or one of {sorted(dbpo.PRESETS)}")
        if self.critic_warmup_iters >= self.iterations:
            raise dbp.ConfigError("critic_warmup_iters", self.critic_warmup_iters,
                                  f"must be < iterations = {self.iterations} (else the actor never trains)")
        if self.n_envs * self.n_decisions < 2:  # advantages are normalized by their std
            raise dbp.ConfigError("n_decisions", self.n_decisions, "n_envs x n_decisions must be >= 2")


# ----------------------------------------------------------------------------- stage 1
def lr_lambda(cfg):
    def f(step):
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))))
    return f


def optimizer_step(policy, loss, opt, sched, ema, grad_clip):
    """One optimizer step: backward, grad-norm clip, AdamW, lr schedule, EMA of the weights."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(policy.parameters(), grad_clip)
    opt.step()
    sched.step()
    ema.update(policy)


def make_policy(obs, actions, cfg):
    """A DBPPolicy sized for training windows (state, or the pixel dict), its normalizer fit on them."""
    state, image_shape = demonstrations.state_and_image_shape(obs)
    policy = dbp.DBPPolicy(state.shape[-1], actions.shape[-1], cfg, image_shape)
    policy.normalizer.fit(state, actions)
    return policy


def distributed(device):
    """Under torchrun (WORLD_SIZE > 1) join its process group: nccl on CUDA (each process on cuda:LOCAL_RANK),
    gloo otherwise. Returns (rank, world size, group or None, device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, None, device
    if device.type == "cuda":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), world, dist.group.WORLD, device


class DDPLoss(torch.nn.Module):
    """A policy's compute_loss as forward(), the module that DistributedDataParallel wraps so that it averages the
    gradients of its backward over the processes; the drift loss all-reduces its batch statistics over `group` itself."""

    def __init__(self, policy, group):
        super().__init__()
        self.policy, self.group = policy, group

    def forward(self, *args):
        return self.policy.compute_loss(*args, group=self.group)

    @classmethod
    def of(cls, policy, group, device):
        """The loss of a policy: under torchrun (group given) wrapped in DistributedDataParallel, else called as is."""
        loss = cls(policy, group)
        if group is None:
            return loss
        return DistributedDataParallel(loss, device_ids=[device] if device.type == "cuda" else None,
                                       forward_sync_buffers=False)  # the buffers (normalizer) never change


class Pretraining:
    """Stage 1's training state, all of it in the checkpoint for --resume: the policy, the EMA of its weights (the
    policy that is evaluated and deployed), AdamW and its lr schedule, the batch sampler's generator, the step and the
    wall time of earlier sessions."""

    def __init__(self, policy, cfg, device):
        self.policy, self.device, self.ema = policy, device, training.EMA(policy, max_decay=cfg.ema_max_decay)
        self.opt = torch.optim.AdamW(policy.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay,
                                     fused=device.type in ("cpu", "cuda"))           # fused: 5x faster on CPU
        self.sched = torch.optim.lr_scheduler.LambdaLR(self.opt, lr_lambda(cfg))
        self.sampler = torch.Generator().manual_seed(cfg.seed)
        self.step, self.seconds = 0, 0.0

    def load(self, ckpt):
        """Restore everything from the run's checkpoint, the RNG streams included."""
        t = ckpt["train"]
        self.policy.load_state_dict(t["model"])
        self.ema.model.load_state_dict(ckpt["state_dict"])
        self.ema.step, self.step, self.seconds = t["ema_step"], t["step"], t["train_seconds"]
        self.opt.load_state_dict(t["optimizer"])
        self.sched.load_state_dict(t["scheduler"])
        torch.set_rng_state(t["rng"])
        if self.device.type == "cuda" and "cuda_rng" in t:                     # z is drawn on the device
            torch.cuda.set_rng_state(t["cuda_rng"], self.device)
        self.sampler.set_state(t["sampler_rng"])

    def state_dict(self, train_seconds):
        """The checkpoint's "train" field; load() reads it back."""
        cuda = self.device.type == "cuda"
        return dict(step=self.step, model=self.policy.state_dict(), ema_step=self.ema.step,
                    optimizer=self.opt.state_dict(), scheduler=self.sched.state_dict(), rng=torch.get_rng_state(),
                    sampler_rng=self.sampler.get_state(), train_seconds=train_seconds,
                    **({"cuda_rng": torch.cuda.get_rng_state(self.device)} if cuda else {}))


def training_data(cfg, rank, group, device):
    """The task's training windows and a DBPPolicy fit to them, both on the device -> (demo, policy, (obs (N, To, Do)
    or the pixel dict, actions (N, Th, Da), positives (N, K, Th, Da), their weights (N, K))). Under torchrun rank 0
    writes the demo file before the others read it."""
    if rank > 0:
        dist.barrier()
    demo, obs, actions = demonstrations.load_windows(cfg, cfg.task)    # (N, To, Do) or the pixel dict, (N, Th, Da)
    if rank == 0 and group is not None:
        dist.barrier()
    policy = make_policy(obs, actions, cfg)
    pos, pos_w = policy.positives(obs, actions)                            # (N, K, Th, Da), (N, K)
    data = demonstrations.to_device(obs, device), actions.to(device), pos.to(device), pos_w.to(device)  # beside the net
    return demo, policy.to(device), data


def pretrain_steps(cfg, state, run, data, loss_fn, share, group):
    """Train from state.step to cfg.steps, or until a signal: log every 100 steps, evaluate the EMA policy every
    eval_every (the main process), checkpoint on Run's schedule. share: this process's rows of every global batch."""
    obs, actions, pos, pos_w = data
    device = state.device
    noise_shape = (cfg.batch_size, cfg.n_samples, cfg.horizon, actions.shape[-1])
    while state.step < cfg.steps and not run.interrupted:
        # every process draws the whole batch and its noise from the same streams, then keeps its share:
        # P processes train on exactly the batches of one
        i = torch.randint(0, len(actions), (cfg.batch_size,), generator=state.sampler).to(device)[share]
        z = torch.randn(noise_shape, device=device)[share] if group is not None else None  # one process: drawn inside
        loss, info = loss_fn(demonstrations.take(obs, i), actions[i], pos[i], pos_w[i], z)
        optimizer_step(state.policy, loss, state.opt, state.sched, state.ema, cfg.grad_clip)
        state.step += 1
        step, row = state.step, {}
        if step % 100 == 0 or step == cfg.steps:
            row = dict(step=step, loss=f"{dbp.global_mean(loss.detach(), group).item():.4f}",
                       lr=f"{state.sched.get_last_lr()[0]:.3g}", **{k: f"{v:.4g}" for k, v in info.items()})
        run.stopping(group, device)                                        # all processes at the same step
        if step % cfg.eval_every == 0 and step < cfg.steps and run.main and cfg.task:
            success = run_dir.evaluate(state.ema.model, cfg.task, cfg.eval_episodes_periodic, cfg.seed)["success_rate"]
            row = {**row, "step": step, "success_rate": success}
            run.bar.set_postfix(success=f"{success:.2f}")
        run.step(step, row and {**row, "train_seconds": f"{run.seconds:.1f}"})


def dataset_source(demo):
    """{"dataset": the format, path, keys and per-step shapes read} for a --dataset run's checkpoint, else {}."""
    return {"dataset": demo["source"]} if "source" in demo else {}


def pretrain(cfg, ckpt):
    """Stage 1: DBP from the task's demonstrations (under torchrun, data parallel), then the main process evaluates
    the EMA policy. ckpt: the run's own checkpoint for --resume, else None. Returns eval.json's dict (None on the
    other processes)."""
    torch.manual_seed(cfg.seed)
    rank, world, group, device = distributed(cli.resolve_device(cfg.device))
    if cfg.batch_size % world:
        sys.exit(f"error: --batch-size {cfg.batch_size} must split evenly over the {world} processes")
    demo, policy, data = training_data(cfg, rank, group, device)
    state = Pretraining(policy, cfg, device)
    if ckpt is not None:
        state.load(ckpt)

    def save():
        training.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), state.ema.model, run_config=dataclasses.asdict(cfg),
                                task=cfg.task or None, train=state.state_dict(run.seconds), **dataset_source(demo))

    keys = ["step", "loss", "lr", *policy.info_keys, "success_rate", "train_seconds"]
    run = run_dir.Run(cfg, "pretrain", keys, state.step, cfg.steps, state.seconds, save, main=rank == 0)
    loss_fn = DDPLoss.of(policy, group, device)
    if rank == 0:
        obs, actions = data[:2]
        print(f"{cfg.task} on {device}" + (f" x {world} processes" if world > 1 else "") + f": "
              f"{len(demo['episode_ends'])} demos, {len(actions)} windows, obs "
              + (f"images {tuple(obs['image'].shape[2:])} + agent_pos {obs['agent_pos'].shape[-1]}" if cfg.obs == "pixels"
                 else f"dim {obs.shape[-1]}") + f", action dim {actions.shape[-1]}; run dir {cfg.out}")
    share = slice(rank * cfg.batch_size // world, (rank + 1) * cfg.batch_size // world)   # of every global batch
    pretrain_steps(cfg, state, run, data, loss_fn, share, group)
    if group is not None:         # all processes leave the group together, before rank 0 saves and evaluates: a
        del loss_fn               # process that left alone while the other still held it aborted at exit now and then
        dist.barrier()
        dist.destroy_process_group()
    run.end_loop()
    if rank > 0:                                                           # rank 0 alone evaluates
        return None
    train_seconds, t1 = run.seconds, time.time()
    if not cfg.task:
        return untasked_finish(cfg, run, state, demo, train_seconds)
    result = run_dir.evaluate(state.ema.model, cfg.task, cfg.eval_episodes, cfg.seed, True, cfg.video, cfg.out)
    result.update(task=cfg.task, steps=state.step, demos=len(demo["episode_ends"]), demos_file=cfg.demos_file or None,
                  dataset=cfg.dataset or None, train_seconds=round(train_seconds, 1),
                  eval_seconds=round(time.time() - t1, 1), ckpt=os.path.join(cfg.out, "ckpt.pt"))
    return run.finish(result, dict(step=state.step, success_rate=result["success_rate"],
                                   train_seconds=f"{train_seconds:.1f}"))


def untasked_finish(cfg, run, state, demo, train_seconds):
    """A --dataset run without --task: no env to evaluate in, so eval.json holds the training's facts and says so."""
    result = dict(task=None, evaluated=False, steps=state.step, demos=len(demo["episode_ends"]), dataset=cfg.dataset,
                  train_seconds=round(train_seconds, 1), ckpt=os.path.join(cfg.out, "ckpt.pt"))
    run.finish(result, dict(step=state.step, train_seconds=f"{train_seconds:.1f}"))
    print(f"trained {state.step} steps on {cfg.dataset} in {train_seconds:.0f} s; saved {result['ckpt']}. Not evaluated: "
          f"no --task, so no env to evaluate in (pass --task for one of envs.py's)")
    return result


# ----------------------------------------------------------------------------- CLI
STAGES = {"pretrain": PretrainConfig, "dbpo": DBPOStageConfig}  # training stage -> its config


def parse(argv):
    """--stage picks the config; its fields become the flags -> (stage, config, flags given)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--stage", choices=sorted(STAGES), default="pretrain")
    stage = pre.parse_known_args(argv)[0].stage
    parser = cli.make_parser(__doc__)
    parser.add_argument("--stage", choices=sorted(STAGES), default=stage,
                        help="which stage to run; `--stage NAME --help` lists that stage's flags")
    parser.add_argument("--plot", nargs="+", metavar="RUN_DIR",
                        help="draw the learning curves of these run directories into ./curves.png and exit")
    given = vars(cli.add_config_args(parser, STAGES[stage]).parse_args(argv))
    given.pop("stage", None)
    if "plot" in given:
        return "plot", given["plot"], {}
    if given.get("preset") in dbpo.PRESETS:
        given = {**dbpo.PRESETS[given["preset"]], **(PAPER_RUN if given["preset"] == "paper" else {}), **given}
    if stage == "pretrain" and given.get("obs") == "pixels":
        given = {**PIXEL_DEFAULTS, **given}
    if stage == "pretrain" and given.get("dataset") and "task" not in given:
        given["task"] = ""    # a dataset of the user's own robot: no env of ours to evaluate in
    if stage == "pretrain" and str(given.get("task", "")).startswith(metaworld_tasks.PREFIX):
        given = {**METAWORLD_DEFAULTS, **given}
    cfg = cli.build_config(STAGES[stage], given)
    return stage, cfg, {k: getattr(cfg, k) for k in given}


def resume_config(cfg, given):
    """--resume: the saved config of the run in cfg.out, which the flags given must agree with."""
    ckpt_path = os.path.join(cfg.out, "ckpt.pt")
    if not cfg.resume:
        if os.path.exists(ckpt_path):
            sys.exit(f"error: {ckpt_path} exists; pass --resume to continue it or choose another --out")
        return cfg, None
    if not os.path.exists(ckpt_path):
        sys.exit(f"error: --resume given but there is no checkpoint at {ckpt_path}")
    ckpt = training.load_checkpoint(ckpt_path)
    free = {key: given[key] for key in ("device",) if key in given}  # may differ: a run moves between machines
    saved = cli.build_config(type(cfg), dict(ckpt["run_config"], out=cfg.out, resume=True, **free))
    for key, value in given.items():
        if key not in ("out", "resume", "video", *free) and getattr(saved, key) != value:
            sys.exit(f"error: --{key.replace('_', '-')} {value!r} disagrees with the run being resumed ({getattr(saved, key)!r})")
    return saved, ckpt


def main(argv=None):
    stage, cfg, given = parse(sys.argv[1:] if argv is None else argv)
    if stage == "plot":
        try:
            path = run_dir.plot_curves(cfg, "curves.png")
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        print(f"wrote {path}")
        return path
    start = None
    try:  # bad tasks and checkpoints end here with one clear line
        if stage == "pretrain":
            task = envs.resolve_task(cfg.task)[0] if cfg.task else os.path.basename(os.path.normpath(cfg.dataset))
        elif not (cfg.resume and cfg.out):                   # the stage-1 checkpoint, read once
            start = finetune.load_stage1(cfg, given)
            task = start[1]
        cfg.out = cfg.out or os.path.join("runs", f"{stage}-{task}-s{cfg.seed}")
        cfg, ckpt = resume_config(cfg, given)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    return pretrain(cfg, ckpt) if stage == "pretrain" else finetune.finetune(cfg, ckpt, start)


if __name__ == "__main__":
    main()
