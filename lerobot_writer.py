"""LeRobot v3 datasets written an episode at a time, crash-safely (robot.py --record, envs' demos), and read back by
dataset_io.read_dataset.

LeRobotWriter commits an episode by writing every file it changes under a .tmp name, then moving them all into place,
meta/info.json last: info.json's totals say which episodes are whole. The reader stops there, and a writer reopening
the directory drops whatever a killed process left past them. Videos are H.264 (yuv420p): lossy, a few levels of 255.

    write_lerobot("push_lerobot", envs.load_demos("demos/push_n10_s0.npz"), fps=10)
    writer = LeRobotWriter("rec", fps=100, state_dim=8, action_dim=8); writer.add_episode(states, actions); writer.close()

    python lerobot_writer.py            # a small pixel dataset written and read back: its shapes and files
    python lerobot_writer.py --bench    # read time of 100,000 state frames; decode rate of 64x64 video
"""
import glob
import json
import os
import time

import numpy as np

from dataset_io import (ACTION_KEY, CAMERA_KEY, CODEBASE_VERSION, DATA_PATH, ENV_STATE_KEY, EPISODES_PATH, INDEX_KEYS,
                        STAMP_KEY, STATE_KEY, VIDEO_PATH, parquet_column, read_dataset, read_info, read_parquet)

CHUNKS_SIZE, DATA_FILE_MB, VIDEO_FILE_MB = 1000, 100, 200   # files per chunk dir; a file is closed past this size (MB)
VIDEO_OPTIONS = {"crf": "18", "g": "2", "bf": "0"}   # libx264: near-lossless, a keyframe every 2 (LeRobot seeks), no B
QUANTILES = (0.01, 0.10, 0.50, 0.90, 0.99)    # LeRobot's stats q01 ... q99


# ----------------------------------------------------------------------------- writing
def _stage(staged, path, content):
    """Write content (dict: JSON; pyarrow Table: parquet; else write(tmp)) to path + ".tmp", for _commit to move."""
    import pyarrow.parquet as pq
    os.makedirs(os.path.dirname(path), exist_ok=True)
    staged.append((path + ".tmp", path))   # listed first: a failed write's tmp is removed too
    if isinstance(content, dict):
        with open(path + ".tmp", "w") as f:
            json.dump(content, f, indent=4)
    elif callable(content):
        content(path + ".tmp")
    else:
        pq.write_table(content, path + ".tmp", compression="snappy")


def _table(columns):
    """{name: (n, d)} -> a pyarrow table: LeRobot's scalar columns (INDEX_KEYS) flat, vectors as fixed-size lists."""
    import pyarrow as pa
    return pa.table({k: pa.array(v[:, 0]) if k in INDEX_KEYS else pa.FixedSizeListArray.from_arrays(
        pa.array(v.reshape(-1)), v.shape[1]) for k, v in columns.items()})


def _tasks_table(tasks):
    """meta/tasks.parquet as LeRobot writes it with pandas: task_index, indexed by the task's text."""
    import pyarrow as pa
    columns = [{"name": n, "field_name": n, "pandas_type": t, "numpy_type": nt, "metadata": None}
               for n, t, nt in (("task_index", "int64", "int64"), ("task", "unicode", "object"))]
    pandas = {"index_columns": ["task"], "column_indexes": [], "columns": columns, "pandas_version": "2.2.3",
              "creator": {"library": "pyarrow", "version": pa.__version__}}
    table = pa.table({"task_index": pa.array(range(len(tasks)), pa.int64()), "task": pa.array(tasks, pa.string())})
    return table.replace_schema_metadata({"pandas": json.dumps(pandas)})


def _stats(x, image=False):
    """LeRobot's stats of an episode's feature x (T, d): min, max, mean, std, q01..q99 per dimension and count (1,);
    of images (T, 3, H, W) uint8 per channel, in [0, 1], shape (3, 1, 1), from <= 20 frames at every other pixel."""
    n = len(x)
    if image:
        x = x[::max(1, n // 20), :, ::2, ::2].transpose(0, 2, 3, 1).reshape(-1, x.shape[1]) / 255.0
    s = {"min": x.min(0), "max": x.max(0), "mean": x.mean(0, np.float64), "std": x.std(0, np.float64)}
    s |= {f"q{round(q * 100):02d}": np.quantile(x, q, axis=0) for q in QUANTILES}
    return {k: v.reshape(-1, 1, 1) if image else v for k, v in s.items()} | {"count": np.array([n])}


def _aggregate(a, b):
    """Stats of two disjoint sets of frames, as LeRobot's aggregate_stats: exact min, max, mean, std and count;
    quantiles bounded (the lower ones by their min, the upper by their max)."""
    out = a | b
    for key in a.keys() & b.keys():
        s, t = a[key], b[key]
        n, m = s["count"], t["count"]
        mean = (n * s["mean"] + m * t["mean"]) / (n + m)
        var = (n * (s["std"] ** 2 + (s["mean"] - mean) ** 2) + m * (t["std"] ** 2 + (t["mean"] - mean) ** 2)) / (n + m)
        out[key] = {"min": np.minimum(s["min"], t["min"]), "max": np.maximum(s["max"], t["max"]), "mean": mean,
                    "std": np.sqrt(var), "count": n + m}
        out[key] |= {q: (np.minimum if int(q[1:]) <= 50 else np.maximum)(s[q], t[q]) for q in s if q[0] == "q" and q in t}
    return out


def _encode_video(path, frames, fps):
    """Frames (T, 3, H, W) uint8 -> an H.264 mp4 at fps (yuv420p, as LeRobot's videos)."""
    import av
    with av.open(path, "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=fps, options=VIDEO_OPTIONS)
        stream.height, stream.width, stream.pix_fmt = frames.shape[2], frames.shape[3], "yuv420p"
        for frame in frames.transpose(0, 2, 3, 1):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(np.ascontiguousarray(frame), format="rgb24")))
        container.mux(stream.encode())


def _join_videos(tmp, parts):
    """Remux (no re-encoding) the mp4 parts [(file, shift_s, end_s)] one after another into tmp: each part's packets
    that start before end_s, their times shifted by shift_s."""
    import av
    with av.open(tmp, "w", format="mp4") as out:
        stream = None
        for part, shift_s, end_s in parts:
            with av.open(part) as src:
                ist = src.streams.video[0]
                if stream is None:
                    stream = out.add_stream_from_template(ist, opaque=True)
                    stream.time_base = ist.time_base
                for packet in src.demux(ist):
                    if packet.dts is None or packet.pts * ist.time_base >= end_s - 1e-6:
                        continue   # the demuxer's flush packet, or past the episodes the metadata names
                    shift = round(shift_s / ist.time_base)
                    packet.pts, packet.dts, packet.stream = packet.pts + shift, packet.dts + shift, stream
                    out.mux(packet)


class LeRobotWriter:
    """Appends episodes to the LeRobot v3 dataset at root: a new one, or one with these features (reopening drops
    what a killed writer left past info.json's totals). fps: an integer, as info.json holds; state_dim, action_dim:
    observation.state and action sizes; image_shape (V, 3, H, W), H and W even: cameras observation.images.cam0...
    as mp4; env_state_dim: an observation.environment_state (a sim's full state where observation.state is the arms'
    own pose, as in pixel demos); task: the episodes' instruction, in meta/tasks.parquet; stamped: a per-frame
    stamp_s column, each frame's measured time (s) since its episode's first (a recording's clock, beside LeRobot's
    nominal timestamp = frame_index / fps)."""

    def __init__(self, root, fps, state_dim, action_dim, image_shape=None, env_state_dim=None, task="demonstration",
                 stamped=False):
        if not (isinstance(fps, (int, float, np.integer)) and fps > 0 and float(fps).is_integer()):
            raise ValueError(f"fps must be a positive integer (LeRobot's info.json holds an int), got {fps!r}")
        for name, d in (("state_dim", state_dim), ("action_dim", action_dim), ("env_state_dim", env_state_dim or 1)):
            if not (isinstance(d, (int, np.integer)) and d > 0):
                raise ValueError(f"{name} must be a positive int, got {d!r}")
        if image_shape is not None and (len(image_shape) != 4 or image_shape[1] != 3 or image_shape[2] % 2
                                        or image_shape[3] % 2):
            raise ValueError(f"image_shape must be (V, 3, H, W) with H and W even (yuv420p video), got {image_shape}")
        self.root, self.fps, self.task, self.closed = os.fspath(root), int(fps), str(task), False
        self.dims = {STATE_KEY: int(state_dim)} | ({ENV_STATE_KEY: int(env_state_dim)} if env_state_dim else {}) | {
            ACTION_KEY: int(action_dim)} | ({STAMP_KEY: 1} if stamped else {})
        self.image_shape = None if image_shape is None else tuple(int(n) for n in image_shape)
        self.cameras = [CAMERA_KEY.format(v) for v in range(self.image_shape[0])] if image_shape is not None else []
        self.info = {"codebase_version": CODEBASE_VERSION, "robot_type": None, "total_episodes": 0, "total_frames": 0,
                     "total_tasks": 1, "chunks_size": CHUNKS_SIZE, "data_files_size_in_mb": DATA_FILE_MB,
                     "video_files_size_in_mb": VIDEO_FILE_MB, "fps": self.fps, "splits": {}, "data_path": DATA_PATH,
                     "video_path": VIDEO_PATH if self.cameras else None, "features": self._features()}
        self.tasks, self.stats = [self.task], {}
        if os.path.isfile(os.path.join(self.root, "meta", "info.json")):
            self._reopen()
        elif os.path.isdir(self.root) and os.listdir(self.root):
            raise ValueError(f"root: {self.root} is a non-empty directory without meta/info.json")
        self._commit([])   # a new dataset's info.json; an old one's last files rewritten without a killed write's rows

    def _features(self):
        features = {k: {"dtype": "float32", "shape": [d], "names": [f"{k.rsplit('.', 1)[-1]}_{i}" for i in range(d)]}
                    for k, d in self.dims.items()}
        for key in self.cameras:
            h, w = self.image_shape[2:]
            video = {"video.height": h, "video.width": w, "video.codec": "h264", "video.pix_fmt": "yuv420p",
                     "video.fps": self.fps, "video.channels": 3, "video.g": int(VIDEO_OPTIONS["g"]),
                     "video.crf": int(VIDEO_OPTIONS["crf"]), "is_depth_map": False, "has_audio": False}
            features[key] = {"dtype": "video", "shape": [h, w, 3], "names": ["height", "width", "channels"], "info": video}
        return features | {k: {"dtype": "float32" if k == "timestamp" else "int64", "shape": [1], "names": None}
                           for k in INDEX_KEYS}

    def _path(self, template, chunk_file, key=None):
        return os.path.join(self.root, template.format(video_key=key, chunk_index=chunk_file[0], file_index=chunk_file[1]))

    def _reopen(self):
        """Continue the dataset at root: its info, tasks and stats; files no committed episode is in, removed."""
        info, meta = read_info(self.root), os.path.join(self.root, "meta")
        theirs = {k: (v["dtype"], list(v["shape"])) for k, v in info["features"].items()}
        ours = {k: (v["dtype"], v["shape"]) for k, v in self.info["features"].items()}
        if theirs != ours or info["fps"] != self.fps:
            raise ValueError(f"{meta}/info.json: 'features' {theirs} at fps {info['fps']}; this writer's: {ours} at "
                             f"{self.fps}")
        episode_files = glob.glob(os.path.join(meta, "episodes", "*", "*.parquet"))
        if episode_files not in ([], [os.path.join(self.root, EPISODES_PATH)]):
            raise ValueError(f"{meta}/episodes: several files; this writer appends to {EPISODES_PATH} alone")
        self.info, self.tasks = info, read_parquet(os.path.join(meta, "tasks.parquet")).column("task").to_pylist()
        self.tasks += [self.task] * (self.task not in self.tasks)
        if info["total_episodes"]:
            with open(os.path.join(meta, "stats.json")) as f:
                self.stats = {k: {s: np.array(v) for s, v in d.items()} for k, d in json.load(f).items()}
        rows = self._on_disk()[0]
        keep = {self._path(DATA_PATH, (r["data/chunk_index"], r["data/file_index"])) for r in rows}
        keep |= {self._path(VIDEO_PATH, (r[f"videos/{k}/chunk_index"], r[f"videos/{k}/file_index"]), k)
                 for r in rows for k in self.cameras} | set([os.path.join(self.root, EPISODES_PATH)] * bool(rows))
        for pattern in ("**/*.tmp", "data/*/*.parquet", "videos/*/*/*.mp4", "meta/episodes/*/*.parquet"):
            for path in set(glob.glob(os.path.join(self.root, pattern), recursive=True)) - keep:
                os.remove(path)

    def _on_disk(self):
        """The episodes info.json counts: their metadata rows, the last data file and its rows {column: (n, d)}, and
        each camera's last file and the end of its last episode (s)."""
        n, rows, data_file, data_rows = self.info["total_episodes"], [], (0, 0), {}
        if n:
            rows = [r for r in read_parquet(os.path.join(self.root, EPISODES_PATH)).to_pylist() if r["episode_index"] < n]
            data_file = (rows[-1]["data/chunk_index"], rows[-1]["data/file_index"])
            table = read_parquet(path := self._path(DATA_PATH, data_file))
            keep = parquet_column(table, "index", path)[:, 0] < self.info["total_frames"]
            data_rows = {k: parquet_column(table, k, path)[keep] for k in table.column_names}
        videos = {k: ((rows[-1][f"videos/{k}/chunk_index"], rows[-1][f"videos/{k}/file_index"]),
                      rows[-1][f"videos/{k}/to_timestamp"]) if rows else ((0, 0), 0.0) for k in self.cameras}
        return rows, data_file, data_rows, videos

    def _next_file(self, template, chunk_file, limit_mb, key=None):
        """The (chunk, file) to append to: this one, or the next once its file has grown past limit_mb."""
        c, f = chunk_file
        if os.path.exists(path := self._path(template, chunk_file, key)) and os.path.getsize(path) >= limit_mb * 2 ** 20:
            return c + (f + 1) // CHUNKS_SIZE, (f + 1) % CHUNKS_SIZE
        return chunk_file

    def add_episode(self, states, actions, images=None, env_states=None, mode=-1, success=None, seed=None,
                    stamps_s=None):
        """Append an episode: states (T, state_dim), actions (T, action_dim), images (T, V, 3, H, W) uint8 (with
        image_shape), env_states (T, env_state_dim) (with env_state_dim), stamps_s (T,) (stamped); mode: its mode
        (-1: unknown); success: whether it succeeded, seed: its reset seed (None: not recorded). It is on disk, whole,
        when this returns."""
        self._commit([self._episode(states, actions, images, env_states, mode, success, seed, stamps_s)])

    def close(self):
        """Every episode added is on disk already; later add_episode calls raise."""
        self.closed = True

    def _episode(self, states, actions, images, env_states, mode, success, seed=None, stamps_s=None):
        """An episode's arguments, checked: {feature: (T, d) float32, "images", "mode", "success", "seed"}."""
        if self.closed:
            raise ValueError(f"{self.root}: add_episode after close()")
        ep = {"mode": int(mode), "success": None if success is None else bool(success),
              "seed": None if seed is None else int(seed)}
        states = np.asarray(states, np.float32)
        T = len(states) if states.ndim == 2 else 0
        stamps_s = None if stamps_s is None else np.asarray(stamps_s, np.float32).reshape(-1, 1)
        for key, name, x in ((STATE_KEY, "states", states), (ENV_STATE_KEY, "env_states", env_states),
                             (ACTION_KEY, "actions", actions), (STAMP_KEY, "stamps_s", stamps_s)):
            if x is None and key not in self.dims:
                continue
            x = np.zeros(0) if x is None else np.asarray(x, np.float32)
            if T == 0 or x.shape != (T, self.dims.get(key, 0)):
                raise ValueError(f"{name} must be (T >= 1, {self.dims.get(key, 'no env_state_dim given')}) with the T of "
                                 f"states, got {x.shape}")
            if not np.isfinite(x).all():
                raise ValueError(f"{name} holds NaN or inf")
            ep[key] = x
        if self.cameras or images is not None:
            want = (T, *self.image_shape) if self.cameras else "none (no image_shape given)"
            if images is None or np.asarray(images).dtype != np.uint8 or np.shape(images) != want:
                raise ValueError(f"images must be {want} uint8, got {None if images is None else np.shape(images)}")
            ep["images"] = np.asarray(images)
        return ep

    def _rows(self, episodes, data_file):
        """Per new episode: its data rows {column: (T, d)} and its episodes-metadata row, with its stats."""
        frames, rows, e, start = [], [], self.info["total_episodes"], self.info["total_frames"]
        for ep in episodes:
            T, column = len(ep[STATE_KEY]), lambda x: np.asarray(x).reshape(-1, 1)
            frames.append({k: ep[k] for k in self.dims} | {
                "timestamp": column(np.arange(T, dtype=np.float32) / self.fps), "frame_index": column(np.arange(T)),
                "episode_index": column([e] * T), "index": column(np.arange(start, start + T)),
                "task_index": column([self.tasks.index(self.task)] * T)})
            ep["stats"] = {k: _stats(v) for k, v in frames[-1].items()} | {
                k: _stats(ep["images"][:, v], image=True) for v, k in enumerate(self.cameras)}
            rows.append({"episode_index": e, "tasks": [self.task], "length": T, "data/chunk_index": data_file[0],
                         "data/file_index": data_file[1], "dataset_from_index": start, "dataset_to_index": start + T,
                         "meta/episodes/chunk_index": 0, "meta/episodes/file_index": 0, "mode": ep["mode"],
                         "success": ep["success"], "seed": ep["seed"]} | {f"stats/{k}/{s}": v.tolist() for k, d in ep["stats"].items()
                                                      for s, v in d.items()})
            e, start = e + 1, start + T
        return frames, rows

    def _stage_videos(self, staged, episodes, rows, videos):
        """Each camera's file: its earlier episodes, then the new ones (encoded apart, then remuxed after them)."""
        for v, key in enumerate(self.cameras):
            (c, f), end_s = videos[key]
            if episodes and (next_file := self._next_file(VIDEO_PATH, (c, f), VIDEO_FILE_MB, key)) != (c, f):
                (c, f), end_s = next_file, 0.0
            path = self._path(VIDEO_PATH, (c, f), key)
            parts = [(path, 0.0, end_s)] if end_s > 0 else []
            if episodes:
                staged.append((segment := path + ".segment.tmp", None))   # removed when the commit ends
                os.makedirs(os.path.dirname(segment), exist_ok=True)
                _encode_video(segment, np.concatenate([ep["images"][:, v] for ep in episodes]), self.fps)
                parts.append((segment, end_s, np.inf))
            for ep, row in zip(episodes, rows):
                row.update({f"videos/{key}/chunk_index": c, f"videos/{key}/file_index": f,
                            f"videos/{key}/from_timestamp": end_s,
                            f"videos/{key}/to_timestamp": end_s + len(ep[STATE_KEY]) / self.fps})
                end_s = row[f"videos/{key}/to_timestamp"]
            if parts:
                _stage(staged, path, lambda tmp: _join_videos(tmp, parts))

    def _commit(self, episodes):
        """Write every file `episodes` change under a .tmp name, then move them all into place, meta/info.json last.
        With no episodes, the last files are rewritten as info.json counts them."""
        import pyarrow as pa
        old_rows, old_file, data_rows, videos = self._on_disk()
        data_file = self._next_file(DATA_PATH, old_file, DATA_FILE_MB) if episodes else old_file
        frames, rows = self._rows(episodes, data_file)
        columns = [data_rows] * bool(data_rows and data_file == old_file) + frames
        staged, stats, meta = [], self.stats, os.path.join(self.root, "meta")
        n = self.info["total_episodes"] + len(episodes)
        n_frames = self.info["total_frames"] + sum(r["length"] for r in rows)
        try:
            self._stage_videos(staged, episodes, rows, videos)
            if columns:
                _stage(staged, self._path(DATA_PATH, data_file), _table({k: np.concatenate([c[k] for c in columns])
                                                                         for k in columns[0]}))
            if old_rows + rows:
                _stage(staged, os.path.join(self.root, EPISODES_PATH), pa.Table.from_pylist(old_rows + rows))
            for ep in episodes:
                stats = _aggregate(stats, ep["stats"])
            if stats:
                _stage(staged, os.path.join(meta, "stats.json"), {k: {s: v.tolist() for s, v in d.items()}
                                                                  for k, d in stats.items()})
            _stage(staged, os.path.join(meta, "tasks.parquet"), _tasks_table(self.tasks))
            info = self.info | {"total_episodes": n, "total_frames": n_frames, "total_tasks": len(self.tasks),
                                "splits": {"train": f"0:{n}"} if n else {}}
            _stage(staged, os.path.join(meta, "info.json"), info)
            for tmp, path in staged:
                if path:
                    os.replace(tmp, path)   # info.json last: until it is replaced, readers see the episodes before
        finally:
            for tmp, _ in staged:
                if os.path.exists(tmp):
                    os.remove(tmp)
        self.info, self.stats = info, stats


def write_lerobot(root, demo, fps, task="demonstration"):
    """A demo dict (read_dataset's or envs.load_demos') as a new LeRobot v3 dataset at root, in one commit; returns
    root. A pixel demo whose agent_pos is not its obs keeps both: agent_pos as observation.state, obs as
    observation.environment_state (read_dataset(root, image_keys=..., obs_keys=[ENV_STATE_KEY]) gives them back). A
    recording's stamps_s and seeds (robot.py --record's npz files) are kept."""
    if os.path.exists(os.path.join(root, "meta", "info.json")):
        raise ValueError(f"root: {root} holds a dataset already (LeRobotWriter appends to one)")
    pixels, ends = "image" in demo, demo["episode_ends"]
    split = pixels and not np.array_equal(demo["agent_pos"], demo["obs"])
    states = demo["agent_pos"] if split else demo["obs"]
    writer = LeRobotWriter(root, fps, states.shape[1], demo["actions"].shape[1], demo["image"].shape[1:] if pixels
                           else None, demo["obs"].shape[1] if split else None, task, stamped="stamps_s" in demo)
    modes, success = demo.get("modes", np.full(len(ends), -1)), demo.get("success", [None] * len(ends))
    seeds, stamps = demo.get("seeds", [None] * len(ends)), demo.get("stamps_s")
    writer._commit([writer._episode(states[s:e], demo["actions"][s:e], demo["image"][s:e] if pixels else None,
                                    demo["obs"][s:e] if split else None, modes[i], success[i], seeds[i],
                                    None if stamps is None else stamps[s:e])
                    for i, (s, e) in enumerate(zip(np.concatenate([[0], ends[:-1]]), ends))])   # each file written once
    writer.close()
    return root


# ----------------------------------------------------------------------------- quick demo, bench
def _toy_demo(rng, n_episodes, length, image_hw=None):
    """Random episodes (state 6, action 2); images of 8x8-pixel blocks of random colour, which video keeps well."""
    T = n_episodes * length
    demo = {"obs": rng.normal(size=(T, 6)).astype(np.float32), "actions": rng.normal(size=(T, 2)).astype(np.float32),
            "episode_ends": np.arange(1, n_episodes + 1) * length, "modes": np.zeros(n_episodes, np.int64)}
    if image_hw:
        blocks = rng.integers(0, 256, (T, 1, 3, image_hw[0] // 8, image_hw[1] // 8), dtype=np.uint8)
        demo.update(image=blocks.repeat(8, axis=3).repeat(8, axis=4), agent_pos=demo["obs"])
    return demo


if __name__ == "__main__":
    import sys
    import tempfile
    if sys.argv[1:] not in ([], ["--bench"]):
        sys.exit(f"usage: python {sys.argv[0]} [--bench]")
    runs = [("state", 500, 200, None), ("video", 50, 100, (64, 64))] if sys.argv[1:] else [("pixels", 3, 20, (64, 64))]
    with tempfile.TemporaryDirectory() as tmp:
        for name, n_episodes, length, hw in runs:   # --bench: 100,000 state frames; 5,000 frames of 64x64 video
            root, t0 = os.path.join(tmp, name), time.perf_counter()
            write_lerobot(root, _toy_demo(np.random.default_rng(0), n_episodes, length, hw), fps=10)
            t1 = time.perf_counter()
            demo = read_dataset(root, image_keys=[CAMERA_KEY.format(0)] if hw else ())
            t2 = time.perf_counter()
            rate = f" ({len(demo['obs']) / (t2 - t1):.0f} frames/s, video decoded)" if hw else ""
            print(f"{name}: {len(demo['obs'])} frames in {n_episodes} episodes: write {t1 - t0:.2f} s, "
                  f"read {t2 - t1:.2f} s{rate}")
            files = glob.glob(os.path.join(root, "**", "*.*"), recursive=True)
            print({k: v.shape for k, v in demo.items() if isinstance(v, np.ndarray)}, "files:",
                  sorted(os.path.relpath(p, root) for p in files if os.path.isfile(p)))
