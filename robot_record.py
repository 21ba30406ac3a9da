"""Recording demonstrations with robot.py's control loop (robot.py --record; ROBOT.md, Recording demonstrations).

A demonstrator drives the loop in the policy's place, and each finished episode is appended to a LeRobot v3 dataset
(lerobot_writer.py), with each frame's measured stamp_s and each episode's success, seed and mode; train.py --dataset
reads it, and so do LeRobot's own tools.

  sources   ExpertSource (the sim's scripted expert), ReplaySource (a dataset's actions, open loop), or any
            callable source(obs) -> (ACTION_DIM,) targets;
  Recorder  a source in the policy worker's interface, writing the file as each episode ends.

    python robot_record.py      # a quick demo: two episodes of a stub source written and read back
"""
import os
import time

import numpy as np

import dataset_io
import envs
from lerobot_writer import LeRobotWriter
from robot_io import ACTION_DIM, OBS_DIM, POLICY_HZ, TASK, InlinePolicy

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
    """The actions of a dataset (an earlier recording's LeRobot directory, or an npz demo file of envs' format), one
    episode after another, open loop: a teleoperation source that needs no hardware. After an episode's last action
    it holds that target."""

    def __init__(self, path):
        demo = dataset_io.read_dataset(path)
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
    of one (Ta = 1). Each finished episode is appended at once to the LeRobot v3 dataset at `root` (a new one, or
    one this recorder wrote before), at fps = the policy's step rate: observation.state and action per step, the
    measured stamp_s, and per episode success, seed and mode; with a camera the frames as mp4 and agent_pos as
    observation.state (real arms give no object state). Appends are crash-safe (lerobot_writer): an interruption
    loses at most the episode under way."""
    n_obs_steps = n_action_steps = 1

    def __init__(self, source, root, camera=False):
        self.source, self.root, self.result, self.steps, self.kept = source, os.fspath(root), None, [], 0
        self.obs_mode, self.writer = "pixels" if camera else "state", None
        self.first_index = 0
        if os.path.isfile(os.path.join(self.root, "meta", "info.json")):
            info = dataset_io.read_info(self.root)
            features = info["features"]
            if dataset_io.STAMP_KEY not in features or any(k.startswith("observation.images") for k in features) != camera:
                raise ValueError(f"{self.root} is not a robot.py recording {'with' if camera else 'without'} a camera: "
                                 "record elsewhere")
            self.first_index = info["total_episodes"]

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
        if self.writer is not None:
            self.writer.close()

    def end(self, outcome, success=None):
        """Append the episode under way to the dataset: a finished sim episode (success: the sim's flag), or any
        episode whose success an operator gives. Returns whether it was kept."""
        if not self.steps or (success is None and outcome not in ("success", "timeout")):
            return False
        obs, actions, stamps = zip(*self.steps)
        images = np.stack([o["image"] for o in obs]) if isinstance(obs[0], dict) else None
        states = np.stack([o["agent_pos"] for o in obs]) if images is not None else np.stack(obs)
        if self.writer is None:
            self.writer = LeRobotWriter(self.root, round(POLICY_HZ), states.shape[1], ACTION_DIM, None if images is None
                                        else images.shape[1:], task=envs.TASKS[TASK], stamped=True)
        self.writer.add_episode(states, np.stack(actions), images, mode=getattr(self.source, "mode", -1), success=bool(
            outcome == "success" if success is None else success), seed=self.seed, stamps_s=np.array(stamps) - stamps[0])
        self.steps, self.kept = [], self.kept + 1
        return True

    def summary(self):
        """The run's stats entry: where it recorded, by what, how many episodes, and how many the dataset held before."""
        return dict(path=self.root, teleop=getattr(self.source, "name", "callable"), episodes=self.kept,
                    before=self.first_index)


if __name__ == "__main__":
    import tempfile
    path = os.path.join(tempfile.mkdtemp(), "recording")
    recorder = Recorder(lambda obs: np.full(ACTION_DIM, 0.5), path)
    for seed, n_steps in ((0, 3), (1, 5)):
        recorder.begin(seed)
        for j in range(n_steps):                      # the loop's calls at each policy step: obs (1, To, Do)
            recorder.submit(np.zeros((1, 1, OBS_DIM), np.float32), 0.1 * j, j)
        recorder.end("success")
    demo = dataset_io.read_dataset(path)
    print({k: np.shape(v) for k, v in demo.items() if k != "source"}, "episode_ends", demo["episode_ends"],
          recorder.summary())
