"""Recording demonstrations with robot.py's control loop (robot.py --record; ROBOT.md, Recording demonstrations).

A demonstrator drives the loop in the policy's place, and each finished episode is appended to a demo file of
envs' format (obs, actions, episode_ends, modes) with stamps_s, success and seeds, which train.py --demos-file reads.

  sources   ExpertSource (the sim's scripted expert), ReplaySource (a demo file's actions, open loop), or any
            callable source(obs) -> (ACTION_DIM,) targets;
  Recorder  a source in the policy worker's interface, writing the file as each episode ends.

    python robot_record.py      # a quick demo: two episodes of a stub source written and read back
"""
import os
import time

import numpy as np

import dbp
import envs
from robot_io import ACTION_DIM, OBS_DIM, InlinePolicy

# ----------------------------------------------------------------------------- demonstrators
# A teleoperation source is a callable source(obs) -> (ACTION_DIM,) absolute EE targets (x, y, z, g per arm) for the
# end of the current policy step (POLICY_HZ), obs the step's observation (the state (OBS_DIM,), or with a camera
# {"image", "agent_pos"}); optional: reset(seed) at each episode's start, mode (the episode's mode, else -1).


class ExpertSource:
    """The sim task's scripted expert (envs.py), acting on the state, as in envs' own demos: on the sim it plays the
    teleoperator."""
    name = "expert"

    def __init__(self, noise_m=0.004):
        self.noise_m, self.expert = noise_m, None

    def reset(self, seed):
        self.expert = envs.make_expert(envs.BimanualEnv, np.random.default_rng([seed, 1]), self.noise_m)
        self.mode = self.expert.mode

    def __call__(self, obs):
        return self.expert.act(obs)


class ReplaySource:
    """The actions of a demo file (envs' format, e.g. an earlier recording), one episode after another, open loop:
    a teleoperation source that needs no hardware. After an episode's last action it holds that target."""

    def __init__(self, path):
        demo = envs.load_demos(path)
        if demo["actions"].shape[1] != ACTION_DIM:
            raise ValueError(f"{path} holds actions of dimension {demo['actions'].shape[1]}; these arms take {ACTION_DIM}")
        self.name, self.episodes, self.i = f"replay {path}", np.split(demo["actions"], demo["episode_ends"][:-1]), -1

    def reset(self, seed):
        self.i, self.t, self.mode = self.i + 1, 0, -1

    def __call__(self, obs):
        episode = self.episodes[self.i % len(self.episodes)]
        self.t += 1
        return episode[min(self.t, len(episode)) - 1]


# ----------------------------------------------------------------------------- recorder
class Recorder:
    """A teleoperation source (ExpertSource, ReplaySource, or any source(obs) -> targets (Da,)) in the policy
    worker's interface, for --record: at each policy step source(obs) gives the targets for the step's end, a chunk
    of one (Ta = 1). Each finished episode's observations, actions and stamps are written to `path` at once (envs'
    demo format, plus stamps_s (T,) s since the episode's first observation, success (E,), seeds (E,); a file there
    is appended to), so an interruption loses at most the episode under way. With a camera the observations are
    the frames and agent_pos (obs then holds agent_pos: real arms give no object state)."""
    n_obs_steps = n_action_steps = 1
    KEYS = ("obs", "actions", "stamps_s", "image", "agent_pos")   # per step, in that order of the file

    def __init__(self, source, path, camera=False):
        self.source, self.path, self.result, self.steps, self.episodes = source, path, None, [], []
        self.obs_mode = "pixels" if camera else "state"
        self.old = envs.load_demos(path) if os.path.exists(path) else None
        if self.old is not None and not {"stamps_s", "success", "seeds"} <= set(self.old):
            raise ValueError(f"{path} is not a robot.py recording (no stamps_s, success, seeds): record elsewhere")
        self.first_index = 0 if self.old is None else len(self.old["episode_ends"])

    def begin(self, seed):
        self.steps, self.seed = [], seed
        getattr(self.source, "reset", lambda seed: None)(seed)

    def submit(self, obs, stamp_s, j0):
        t_s = time.monotonic()
        obs = {k: v[0, -1] for k, v in obs.items()} if isinstance(obs, dict) else obs[0, -1]   # this step's
        action = np.asarray(self.source(obs), np.float32).reshape(ACTION_DIM)
        self.steps.append((obs, action, stamp_s))
        self.result = (action[None], stamp_s, j0, time.monotonic() - t_s)

    busy, poll, check = InlinePolicy.busy, InlinePolicy.poll, InlinePolicy.check

    def close(self):
        pass

    def end(self, outcome, success=None):
        """Keep the episode under way and rewrite the file: a finished sim episode (success: the sim's flag), or any
        episode whose success an operator gives. Returns whether it was kept."""
        if not self.steps or (success is None and outcome not in ("success", "timeout")):
            return False
        obs, actions, stamps = zip(*self.steps)
        ep = dict(actions=np.stack(actions), stamps_s=np.array(stamps) - stamps[0], success=bool(
            outcome == "success" if success is None else success), seeds=self.seed, modes=getattr(self.source, "mode", -1))
        if isinstance(obs[0], dict):
            ep.update(image=np.stack([o["image"] for o in obs]), agent_pos=np.stack([o["agent_pos"] for o in obs]))
            ep["obs"] = ep["agent_pos"]
        else:
            ep["obs"] = np.stack(obs).astype(np.float32)
        self.episodes.append(ep)
        self.steps = []
        self._write()
        return True

    def summary(self):
        """The run's stats entry: where it recorded, by what, how many episodes, and how many the file held before."""
        return dict(path=self.path, teleop=getattr(self.source, "name", "callable"), episodes=len(self.episodes),
                    before=self.first_index)

    def _write(self):
        eps, old = self.episodes, self.old or {}
        data = {k: np.concatenate(([old[k]] if k in old else []) + [e[k] for e in eps]) for k in self.KEYS if k in eps[0]}
        lengths = [e["actions"].shape[0] for e in eps]
        data["episode_ends"] = np.concatenate([old.get("episode_ends", np.zeros(0, np.int64)),
                                               len(old.get("obs", ())) + np.cumsum(lengths)]).astype(np.int64)
        for k in ("success", "seeds", "modes"):
            data[k] = np.concatenate([old.get(k, np.zeros(0)), [e[k] for e in eps]]).astype(bool if k == "success" else np.int64)
        data["version"] = np.array(envs.DEMO_VERSION)
        # a crash mid-write never leaves a half file; the tmp file ends in .npz, so numpy keeps its name
        dbp.atomic_write(self.path, lambda tmp: np.savez_compressed(tmp, **data), suffix=".npz")


if __name__ == "__main__":
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "demo_recorded.npz")
    recorder = Recorder(lambda obs: np.full(ACTION_DIM, 0.5), path)
    for seed, n_steps in ((0, 3), (1, 5)):
        recorder.begin(seed)
        for j in range(n_steps):                      # the loop's calls at each policy step: obs (1, To, Do)
            recorder.submit(np.zeros((1, 1, OBS_DIM), np.float32), 0.1 * j, j)
        recorder.end("success")
    demo = envs.load_demos(path)
    print({k: v.shape for k, v in demo.items()}, "episode_ends", demo["episode_ends"], recorder.summary())
