"""Demonstrations as training data: the scripted expert's demo files, their successful episodes, and the training
windows (obs window, action chunk) that train.py and bench.py train on.

A demo file (.npz) holds obs (T, Do) (the task's state), actions (T, Da), episode_ends (E,) (exclusive cumulative, as in
Diffusion Policy's replay buffer), modes (E,) and version (); a pixel file adds image (T, V, 3, H, W) uint8 and
agent_pos (T, P). envs.py reads and checks it (envs.load_demos); collect_demos writes the expert's, robot.py --record
a robot's (with success (E,)). Demo episode i resets with envs.demo_seed(seed, i), never an evaluation's reset.

    python demonstrations.py    # 3 expert demos of push into a temporary directory, and their windows' shapes
"""
import os
import sys

import numpy as np
import torch
from tqdm import tqdm

import envs
import training


# ----------------------------------------------------------------------------- demo files
def collect_demos(task, n_episodes, seed=0, cache_dir="demos", progress=True, obs_mode="state"):
    """Save n_episodes successful noisy-expert rollouts (<= 2 * n_episodes tries) to {cache_dir}/{short}_n{N}_s{seed}.npz:
    obs (T, Do) (the state), actions (T, Da), episode_ends (E,) (exclusive cumulative, as in Diffusion Policy's replay
    buffer) and modes (E,), version (); obs_mode "pixels" adds image (T, V, 3, H, W) uint8 and agent_pos (T, 4 * arms)
    in {short}_n{N}_s{seed}_pixels{H}x{W}.npz (compressed). Returns the path. A cached file of this envs.DEMO_VERSION is
    reused; one of another version is regenerated; an unreadable one is moved to *.corrupt and regenerated."""
    short, _ = envs.resolve_task(task)
    pixels = "_pixels{}x{}".format(*envs.SimConfig().camera_hw) if obs_mode == "pixels" else ""
    path = os.path.join(cache_dir, f"{short}_n{n_episodes}_s{seed}{pixels}.npz")
    if os.path.exists(path):
        try:
            if int(envs.load_demos(path).get("version", 1)) == envs.DEMO_VERSION:
                return path
            print(f"note: {path} was made by an older expert; regenerating it")
        except ValueError as e:
            os.replace(path, path + ".corrupt")
            print(f"warning: {e}; moved it to {path}.corrupt and regenerating")
    env, eps = envs.make_env(short, obs_mode=obs_mode), []  # successful episodes: (states, actions, mode, images)
    with tqdm(total=n_episodes, desc=f"demos {short}", disable=not progress) as bar:
        for i in range(2 * n_episodes):
            if len(eps) == n_episodes:
                break
            states, actions, info, images = envs.expert_episode(env, envs.demo_seed(seed, i))
            if info["success"]:  # keep only successes: the policy imitates what works
                eps.append((states, actions, info["mode"], images))
                bar.update(1)
    env.close()
    if len(eps) < n_episodes:
        raise RuntimeError(f"expert for {short} too unreliable: {len(eps)}/{n_episodes} successes in {2 * n_episodes} tries")
    obs, actions, modes, images = zip(*eps)
    data = {"obs": np.concatenate(obs).astype(np.float32), "actions": np.concatenate(actions).astype(np.float32),
            "episode_ends": np.cumsum([len(o) for o in obs]).astype(np.int64), "modes": np.array(modes, dtype=np.int64),
            "version": np.array(envs.DEMO_VERSION)}
    if pixels:
        data.update(image=np.concatenate(images), agent_pos=data["obs"][:, :4 * env.unwrapped.n_arms])
    # the tmp file's name holds the pid: processes that fill the same cache at once never write into one tmp file
    training.atomic_write(path, lambda tmp: np.savez_compressed(tmp, **data), suffix=f".{os.getpid()}.npz")
    return path


def successful(demo):
    """The successful episodes of a demo dict (all of them when it has no success labels, as collect_demos' files,
    which hold successes only): per-step arrays and per-episode arrays (E,) cut alike."""
    if "success" not in demo or demo["success"].all():
        return demo
    keep, ends = demo["success"].astype(bool), demo["episode_ends"]
    if not keep.any():
        raise ValueError("the demo file holds no successful episode")
    per_step = np.zeros(ends[-1], bool)
    for s, e, k in zip(np.concatenate([[0], ends[:-1]]), ends, keep):
        per_step[s:e] = k
    cut = lambda v: v if not isinstance(v, np.ndarray) or not v.ndim else v[per_step] if len(v) == ends[-1] else \
        v[keep] if len(v) == len(ends) else v                                 # a dataset's "source" stays as it is
    out = {k: cut(v) for k, v in demo.items() if k != "episode_ends"}
    out["episode_ends"] = np.cumsum(np.diff(np.concatenate([[0], ends]))[keep])
    return out


def make_windows(demo, n_obs_steps, horizon, obs_mode="state"):
    """Every step of every episode -> obs window (N, To, Do) and action chunk (N, Th, Da). Windows start To-1
    steps in the past; indices are clamped to the episode (edge padding). obs_mode "pixels" (a pixel demo file):
    the obs window is {"image": (N, To, V, 3, H, W) uint8, "agent_pos": (N, To, P)}."""
    starts, obs_idx, act_idx = np.concatenate([[0], demo["episode_ends"][:-1]]), [], []
    for s, e in zip(starts, demo["episode_ends"]):
        t = np.arange(s, e)[:, None]
        obs_idx.append(np.clip(t + np.arange(1 - n_obs_steps, 1), s, e - 1))
        act_idx.append(np.clip(t + np.arange(1 - n_obs_steps, horizon - n_obs_steps + 1), s, e - 1))
    obs_idx, actions = np.concatenate(obs_idx), demo["actions"][np.concatenate(act_idx)]
    if obs_mode == "pixels":
        return {"image": demo["image"][obs_idx], "agent_pos": demo["agent_pos"][obs_idx]}, actions
    return demo["obs"][obs_idx], actions



# ----------------------------------------------------------------------------- training windows
def read_demos(cfg, task):
    """The successful episodes of cfg.dataset (dataset_io.read_dataset: LeRobot v3, robomimic or npz; the demo dict
    keeps its "source") or of cfg.demos_file, checked against the task's obs and action dims."""
    if getattr(cfg, "dataset", "") and cfg.demos_file:
        sys.exit("error: --dataset and --demos-file both given; pass one (--dataset reads npz demo files too)")
    flag, path = ("--dataset", cfg.dataset) if getattr(cfg, "dataset", "") else ("--demos-file", cfg.demos_file)
    keys = lambda text: [k for k in text.split(",") if k]
    try:
        if flag == "--dataset":
            import dataset_io   # pyarrow, av and h5py load only for a dataset
            demo = dataset_io.read_dataset(path, obs_keys=keys(cfg.dataset_obs_keys) or None,
                                           action_key=cfg.dataset_action_key or None,
                                           image_keys=keys(cfg.dataset_image_keys), min_length=1)
        else:
            demo = envs.load_demos(path)
        fps = demo.pop("fps", None)
        demo = successful(demo)
    except (ValueError, FileNotFoundError) as e:
        sys.exit(f"error: {flag}: {e}")
    if not task:   # no env to check against
        if cfg.obs == "pixels" and "image" not in demo:
            sys.exit(f"error: {flag} {path} holds no images; --obs pixels needs --dataset-image-keys")
        return demo
    env = envs.make_env(task).unwrapped
    dims, want = (demo["obs"].shape[1], demo["actions"].shape[1]), (env.state_space.shape[0], env.action_space.shape[0])
    task_fps = env.metadata["render_fps"]   # env steps per second: a frame per step
    env.close()
    if fps is not None and round(fps) != task_fps:
        sys.exit(f"error: {flag} {path} was recorded at {fps} fps; task {task!r} steps at {task_fps} Hz")
    if dims != want or (cfg.obs == "pixels" and "image" not in demo):
        sys.exit(f"error: {flag} {path} holds obs/action dims {dims}" + (" without images" if dims == want else "")
                 + f"; task {task!r} with --obs {cfg.obs} needs {want}")
    return demo


def load_windows(cfg, task):
    """The demonstrations of a task as training windows: (demo, obs (N, To, Do), actions (N, Th, Da)); with
    cfg.obs "pixels", obs is {"image": (N, To, V, 3, H, W) uint8, "agent_pos": (N, To, Do)}. The demos are those of
    cfg.dataset or cfg.demos_file if given (read_demos), else cfg.demos of the scripted expert's (collected once,
    cached)."""
    if getattr(cfg, "dataset", "") or getattr(cfg, "demos_file", ""):
        demo = read_demos(cfg, task)
    else:
        demo = envs.load_demos(collect_demos(task, cfg.demos, seed=cfg.seed, cache_dir=cfg.demo_dir, obs_mode=cfg.obs))
    obs, actions = make_windows(demo, cfg.n_obs_steps, cfg.horizon, cfg.obs)
    if cfg.k > len(actions):
        sys.exit(f"error: --k {cfg.k}: must be <= the {len(actions)} demonstration windows")
    obs = {k: torch.from_numpy(v) for k, v in obs.items()} if isinstance(obs, dict) else torch.from_numpy(obs)
    return demo, obs, torch.from_numpy(actions)


def take(obs, i):
    """Rows i of training windows, state (N, To, Do) or the pixel dict."""
    return {k: v[i] for k, v in obs.items()} if isinstance(obs, dict) else obs[i]


def state_and_image_shape(obs):
    """Training windows (state, or the pixel dict) -> (the low-dim part a normalizer fits: the state or agent_pos,
    the image shape (V, 3, H, W) or None)."""
    return (obs["agent_pos"], tuple(obs["image"].shape[2:])) if isinstance(obs, dict) else (obs, None)


def to_device(obs, device):
    """Training windows (state, or the pixel dict) on a device."""
    return {k: v.to(device) for k, v in obs.items()} if isinstance(obs, dict) else obs.to(device)


# ----------------------------------------------------------------------------- quick demo
if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as cache:
        demo = envs.load_demos(collect_demos("push", 3, cache_dir=cache))
        obs, actions = make_windows(demo, n_obs_steps=2, horizon=16)
        print(f"3 push demos: {len(demo['obs'])} steps, episode_ends {demo['episode_ends'].tolist()}, modes "
              f"{demo['modes'].tolist()}; windows: obs {obs.shape} (N, To, Do), actions {actions.shape} (N, Th, Da)")
