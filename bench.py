"""Benchmark: DBP (1 NFE) against Diffusion Policy at its best and against the one-step competitors.

Checks the two claims of Gao et al. 2026 (arXiv 2604.03540; ALGORITHM.md section 3) on our own tasks:
DBP matches or beats multi-step diffusion at a fraction of its latency, and beats the other one-step
generative policies. Every model (baselines.py) gets the same cached demos per seed, normalizer,
batches, optimizer, lr schedule, EMA and gradient steps; each is evaluated at several checkpoints, so
the table gives success both at equal steps and at each method's best, with the evidence that it
stopped improving. A cell (task, model, seed) is trained and evaluated in a worker process of its own
and saved to OUT/cells/ when done: an interrupted run continues where it stopped. The tables, verdicts
and plots of the report are bench_report.py's.

    python bench.py                            # all tasks, models and 3 seeds; OUT/bench.json, bench.png, bench_steps.png
    python bench.py --suite metaworld          # 11 hard Meta-World tasks, 10 demos: runs/bench-metaworld, + bench_groups.png
    python bench.py --quick --json bench.json  # reduced run in a few minutes
    python bench.py --help                     # every flag, with its meaning
"""
import dataclasses
import importlib.metadata
import json
import multiprocessing
import os
import platform
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

import baselines
import bench_report
import cli
import dbp
import demonstrations
import envs
import rollouts
import metaworld_tasks
import run_dir
import train
import training
from dbp import option

DEFAULT_THREADS = torch.get_num_threads()  # read before any set_num_threads
WARMUP_CALLS = 20                          # untimed predict_action calls before latency timing
TIMED_STEPS = 20                           # timed training steps per model, after 3 untimed
MODELS = ("dbp", "dp-unet", "dp-mlp", "flow", "shortcut", "mse")  # trained models, in the table's order


@dataclass
class BenchConfig(train.EvalConfig, train.DemoConfig, cli.DeviceConfig):
    """The benchmark; demos and evaluation episodes as in train.py."""
    suite: str = option("pybullet", "which tasks and protocol: 'pybullet' (this project's tasks, 200 demos) or "
                        "'metaworld' (the 11 hard and very hard Meta-World tasks, 10 demos, checkpoints 1000,2500,5000, "
                        "methods DBP, MSE, flow-1, shortcut-1, DP-U-Net DDIM; flags given explicitly win)")
    tasks: str = option(",".join(envs.TASKS), f"comma-separated tasks, from {sorted(envs.TASKS)} or mw-<name>")
    models: str = option(",".join(MODELS), f"comma-separated models to train, from {list(MODELS)}; each is evaluated "
                         "with its samplers (dp-*: DDPM and DDIM, flow: 1 and --flow-steps Euler steps)")
    obs: str = option("state", f"what every model sees, one of {envs.OBS_MODES}: the task's state, or camera images and "
                      "the arms' pose (each model then has DBP's image encoder, dbp.ImageEncoder)")
    seeds: int = option(3, "seeds per cell: 0 .. seeds-1 (demos, initialization, batches, noise, evaluation resets)",
                        ge=1, le=100)
    checkpoints: str = option("2500,5000,10000,20000", "gradient steps at which each model is evaluated; it trains "
                              "to the last, its lr schedule spanning all of them")
    lr: float = option(3e-4, "AdamW peak learning rate of every model (DBP's, train.py; Diffusion Policy's 1e-4 "
                       "is slower here: results/bench/lr-screen)", gt=0.0)
    eval_batch: int = option(50, "evaluation episodes run in lockstep, one batched network call per decision; each "
                             "is a PyBullet client (~45 MB, so 50 take ~2.3 GB per worker)", ge=1)
    recipe: str = option("", "settings of the training recipe (train.PretrainConfig fields) that differ from its "
                         "defaults, e.g. 'k=16,bandwidth=0.05' or 'temperatures=0.01/0.05': the chunk shape and training "
                         "apply to every model, DBP's loss fields to DBP; a study's runs go to their own --out")
    eval_methods: str = option("", "comma-separated evaluated methods, from the trained models' (e.g. dbp,dp-unet-ddim10); "
                               "'': all of them")
    workers: int = option(2, "worker processes, one cell each at a time, each on one torch thread", ge=1)
    latency_calls: int = option(200, "timed predict_action calls at batch 1 per method and thread setting", ge=1)
    diffusion_steps: int = option(100, "DDPM training timesteps, all of them sampled by DDPM (its NFE)", ge=1)
    ddim_steps: int = option(10, "DDIM sampling steps from the same trained diffusion model (its NFE)", ge=1)
    flow_steps: int = option(10, "Euler steps of the multi-step flow-matching sampler (the other takes 1)", ge=2)
    out: str = option("", "directory of the finished cells, bench.json and the plots ('': runs/bench, "
                      "runs/bench-quick with --quick); a rerun continues from its cells")
    quick: bool = option(False, "reduced run: push, 20 demos, 1 seed, checkpoints 100,200,300, 5 episodes, 20 latency "
                         "calls, DDPM-20, DDIM-5, flow-4 (flags given explicitly win)")
    json: str = option("", "also write the results JSON to this path")
    report: bool = option(False, "train nothing: the table, JSON and plots of the cells already in OUT (a run in "
                          "progress, or an interrupted one)")

    def check(self):
        if self.suite not in SUITES:
            raise dbp.ConfigError("suite", self.suite, f"must be one of {sorted(SUITES)}")
        if self.obs not in envs.OBS_MODES:
            raise dbp.ConfigError("obs", self.obs, f"must be one of {envs.OBS_MODES}")
        recipe_overrides(self.recipe)                                  # a bad field or value is a ConfigError
        if unknown := set(self.models.split(",")) - set(MODELS):
            raise dbp.ConfigError("models", self.models, f"unknown {sorted(unknown)}; known: {list(MODELS)}")
        known = {**methods(dataclasses.replace(self, eval_methods="")), **STUDY_METHODS} if self.eval_methods else {}
        if unknown := set(self.eval_methods.split(",")) - set(known) if self.eval_methods else None:
            raise dbp.ConfigError("eval_methods", self.eval_methods, f"unknown {sorted(unknown)}; known: {list(known)}")
        for task in self.tasks.split(","):
            try:
                envs.resolve_task(task)
            except ValueError as e:
                raise dbp.ConfigError("tasks", self.tasks, str(e)) from None
        try:
            steps = [int(s) for s in self.checkpoints.split(",")]
        except ValueError:
            raise dbp.ConfigError("checkpoints", self.checkpoints, "must be comma-separated integers") from None
        if steps != sorted(set(steps)) or steps[0] < 1:
            raise dbp.ConfigError("checkpoints", self.checkpoints, "must be increasing positive step counts")

    @property
    def steps(self):
        return [int(s) for s in self.checkpoints.split(",")]


SUITES = {"pybullet": {}, "metaworld": dict(
    tasks=",".join(metaworld_tasks.PREFIX + t for group in metaworld_tasks.GROUPS.values() for t in group), demos=10,
    models="dbp,mse,flow,shortcut,dp-unet", checkpoints="1000,2500,5000")}
SUITE_METHODS = {"metaworld": "dbp,mse,flow-1,shortcut-1,dp-unet-ddim{ddim_steps}"}  # evaluated, unless --eval-methods
QUICK = dict(tasks="push", demos=20, seeds=1, checkpoints="100,200,300", eval_episodes=5, latency_calls=20,
             diffusion_steps=20, ddim_steps=5, flow_steps=4)
CELL_FIELDS = ("obs", "demos", "lr", "checkpoints", "eval_episodes", "diffusion_steps", "ddim_steps", "flow_steps",
               "eval_methods", "recipe")  # what a cell's numbers depend on


def parse(argv):
    given = vars(cli.add_config_args(cli.make_parser(__doc__), BenchConfig).parse_args(argv))
    suite = SUITES.get(given.get("suite", "pybullet"), {})
    cfg = cli.build_config(BenchConfig, {**suite, **(QUICK if given.get("quick") else {}), **given})
    if cfg.suite in SUITE_METHODS and "eval_methods" not in given:
        cfg = dataclasses.replace(cfg, eval_methods=SUITE_METHODS[cfg.suite].format(ddim_steps=cfg.ddim_steps))
    out = ("runs/bench" + ("-metaworld" if cfg.suite == "metaworld" else "") + ("-quick" if cfg.quick else "")
           + ("-pixels" if cfg.obs == "pixels" else ""))
    return dataclasses.replace(cfg, out=cfg.out or out)


def methods(cfg):
    """Evaluated method -> (trained model, arguments of the model's use() or None, NFE): those named by
    cfg.eval_methods, else every one but the study's (STUDY_METHODS)."""
    d, k, f = cfg.diffusion_steps, cfg.ddim_steps, cfg.flow_steps
    only = set(cfg.eval_methods.split(",")) if cfg.eval_methods else None
    return {name: m for name, m in {"dbp": ("dbp", None, 1), f"dp-unet-ddpm{d}": ("dp-unet", ("ddpm", d), d),
            f"dp-unet-ddim{k}": ("dp-unet", ("ddim", k), k), f"dp-mlp-ddpm{d}": ("dp-mlp", ("ddpm", d), d),
            f"dp-mlp-ddim{k}": ("dp-mlp", ("ddim", k), k), "flow-1": ("flow", (1,), 1), f"flow-{f}": ("flow", (f,), f),
            "shortcut-1": ("shortcut", (1,), 1), "mse": ("mse", None, 1), **STUDY_METHODS}.items()
            if (only is None and name not in STUDY_METHODS) or (only and name in only)}


class ZeroNoise:
    """DBP decoded at z = 0, the noise's mean: the same network and one pass, deterministic (a study's method)."""

    def __init__(self, policy):
        self.policy = policy

    def __getattr__(self, name):
        return getattr(self.policy, name)

    def predict_action(self, obs):
        B = len(obs["agent_pos"] if isinstance(obs, dict) else obs)
        return self.policy.predict_action(obs, noise=np.zeros((B, self.policy.horizon, self.policy.action_dim), np.float32))


STUDY_METHODS = {"dbp-z0": ("dbp", ("z0",), 1)}  # evaluated only when --eval-methods names them


def with_sampler(policy, use):
    """A trained model as the method `use` evaluates it (methods()), in eval mode."""
    return policy.eval() if use is None else ZeroNoise(policy.eval()) if use == ("z0",) else policy.use(*use).eval()


def build(model, obs, actions, pcfg, cfg):
    """A policy of a trained model kind for training windows obs (state, or the pixel dict) and actions, at DBP's
    chunk shape (pcfg: train.PretrainConfig), its normalizer fit on them."""
    if model == "dbp":
        return train.make_policy(obs, actions, pcfg)
    state, image_shape = demonstrations.state_and_image_shape(obs)
    Do, Da = state.shape[-1], actions.shape[-1]
    if model.startswith("dp-"):
        policy = baselines.DiffusionPolicy(Do, Da, pcfg, model[3:], cfg.diffusion_steps, image_shape=image_shape)
    else:
        make = {"flow": baselines.FlowPolicy, "shortcut": baselines.ShortcutPolicy, "mse": baselines.RegressionPolicy}
        policy = make[model](Do, Da, pcfg, image_shape=image_shape)
    policy.normalizer.fit(state, actions)
    return policy


def recipe_overrides(text):
    """'k=16,temperatures=0.01/0.05' -> {"k": 16, "temperatures": (0.01, 0.05)}, typed by train.PretrainConfig's fields."""
    fields, out = {f.name: f for f in dataclasses.fields(train.PretrainConfig)}, {}
    for item in filter(None, text.split(",")):
        name, _, value = item.partition("=")
        if name not in fields or name in ("task", "demos", "steps", "seed", "demo_dir", "lr", "obs", "out"):
            raise dbp.ConfigError("recipe", text, f"{name!r} is not a recipe field (bench's own flags set the others)")
        kind = fields[name].type
        try:
            out[name] = tuple(float(v) for v in value.split("/")) if kind is tuple else \
                value in ("1", "true", "True") if kind is bool else kind(value)
        except ValueError:
            raise dbp.ConfigError("recipe", text, f"{name}={value!r} is not a {kind.__name__}") from None
    try:
        train.PretrainConfig(**out)
    except dbp.ConfigError as e:
        raise dbp.ConfigError("recipe", text, str(e)) from None
    return out


def recipe(task, seed, cfg):
    """DBP's pretrain recipe (train.PretrainConfig) over the checkpoints, with cfg.recipe's overrides; every model
    trains with it."""
    pcfg = train.PretrainConfig(task=task, demos=cfg.demos, steps=cfg.steps[-1], seed=seed, demo_dir=cfg.demo_dir, lr=cfg.lr,
                                obs=cfg.obs, **recipe_overrides(cfg.recipe))
    return dataclasses.replace(pcfg, warmup_steps=min(pcfg.warmup_steps, pcfg.steps // 10))  # shortens --quick's only


def trainer(model, obs, actions, pcfg, cfg):
    """A fresh policy of a model kind on cfg.device and its training -> (EMA of it, step(batch indices)): AdamW and
    DBP's lr schedule (pcfg), the same for every model; the windows are copied to the device."""
    device = cli.resolve_device(cfg.device)
    policy = build(model, obs, actions, pcfg, cfg)
    pos, pos_w = policy.positives(obs, actions) if model == "dbp" else (None, None)
    policy, obs, actions = policy.to(device), demonstrations.to_device(obs, device), actions.to(device)
    if model == "dbp":
        pos, pos_w = pos.to(device), pos_w.to(device)
        loss_fn = lambda i: policy.compute_loss(demonstrations.take(obs, i), actions[i], pos[i], pos_w[i])
    else:
        loss_fn = lambda i: policy.compute_loss(demonstrations.take(obs, i), actions[i])
    t = train.Pretraining(policy, pcfg, device)                                       # EMA, AdamW, lr schedule
    return t.ema, lambda idx: train.optimizer_step(policy, loss_fn(idx.to(device))[0], t.opt, t.sched, t.ema,
                                                   pcfg.grad_clip)


# ----------------------------------------------------------------------------- measurements
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
        x = torch.as_tensor(policy.predict_action(demonstrations.take(obs, starts))).cpu().flatten(1)  # (E, Th*Da) generated
    s = (x - m0) @ (m1 - m0) / (m1 - m0).pow(2).sum()
    return {mode_names[0]: (s < 1 / 3).float().mean().item(), mode_names[1]: (s > 2 / 3).float().mean().item(),
            "between": ((s >= 1 / 3) & (s <= 2 / 3)).float().mean().item()}


def run_cell(job):
    """Train one model on one task and seed in this process, evaluating each of its methods at every
    checkpoint (its EMA weights, cfg.eval_episodes seeded episodes). Returns the cell's JSON dict."""
    task, model, seed, cfg = job
    torch.set_num_threads(1)
    t_cell, pcfg = time.perf_counter(), recipe(task, seed, cfg)
    demo, obs, actions = demonstrations.load_windows(pcfg, task)                                     # (N, To, Do), (N, Th, Da)
    names = envs.mode_names(task)
    torch.manual_seed(seed)                                                            # the same init stream per seed
    ema, train_step = trainer(model, obs, actions, pcfg, cfg)
    batches = torch.Generator().manual_seed(seed)                                      # the same batches per seed
    mine = {name: (use, nfe) for name, (m, use, nfe) in methods(cfg).items() if m == model}
    evaluations, train_s, step = [], 0.0, 0
    for target in cfg.steps:
        t0 = time.perf_counter()
        for step in range(step, target):
            train_step(torch.randint(0, len(actions), (pcfg.batch_size,), generator=batches))
        step, train_s = target, train_s + time.perf_counter() - t0
        row = dict(step=target, train_seconds=round(train_s, 1), methods={})
        for name, (use, nfe) in mine.items():
            t0, evaluated = time.perf_counter(), with_sampler(ema.model, use)
            r = run_dir.evaluate(evaluated, task, cfg.eval_episodes, seed, batch=cfg.eval_batch)
            row["methods"][name] = dict(
                {k: r[k] for k in ("success_rate", "ci95", "n_success", "n_episodes", "mode_counts")},
                chunk_modes=chunk_modes(evaluated, demo, obs, actions, names, seed) if len(names) == 2 else None,
                eval_seconds=round(time.perf_counter() - t0, 1))
        evaluations.append(row)
        print(f"  {task} {model} seed {seed}: step {target} ({train_s / 60:.1f} min), "
              + ", ".join(f"{n} {r['success_rate']:.2f}" for n, r in row["methods"].items()), flush=True)
    return dict(task=task, model=model, seed=seed, settings={k: getattr(cfg, k) for k in CELL_FIELDS},
                device=str(cli.resolve_device(cfg.device)), machine=machine(),
                n_demos=len(demo["episode_ends"]), n_windows=len(actions), wall_seconds=round(time.perf_counter() - t_cell, 1),
                evaluations=evaluations)


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


def train_ms_per_step(model, obs, actions, pcfg, cfg, steps=TIMED_STEPS):
    """Median ms of a training step (batch pcfg.batch_size) on one thread, after warm-up."""
    torch.set_num_threads(1)
    try:
        _, train_step = trainer(model, obs, actions, pcfg, cfg)
        gen, times = torch.Generator().manual_seed(0), []
        for _ in range(steps + 3):
            t0 = time.perf_counter()
            train_step(torch.randint(0, len(actions), (pcfg.batch_size,), generator=gen))
            times.append(time.perf_counter() - t0)
    finally:
        torch.set_num_threads(DEFAULT_THREADS)
    return float(np.median(times[3:]) * 1e3)


def latencies(task, cfg, names):
    """Latency of the methods `names` on one task, and their models' training step, back to back in this process
    (no worker running): a network's cost does not depend on its weights, so each is timed on a fresh policy fitted
    to seed 0's windows."""
    pcfg = recipe(task, 0, cfg)
    _, obs, actions = demonstrations.load_windows(pcfg, task)
    out, step_ms = {}, {}
    for name, (model, use, _) in methods(cfg).items():
        if name not in names:
            continue
        torch.manual_seed(0)
        if model not in step_ms:
            step_ms[model] = train_ms_per_step(model, obs, actions, pcfg, cfg)
        policy = build(model, obs, actions, pcfg, cfg).to(cli.resolve_device(cfg.device))
        policy = with_sampler(policy, use)
        out[name] = dict(train_ms_per_step_1thread=step_ms[model])
        for threads, key in ((1, "1thread"), (DEFAULT_THREADS, "default")):
            first = {k: v[:1].numpy() for k, v in obs.items()} if isinstance(obs, dict) else obs[:1].numpy()
            p50, p99 = latency(policy, first, cfg.latency_calls, threads)
            out[name].update({f"latency_p50_ms_{key}": p50, f"latency_p99_ms_{key}": p99})
    return out


# ----------------------------------------------------------------------------- cells on disk
def cell_path(cfg, task, model, seed):
    return os.path.join(cfg.out, "cells", f"{task}-{model}-s{seed}.json")


def load_cell(cfg, path):
    """A finished cell, or None; one measured with other settings is an error that names the field."""
    if not os.path.exists(path):
        return None
    with open(path) as f:
        cell = json.load(f)
    for key in CELL_FIELDS:  # a setting a cell lacks was added since: the cell ran at its default
        if cell["settings"].get(key, getattr(BenchConfig(), key)) != getattr(cfg, key):
            sys.exit(f"error: {path} was measured with {key} = {cell['settings'].get(key)!r}, this run has "
                     f"{getattr(cfg, key)!r}: give another --out, or delete the cells to remeasure")
    return cell


def write_json(path, data):
    def write(tmp):
        with open(tmp, "w") as f:
            json.dump(data, f, indent=1)
    training.atomic_write(path, write)


def _worker_init():
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the main process's: finished cells are kept
    torch.set_num_threads(1)


def _collect(job):
    task, seed, cfg = job
    demonstrations.collect_demos(task, cfg.demos, seed=seed, cache_dir=cfg.demo_dir, progress=False, obs_mode=cfg.obs)


def run_cells(cfg, todo, fn=run_cell):
    """Run the cells in todo, fn(job) each, on cfg.workers processes, saving each as it finishes. A worker that dies (the
    kernel kills one that runs out of memory) ends the run with what is saved, instead of waiting forever."""
    pool = ProcessPoolExecutor(cfg.workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init)
    try:
        list(pool.map(_collect, [(task, seed, cfg) for task, seed in sorted({(t, s) for t, _, s in todo})]))
        futures = [pool.submit(fn, (task, model, seed, cfg)) for task, model, seed in todo]
        for future in tqdm(as_completed(futures), total=len(futures), desc="cells", unit="cell", dynamic_ncols=True):
            cell = future.result()
            write_json(cell_path(cfg, cell["task"], cell["model"], cell["seed"]), cell)
        pool.shutdown()
    except BrokenProcessPool:
        sys.exit(f"error: a worker process died (killed for memory? a state worker holds ~{cfg.eval_batch * 0.045:.1f} GB "
                 f"at --eval-batch {cfg.eval_batch}); the finished cells are saved in {cfg.out}/cells: rerun with fewer "
                 "--workers or a smaller --eval-batch to continue")
    finally:  # interrupted or failed: stop the workers now, not after their cells (3.14: pool.terminate_workers())
        for proc in list((pool._processes or {}).values()):
            proc.terminate()
        pool.shutdown(cancel_futures=True)


# ----------------------------------------------------------------------------- summary and report
def summarize(cfg, cells, task):
    """Per method of one task: success by checkpoint over seeds (mean, std, pooled 95 % interval), the
    best checkpoint, and whether it was still rising at the last one by more than its interval: the pooled 95 %
    intervals of the last two checkpoints do not overlap (the test the verdicts use)."""
    out = {}
    for name, (model, _, nfe) in methods(cfg).items():
        mine = [c for c in cells if c["task"] == task and c["model"] == model]
        if not mine:
            continue
        by_step = []
        for j, step in enumerate(cfg.steps):
            rs = [c["evaluations"][j]["methods"][name] for c in mine]
            k, n = sum(r["n_success"] for r in rs), sum(r["n_episodes"] for r in rs)
            rates = [r["success_rate"] for r in rs]
            modes = {m: sum(r["mode_counts"][m] for r in rs) for m in rs[0]["mode_counts"]}
            chunk = ({m: float(np.mean([r["chunk_modes"][m] for r in rs])) for m in rs[0]["chunk_modes"]}
                     if rs[0]["chunk_modes"] else None)
            by_step.append(dict(step=step, mean=float(np.mean(rates)), std=float(np.std(rates)), per_seed=rates,
                                n_success=k, n_episodes=n, ci95=rollouts.wilson_interval(k, n), mode_counts=modes,
                                chunk_modes=chunk,
                                train_seconds=float(np.mean([c["evaluations"][j]["train_seconds"] for c in mine]))))
        best = max(by_step, key=lambda r: r["mean"])
        last, prev = by_step[-1], by_step[-2] if len(by_step) > 1 else None
        rising = prev is not None and prev["ci95"][1] < last["ci95"][0]
        out[name] = dict(model=model, nfe=nfe, seeds=sorted(c["seed"] for c in mine), by_step=by_step,
                         best_step=best["step"], still_rising=rising)
    return out


def group_summary(cfg, results):
    """Per Meta-World difficulty group and over all its tasks here ("all"): each method's mean over the tasks of its
    mean over seeds, with the pooled 95 % interval, at every checkpoint ("1000", ...) and at each task's best ("best").
    A method is left out of a group where it lacks a task of it."""
    groups = {g: [t for t in (metaworld_tasks.PREFIX + n for n in names) if t in results]
              for g, names in metaworld_tasks.GROUPS.items()}
    groups = {**groups, "all": [t for ts in groups.values() for t in ts]}
    out = {}
    for group, tasks in groups.items():
        for name in methods(cfg):
            rs = [results[t]["methods"][name] for t in tasks if name in results[t]["methods"]]
            if not tasks or len(rs) < len(tasks):
                continue
            cols = {str(step): bench_report.pooled([r["by_step"][j] for r in rs]) for j, step in enumerate(cfg.steps)}
            cols["best"] = bench_report.pooled([next(b for b in r["by_step"] if b["step"] == r["best_step"]) for r in rs])
            out.setdefault(group, {})[name] = dict(n_tasks=len(tasks), **cols)
    return out


def expert_successes(cfg, tasks, episodes=50):
    """The scripted expert's success on the evaluation layouts of each Meta-World task (seed 0's `episodes`
    episodes), kept in OUT/expert.json; a task under 0.9 stays in the tables and is flagged in the report."""
    path, known = os.path.join(cfg.out, "expert.json"), {}
    if os.path.exists(path):
        with open(path) as f:
            known = json.load(f)
    for task in (t for t in tasks if t.startswith(metaworld_tasks.PREFIX) and t not in known):
        k = metaworld_tasks.expert_success(task[len(metaworld_tasks.PREFIX):], episodes)
        known[task] = dict(n_success=k, n_episodes=episodes, success_rate=k / episodes,
                           ci95=rollouts.wilson_interval(k, episodes))
        write_json(path, known)
    return {t: known[t] for t in tasks if t in known}


def machine():
    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")),
               platform.processor()) if os.path.exists("/proc/cpuinfo") else platform.processor()
    return dict(cpu=cpu, cpu_count=os.cpu_count(), torch_threads_default=DEFAULT_THREADS,
                load_average_at_start=list(os.getloadavg()), python=platform.python_version(),
                torch=torch.__version__, diffusers=importlib.metadata.version("diffusers"), platform=platform.platform())


def task_results(cfg, cells, tasks):
    """Per task with a finished cell: its methods' summaries with their latencies and training cost; tasks of the same
    observation and action sizes share one timing (a network's cost does not depend on its weights)."""
    results, timed = {}, {}
    for task in tasks:
        if not (summary := summarize(cfg, cells, task)):
            continue                                                                  # --report before any cell of it
        env = envs.make_env(task).unwrapped
        key = (env.observation_space.shape, env.action_space.shape, tuple(summary))
        env.close()
        timed[key] = timed.get(key) or latencies(task, cfg, summary)
        for name, lat in timed[key].items():
            summary[name].update(lat)
        if "dbp" in summary:
            for r in summary.values():
                for key in ("1thread", "default"):
                    r[f"latency_over_dbp_{key}"] = r[f"latency_p50_ms_{key}"] / summary["dbp"][f"latency_p50_ms_{key}"]
        results[task] = dict(methods=summary)
    return results


def report(cfg, cells, tasks, info, t0):
    """Print the tables, write bench.json and the plots; Meta-World tasks add the expert's success and the groups."""
    results = task_results(cfg, cells, tasks)
    if not results:
        print("no cell finished yet: nothing to report")
        return None
    out = dict(config=dataclasses.asdict(cfg), machine=info, wall_seconds=round(time.perf_counter() - t0, 1),
               cell_seconds=round(sum(c["wall_seconds"] for c in cells), 1), tasks=results,
               verdicts=bench_report.verdicts(results))
    print(f"\n{'quick run (--quick): reduced, not the benchmark' if cfg.quick else 'benchmark'}; {cfg.seeds} seeds, "
          f"checkpoints {cfg.checkpoints}, {cfg.eval_episodes} episodes each; {info['cpu']} ({info['cpu_count']} cores); "
          f"this run {out['wall_seconds'] / 60:.1f} min, all cells {out['cell_seconds'] / 60:.1f} min of worker time\n")
    print(bench_report.table(results, cfg.steps, DEFAULT_THREADS))
    if out["verdicts"]:
        print("\nDBP against each method (pooled 95 % intervals; latency at batch 1, p50, 1 thread):\n")
        print(bench_report.verdict_table(out["verdicts"]))
    plots = ["bench.png", "bench_steps.png"]
    if expert := expert_successes(cfg, results):
        out.update(expert=expert, groups=group_summary(cfg, results))
        print("\nscripted expert on the evaluation layouts (seed 0's episodes): " + ", ".join(
            f"{t} {e['success_rate']:.2f}" + (" (under 0.9)" if e["success_rate"] < 0.9 else "") for t, e in expert.items()))
        if out["groups"]:
            print("\nMeta-World groups: mean over tasks of the mean over seeds [pooled 95 % interval]:\n")
            print(bench_report.group_table(out["groups"], cfg.steps))
            bench_report.plot_groups(out["groups"], expert, os.path.join(cfg.out, "bench_groups.png"), cfg.seeds)
            plots.append("bench_groups.png")
    for path in filter(None, (os.path.join(cfg.out, "bench.json"), cfg.json)):
        write_json(path, out)
    bench_report.plot(results, *(os.path.join(cfg.out, p) for p in plots[:2]))
    print(f"\nwrote {cfg.out}/bench.json, {', '.join(plots)}" + (f" and {cfg.json}" if cfg.json else ""))
    return out


def main(argv=None):
    cfg = parse(sys.argv[1:] if argv is None else argv)
    info, t0 = machine(), time.perf_counter()
    tasks = [envs.resolve_task(t)[0] for t in cfg.tasks.split(",")]
    cells = [(t, m, s) for t in tasks for m in MODELS if m in cfg.models.split(",") for s in range(cfg.seeds)]
    done = {c: load_cell(cfg, cell_path(cfg, *c)) for c in cells}
    todo = sorted((c for c in cells if done[c] is None), key=lambda c: c[1] != "dp-unet")  # the slowest first
    print(f"{len(cells) - len(todo)} of {len(cells)} cells already in {cfg.out}/cells; "
          + ("reporting those" if cfg.report else f"running {len(todo)} on {cfg.workers} workers"))
    if todo and not cfg.report:
        signal.signal(signal.SIGTERM, signal.default_int_handler)  # a scheduler's stop is a Ctrl-C: keep what is saved
        try:
            run_cells(cfg, todo)
        except KeyboardInterrupt:
            n = sum(os.path.exists(cell_path(cfg, *c)) for c in cells)
            sys.exit(f"\ninterrupted: {n} of {len(cells)} cells are saved in {cfg.out}/cells; the same command continues")
    cells = [cell for cell in (load_cell(cfg, cell_path(cfg, *c)) for c in cells) if cell is not None]
    return report(cfg, cells, tasks, info, t0)


if __name__ == "__main__":
    main()
