"""Demonstration datasets on disk: LeRobot v3, robomimic HDF5 and our .npz demo files read into the demo dict that
demonstrations.make_windows trains on; LeRobot v3 datasets written an episode at a time, crash-safely.

The demo dict is envs.load_demos': obs (T, Do) float32, actions (T, Da) float32, episode_ends (E,) int64 (exclusive
cumulative ends, as Diffusion Policy's replay buffer), modes (E,) int64 (-1: unknown); with cameras image
(T, V, 3, H, W) uint8 and agent_pos (T, P) float32; success (E,) bool where the file records it. read_dataset adds
fps (None where the file does not say) and source (format, path, the keys read, their per-step shapes). Formats:
LeRobot v3 (a directory with meta/info.json, as LeRobot writes it: data/chunk-000/file-000.parquet a row per frame,
videos/<camera>/chunk-000/file-000.mp4 many episodes one after another, meta/episodes/chunk-000/file-000.parquet a row
per episode with its rows and video timestamps, meta/stats.json, meta/tasks.parquet); robomimic (*.hdf5, *.h5:
data/demo_N/{actions, obs/<key>}, mask/<split>); npz (*.npz, envs.load_demos: our expert's, robot.py --record's).

lerobot_writer.py writes LeRobot v3 datasets an episode at a time; meta/info.json's totals say which episodes are
whole, and the reader stops there.

    demo = read_dataset("pusht", obs_keys=["observation.state", "observation.environment_state"])      # LeRobot v3
    demo = read_dataset("lift_ph.hdf5", obs_keys=["robot0_eef_pos", "robot0_gripper_qpos", "object"])  # robomimic
    obs, actions = demonstrations.make_windows(read_dataset("push_lerobot"), n_obs_steps=2, horizon=16)
"""
import glob
import json
import os

import numpy as np

CODEBASE_VERSION = "v3.0"    # LeRobot's dataset format, in meta/info.json
DATA_PATH = "data/chunk-{chunk_index:03d}/file-{file_index:03d}.parquet"
VIDEO_PATH = "videos/{video_key}/chunk-{chunk_index:03d}/file-{file_index:03d}.mp4"
EPISODES_PATH = "meta/episodes/chunk-000/file-000.parquet"   # the writer's one episodes file (the reader takes any)
STATE_KEY, ENV_STATE_KEY, ACTION_KEY = "observation.state", "observation.environment_state", "action"
STAMP_KEY = "stamp_s"   # ours (robot.py --record's): each frame's measured time since its episode's first
CAMERA_KEY = "observation.images.cam{}"    # the writer's camera v
INDEX_KEYS = ("timestamp", "frame_index", "episode_index", "index", "task_index")   # LeRobot's per-frame bookkeeping


# ----------------------------------------------------------------------------- reading
def read_parquet(path, columns=None):
    import pyarrow as pa
    import pyarrow.parquet as pq
    try:
        return pq.read_table(path, columns=columns)
    except (OSError, pa.ArrowException) as e:   # missing, truncated, not parquet, or without those columns
        raise ValueError(f"{path}: unreadable parquet ({type(e).__name__}: {e})") from None


def parquet_column(table, key, path):
    """A parquet column as (n, d) numpy: fixed-size or equal-length lists, or scalars (d = 1)."""
    import pyarrow as pa
    import pyarrow.compute as pc
    col = table.column(key).combine_chunks()
    if not (pa.types.is_fixed_size_list(col.type) or pa.types.is_list(col.type) or pa.types.is_large_list(col.type)):
        return col.to_numpy(zero_copy_only=False).reshape(len(col), 1)
    sizes = pc.list_value_length(col).to_numpy(zero_copy_only=False)
    if col.null_count or (len(sizes) and (sizes != sizes[0]).any()):
        raise ValueError(f"{path}: {key!r} has rows of lengths {sorted(set(sizes.tolist()))} or empty rows")
    return col.flatten().to_numpy(zero_copy_only=False).reshape(len(col), int(sizes[0]) if len(sizes) else 0)


def _finite(x, path, key):
    if x.size and (bad := ~np.isfinite(x).reshape(len(x), -1).all(axis=1)).any():
        raise ValueError(f"{path}: {key!r} holds NaN or inf (first in row {int(np.argmax(bad))})")


def read_info(root):
    path = os.path.join(root, "meta", "info.json")
    try:
        with open(path) as f:
            info = json.load(f)
    except FileNotFoundError:
        raise ValueError(f"{root}: no meta/info.json, so not a LeRobot dataset directory") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable ({e})") from None
    if not str(info.get("codebase_version", "")).startswith("v3"):
        raise ValueError(f"{path}: 'codebase_version' is {info.get('codebase_version')!r}; this reads v3.x (LeRobot's "
                         "convert_dataset_v21_to_v30 converts older ones)")
    return info


def _lerobot_episodes(root, info, video_keys):
    """The episodes metadata of the episodes info.json counts ({column: (E,)}, in episode order; rows past its
    total_episodes are a killed write's), and where each is ("<file> episode_index i")."""
    need = ["episode_index", "length", "dataset_from_index", "dataset_to_index", "data/chunk_index", "data/file_index"]
    need += [f"videos/{k}/{c}" for k in video_keys for c in ("chunk_index", "file_index", "from_timestamp")]
    cols, where = {k: [] for k in need + ["mode", "success", "seed"]}, []
    for path in sorted(glob.glob(os.path.join(root, "meta", "episodes", "chunk-*", "file-*.parquet"))):
        table = read_parquet(path)
        if missing := [k for k in need if k not in table.column_names]:
            raise ValueError(f"{path}: no column {missing[0]!r}; it has {table.column_names}")
        for k in cols:   # mode, success, seed are ours (robot.py --record's); LeRobot's own datasets have none
            cols[k].append(parquet_column(table, k, path)[:, 0] if k in table.column_names else np.full(len(table), None))
        where += [f"{path} episode_index {i}" for i in table.column("episode_index").to_pylist()]
    cols, n = {k: np.concatenate(v) if v else np.zeros(0) for k, v in cols.items()}, info.get("total_episodes", 0)
    keep = np.argsort(cols["episode_index"], kind="stable")
    keep = keep[cols["episode_index"][keep] < n]
    if not np.array_equal(cols["episode_index"][keep], np.arange(n)):
        raise ValueError(f"{root}/meta/episodes: 'episode_index' holds {cols['episode_index'][keep][:9].tolist()}...; "
                         f"info.json's total_episodes={n} says 0..{n - 1}")
    return {k: v[keep] for k, v in cols.items()}, [where[i] for i in keep]


def _lerobot_columns(root, info, eps, keys):
    """Per-frame columns `keys` of every episode, in episode order ({key: (T, d)}): an episode's rows are those of its
    data file whose `index` is in [dataset_from_index, dataset_to_index)."""
    parts = [None] * len(eps["length"])
    for c, f in sorted(set(zip(eps["data/chunk_index"].tolist(), eps["data/file_index"].tolist()))):
        path = os.path.join(root, info["data_path"].format(chunk_index=c, file_index=f))
        table = read_parquet(path, columns=["index", *keys])
        index, arrays = parquet_column(table, "index", path)[:, 0], {k: parquet_column(table, k, path) for k in keys}
        es, order = np.flatnonzero((eps["data/chunk_index"] == c) & (eps["data/file_index"] == f)), np.argsort(index)
        lo, hi = (np.searchsorted(index[order], eps[k][es]) for k in ("dataset_from_index", "dataset_to_index"))
        if (bad := np.flatnonzero(hi - lo != eps["length"][es])).size:
            raise ValueError(f"{path}: 'index' has {hi[bad[0]] - lo[bad[0]]} rows of episode_index {es[bad[0]]}, whose "
                             f"'length' in the episodes metadata is {eps['length'][es[bad[0]]]}")
        for k in set(keys) - {"timestamp"}:
            _finite(arrays[k], path, k)
        for e, a, b in zip(es, lo, hi):
            parts[e] = {k: v[order[a:b]] for k, v in arrays.items()}
    return {k: np.concatenate([p[k] for p in parts]) for k in keys}


def _decode_video(path, key):
    """Every frame of a video file (N, 3, H, W) uint8 and its time (N,) s."""
    import av
    from av.video.reformatter import VideoReformatter
    frames, times, rgb = [], [], VideoReformatter()   # one reformatter: its conversion context is built once
    try:
        with av.open(path) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO" if stream.width * stream.height > 256 * 256 else "SLICE"   # frame threads: big
            for frame in container.decode(stream):
                frames.append(rgb.reformat(frame, format="rgb24").to_ndarray())
                times.append(float(frame.pts * stream.time_base))
    except (av.error.FFmpegError, OSError, IndexError) as e:   # missing, truncated, no video stream
        raise ValueError(f"{path}: {key!r} video unreadable ({type(e).__name__}: {e})") from None
    if not frames:
        raise ValueError(f"{path}: {key!r} video holds no frame")
    return np.stack(frames).transpose(0, 3, 1, 2), np.array(times)


def _lerobot_images(root, info, eps, key, timestamps):
    """Camera `key` at every data row (T, 3, H, W): the frame nearest its episode's from_timestamp + its timestamp."""
    out, start, path = [], 0, None
    for e, length in enumerate(eps["length"]):
        c, f = eps[f"videos/{key}/chunk_index"][e], eps[f"videos/{key}/file_index"][e]
        if path != (p := os.path.join(root, info["video_path"].format(video_key=key, chunk_index=c, file_index=f))):
            path, (frames, times) = p, _decode_video(p, key)   # one file in memory at a time
        query = eps[f"videos/{key}/from_timestamp"][e] + timestamps[start:start + length].astype(np.float64)
        j = np.clip(np.searchsorted(times, query), 1, len(times) - 1)
        j -= np.abs(times[j - 1] - query) <= np.abs(times[j] - query)   # the nearer neighbour
        if (bad := np.abs(times[j] - query) > 0.25 / info["fps"]).any():
            raise ValueError(f"{path}: {key!r} has no frame at {query[bad][0]:.3f} s (episode_index {e}): the video is "
                             "shorter than the data or out of step with it")
        out.append(frames[j])
        start += length
    return np.concatenate(out)


def _read_lerobot(root, obs_keys, action_key, image_keys, state_key):
    info, info_path = read_info(root), os.path.join(root, "meta", "info.json")
    features = info.get("features", {})
    low_dim = list(dict.fromkeys([*obs_keys, action_key] + [state_key] * bool(image_keys)))
    for key in low_dim + image_keys:
        if key not in features:
            raise ValueError(f"{info_path}: no feature {key!r}; the features are {sorted(features)}")
        if (features[key]["dtype"] == "video") != (key in image_keys):
            raise ValueError(f"{info_path}: {key!r} is a {features[key]['dtype']!r} feature; image_keys take the "
                             "'video' ones, obs_keys and action_key the vectors")
    eps, where = _lerobot_episodes(root, info, image_keys)
    stamped = [STAMP_KEY] * (STAMP_KEY in features)
    cols = _lerobot_columns(root, info, eps, low_dim + ["timestamp"] + stamped)
    demo = {"obs": np.concatenate([cols[k] for k in obs_keys], axis=1), "actions": cols[action_key],
            "modes": np.where(eps["mode"] == None, -1, eps["mode"]).astype(np.int64)}   # noqa: E711 (object array)
    if image_keys:
        views = [_lerobot_images(root, info, eps, k, cols["timestamp"][:, 0]) for k in image_keys]
        if len({v.shape for v in views}) > 1:
            raise ValueError(f"{root}: cameras {image_keys} differ in size: {[v.shape[1:] for v in views]}")
        demo.update(image=np.stack(views, axis=1), agent_pos=cols[state_key])
    for key, name, kind in (("success", "success", bool), ("seed", "seeds", np.int64)):
        if not any(s is None for s in eps[key]):
            demo[name] = eps[key].astype(kind)
    if stamped:
        demo["stamps_s"] = cols[STAMP_KEY][:, 0]
    shapes = {k: list(cols[k].shape[1:]) for k in low_dim} | {k: list(demo["image"].shape[2:]) for k in image_keys}
    return demo, eps["length"], where, info.get("fps"), shapes


def _robomimic_demo(group, path, name, obs_keys, action_key, image_keys):
    """data/<name>: obs (T, Do), actions (T, Da), image (T, V, 3, H, W) or None."""
    for key, holder in [(action_key, "")] + [(k, "obs/") for k in obs_keys + image_keys]:
        if holder + key not in group:
            raise ValueError(f"{path}: no data/{name}/{holder}{key}; data/{name}/{holder} holds "
                             f"{sorted(group[holder] if holder else group)}")
    flat = lambda a: a.reshape(len(a), int(np.prod(a.shape[1:]))).astype(np.float32)   # (T, ...) -> (T, d), T may be 0
    actions, arrays = flat(group[action_key][()]), {k: group["obs"][k][()] for k in obs_keys + image_keys}
    for key, a in arrays.items():
        if len(a) != len(actions):
            raise ValueError(f"{path}: data/{name}/obs/{key} has {len(a)} steps, data/{name}/{action_key} {len(actions)}")
    for key, a in [(action_key, actions)] + [(f"obs/{k}", arrays[k]) for k in obs_keys]:
        _finite(a, path, f"data/{name}/{key}")
    obs = np.concatenate([flat(arrays[k]) for k in obs_keys], axis=1)
    return obs, actions, np.stack([arrays[k] for k in image_keys], 1).transpose(0, 1, 4, 2, 3) if image_keys else None


def _read_robomimic(path, obs_keys, action_key, image_keys, split):
    import h5py
    if not obs_keys:
        raise ValueError(f"{path}: robomimic files need obs_keys, the data/demo_N/obs/<key> arrays that make obs")
    number = lambda name: (int(name.rsplit("_", 1)[-1]) if name.rsplit("_", 1)[-1].isdigit() else -1, name)
    try:
        with h5py.File(path, "r") as f:
            if "data" not in f:
                raise ValueError(f"{path}: no 'data' group; it holds {sorted(f)}")
            names = sorted(f["data"], key=number)
            if split and f"mask/{split}" in f:   # the demo names it lists
                names = sorted((n.decode() if isinstance(n, bytes) else str(n) for n in f["mask"][split][()]), key=number)
                if missing := [n for n in names if n not in f["data"]]:
                    raise ValueError(f"{path}: mask/{split} names {missing[0]!r}, which is not in data/")
            if not names:
                raise ValueError(f"{path}: holds no demo" + (f" in mask/{split}" if split else ""))
            eps = [_robomimic_demo(f["data"][n], path, n, obs_keys, action_key, image_keys) for n in names]
            first = f["data"][names[0]]
            shapes = {k: list(first["obs"][k].shape[1:]) for k in obs_keys + image_keys}
            shapes[action_key] = list(first[action_key].shape[1:])
            fps = json.loads(f["data"].attrs.get("env_args", "{}")).get("env_kwargs", {}).get("control_freq")
    except OSError as e:   # missing or truncated
        raise ValueError(f"{path}: unreadable HDF5 ({type(e).__name__}: {e})") from None
    obs, actions, images = zip(*eps)
    demo = {"obs": np.concatenate(obs), "actions": np.concatenate(actions), "modes": np.full(len(eps), -1, np.int64)}
    if image_keys:
        demo.update(image=np.concatenate(images), agent_pos=demo["obs"])
    return demo, np.array([len(a) for a in actions]), [f"{path} data/{n}" for n in names], fps, shapes


def _read_npz(path):
    import envs   # only here: its simulators load with it
    demo = envs.load_demos(path)
    for key in ("obs", "actions", "agent_pos"):
        if key in demo:
            _finite(demo[key], path, key)
    shapes = {k: list(v.shape[1:]) for k, v in demo.items() if v.ndim and len(v) == len(demo["obs"])}
    where = [f"{path} episode {i}" for i in range(len(demo["episode_ends"]))]
    return demo, np.diff(demo["episode_ends"], prepend=0), where, None, shapes


def read_dataset(path, obs_keys=None, action_key=None, image_keys=(), state_key=STATE_KEY, split="train",
                 min_length=1, action_dim=None):
    """The demo dict of a LeRobot v3 directory, a robomimic .hdf5/.h5 or an .npz demo file, with fps and source.
    obs_keys: the vectors concatenated into obs (LeRobot: default [state_key]; robomimic: obs/<key> names, required);
    action_key: default "action" (LeRobot) or "actions" (robomimic); image_keys: cameras stacked into image, with
    state_key (LeRobot) or obs (robomimic) as agent_pos; split: robomimic's mask/<split> (None: every demo);
    min_length: an episode's fewest steps (e.g. the horizon); action_dim: the action size required. Anything wrong
    raises ValueError naming the file and key, before anything is returned."""
    for name, keys in (("obs_keys", obs_keys), ("image_keys", image_keys)):
        if isinstance(keys, str):
            raise TypeError(f"{name} must be a list of keys, got the string {keys!r}")
    path, image_keys = os.fspath(path), list(image_keys)
    if not os.path.exists(path):
        raise FileNotFoundError(f"no dataset at {path}")
    if min_length < 1:
        raise ValueError(f"min_length must be >= 1, got {min_length}")
    if os.path.isdir(path):
        action_key, obs_keys, fmt = action_key or ACTION_KEY, list(obs_keys or [state_key]), "lerobot"
        demo, lengths, where, fps, shapes = _read_lerobot(path, obs_keys, action_key, image_keys, state_key)
    elif path.endswith((".hdf5", ".h5")):
        action_key, obs_keys, fmt = action_key or "actions", list(obs_keys or []), "robomimic"
        demo, lengths, where, fps, shapes = _read_robomimic(path, obs_keys, action_key, image_keys, split)
    elif path.endswith(".npz"):
        if obs_keys or action_key or image_keys:
            raise ValueError(f"{path}: an .npz demo file takes no obs_keys, action_key or image_keys")
        demo, lengths, where, fps, shapes = _read_npz(path)
        fmt, action_key, obs_keys, image_keys = "npz", "actions", ["obs"], ["image"] * ("image" in demo)
    else:
        raise ValueError(f"{path}: not a LeRobot v3 directory, a robomimic .hdf5/.h5 or an .npz demo file")
    if not len(lengths):
        raise ValueError(f"{path}: holds no episode")
    if (short := np.flatnonzero(lengths < min_length)).size:
        raise ValueError(f"{where[short[0]]}: {lengths[short[0]]} steps, fewer than min_length={min_length}")
    if action_dim is not None and demo["actions"].shape[1] != action_dim:
        raise ValueError(f"{path}: {action_key!r} has dimension {demo['actions'].shape[1]}; action_dim={action_dim}")
    demo.update({k: demo[k].astype(np.float32) for k in ("obs", "actions", "agent_pos") if k in demo},
                episode_ends=np.cumsum(lengths).astype(np.int64), fps=fps)
    demo["source"] = dict(format=fmt, path=path, obs_keys=obs_keys, action_key=action_key, image_keys=image_keys,
                          shapes=shapes)
    return demo
