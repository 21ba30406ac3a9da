"""Dual-arm real-time control loop: a trained DBP policy drives two arms at --hz (default 100).

The deployment side of Gao et al. 2026 (arXiv 2604.03540; the paper: dual-arm UR5, 105.2 Hz,
9.5 ms end to end). Layers, top to bottom:
  policy   DBPPolicy at the task's control rate (10 Hz): one chunk of Ta targets per inference,
           receding horizon, obs history To sampled at the policy rate;
  loop     fixed rate --hz on time.monotonic() absolute deadlines, sleep-then-spin waits; it
           interpolates linearly from one policy target to the next (target a_j is where the
           EE should be at the end of policy step j) and infers the next chunk at the tick
           where it is first needed, AFTER that tick's command, so inference never delays one;
  safety   workspace box, EE speed, gripper bounds, joint limits, NaN/inf, stale state or
           camera frame, overrun streak -> hold position and stop; try/finally stops both arms;
  camera   a pixel checkpoint (train.py --obs pixels) sees frames, off the loop's thread: 'sim'
           renders its cameras in a process of their own, 'ur' reads OpenCV devices (--camera);
  backend  'sim': the bimanual PyBullet task (envs.py) advanced in wall-clock real time,
           'ur': two UR arms by IP through ur_rtde (untested on hardware, see URBackend).

    python robot.py --ckpt runs/pretrain-bimanual-s0/ckpt.pt --duration-s 60 --stats-json stats.json
    python robot.py --ckpt runs/px/bimanual/ckpt.pt   # a pixel checkpoint: the sim renders its cameras
    python robot.py --dry-run --duration-s 5          # no policy: the arms hold position
    python robot.py --help                            # every flag, with its meaning
"""
import ctypes
import gc
import json
import multiprocessing as mp
import os
import sys
import threading
import time
from dataclasses import dataclass

import numpy as np
import torch

import dbp
import envs
from dbp import option

TASK = "bimanual"
OBS_DIM = len(envs.BimanualEnv.obs_names)       # Do = 14: ee0 xyz, gripper0, ee1 xyz, gripper1, bar ends
N_ARMS = len(envs.BimanualEnv.ARM_BASES)
ACTION_DIM = 4 * N_ARMS                          # Da = 8: per arm absolute EE target (x, y, z, g)
POLICY_HZ = envs.SimConfig.control_hz            # the rate the policy was trained at
AGENT_POS_DIM = 4 * N_ARMS                       # a pixel policy's agent_pos: per arm EE xyz, gripper opening
LATENCY_KEYS = ("state_read", "inference", "command", "physics", "tick",  # what the loop times; camera: a frame's
                "camera", "end_to_end")  # age when taken, end_to_end: observation -> first command of its chunk


@dataclass
class RobotConfig(dbp.SeedConfig, dbp.DeviceConfig):  # seed: sim episode i resets with envs.eval_seed(seed, i), as in evaluation
    ckpt: str = option("", "checkpoint written by train.py (either stage) for the bimanual task")
    backend: str = option("sim", "'sim': the bimanual PyBullet task stepped in real time; 'ur': two UR arms "
                          "through ur_rtde (untested on hardware; see URBackend in robot.py)")
    hz: float = option(100.0, f"control-loop rate (Hz). The policy was trained at {POLICY_HZ:g} Hz: the loop "
                       f"interpolates linearly between its consecutive targets, hz/{POLICY_HZ:g} ticks per target",
                       ge=POLICY_HZ, le=10_000.0)
    duration_s: float = option(60.0, "run time (s); the sim runs consecutive seeded episodes (each <= 6 s) in it", gt=0.0)
    dry_run: bool = option(False, "no policy: hold the arms where they are (checks loop, safety and backend)")
    stats_json: str = option("", "write the latency/deadline/success statistics to this JSON file")
    video: int = option(0, "sim: render the first N episodes at the policy rate to GIFs in --video-dir, named by "
                        "reset seed and outcome. Loop and sim time stand still while a frame renders (~50-100 ms)",
                        ge=0)
    video_dir: str = option("runs/robot/videos", "directory of the --video files")
    workspace_low_m: tuple = option(tuple(round(float(v), 4) for v in envs.WS_LOW), "EE targets are clipped into "
                                    "this box: its lower corner x y z (m, world frame; the table top is z = 0)",
                                    ge=-2.0, le=2.0)
    workspace_high_m: tuple = option(tuple(round(float(v), 4) for v in envs.WS_HIGH), "upper corner x y z of the box (m)",
                                     ge=-2.0, le=2.0)
    max_ee_speed_m_s: float = option(0.5, "the EE target moves at most this fast: max step per tick = this / hz (m/s)",
                                     gt=0.0)
    joint_margin_rad: float = option(0.02, "stop when a measured joint comes this close to its limit (rad)", ge=0.0)
    state_timeout_s: float = option(0.05, "watchdog: stop when the robot state is older than this (s)", gt=0.0)
    max_overrun_streak: int = option(10, "stop after this many consecutive missed deadlines", ge=1)
    spin_s: float = option(0.001, "sleep until this long before each deadline, then spin (s; at most a quarter tick)",
                           ge=0.0)
    torch_threads: int = option(1, "torch intra-op threads for inference (1: no thread hand-offs, lowest jitter)", ge=1)
    rt_priority: int = option(0, "run the loop thread SCHED_FIFO at this priority (1-99; needs root or "
                              "CAP_SYS_NICE): other processes then cannot preempt a tick. 0: normal scheduling",
                              ge=0, le=99)
    ur_ips: str = option("", "--backend ur: IPs of the right (arm 0, -y) and left arm, comma-separated")
    ur_gripper_pin: int = option(0, "--backend ur: standard digital output that closes each arm's gripper", ge=0, le=7)
    camera: str = option("", "--backend ur with a pixel checkpoint: OpenCV device indices of its cameras, in the "
                         "checkpoint's view order, comma-separated (the sim renders its own cameras)")
    camera_timeout_s: float = option(0.25, "pixel checkpoints: stop when no camera frame of a policy step's state "
                                     "has come this long after that state (s)", gt=0.0)

    def check(self):
        if self.backend not in ("sim", "ur"):
            raise dbp.ConfigError("backend", self.backend, "must be 'sim' or 'ur'")
        if self.video and self.backend != "sim":
            raise dbp.ConfigError("video", self.video, "needs --backend sim (the ur backend has no camera)")
        if self.camera and self.backend != "ur":
            raise dbp.ConfigError("camera", self.camera, "is for --backend ur: the sim renders its own cameras")
        if self.camera and not all(c.strip().isdigit() for c in self.camera.split(",")):
            raise dbp.ConfigError("camera", self.camera, "must be comma-separated OpenCV device indices, e.g. '0' or '0,2'")
        if self.workspace_low_m[2] < 0:
            raise dbp.ConfigError("workspace_low_m", self.workspace_low_m, "must not reach below the table (z >= 0)")
        if not all(lo < hi for lo, hi in zip(self.workspace_low_m, self.workspace_high_m)):
            raise dbp.ConfigError("workspace_high_m", self.workspace_high_m,
                                  f"must be above workspace_low_m {self.workspace_low_m} on every axis")


# ----------------------------------------------------------------------------- helpers
def wait_until(deadline_s, spin_s):
    """Sleep until spin_s before the deadline (the OS wakes us late by ~0.1 ms), then spin."""
    remaining_s = deadline_s - time.monotonic() - spin_s
    if remaining_s > 0:
        time.sleep(remaining_s)
    while time.monotonic() < deadline_s:
        pass


def _set_rt_priority(priority):
    """SCHED_FIFO for this thread; returns the priority set (0 when off or not permitted)."""
    if priority <= 0:
        return 0
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(priority))
        return priority
    except (OSError, AttributeError) as e:
        print(f"warning: --rt-priority {priority} not applied ({e}); running at normal priority")
        return 0


def _percentiles(x_s):
    if not x_s:
        return None
    ms = np.asarray(x_s) * 1e3
    return dict(p50=round(float(np.percentile(ms, 50)), 4), p99=round(float(np.percentile(ms, 99)), 4),
                max=round(float(ms.max()), 4), n=len(ms))


def load_policy(path):
    """A DBPPolicy from a train.py checkpoint (either stage) for the bimanual task, whose
    obs/action layout matches this robot's; anything else raises ValueError/FileNotFoundError."""
    ckpt = dbp.load_checkpoint(path)
    if ckpt.get("task") not in (TASK, envs.TASKS[TASK]):
        raise ValueError(f"{path} was trained for task {ckpt.get('task')!r}; this loop drives the {TASK!r} task")
    pixels = ckpt.get("config", {}).get("obs") == "pixels"  # its obs_dim is then the agent_pos's
    return dbp.DBPPolicy.from_checkpoint(ckpt, expect={"obs_dim": AGENT_POS_DIM if pixels else OBS_DIM,
                                                      "action_dim": ACTION_DIM})


# ----------------------------------------------------------------------------- safety layer
class Safety:
    """Stands between policy and robot. Limits (clipped, counted): workspace box, EE step per
    tick, gripper in [0, 1]. Faults (the loop holds position and stops): NaN/inf in state or
    action, a stale state, a joint near its limit, an overrun streak. Methods return a fault
    message or None; targets are (N_ARMS, 4) arrays of (x, y, z, g)."""

    def __init__(self, cfg, dt_s, joint_lower, joint_upper):
        self.cfg, self.dt_s = cfg, dt_s
        self.box_lo, self.box_hi = np.array(cfg.workspace_low_m), np.array(cfg.workspace_high_m)
        self.max_step_m = cfg.max_ee_speed_m_s * dt_s
        self.joint_lo = np.asarray(joint_lower) + cfg.joint_margin_rad    # (N_ARMS, n_joints)
        self.joint_hi = np.asarray(joint_upper) - cfg.joint_margin_rad
        self.clips = dict(workspace=0, gripper=0, step=0)  # ticks clipped, by limit, over the whole run
        self.reset()

    def reset(self):
        """A new episode: the arms start anew, so no step limit from the last target, no overrun streak."""
        self.last = None            # last commanded target: the reference of the step limit
        self.overrun_streak = 0

    def check_state(self, state, now_s):
        if not all(np.isfinite(state[k]).all() for k in ("joint_pos", "ee_pos", "gripper", "obs") if state[k] is not None):
            return "non-finite robot state (NaN/inf)"
        age_s = now_s - state["stamp_s"]
        if age_s > self.cfg.state_timeout_s:
            return f"stale robot state: {age_s * 1e3:.1f} ms old (watchdog {self.cfg.state_timeout_s * 1e3:.0f} ms)"
        bad = (state["joint_pos"] < self.joint_lo) | (state["joint_pos"] > self.joint_hi)
        if bad.any():
            arm, joint = np.argwhere(bad)[0]
            return f"arm {arm} joint {joint} at {state['joint_pos'][arm, joint]:.3f} rad is within the limit margin"
        return None

    def check_timing(self, missed):
        self.overrun_streak = self.overrun_streak + 1 if missed else 0
        if self.overrun_streak >= self.cfg.max_overrun_streak:
            return f"{self.overrun_streak} consecutive missed deadlines at {1 / self.dt_s:g} Hz"
        return None

    def filter(self, target):
        """Policy target (N_ARMS, 4) -> (safe target, fault)."""
        target = np.asarray(target, dtype=np.float64)
        if target.shape != (N_ARMS, 4) or not np.isfinite(target).all():
            return None, f"non-finite or mis-shaped action {target.tolist()} (expected ({N_ARMS}, 4))"
        safe = target.copy()
        safe[:, :3] = np.clip(safe[:, :3], self.box_lo, self.box_hi)
        safe[:, 3] = np.clip(safe[:, 3], 0.0, 1.0)
        self.clips["workspace"] += int((safe[:, :3] != target[:, :3]).any())
        self.clips["gripper"] += int((safe[:, 3] != target[:, 3]).any())
        if self.last is not None:  # rate limit: each arm's EE target moves <= max_step_m per tick
            step = safe[:, :3] - self.last[:, :3]
            norm = np.linalg.norm(step, axis=1, keepdims=True)
            if (norm > self.max_step_m).any():
                safe[:, :3] = self.last[:, :3] + step * np.minimum(1.0, self.max_step_m / np.maximum(norm, 1e-12))
                self.clips["step"] += 1
        self.last = safe
        return safe, None

    @staticmethod
    def hold(state):
        """Target that keeps the arms where they are: measured EE, gripper at its opening."""
        g = 1.0 - np.clip(state["gripper"] / envs.MAX_OPENING, 0.0, 1.0)
        return np.concatenate([state["ee_pos"], g[:, None]], axis=1)   # (N_ARMS, 4)


# ----------------------------------------------------------------------------- backends
# Interface: reset(seed) (sim: new episode), sync(now_s) -> physics substeps run (real robots
# run their own controllers: 0), read_state() -> dict(stamp_s, joint_pos (N_ARMS, n_joints),
# ee_pos (N_ARMS, 3), gripper (N_ARMS,) opening in m, obs (Do,) or None), command(target),
# success(), stop(). joint_lower/joint_upper (N_ARMS, n_joints), max_policy_steps per episode.

class SimBackend:
    """The bimanual task of envs.py advanced in wall-clock real time. Each sync runs the
    physics substeps (1 / physics_hz s each, 120 Hz) that are due by the monotonic clock, so
    simulated time tracks real time at any --hz: at 100 Hz a tick runs 1 or 2 substeps, at
    500 Hz most ticks run none. The latest command is turned into joint targets (IK) once
    before each batch of substeps: the physics only samples motor targets there. The state
    changes only at substeps; its stamp is the wall-clock time of the last one."""

    def __init__(self, cfg):
        self.env = envs.make_env(TASK, render_mode="rgb_array" if cfg.video else None)
        self.u = self.env.unwrapped
        self.physics_hz = self.u.cfg.physics_hz
        self.max_policy_steps = self.env.spec.max_episode_steps   # 60 policy steps = 6 s
        self.joint_lower = np.array([arm.lower for arm in self.u.arms])
        self.joint_upper = np.array([arm.upper for arm in self.u.arms])
        self.max_catchup = round(self.physics_hz / POLICY_HZ)       # never run more than 0.1 s at once
        self.lag_s = 0.0  # simulated time dropped because the process fell behind
        self.reset(seed=None)

    def reset(self, seed):
        self.env.reset(seed=seed)
        self.t0_s, self.n_physics, self.target, self.state = time.monotonic(), 0, None, None

    def sync(self, now_s):
        due = int((now_s - self.t0_s) * self.physics_hz) - self.n_physics
        if due <= 0:
            return 0
        if due > self.max_catchup:  # stalled: drop time rather than burst (it shows up as lag_s)
            self.t0_s += (due - self.max_catchup) / self.physics_hz
            self.lag_s += (due - self.max_catchup) / self.physics_hz
            due = self.max_catchup
        if self.target is not None:
            self.u.apply_action(self.target.ravel())
        self.u.step_physics(due)
        self.n_physics += due
        self.state = None
        return due

    def read_state(self):
        if self.state is None:  # cached between substeps: nothing moves in between
            arms = self.u.arm_state()
            self.state = dict(stamp_s=self.t0_s + self.n_physics / self.physics_hz,
                              joint_pos=np.stack([a["joint_pos"] for a in arms]),
                              ee_pos=np.stack([a["ee_pos"] for a in arms]),
                              gripper=np.array([a["gripper"] for a in arms]), obs=self.u.get_obs())
        return self.state

    def command(self, target):
        self.target = np.asarray(target)  # applied at the next physics substep (sync)

    def success(self):
        return self.u.score()[1]

    def render(self):
        """A frame (H, W, 3) uint8, off the clock: simulated time stands still while it renders."""
        t_s = time.monotonic()
        frame = self.u.render()
        self.pause(time.monotonic() - t_s)
        return frame

    def pause(self, seconds):
        """Simulated time stands still for these seconds, spent off the clock (rendering, a camera's start)."""
        self.t0_s, self.state = self.t0_s + seconds, None  # restamp the state too

    def stop(self):
        if self.env is not None:  # hold: joint targets for the EE where it is now, then release
            self.u.apply_action(Safety.hold(self.read_state()).ravel())
            self.env.close()
            self.env = None


class URBackend:
    """Two UR arms through ur_rtde (`pip install ur_rtde`). UNTESTED ON HARDWARE in this repo.
    A user must configure: --ur-ips (arm 0 = the right arm at y = -0.35 m); each base frame
    axis-aligned with the sim's world frame at envs.BimanualEnv.ARM_BASES (targets are
    translated, not rotated: calibrate); the tool orientation is held as found at start (point
    the grippers down first); each gripper is one digital output (--ur-gripper-pin), its
    opening estimated from the command. A pixel policy sees the bar through --camera. A state
    policy also observes the bar's ends, which no UR sensor gives: pass object_obs() -> (6,)
    world positions from your perception and call run(cfg, URBackend(cfg, object_obs), policy)."""

    max_policy_steps = None  # one long episode, until --duration-s

    def __init__(self, cfg, object_obs=None):
        import rtde_control, rtde_io, rtde_receive   # imported only when this backend is chosen
        ips = [ip.strip() for ip in cfg.ur_ips.split(",") if ip.strip()]
        if len(ips) != N_ARMS:
            raise ValueError(f"--ur-ips needs {N_ARMS} comma-separated IPs, got {cfg.ur_ips!r}")
        self.recv = [rtde_receive.RTDEReceiveInterface(ip) for ip in ips]
        self.ctrl = [rtde_control.RTDEControlInterface(ip) for ip in ips]
        self.io = [rtde_io.RTDEIOInterface(ip) for ip in ips]
        self.cfg, self.object_obs, self.dt_s = cfg, object_obs, 1.0 / cfg.hz
        self.base_m = np.array(envs.BimanualEnv.ARM_BASES)
        self.rotvec = [np.array(r.getActualTCPPose()[3:]) for r in self.recv]
        self.joint_lower, self.joint_upper = np.full((N_ARMS, 6), -2 * np.pi), np.full((N_ARMS, 6), 2 * np.pi)
        self.g = np.zeros(N_ARMS)
        self.stamps = [(None, time.monotonic())] * N_ARMS   # (controller timestamp, host time it changed)

    def reset(self, seed):
        pass

    def sync(self, now_s):
        return 0

    def read_state(self):
        now_s, ee, q = time.monotonic(), [], []
        for i, r in enumerate(self.recv):
            ts = r.getTimestamp()
            if ts != self.stamps[i][0]:   # the watchdog sees how long a controller has been silent
                self.stamps[i] = (ts, now_s)
            ee.append(np.array(r.getActualTCPPose()[:3]) + self.base_m[i])
            q.append(np.array(r.getActualQ()))
        gripper = envs.MAX_OPENING * (1.0 - self.g)
        arm_obs = np.concatenate([np.append(e, o) for e, o in zip(ee, gripper)])
        obs = None if self.object_obs is None else np.concatenate([arm_obs, self.object_obs()]).astype(np.float32)
        return dict(stamp_s=min(s for _, s in self.stamps), joint_pos=np.stack(q), ee_pos=np.stack(ee),
                    gripper=gripper, obs=obs)

    def command(self, target):
        for i, c in enumerate(self.ctrl):
            pose = [*(target[i, :3] - self.base_m[i]), *self.rotvec[i]]
            c.servoL(pose, 0.0, 0.0, self.dt_s, 0.1, 300)  # speed/accel unused; lookahead 0.1 s, gain 300
            if (target[i, 3] > 0.5) != (self.g[i] > 0.5):
                self.io[i].setStandardDigitalOut(self.cfg.ur_gripper_pin, bool(target[i, 3] > 0.5))
            self.g[i] = target[i, 3]

    def success(self):
        return False

    def stop(self):
        for c in self.ctrl:
            c.servoStop()
            c.stopScript()


# ----------------------------------------------------------------------------- cameras
# Interface: reset(seed) (a new episode; returns once a frame of it is out), request(stamp_s) (a policy step began at
# the state stamped stamp_s: a camera that renders on request renders it), frame() -> (stamp_s, images (V, 3, H, W)
# uint8) or None, stats(), close(). A frame's stamp is the monotonic time of what it shows, as the state's stamp is.

def _render_worker(conn, frame, stamp):
    """SimCamera's process: a mirror of the task's scene, teleported to each posted pose and rendered."""
    env = envs.make_env(TASK, obs_mode="pixels").unwrapped
    out, times = np.frombuffer(frame.get_obj(), np.uint8), []
    conn.send("ready")
    while True:
        msgs = [conn.recv()]
        while conn.poll():  # render only the newest pose; every reset in order
            msgs.append(conn.recv())
        pose = None
        for kind, *args in msgs:
            if kind == "stop":
                conn.send(times)
                return
            if kind == "reset":
                env.reset(seed=args[0])
            pose = args if kind == "pose" else pose
        if pose is not None:
            t_s = time.monotonic()
            env.set_scene_pose(pose[1])
            images = env.camera_images()
            times.append(time.monotonic() - t_s)
            with frame.get_lock():
                out[:] = images.ravel()
                stamp[0] = pose[0]


class SimCamera:
    """The sim task's fixed cameras (envs: CAMERAS, SimConfig.camera_hw), rendered in a process of their own, so a
    frame (PyBullet's tiny renderer: tens of ms) never takes a tick: at each policy step the loop posts the scene's
    pose (arm joints, object poses: ~0.1 ms), the process teleports a mirror of the scene there, renders it and
    publishes the frame, stamped with the pose's time, in shared memory."""

    def __init__(self, backend):
        ctx = mp.get_context("spawn")
        env = backend.u
        self.backend, self.shape = backend, (len(env.CAMERAS), 3, *env.cfg.camera_hw)
        self._frame = ctx.Array(ctypes.c_uint8, int(np.prod(self.shape)))   # with a lock: no torn frames
        self._stamp = ctx.RawArray(ctypes.c_double, 1)                      # written under the frame's lock
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_render_worker, args=(child, self._frame, self._stamp), daemon=True)
        self._proc.start()
        self.render_s = None
        if not self._conn.poll(60.0):  # its imports and scene: seconds
            self._proc.terminate()
            raise RuntimeError("the sim camera process did not start in 60 s")
        self._conn.recv()

    def reset(self, seed, timeout_s=5.0):  # the wait is off the sim's clock: nothing moves until it ends
        t_s, stamp_s = time.monotonic(), self.backend.read_state()["stamp_s"]
        try:
            self._conn.send(("reset", seed))
            self._conn.send(("pose", stamp_s, self.backend.u.scene_pose()))
        except OSError as e:  # the process is gone
            raise RuntimeError(f"the sim camera process is gone ({e})") from None
        t_end_s = time.monotonic() + timeout_s
        while self._stamp[0] != stamp_s:
            if time.monotonic() > t_end_s or not self._proc.is_alive():
                raise RuntimeError(f"the sim camera process gave no frame in {timeout_s:g} s")
            time.sleep(0.001)
        self.backend.pause(time.monotonic() - t_s)

    def request(self, stamp_s):
        try:
            self._conn.send(("pose", stamp_s, self.backend.u.scene_pose()))
        except OSError:  # the process is gone: no frame comes, and the loop stops on the stale one
            pass

    def frame(self):
        with self._frame.get_lock():
            if not self._stamp[0]:
                return None
            return self._stamp[0], np.frombuffer(self._frame.get_obj(), np.uint8).reshape(self.shape).copy()

    def stats(self):
        return dict(source="sim (rendered in its own process at the policy rate)", shape=list(self.shape),
                    frames=None if self.render_s is None else len(self.render_s),
                    render_ms=_percentiles(self.render_s or []))

    def close(self):
        if self._proc.is_alive():
            self._conn.send(("stop",))
            if self._conn.poll(5.0):
                self.render_s = self._conn.recv()
        self._proc.terminate()


class ThreadCamera:
    """Frames from grab() -> (V, 3, H, W) uint8, called over and over on a thread of its own (a camera's read
    blocks until its next frame, without the GIL); each frame stamped when grab returned. An exception in grab
    ends the frames (the loop then stops on the stale frame) and is reported in stats()."""

    def __init__(self, grab, name="callable"):
        self.grab, self.name, self._frame, self.grab_s, self.error = grab, name, None, [], None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                t_s = time.monotonic()
                images = np.ascontiguousarray(self.grab(), dtype=np.uint8)
                now_s = time.monotonic()
                self.grab_s.append(now_s - t_s)
                self._frame = (now_s, images)
        except Exception as e:  # noqa: BLE001 -- any failure of a user's camera ends its frames
            self.error = f"{type(e).__name__}: {e}"

    def reset(self, seed, timeout_s=10.0):
        t_end_s = time.monotonic() + timeout_s
        while self._frame is None:
            if time.monotonic() > t_end_s or self.error:
                raise RuntimeError(f"camera {self.name} gave no frame in {timeout_s:g} s ({self.error or 'no error'})")
            time.sleep(0.001)

    def request(self, stamp_s):
        pass  # free-running: the loop waits for the first frame newer than the step's state

    def frame(self):
        return self._frame

    def stats(self):
        return dict(source=self.name, shape=None if self._frame is None else list(self._frame[1].shape),
                    frames=len(self.grab_s), grab_ms=_percentiles(self.grab_s), error=self.error)

    def close(self):
        self._stop.set()
        getattr(self.grab, "close", lambda: None)()


def opencv_grab(indices, hw):
    """grab() for ThreadCamera from OpenCV devices (`pip install opencv-python`), one per view: each frame resized
    to hw = (H, W) and made RGB (V, 3, H, W). UNTESTED ON HARDWARE in this repo; grab.close() releases them."""
    import cv2  # imported only when a real camera is used
    caps = [cv2.VideoCapture(i) for i in indices]
    if closed := [i for i, c in zip(indices, caps) if not c.isOpened()]:
        raise RuntimeError(f"cannot open OpenCV camera(s) {closed}")

    def grab():
        views = []
        for i, cap in zip(indices, caps):
            ok, bgr = cap.read()
            if not ok:
                raise RuntimeError(f"OpenCV camera {i} gave no frame")
            rgb = cv2.cvtColor(cv2.resize(bgr, (hw[1], hw[0]), interpolation=cv2.INTER_AREA), cv2.COLOR_BGR2RGB)
            views.append(rgb.transpose(2, 0, 1))
        return np.stack(views)

    grab.close = lambda: [cap.release() for cap in caps]
    return grab


# ----------------------------------------------------------------------------- loop
def agent_pos(state):
    """A pixel policy's proprioception (4 * N_ARMS,): per arm EE xyz and gripper opening, as envs' agent_pos."""
    return np.concatenate([np.append(e, g) for e, g in zip(state["ee_pos"], state["gripper"])]).astype(np.float32)


def policy_input(hist):
    """The obs history (To entries, oldest first) as predict_action's batch of one."""
    if isinstance(hist[0], dict):
        return {key: np.stack([h[key] for h in hist])[None] for key in hist[0]}
    return np.stack(hist)[None]


def run_episode(cfg, robot, policy, safety, lat, counts, t_end_s, frames=None, camera=None):
    """One episode of ticks at cfg.hz until success, the time limit or t_end_s.
    Adds to lat (seconds per stage) and counts (ticks, missed, skipped) in place, and a rendered
    frame per policy step to frames, if a list. With a camera (a pixel policy), policy step j's
    observation is the first frame stamped at or after the step's state, with the arms' pose of
    that state; a chunk due before that frame has come waits for it, the arms holding meanwhile.
    A step that begins while the last step's frame is still awaited adds no observation of its own.
    Returns (outcome, fault): outcome 'success', 'timeout', 'unfinished' or 'fault'."""
    dt_s, dt_policy_s = 1.0 / cfg.hz, 1.0 / POLICY_HZ
    spin_s = min(cfg.spin_s, dt_s / 4)  # never spin a whole tick: a SCHED_FIFO spinner gets throttled
    To, Ta = (policy.n_obs_steps, policy.n_action_steps) if policy is not None else (1, 1)
    hist, chunk, chunk_j0, j_last = [], None, 0, -1
    w_from = w_to = None          # the segment being interpolated: targets of steps j-1 and j
    state, k, t0_s = None, 0, time.monotonic()
    pending = obs_stamp_s = e2e_from_s = None  # pending: (stamp, agent_pos) of the step waiting for its frame
    try:
        while True:
            t_a = time.monotonic()
            if robot.sync(t_a):                                    # sim: physics due by the clock
                lat["physics"].append(time.monotonic() - t_a)
            t_b = time.monotonic()
            state = robot.read_state()
            t_c = time.monotonic()
            lat["state_read"].append(t_c - t_b)
            fault = safety.check_state(state, t_c)
            if camera is not None and not fault:
                newest = camera.frame()
                if pending is not None and t_c - pending[0] > cfg.camera_timeout_s:  # the step's frame is late
                    error = camera.stats().get("error")
                    fault = (f"stale camera frame: none of the policy step's state {(t_c - pending[0]) * 1e3:.0f} ms "
                             f"on, the newest {(t_c - newest[0]) * 1e3:.0f} ms old (timeout "
                             f"{cfg.camera_timeout_s * 1e3:.0f} ms)" + (f"; the camera failed: {error}" if error else ""))
            if fault:
                return "fault", fault
            j = int(k * dt_s / dt_policy_s + 1e-9)                 # policy step this tick falls in
            if j != j_last:                                        # first tick of policy step j
                if frames is not None:                             # off the clock, for the loop too
                    t_s = time.monotonic()
                    frames.append(robot.render())
                    paused_s = time.monotonic() - t_s
                    t_a, t_c, t0_s, t_end_s = t_a + paused_s, t_c + paused_s, t0_s + paused_s, t_end_s + paused_s
                    counts["paused_s"] += paused_s
                if j > 0 and robot.success():                      # scored after each step, as env.step
                    return "success", None
                if robot.max_policy_steps is not None and j >= robot.max_policy_steps:
                    return "timeout", None
                w_from = Safety.hold(state) if w_to is None else w_to
                i = j - chunk_j0
                w_to = chunk[i].reshape(N_ARMS, 4) if chunk is not None and i < Ta else None
                if camera is not None:                             # pixels: the obs comes with the frame
                    if pending is None:                            # (a camera still busy with the last is not rushed)
                        camera.request(state["stamp_s"])
                        pending = (state["stamp_s"], agent_pos(state))
                elif state["obs"] is not None:                     # history at the policy rate, (To, Do)
                    hist, obs_stamp_s = (hist or [state["obs"]] * To)[1:] + [state["obs"]], state["stamp_s"]
                j_last = j
            if pending is not None and newest[0] >= pending[0]:    # this step's frame has come
                lat["camera"].append(t_c - newest[0])
                obs = {"image": newest[1], "agent_pos": pending[1]}
                hist, obs_stamp_s, pending = (hist or [obs] * To)[1:] + [obs], pending[0], None
            frac = k * dt_s / dt_policy_s - j                      # position within step j, [0, 1)
            target = w_from if w_to is None else w_from + (w_to - w_from) * frac
            target, fault = safety.filter(target)
            if fault:
                return "fault", fault
            robot.command(target)
            t_d = time.monotonic()
            lat["command"].append(t_d - t_c)
            if e2e_from_s is not None:                             # the first command of a new chunk
                lat["end_to_end"].append(t_d - e2e_from_s)
                e2e_from_s = None
            if w_to is None and pending is None:  # next chunk, from this step's obs: after the command, before the next tick
                if policy is None:
                    w_to = w_from                                  # dry run: hold
                else:
                    chunk = policy.predict_action(policy_input(hist))[0, policy.executed]  # (Ta, Da)
                    chunk_j0, w_to, e2e_from_s = j, chunk[0].reshape(N_ARMS, 4), obs_stamp_s
                    lat["inference"].append(time.monotonic() - t_d)
            # ---- absolute deadlines: tick k must end by t0 + (k + 1) dt
            k += 1
            now_s = time.monotonic()
            lat["tick"].append(now_s - t_a)
            counts["ticks"] += 1
            missed = now_s > t0_s + k * dt_s
            counts["missed"] += missed
            if now_s > t0_s + (k + 1) * dt_s:                      # more than a period late: skip ticks
                k_now = int((now_s - t0_s) / dt_s)
                counts["skipped"] += k_now - k
                k = k_now
            fault = safety.check_timing(missed)
            if fault:
                return "fault", fault
            if t0_s + k * dt_s >= t_end_s:                         # the next tick would start after the end
                return "unfinished", None
            wait_until(t0_s + k * dt_s, spin_s)
    finally:  # on a fault (or an exception) the last safe command is a hold where the arms are
        if state is not None and all(np.isfinite(state[key]).all() for key in ("ee_pos", "gripper")):
            robot.command(Safety.hold(state))


def run(cfg, robot, policy=None, camera=None):
    """Run episodes at cfg.hz for cfg.duration_s; stop both arms (and close the camera) whatever happens; return
    stats. A pixel policy needs a camera (SimCamera, ThreadCamera) whose frames have its image shape."""
    pixels = getattr(policy, "obs_mode", "state") == "pixels"
    if pixels != (camera is not None):
        raise ValueError("a pixel policy needs a camera, and only a pixel policy uses one")
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    if policy is not None:  # warm up: the first calls allocate
        To = policy.n_obs_steps
        obs = ({"image": np.zeros((1, To, *policy.image_shape), np.uint8),
                "agent_pos": np.zeros((1, To, AGENT_POS_DIM), np.float32)} if pixels
               else np.zeros((1, To, OBS_DIM), np.float32))
        for _ in range(20):
            policy.predict_action(obs)
    lat = {s: [] for s in LATENCY_KEYS}
    totals = dict(ticks=0, missed=0, skipped=0, paused_s=0.0)  # paused_s: rendering --video frames
    safety = Safety(cfg, 1.0 / cfg.hz, robot.joint_lower, robot.joint_upper)
    outcomes, fault, reset_s, load_start = [], None, 0.0, os.getloadavg()[0]
    rt_priority = _set_rt_priority(cfg.rt_priority)
    gc.collect()
    gc.freeze()  # objects made so far are never re-scanned: shorter collector pauses in the loop
    t_start_s = time.monotonic()
    t_end_s = t_start_s + cfg.duration_s
    try:
        while fault is None and time.monotonic() < t_end_s + totals["paused_s"]:
            t_s = time.monotonic()
            seed, frames = envs.eval_seed(cfg.seed, len(outcomes)), [] if len(outcomes) < cfg.video else None
            robot.reset(seed)                                      # between episodes: off the clock
            if camera is not None:
                try:
                    camera.reset(seed)
                except RuntimeError as e:
                    fault = f"camera: {e}"
                    break
            reset_s += time.monotonic() - t_s
            safety.reset()
            outcome, fault = run_episode(cfg, robot, policy, safety, lat, totals, t_end_s + totals["paused_s"], frames,
                                         camera)
            outcomes.append(outcome)
            if frames:
                envs.write_video(os.path.join(cfg.video_dir, envs.video_name(TASK, seed, outcome)), frames, POLICY_HZ)
            if outcome == "unfinished":                     # the run's time is up
                break
    except KeyboardInterrupt:
        fault = "interrupted (Ctrl-C)"
        outcomes.append("interrupted")
    finally:
        robot.stop()
        if camera is not None:
            camera.close()
        if rt_priority:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
    elapsed_s = time.monotonic() - t_start_s
    n_done = sum(o in ("success", "timeout") for o in outcomes)
    n_success = outcomes.count("success")
    stats = dict(
        backend=cfg.backend, hz=cfg.hz, policy_hz=POLICY_HZ, dry_run=policy is None, duration_s=round(elapsed_s, 2),
        ticks=totals["ticks"], deadline_misses=totals["missed"], ticks_skipped=totals["skipped"],
        deadline_met_fraction=1 - (totals["missed"] + totals["skipped"]) / max(1, totals["ticks"] + totals["skipped"]),
        achieved_hz=totals["ticks"] / max(1e-9, elapsed_s - reset_s - totals["paused_s"]),
        video_render_s=round(totals["paused_s"], 2),
        latency_ms={s: _percentiles(lat[s]) for s in LATENCY_KEYS}, inference_calls=len(lat["inference"]),
        safety_clips=safety.clips, fault=fault, camera=None if camera is None else camera.stats(),
        episodes=n_done, successes=n_success, success_rate=n_success / n_done if n_done else None,
        ci95=envs.wilson_interval(n_success, n_done), episodes_unfinished=len(outcomes) - n_done,
        sim_lag_s=round(getattr(robot, "lag_s", 0.0), 4), load_avg_1m=[round(load_start, 2), round(os.getloadavg()[0], 2)],
        torch_threads=cfg.torch_threads, rt_priority=rt_priority, ckpt=cfg.ckpt or None)
    return stats


# ----------------------------------------------------------------------------- CLI
def parse(argv):
    """Flags -> RobotConfig; a bad flag or value exits with one line."""
    return dbp.build_config(RobotConfig, vars(dbp.add_config_args(dbp.make_parser(__doc__), RobotConfig).parse_args(argv)))


def print_stats(st):
    print(f"{st['backend']} at {st['hz']:g} Hz for {st['duration_s']} s: achieved {st['achieved_hz']:.1f} Hz, deadlines met "
          f"{st['deadline_met_fraction']:.4f} ({st['deadline_misses']} missed, {st['ticks_skipped']} skipped, "
          f"{st['ticks']} ticks); ticks clipped by safety {st['safety_clips']}")
    for name, q in st["latency_ms"].items():
        if q:
            print(f"  {name:10s} p50 {q['p50']:7.3f} ms  p99 {q['p99']:7.3f} ms  max {q['max']:7.3f} ms  (n={q['n']})")
    if st["episodes"]:
        print(f"  success {st['successes']}/{st['episodes']} = {st['success_rate']:.2f}, 95% CI [{st['ci95'][0]:.2f}, {st['ci95'][1]:.2f}] "
              f"(not counted: {st['episodes_unfinished']} cut off by the end of the run)")
    if st["fault"]:
        print(f"STOPPED: {st['fault']}; both arms stopped")


def main(argv=None):
    cfg = parse(sys.argv[1:] if argv is None else argv)
    policy = camera = None
    if not cfg.dry_run:  # check the checkpoint before any arm moves
        if not cfg.ckpt:
            sys.exit("error: --ckpt PATH is required (or --dry-run to hold position without a policy)")
        try:
            policy = load_policy(cfg.ckpt)
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
        views = len(cfg.camera.split(",")) if cfg.backend == "ur" else len(envs.BimanualEnv.CAMERAS)
        if policy.obs_mode == "state":
            if cfg.backend == "ur":
                sys.exit("error: this state policy observes the bar, which the ur backend cannot sense: use a pixel "
                         "checkpoint with --camera, --dry-run, or robot.run(cfg, URBackend(cfg, object_obs=...), policy)")
            policy = dbp.NumpyPolicy(policy)                       # NumPy on the CPU: the fastest at batch 1
        elif cfg.backend == "ur" and not cfg.camera:
            sys.exit("error: a pixel checkpoint on --backend ur needs --camera (OpenCV device indices)")
        elif cfg.backend == "sim" and policy.image_shape != (views, 3, *envs.SimConfig().camera_hw):
            sys.exit(f"error: {cfg.ckpt} takes images {policy.image_shape}; the sim's cameras give "
                     f"{(views, 3, *envs.SimConfig().camera_hw)}")
        elif policy.image_shape[0] != views:
            sys.exit(f"error: {cfg.ckpt} takes {policy.image_shape[0]} camera view(s); --camera names {views}")
        if getattr(policy, "obs_mode", "state") == "pixels":              # a state policy runs in NumPy, on the CPU
            policy.to(dbp.resolve_device(cfg.device))
    try:
        robot = SimBackend(cfg) if cfg.backend == "sim" else URBackend(cfg)
    except (ImportError, ValueError, RuntimeError) as e:  # ur_rtde missing, bad IPs, no connection
        sys.exit(f"error: cannot start the {cfg.backend} backend: {e}")
    if getattr(policy, "obs_mode", "state") == "pixels":
        try:
            camera = SimCamera(robot) if cfg.backend == "sim" else ThreadCamera(
                opencv_grab([int(i) for i in cfg.camera.split(",")], policy.image_shape[2:]), f"opencv {cfg.camera}")
        except (ImportError, RuntimeError) as e:  # opencv-python missing, a device that does not open
            robot.stop()
            sys.exit(f"error: cannot start the camera: {e}")
    stats = run(cfg, robot, policy, camera)
    print_stats(stats)
    if cfg.stats_json:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.stats_json)), exist_ok=True)
        with open(cfg.stats_json, "w") as f:
            json.dump(stats, f, indent=2)
        print(f"wrote {cfg.stats_json}")
    return 1 if stats["fault"] else 0


if __name__ == "__main__":
    sys.exit(main())
