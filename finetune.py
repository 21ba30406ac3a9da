"""Stage 2 of train.py (`--stage dbpo`): DBPO fine-tuning of a stage-1 checkpoint with vectorized envs.

train.py parses the flags and calls finetune(); this file loads the stage-1 policy, fills rollouts from ChunkEnv
workers (episodes that end inside a chunk, truncations bootstrapped from V), runs dbpo.ppo_update, evaluates and
checkpoints on schedule, and resumes a stopped run to the same log rows.
"""
import dataclasses
import functools
import os
import time

import gymnasium as gym
import numpy as np
import torch

import cli
import dbp
import dbpo
import envs
import rollouts
import run_dir
import training


def load_stage1(cfg, given):
    """The checkpoint to fine-tune (--ckpt, else the default stage-1 run of --task and --seed), checked against its
    task's env -> (policy, task). Sets cfg.ckpt and cfg.task to the checkpoint used and its task."""
    if not cfg.ckpt:
        task = envs.resolve_task(cfg.task)[0]
        cfg.ckpt = os.path.join("runs", f"pretrain-{task}-s{cfg.seed}", "ckpt.pt")
        if not os.path.exists(cfg.ckpt):
            raise ValueError(f"no stage-1 checkpoint at {cfg.ckpt}; make it with `python train.py --stage pretrain "
                             f"--task {task} --seed {cfg.seed}`, or pass --ckpt PATH")
    path = cfg.ckpt
    ckpt = training.load_checkpoint(path)
    if "task" not in ckpt:
        raise ValueError(f"{path} is missing the field 'task' (not written by train.py?)")
    if ckpt["task"] is None:
        raise ValueError(f"{path} was trained on a dataset without --task: DBPO needs a task's env to roll out in")
    if "task" in given and envs.resolve_task(cfg.task)[0] != ckpt["task"]:
        raise ValueError(f"--task {cfg.task} disagrees with the task of {path} ({ckpt['task']})")
    cfg.task = ckpt["task"]                                           # the run's config records the real task
    obs_mode = ckpt["config"].get("obs", "state")
    env = envs.make_env(ckpt["task"], obs_mode=obs_mode)
    space = env.observation_space
    dims = dict(obs_dim=space.shape[0], action_dim=env.action_space.shape[0]) if obs_mode == "state" else \
        dict(obs_dim=space["agent_pos"].shape[0], image_shape=list(space["image"].shape), action_dim=env.action_space.shape[0])
    env.close()
    return dbp.DBPPolicy.from_checkpoint(ckpt, expect=dims), ckpt["task"]


def rollout(agent, vec, obs, buffer, generator, replay):
    """Fill the buffer: T decisions in each of the N envs of vec, from their current obs (N, To, Do);
    the successful episodes go to replay (a dbpo.SuccessReplay; None: kept nowhere).
    Returns (the obs after the last decision, env steps taken, [(success, return)] of ended episodes)."""
    n_steps, episodes = 0, []
    for _ in range(buffer.T):
        actions, step = agent.act(obs, generator=generator)
        if replay:
            replay.record(step["c"], step["z"], step["na"])
        obs, reward, terminated, truncated, info = vec.step(actions)
        done = terminated | truncated
        final_value = torch.zeros(vec.num_envs)
        if done.any():
            final = info["final_info"]
            n_steps += int(final["chunk_steps"][done].sum())
            episodes += [(final["success"][i], final["episode_return"][i]) for i in np.flatnonzero(done)]
            for i in np.flatnonzero(done) if replay else ():
                replay.end(i, final["success"][i], final["mode"][i])
            if truncated.any():  # bootstrap from the last observation of truncated episodes
                final_value[truncated] = agent.value(rollouts.stack_obs(list(info["final_obs"][truncated]))).cpu()
        n_steps += int(info["chunk_steps"][~done].sum())
        buffer.add(**step, reward=reward, terminated=terminated, truncated=truncated, final_value=final_value)
    return obs, n_steps, episodes


class Finetuning:
    """Stage 2's training state, all of it in the checkpoint for --resume: the agent (policy, std head, critic), its
    optimizers and schedules, the success replay, the sampler's generator, the iteration, env steps, the evaluation
    history, the wall time of earlier sessions, and the envs' episodes in progress (ChunkEnv.replay_state of each)."""

    def __init__(self, policy, cfg, device):
        self.agent = dbpo.DBPOAgent(policy, cfg).to(device)
        self.successes = dbpo.SuccessReplay(cfg.n_envs, cfg.imitation_capacity) if cfg.imitation_coef > 0 else None
        self.optimizers, self.schedulers = dbpo.make_optimizers(self.agent, cfg, cfg.iterations)
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.it, self.env_steps, self.seconds, self.history, self.episodes = 0, 0, 0.0, [], []

    def load(self, ckpt, seeds):
        """Restore everything from the run's checkpoint, the RNG streams included -> the replay option of the vector
        env's reset, {reset seed of env i: its episode in progress} (a checkpoint without episodes: {})."""
        t = ckpt["train"]
        self.agent.load_state_dict(t["agent"])
        for o, s, o_state, s_state in zip(self.optimizers, self.schedulers, t["optimizers"], t["schedulers"]):
            o.load_state_dict(o_state)
            s.load_state_dict(s_state)
        self.it, self.env_steps, self.seconds, self.history = t["iteration"], t["env_steps"], t["train_seconds"], t["history"]
        if self.successes and t.get("successes"):                  # a checkpoint without it: an empty replay
            self.successes.load_state_dict(t["successes"])
        torch.set_rng_state(t["rng"])
        self.gen.set_state(t["sampler_rng"])
        return {seed: dict(count=count, actions=actions.numpy())
                for seed, count, actions in zip(seeds, t.get("env_counts", []), t.get("env_actions", []))}

    def state_dict(self, train_seconds):
        """The checkpoint's "train" field; load() reads it back."""
        return dict(iteration=self.it, env_steps=self.env_steps, agent=self.agent.state_dict(),
                    optimizers=[o.state_dict() for o in self.optimizers],
                    schedulers=[s.state_dict() for s in self.schedulers], rng=torch.get_rng_state(),
                    sampler_rng=self.gen.get_state(), train_seconds=train_seconds, history=self.history,
                    successes=self.successes and self.successes.state_dict(),
                    env_counts=[e["count"] for e in self.episodes],
                    env_actions=[torch.from_numpy(e["actions"]) for e in self.episodes])


def evaluate_agent(cfg, state, task, run, final=False):
    """Evaluate mu_theta, the agent's deterministic policy, and add it to state.history -> (the result, its log.csv
    columns eval/*). The final evaluation shows its progress and renders cfg.video episodes."""
    r = run_dir.evaluate(state.agent.policy, task, cfg.eval_episodes, cfg.seed, final, cfg.video if final else 0, cfg.out)
    state.history.append(dict(iteration=state.it, env_steps=state.env_steps, minutes=round(run.seconds / 60, 2),
                              success_rate=r["success_rate"], ci95=r["ci95"], mode_fractions=r["mode_fractions"],
                              mode_counts=r["mode_counts"], mode_attempts=r["mode_attempts"]))
    counts = {**{f"eval/attempts_{k}": v for k, v in r["mode_attempts"].items()},       # the side the block went
              **{f"eval/successes_{k}": v for k, v in r["mode_counts"].items()}}
    return r, {"eval/success_rate": r["success_rate"], "eval/ci95_low": f"{r['ci95'][0]:.3f}",
               "eval/ci95_high": f"{r['ci95'][1]:.3f}", "eval/episodes": r["n_episodes"], **counts,
               **{f"eval/mode_{k}": f"{v:.3f}" for k, v in r["mode_fractions"].items()}}


def finetune_iterations(cfg, state, task, run, vec, obs, buffer):
    """PPO iterations from state.it to cfg.iterations, or until Ctrl-C: a rollout of the N envs of vec from their obs,
    an update, a log.csv row; an evaluation every eval_every, a checkpoint on Run's schedule."""
    while state.it < cfg.iterations and not run.stopping():
        t_iter = time.time()
        obs, n_steps, episodes = rollout(state.agent, vec, obs, buffer, state.gen, state.successes)
        t_update = time.time()
        stats = dbpo.ppo_update(state.agent, buffer, state.agent.value(obs), state.optimizers, state.schedulers, cfg,
                                critic_only=state.it < cfg.critic_warmup_iters, generator=state.gen,
                                replay=state.successes)
        buffer.reset()
        state.it, state.env_steps = state.it + 1, state.env_steps + n_steps
        row = dict(iteration=state.it, env_steps=state.env_steps, minutes=f"{run.seconds / 60:.2f}",
                   **{k: f"{v:.4g}" for k, v in stats.items()},
                   **{"charts/SPS": f"{n_steps / (time.time() - t_iter):.0f}", "charts/episodes": len(episodes),
                      "time/rollout_s": f"{t_update - t_iter:.2f}", "time/update_s": f"{time.time() - t_update:.2f}"})
        if episodes:
            row.update({"charts/success_rate": f"{np.mean([s for s, _ in episodes]):.3f}",
                        "charts/return": f"{np.mean([r for _, r in episodes]):.3f}"})
        if state.it % cfg.eval_every == 0 and state.it < cfg.iterations:
            row.update(evaluate_agent(cfg, state, task, run)[1])
            run.bar.set_postfix(success=row["eval/success_rate"], rollout=row.get("charts/success_rate"))
        run.step(state.it, row)


def finetune(cfg, ckpt, start=None):
    """Stage 2: DBPO, PPO fine-tuning of a stage-1 policy in cfg.n_envs env worker processes, then its final
    evaluation. start: (stage-1 policy, task) for a new run; ckpt: the run's own checkpoint for --resume.
    Returns eval.json's dict."""
    torch.manual_seed(cfg.seed)
    # One torch thread: a second one fights the env workers for the cores (measured on 2 cores,
    # 8 envs: a batch-8 forward took 168 ms instead of 3.5 ms).
    torch.set_num_threads(1)
    policy, task = start if ckpt is None else (dbp.DBPPolicy.from_checkpoint(ckpt), ckpt["task"])
    device = cli.resolve_device(cfg.device)
    state = Finetuning(policy, cfg, device)
    seeds = [cfg.seed * 100_000 + i for i in range(cfg.n_envs)]      # env i's episodes: envs.episode_seed(seeds[i], k)
    replay = {} if ckpt is None else state.load(ckpt, seeds)

    def save():
        if not vec.closed:
            state.episodes = vec.call("replay_state")
        training.save_checkpoint(os.path.join(cfg.out, "ckpt.pt"), state.agent.policy, run_config=dataclasses.asdict(cfg),
                                task=task, stage="dbpo", train=state.state_dict(run.seconds))

    vec = gym.vector.AsyncVectorEnv([functools.partial(rollouts.make_chunk_env, task, policy.n_obs_steps,
                                                       policy.n_action_steps, worker=True, obs_mode=policy.obs_mode,
                                                       terminate_on_success=not cfg.continue_after_success)]
                                    * cfg.n_envs, autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    state.agent.set_action_bounds(vec.single_action_space.low[0], vec.single_action_space.high[0])
    obs, _ = vec.reset(seed=seeds, options={"replay": replay})   # resumed: replays the episodes in progress
    buffer = state.agent.make_buffer(cfg.n_decisions, cfg.n_envs)
    keys = ["iteration", "env_steps", *dbpo.METRICS, "charts/success_rate", "charts/return", "charts/episodes",
            "charts/SPS", "time/rollout_s", "time/update_s", "eval/success_rate", "eval/ci95_low", "eval/ci95_high",
            "eval/episodes", *[f"eval/{kind}_{name}" for kind in ("attempts", "successes", "mode")
                               for name in envs.mode_names(task)], "minutes"]
    run = run_dir.Run(cfg, "dbpo", keys, state.it, cfg.iterations, state.seconds, save)
    print(f"{task} on {device}: fine-tuning {cfg.ckpt} with {cfg.n_envs} envs x {cfg.n_decisions} decisions x "
          f"Ta={policy.n_action_steps} steps per iteration; run dir {cfg.out}")
    if state.it == 0:
        first, columns = evaluate_agent(cfg, state, task, run)
        run.step(0, dict(iteration=0, env_steps=0, minutes=0.0, **columns), advance=False)
        print(f"start: success {first['success_rate']:.2f} over {cfg.eval_episodes} episodes; per mode, attempts "
              f"{first['mode_attempts']} and successes {first['mode_counts']}")
    try:
        finetune_iterations(cfg, state, task, run, vec, obs, buffer)
        run.end_loop()                             # saves (the envs still open); exits after Ctrl-C
    finally:
        vec.close()
    result, columns = evaluate_agent(cfg, state, task, run, final=True)
    save()
    result.update(task=task, stage="dbpo", iterations=state.it, env_steps=state.env_steps,
                  train_seconds=round(run.seconds, 1), start_ckpt=cfg.ckpt, ckpt=os.path.join(cfg.out, "ckpt.pt"),
                  history=state.history)
    return run.finish(result, dict(iteration=state.it, env_steps=state.env_steps, minutes=f"{run.seconds / 60:.2f}",
                                   **columns), f"{state.history[0]['success_rate']:.2f} -> ")
