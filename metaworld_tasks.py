"""Meta-World v3 as tasks of this project: `--task mw-<name>` (e.g. mw-assembly) in train.py, bench.py and evaluation.

Yu et al. 2019, "Meta-World" (Farama's v3 release). The protocol of DP3/MP1, on state: the goal-observable
environment of a task with a fresh random layout at every reset (seeded here: reset(seed=s) always gives the same
layout), the 39-dim state as observation, 4-dim actions in [-1, 1] (end-effector displacement, gripper effort),
at most EPISODE_STEPS steps, success = info["success"] at any step. An episode ends at its first success,
or at the time limit as a truncation; with terminate_on_success=False only at the limit, info["success"] then
saying whether any step so far succeeded.
Demonstrations come from Meta-World's own scripted policies (make_expert; demonstrations.collect_demos keeps successes).
GROUPS holds the hard and very hard tasks of the difficulty split that DP3 and MP1 use (after Seo et al. 2022).

    python metaworld_tasks.py --episodes 50     # the scripted expert's success on the 11 hard tasks

Rendering (videos) needs an OpenGL library: MUJOCO_GL=osmesa (Debian: libosmesa6) or egl with a GPU.
"""
import argparse
import os
import time
import warnings

import gymnasium as gym
import numpy as np

EPISODE_STEPS = 200  # the protocol's time limit (Meta-World's own is 500)
GROUPS = {"hard": ("assembly", "hand-insert", "pick-out-of-hole", "pick-place", "push", "push-back"),
          "very hard": ("shelf-place", "disassemble", "stick-pull", "stick-push", "pick-place-wall")}
PREFIX = "mw-"
# The scripted policies warn at every episode that their gains exceed the action range; the expert clips its actions.
warnings.filterwarnings("ignore", message=r"Constant\(s\) may be too high", category=UserWarning)


def names():
    """Every Meta-World v3 task name (assembly, basketball, ...); imports metaworld."""
    from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as envs
    return sorted(k[:-len("-v3-goal-observable")] for k in envs)


def gym_id(name):
    return f"DBPMetaWorld-{name}-v0"


def register(short):
    """Register mw-<name> with gymnasium (once) -> its gym id; an unknown name raises ValueError."""
    name = short[len(PREFIX):]
    if gym_id(name) not in gym.registry:
        if name not in names():
            raise ValueError(f"unknown Meta-World task {short!r}; known: {', '.join(PREFIX + n for n in names())}")
        # no env checker: Meta-World's padded observation dims have equal bounds, which it warns about at every make
        gym.register(gym_id(name), entry_point=MetaWorldEnv, kwargs=dict(name=name), disable_env_checker=True)
    return gym_id(name)


class MetaWorldEnv(gym.Env):
    """A goal-observable Meta-World v3 task, seeded layouts, float32 observations; state() is the observation
    (the scripted expert acts on it); info: "success", "mode" (-1: the tasks are unimodal) and Meta-World's own."""
    metadata, n_modes, mode_names, n_arms = {"render_modes": ["rgb_array"], "render_fps": 80}, 0, [], 1

    def __init__(self, name, render_mode=None, obs_mode="state", terminate_on_success=True, max_steps=EPISODE_STEPS):
        if obs_mode != "state":
            raise ValueError(f"obs_mode must be 'state' for Meta-World tasks (the 39-dim state), got {obs_mode!r}")
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if render_mode and "MUJOCO_GL" not in os.environ:
            os.environ["MUJOCO_GL"] = "osmesa"  # headless software rendering; egl needs a GPU
        from metaworld.env_dict import ALL_V3_ENVIRONMENTS_GOAL_OBSERVABLE as envs
        self.env = envs[f"{name}-v3-goal-observable"](render_mode=render_mode)
        self.env._freeze_rand_vec, self.env.seeded_rand_vec = False, True   # a new layout per reset, from env.seed
        self.env.max_path_length = max_steps
        self.name, self.render_mode, self.obs_mode = name, render_mode, obs_mode
        self.terminate_on_success, self.max_steps = terminate_on_success, max_steps
        space = self.env.sawyer_observation_space
        self.state_space = self.observation_space = gym.spaces.Box(
            space.low.astype(np.float32), space.high.astype(np.float32), dtype=np.float32)
        self.action_space = gym.spaces.Box(-1.0, 1.0, (4,), np.float32)
        self.metadata = {**self.metadata, "render_fps": round(1 / self.env.dt)}

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # Meta-World ignores reset's seed: its layout comes from env.seed's stream, seeded from ours.
        self.env.seed(int(self.np_random.integers(2 ** 31)) if seed is None else int(seed))
        obs, _ = self.env.reset()
        self._obs, self.steps, self.succeeded = obs.astype(np.float32), 0, False
        return self._obs, {"success": False, "mode": -1}

    def step(self, action):
        obs, reward, _, _, info = self.env.step(np.clip(np.asarray(action, np.float32), -1.0, 1.0))
        self._obs, self.steps, success = obs.astype(np.float32), self.steps + 1, bool(info["success"])
        self.succeeded = self.succeeded or success                       # success at any step so far
        terminated = success and self.terminate_on_success
        truncated = not terminated and self.steps >= self.max_steps
        return self._obs, float(reward), terminated, truncated, {**info, "success": self.succeeded, "mode": -1}

    def state(self):
        """The current observation (39,): hand xyz, gripper, two objects' poses, the same one step back, the goal."""
        return self._obs.copy()

    def render(self):
        return self.env.render() if self.render_mode == "rgb_array" else None

    def close(self):
        self.env.close()


class MetaWorldExpert:
    """Meta-World's scripted policy of a task (deterministic, as DP3's demos), its action clipped to the action
    space; Gaussian noise of std noise (action units, 1 = 1 cm of hand motion) if asked. .mode is -1."""
    mode = -1

    def __init__(self, name, rng, noise=0.0):
        from metaworld.policies import ENV_POLICY_MAP
        self.policy, self.rng, self.noise = ENV_POLICY_MAP[f"{name}-v3"](), rng, noise

    def act(self, state):
        action = self.policy.get_action(np.asarray(state, np.float64))
        if self.noise:
            action = action + self.rng.normal(0.0, self.noise, size=action.shape)
        return np.clip(action, -1.0, 1.0).astype(np.float32)


def make_expert(env, rng):
    return MetaWorldExpert(env.unwrapped.name, rng)


def expert_success(name, episodes, seed=0):
    """The scripted expert's success over `episodes` seeded episodes of mw-<name>, on the evaluation layouts."""
    import envs
    env, n_success = envs.make_env(PREFIX + name), 0
    for i in range(episodes):
        n_success += bool(envs.expert_episode(env, envs.eval_seed(seed, i))[2]["success"])
    env.close()
    return n_success


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description="The scripted expert's success on Meta-World tasks.")
    parser.add_argument("--tasks", default=",".join(t for g in GROUPS.values() for t in g),
                        help="comma-separated Meta-World task names (default: the 11 hard and very hard tasks)")
    parser.add_argument("--episodes", type=int, default=10, help="seeded episodes per task")
    args = parser.parse_args()
    for name in args.tasks.split(","):
        t0 = time.perf_counter()
        k = expert_success(name, args.episodes)
        print(f"{PREFIX + name:22s} expert success {k}/{args.episodes} = {k / args.episodes:.2f} "
              f"({time.perf_counter() - t0:.1f} s)", flush=True)
