"""Receding-horizon rollouts of a chunk policy on the tasks of envs.py: ChunkEnv executes one action chunk per
step (evaluation, and the vector envs of DBPO's rollouts, train.py), and evaluate() runs seeded episodes of a policy
and reports success with its Wilson interval and the modes of the successes.

A chunk policy is any object with n_obs_steps To, n_action_steps Ta and predict_action(obs (B, To, Do)) -> chunks
(B, Th, Da): DBPPolicy (dbp.py) and the baselines (baselines.py). Episode i of an evaluation resets with
envs.eval_seed(seed, i); a ChunkEnv's autoresets with envs.episode_seed.

    python rollouts.py          # evaluate() a policy that holds the arm still, on push
"""
import math
import os
import signal

import gymnasium as gym
import numpy as np
from tqdm import tqdm

import envs


def wilson_interval(k, n, z=1.96):
    """Wilson score interval [lo, hi] for k successes out of n trials."""
    if n == 0:
        return [0.0, 1.0]
    phat, denom = k / n, 1 + z * z / n
    centre, half = (phat + z * z / (2 * n)) / denom, z * math.sqrt(phat * (1 - phat) / n + z * z / (4 * n * n)) / denom
    return [max(0.0, centre - half), min(1.0, centre + half)]


class ChunkEnv(gym.Wrapper):
    """Receding-horizon view of a task for evaluation and DBPO's rollouts: one step executes an action chunk
    (Ta, Da) until the episode ends; reward = their sum; obs = the last To observations (To, Do), padded at reset.
    Set .frames to a list to record a rendered frame per env step (needs render_mode="rgb_array").
    Every episode is replayable: reset(seed=s) seeds the episode with s, the autoresets after it with
    envs.episode_seed(s, count); replay_state() and reset(seed=s, options={"replay": {s: state}}) bring an episode in
    progress back, in a fresh process too, by replaying its actions (a resumed DBPO run continues its episodes)."""
    frames = None
    base_seed, count, actions = None, 0, ()

    def __init__(self, env, n_obs_steps, n_action_steps):
        super().__init__(env)
        self.To, act = n_obs_steps, env.action_space
        self.observation_space = stack_space(env.observation_space, n_obs_steps)
        self.action_space = gym.spaces.Box(np.stack([act.low] * n_action_steps), np.stack([act.high] * n_action_steps))

    def reset(self, *, seed=None, options=None):
        replay = None
        if seed is None:
            self.count += 1
        else:
            replay = (options or {}).get("replay", {}).get(seed)
            self.base_seed, self.count = seed, replay["count"] if replay else 0
        seed = None if self.base_seed is None else envs.episode_seed(self.base_seed, self.count)
        obs, info = self.env.reset(seed=seed)
        self.hist, self.ret, self.length, self.actions = [obs] * self.To, 0.0, 0, []
        self._record()
        if replay is not None and len(replay["actions"]):
            return self.step(np.asarray(replay["actions"]))[0], {**info, "chunk_steps": 0}
        return stack_obs(self.hist), {**info, "chunk_steps": 0}

    def replay_state(self):
        """What reset(options={"replay": ...}) needs to bring the current episode back: its count since the
        base seed and the env actions taken so far."""
        actions = np.array(self.actions, np.float32).reshape(-1, self.env.action_space.shape[0])
        return {"count": self.count, "actions": actions}

    def _record(self):
        if self.frames is not None:
            self.frames.append(self.env.render())

    def step(self, chunk):
        total, n = 0.0, 0
        for action in chunk:
            obs, reward, terminated, truncated, info = self.env.step(action)
            self.hist, total, n = self.hist + [obs], total + reward, n + 1
            self.actions.append(action)
            self._record()
            if terminated or truncated:
                break
        self.hist, self.ret, self.length = self.hist[-self.To:], self.ret + total, self.length + n
        info = {**info, "chunk_steps": n, "episode_return": self.ret, "episode_length": self.length}
        return stack_obs(self.hist), total, terminated, truncated, info


def video_name(task, reset_seed, outcome):
    """File name of an episode's video, e.g. push_seed3_success-left.gif."""
    return f"{envs.resolve_task(task)[0]}_seed{reset_seed}_{outcome}.gif"


def write_video(path, frames, fps):
    """Frames [(H, W, 3) uint8] -> animated GIF at fps (plays in any browser), written atomically."""
    from PIL import Image  # only here: no imaging cost unless a video is asked for
    import training  # only here: rollouts without videos load no torch
    images = [Image.fromarray(f) for f in frames]
    training.atomic_write(path, lambda tmp: images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:],
                                                           duration=round(1000 / fps), loop=0))


def make_chunk_env(task, n_obs_steps, n_action_steps, worker=False, render_mode=None, obs_mode="state", **env_kwargs):
    """ChunkEnv of a task; worker=True (vector-env worker) ignores Ctrl-C: only the trainer of the group handles it.
    env_kwargs go to the task's env (e.g. terminate_on_success=False)."""
    if worker:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return ChunkEnv(envs.make_env(task, render_mode, obs_mode=obs_mode, **env_kwargs), n_obs_steps, n_action_steps)


def stack_space(space, n):
    """The space of n stacked observations of `space`: a Box, or a Dict of Boxes stacked per key."""
    if isinstance(space, gym.spaces.Dict):
        return gym.spaces.Dict({k: stack_space(v, n) for k, v in space.spaces.items()})
    return gym.spaces.Box(np.stack([space.low] * n), np.stack([space.high] * n), dtype=space.dtype)


def stack_obs(observations):
    """Observations (arrays, or dicts of arrays) -> one stacked along a new first axis (per key)."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def evaluate(task, policy, n_episodes=50, seed=0, progress=False, video=0, video_dir="videos", batch=1):
    """Seeded receding-horizon rollouts of a chunk policy: an object with n_obs_steps To, n_action_steps Ta and
    predict_action(obs (B, To, Do)) -> chunks (B, Th, Da), whose steps [To-1, To-1+Ta) run before the next query.
    Episode i resets with envs.eval_seed(seed, i). A sampling policy should use a seeded stream, for repeatability.
    batch: episodes run in lockstep, one predict_action call for all that are still running (a multi-step
    sampler pays its NFE once per decision instead of once per episode; batch 1 queries one at a time).
    The first `video` episodes are rendered to GIFs in video_dir (video_name: reset seed and outcome)."""
    To, Ta = policy.n_obs_steps, policy.n_action_steps
    group = [make_chunk_env(task, To, Ta, render_mode="rgb_array" if video else None,
                            obs_mode=getattr(policy, "obs_mode", "state"))
             for _ in range(min(batch, n_episodes))]
    names, finals = group[0].unwrapped.mode_names, [None] * n_episodes         # the last info of each episode
    bar = tqdm(total=n_episodes, desc=f"eval {envs.resolve_task(task)[0]}", disable=not progress)
    for first in range(0, n_episodes, len(group)):
        running, obs = {}, {}                                                    # episode -> its env, its obs
        for env, i in zip(group, range(first, min(first + len(group), n_episodes))):
            env.frames = [] if i < video else None
            running[i], obs[i] = env, env.reset(seed=envs.eval_seed(seed, i))[0]
        while running:
            chunks = np.asarray(policy.predict_action(stack_obs([obs[i] for i in running])))   # (B, Th, Da)
            assert chunks.ndim == 3 and len(chunks) == len(running) and chunks.shape[1] >= To - 1 + Ta, \
                f"predict_action must return ({len(running)}, >= {To - 1 + Ta}, Da) chunks, got {chunks.shape}"
            for (i, env), chunk in zip(list(running.items()), chunks):
                obs[i], _, terminated, truncated, info = env.step(chunk[To - 1:To - 1 + Ta])
                if terminated or truncated:
                    finals[i] = info
                    del running[i]
                    bar.update()
                    if env.frames is not None:
                        outcome = "failure" if not info["success"] else \
                            f"success-{names[info['mode']]}" if names else "success"
                        write_video(os.path.join(video_dir, video_name(task, envs.eval_seed(seed, i), outcome)),
                                         env.frames, env.metadata["render_fps"])
    bar.close()
    for env in group:
        env.close()
    n_success = sum(f["success"] for f in finals)
    mode_counts = {name: sum(f["success"] and f["mode"] == m for f in finals) for m, name in enumerate(names)}
    attempts = {name: sum(f["mode"] == m for f in finals) for m, name in enumerate(names)}   # committed to it
    return {"success_rate": n_success / n_episodes, "ci95": wilson_interval(n_success, n_episodes),
            "n_episodes": n_episodes, "n_success": int(n_success),
            "mean_return": float(np.mean([f["episode_return"] for f in finals])),
            "mean_length": float(np.mean([f["episode_length"] for f in finals])),
            "mode_fractions": {k: (v / n_success if n_success else 0.0) for k, v in mode_counts.items()},
            "mode_counts": mode_counts, "mode_attempts": attempts}


# ----------------------------------------------------------------------------- quick demo

if __name__ == "__main__":
    class Hold:
        """A chunk policy that holds the arm above the table: To = 2, Ta = 3 of an 8-step chunk."""
        n_obs_steps, n_action_steps = 2, 3

        def predict_action(self, obs):                                          # obs (B, To, Do)
            return np.tile([0.5, 0.0, 0.2, 0.0], (len(obs), 8, 1)).astype(np.float32)   # (B, Th, Da)

    r = evaluate("push", Hold(), n_episodes=4, seed=0, batch=2)
    print(f"push, holding still: success {r['success_rate']:.2f} [{r['ci95'][0]:.2f}, {r['ci95'][1]:.2f}] over "
          f"{r['n_episodes']} episodes, mean length {r['mean_length']:.0f} steps")
