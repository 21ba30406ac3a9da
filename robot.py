"""Dual-arm real-time control loop: a trained DBP policy drives two arms at --hz (default 100).

The deployment side of Gao et al. 2026 (arXiv 2604.03540; the paper: dual-arm UR5, 105.2 Hz,
9.5 ms end to end). Layers, top to bottom:
  policy   DBPPolicy at the task's control rate (10 Hz): one chunk of Ta targets per inference,
           receding horizon, obs history To sampled at the policy rate; it runs in a worker process
           (robot_io.PolicyWorker): the loop posts an observation and picks the chunk up when it is
           done, skipping the targets whose time has passed (each chunk carries its observation's stamp);
  loop     fixed rate --hz on time.monotonic() absolute deadlines, sleep-then-spin waits; it
           interpolates linearly from one policy target to the next (target a_j is where the
           EE should be at the end of policy step j);
  safety   workspace box, EE speed, gripper bounds, joint limits, NaN/inf, stale or jumped state clock,
           stale camera frame, a dead or silent policy worker, a lost connection or refused command,
           overrun streak -> hold position and stop; try/finally stops both arms;
  camera   a pixel checkpoint (train.py --obs pixels) sees frames, off the loop's thread: 'sim'
           renders its cameras in a process of their own, 'ur' reads OpenCV devices (--camera);
  backend  'sim': the bimanual PyBullet task (envs.py) in a process of its own, stepping its physics in
           wall-clock real time as a controller would; 'ur': two UR arms by IP through ur_rtde
           (untested on hardware, see robot_io.URBackend). --inject plays a fault on the sim.

    python robot.py --ckpt runs/pretrain-bimanual-s0/ckpt.pt --duration-s 60 --stats-json stats.json
    python robot.py --ckpt runs/px/bimanual/ckpt.pt   # a pixel checkpoint: the sim renders its cameras
    python robot.py --ckpt CKPT --inject freeze@2.5   # the state freezes 2.5 s in: the loop holds and stops
    python robot.py --record runs/rec --episodes 100 --duration-s 900   # the expert demonstrates; train.py --demos-file
    python robot.py --dry-run --duration-s 5          # no policy: the arms hold position
    python robot.py --help                            # every flag, with its meaning
"""
import gc
import json
import os
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch

import cli
import dbp
import envs
from dbp import option
from robot_io import (ACTION_DIM, FAULTS, N_ARMS, OBS_DIM, POLICY_HZ, TASK, ExpertSource, InlinePolicy, PolicyWorker,
                      ReplaySource, SimBackend, SimCamera, ThreadCamera, URBackend, cpu_plan, hold_target, opencv_grab,
                      percentiles)

AGENT_POS_DIM = 4 * N_ARMS                       # a pixel policy's agent_pos: per arm EE xyz, gripper opening
LATENCY_KEYS = ("state_read", "inference", "command", "tick",  # what the loop times; camera: a frame's age when
                "camera", "end_to_end")  # taken, end_to_end: observation -> first command of its chunk


@dataclass
class RobotConfig(cli.SeedConfig, cli.DeviceConfig):  # seed: sim episode i resets with envs.eval_seed(seed, i), as in evaluation
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
    loop_cpu: str = option("auto", "pin the loop thread to a CPU of its own: 'auto' (the last CPU, when there are "
                           ">= 2; the sim, policy and camera processes get the others), a CPU index, or 'off'")
    rt_priority: int = option(-1, "run the loop thread SCHED_FIFO at this priority (1-99; needs root or "
                              "CAP_SYS_NICE): other threads then cannot preempt a tick. -1: 50 where permitted, "
                              "else normal scheduling (the stats say which); 0: normal scheduling", ge=-1, le=99)
    ur_ips: str = option("", "--backend ur: IPs of the right (arm 0, -y) and left arm, comma-separated")
    ur_gripper_pin: int = option(0, "--backend ur: standard digital output that closes each arm's gripper", ge=0, le=7)
    camera: str = option("", "--backend ur with a pixel checkpoint: OpenCV device indices of its cameras, in the "
                         "checkpoint's view order, comma-separated (the sim renders its own cameras)")
    camera_timeout_s: float = option(0.25, "pixel checkpoints: stop when no camera frame of a policy step's state "
                                     "has come this long after that state (s)", gt=0.0)
    inference: str = option("process", "'process': the policy runs in a worker process and a slow inference delays "
                            "a chunk, never a tick; 'inline': in the loop's thread after a tick's command (debugging)")
    inference_timeout_s: float = option(0.2, "stop when the policy worker has not answered this long after an "
                                        "observation was posted (s)", gt=0.0)
    record: str = option("", "record demonstrations into DIR/bimanual_recorded.npz (envs' demo format, with stamps "
                         "and a success label per episode; appended to): a --teleop source drives instead of a policy")
    teleop: str = option("expert", "--record's demonstrator: 'expert' (sim: the scripted expert) or 'replay:FILE' "
                         "(the actions of a demo file, open loop); your own: robot.Recorder(source, path) in robot.run")
    episodes: int = option(0, "end the run after this many finished episodes (0: only --duration-s ends it)", ge=0)
    inject: str = option("", f"sim: play a fault FAULT@SECONDS into the run, e.g. freeze@2.5; FAULT one of "
                         f"{', '.join(FAULTS)} (the state: freeze, clock-jump; the connection: disconnect, "
                         f"read-timeout, refuse; the policy worker: worker-crash, worker-hang)")

    def check(self):
        if self.backend not in ("sim", "ur"):
            raise dbp.ConfigError("backend", self.backend, "must be 'sim' or 'ur'")
        if self.record and (self.ckpt or self.dry_run):
            raise dbp.ConfigError("record", self.record, "drives with --teleop: leave out --ckpt and --dry-run")
        if self.teleop != "expert" and not self.teleop.startswith("replay:"):
            raise dbp.ConfigError("teleop", self.teleop, "must be 'expert' or 'replay:FILE'")
        if self.record and self.teleop == "expert" and self.backend != "sim":
            raise dbp.ConfigError("teleop", self.teleop, "the expert acts on the sim's state: use replay:FILE on arms")
        if self.loop_cpu not in ("auto", "off") and not self.loop_cpu.isdigit():
            raise dbp.ConfigError("loop_cpu", self.loop_cpu, "must be 'auto', 'off' or a CPU index")
        if self.inference not in ("process", "inline"):
            raise dbp.ConfigError("inference", self.inference, "must be 'process' or 'inline'")
        if self.inject:
            fault, _, at = self.inject.partition("@")
            if fault not in FAULTS or not at.replace(".", "", 1).isdigit():
                raise dbp.ConfigError("inject", self.inject, f"must be FAULT@SECONDS, FAULT one of {', '.join(FAULTS)}")
            if self.backend != "sim":
                raise dbp.ConfigError("inject", self.inject, "needs --backend sim")
            if fault.startswith("worker") and (self.dry_run or self.record or self.inference != "process"):
                raise dbp.ConfigError("inject", self.inject, "needs a policy in its worker (--ckpt, --inference process)")
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
    """SCHED_FIFO for this thread; returns the priority set (0 when off or not permitted). -1: 50 if permitted."""
    if priority == 0:
        return 0
    try:
        os.sched_setscheduler(0, os.SCHED_FIFO, os.sched_param(50 if priority < 0 else priority))
        return 50 if priority < 0 else priority
    except (OSError, AttributeError) as e:
        if priority > 0:
            print(f"warning: --rt-priority {priority} not applied ({e}); running at normal priority")
        return 0


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
        if age_s < -self.cfg.state_timeout_s:
            return f"robot state stamped {-age_s * 1e3:.0f} ms ahead of the loop's clock: the robot's clock jumped"
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

    hold = staticmethod(hold_target)


# ----------------------------------------------------------------------------- loop
def agent_pos(state):
    """A pixel policy's proprioception (4 * N_ARMS,): per arm EE xyz and gripper opening, as envs' agent_pos."""
    return np.concatenate([np.append(e, g) for e, g in zip(state["ee_pos"], state["gripper"])]).astype(np.float32)


def policy_input(hist):
    """The obs history (To entries, oldest first) as predict_action's batch of one."""
    if isinstance(hist[0], dict):
        return {key: np.stack([h[key] for h in hist])[None] for key in hist[0]}
    return np.stack(hist)[None]


def run_episode(cfg, robot, worker, safety, lat, counts, t_end_s, frames=None, camera=None, inject=None):
    """One episode of ticks at cfg.hz until success, the time limit or t_end_s.
    worker: a PolicyWorker or InlinePolicy (None: hold). Adds to lat (seconds per stage) and counts (ticks,
    missed, skipped, actions_skipped, ...) in place, and a rendered frame per policy step to frames, if a list.
    A chunk computed from the observation of policy step j0 arriving in step j > j0 starts at its target for
    step j: those of steps already past are skipped. With a camera (a pixel policy), policy step j's
    observation is the first frame stamped at or after the step's state, with the arms' pose of that state;
    a chunk due before that frame has come waits for it, the arms holding meanwhile. A step that begins while
    the last step's frame is still awaited adds no observation of its own. inject: [fault, at_s] plays the fault
    on the robot or the worker once the clock passes at_s (then set to None).
    Returns (outcome, fault): outcome 'success', 'timeout', 'unfinished' or 'fault'; a fault's detection time is
    counts["fault_s"], and the hold command's, counts["hold_s"] (None when it could not be sent)."""
    dt_s, dt_policy_s = 1.0 / cfg.hz, 1.0 / POLICY_HZ
    spin_s = min(cfg.spin_s, dt_s / 4)  # never spin a whole tick: a SCHED_FIFO spinner gets throttled
    To, Ta = (worker.n_obs_steps, worker.n_action_steps) if worker is not None else (1, 1)
    hist, chunk, chunk_j0, j_last = [], None, 0, -1
    w_from = w_to = None          # the segment being interpolated: targets of steps j-1 and j
    state, k, t0_s, j = None, 0, time.monotonic(), 0
    pending = obs_stamp_s = e2e_from_s = None  # pending: (stamp, agent_pos) of the step waiting for its frame

    def fault_now(message):
        counts["fault_s"] = time.monotonic()
        return "fault", message

    def take(got):  # a finished chunk: its targets from step j on (those of steps already past are skipped)
        nonlocal chunk, chunk_j0, w_to, e2e_from_s
        chunk, stamp_s, chunk_j0, infer_s = got
        lat["inference"].append(infer_s)
        counts["actions_skipped"] += min(j - chunk_j0, Ta)
        if j - chunk_j0 < Ta:
            w_to, e2e_from_s = chunk[j - chunk_j0].reshape(N_ARMS, 4), stamp_s

    try:
        while True:
            t_a = time.monotonic()
            if inject is not None and inject[0] and t_a >= inject[1]:  # --inject: the fault starts now
                (worker if inject[0].startswith("worker") else robot).inject(inject[0])
                counts["injected_s"], inject[0] = t_a, None
            state = robot.read_state()
            t_c = time.monotonic()
            lat["state_read"].append(t_c - t_a)
            fault = safety.check_state(state, t_c) or (worker.check(t_c) if worker is not None else None)
            if not fault and pending is not None and t_c - pending[0] > cfg.camera_timeout_s:  # the step's frame is late
                newest, error = camera.frame(), camera.stats().get("error")
                fault = (f"stale camera frame: none of the policy step's state {(t_c - pending[0]) * 1e3:.0f} ms "
                         f"on, the newest {(t_c - newest[0]) * 1e3:.0f} ms old (timeout "
                         f"{cfg.camera_timeout_s * 1e3:.0f} ms)" + (f"; the camera failed: {error}" if error else ""))
            if fault:
                return fault_now(fault)
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
                        camera.request(state)
                        pending = (state["stamp_s"], agent_pos(state))
                elif state["obs"] is not None:                     # history at the policy rate, (To, Do)
                    hist, obs_stamp_s = (hist or [state["obs"]] * To)[1:] + [state["obs"]], state["stamp_s"]
                j_last = j
            if pending is not None and (newest := camera.frame())[0] >= pending[0]:  # this step's frame has come
                lat["camera"].append(t_c - newest[0])
                obs = {"image": newest[1], "agent_pos": pending[1]}
                hist, obs_stamp_s, pending = (hist or [obs] * To)[1:] + [obs], pending[0], None
            if worker is not None and (got := worker.poll()) is not None:
                take(got)
            frac = k * dt_s / dt_policy_s - j                      # position within step j, [0, 1)
            target = w_from if w_to is None else w_from + (w_to - w_from) * frac
            target, fault = safety.filter(target)
            if fault:
                return fault_now(fault)
            robot.command(target)
            t_d = time.monotonic()
            lat["command"].append(t_d - t_c)
            if e2e_from_s is not None:                             # the first command of a new chunk
                lat["end_to_end"].append(t_d - e2e_from_s)
                e2e_from_s = None
            if w_to is None and pending is None and not (worker is not None and worker.busy()):
                if worker is None:                                 # dry run: hold
                    w_to = w_from
                else:                                              # next chunk, from this step's obs
                    worker.submit(policy_input(hist), obs_stamp_s, j)
                    if (got := worker.poll()) is not None:         # inline: done already
                        take(got)
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
                return fault_now(fault)
            if t0_s + k * dt_s >= t_end_s:                         # the next tick would start after the end
                return "unfinished", None
            wait_until(t0_s + k * dt_s, spin_s)
    except Exception as e:  # noqa: BLE001 -- a lost connection, a refused command: hold, then stop, with the reason
        return fault_now(f"{type(e).__name__}: {e}")
    finally:  # on a fault (or an exception) the last safe command is a hold where the arms are
        if state is not None and all(np.isfinite(state[key]).all() for key in ("ee_pos", "gripper")):
            try:
                robot.command(Safety.hold(state))
                counts["hold_s"] = time.monotonic()
            except Exception:  # noqa: BLE001 -- the connection is gone: robot.stop() is the stop left
                counts["hold_s"] = None


def _warmup_obs(policy):
    To = policy.n_obs_steps
    if getattr(policy, "obs_mode", "state") == "pixels":
        return {"image": np.zeros((1, To, *policy.image_shape), np.uint8),
                "agent_pos": np.zeros((1, To, AGENT_POS_DIM), np.float32)}
    return np.zeros((1, To, OBS_DIM), np.float32)


class Recorder:
    """A teleoperation source (robot_io.ExpertSource, ReplaySource, or any source(obs) -> targets (Da,)) in the policy
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

    def _write(self):
        eps, old = self.episodes, self.old or {}
        data = {k: np.concatenate(([old[k]] if k in old else []) + [e[k] for e in eps]) for k in self.KEYS if k in eps[0]}
        lengths = [e["actions"].shape[0] for e in eps]
        data["episode_ends"] = np.concatenate([old.get("episode_ends", np.zeros(0, np.int64)),
                                               len(old.get("obs", ())) + np.cumsum(lengths)]).astype(np.int64)
        for k in ("success", "seeds", "modes"):
            data[k] = np.concatenate([old.get(k, np.zeros(0)), [e[k] for e in eps]]).astype(bool if k == "success" else np.int64)
        data["version"] = np.array(envs.DEMO_VERSION)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        with open(self.path + ".tmp", "wb") as f:
            np.savez_compressed(f, **data)
        os.replace(self.path + ".tmp", self.path)   # a crash mid-write never leaves a half file


def run(cfg, robot, policy=None, camera=None):
    """Run episodes at cfg.hz for cfg.duration_s; stop both arms (and close the camera and the policy worker)
    whatever happens; return stats. A pixel policy needs a camera (SimCamera, ThreadCamera) whose frames have its
    image shape. The policy runs in a PolicyWorker (cfg.inference 'process'; it must pickle) or inline; a Recorder
    (--record) drives in its place, and its episodes (reset with envs.demo_seed) go to its file."""
    if (getattr(policy, "obs_mode", "state") == "pixels") != (camera is not None):
        raise ValueError("a pixel policy needs a camera, and only a pixel policy uses one")
    torch.set_num_threads(cfg.torch_threads)
    torch.manual_seed(cfg.seed)
    lat = {s: [] for s in LATENCY_KEYS}
    totals = dict(ticks=0, missed=0, skipped=0, actions_skipped=0, paused_s=0.0)  # paused_s: rendering --video frames
    safety = Safety(cfg, 1.0 / cfg.hz, robot.joint_lower, robot.joint_upper)
    outcomes, fault, reset_s, load_start, worker, rt_priority = [], None, 0.0, os.getloadavg()[0], None, 0
    fault_name, _, at = cfg.inject.partition("@")
    recorder = policy if isinstance(policy, Recorder) else None
    all_cpus, (loop_cpus, workers_cpus) = os.sched_getaffinity(0), cpu_plan(cfg.loop_cpu)
    seed_of, first = (envs.demo_seed, recorder.first_index) if recorder else (envs.eval_seed, 0)  # demos: other resets
    try:
        if recorder is not None:
            worker = recorder
        elif policy is not None:
            worker = (PolicyWorker(policy, _warmup_obs(policy), cfg.inference_timeout_s, cli.resolve_device(cfg.device),
                                   cfg.torch_threads, cfg.seed, workers_cpus) if cfg.inference == "process"
                      else InlinePolicy(policy, _warmup_obs(policy)))
        if loop_cpus:
            os.sched_setaffinity(0, loop_cpus)
        rt_priority = _set_rt_priority(cfg.rt_priority)
        gc.collect()
        gc.freeze()  # objects made so far are never re-scanned: shorter collector pauses in the loop
        t_start_s = time.monotonic()
        t_end_s = t_start_s + cfg.duration_s
        inject = [fault_name, t_start_s + float(at)] if fault_name else None
        while fault is None and time.monotonic() < t_end_s + totals["paused_s"]:
            t_s = time.monotonic()
            seed, frames = seed_of(cfg.seed, first + len(outcomes)), [] if len(outcomes) < cfg.video else None
            robot.reset(seed)                                      # between episodes: off the clock
            if camera is not None:
                try:
                    camera.reset(seed)
                except RuntimeError as e:
                    fault = f"camera: {e}"
                    break
            reset_s += time.monotonic() - t_s
            safety.reset()
            if recorder is not None:
                recorder.begin(seed)
            if inject is not None and inject[0]:                   # the run's time, less the resets
                inject[1] += time.monotonic() - t_s
            outcome, fault = run_episode(cfg, robot, worker, safety, lat, totals, t_end_s + totals["paused_s"], frames,
                                         camera, inject)
            outcomes.append(outcome)
            if recorder is not None:
                recorder.end(outcome)
            if frames:
                envs.write_video(os.path.join(cfg.video_dir, envs.video_name(TASK, seed, outcome)), frames, POLICY_HZ)
            if outcome == "unfinished" or 0 < cfg.episodes <= sum(o in ("success", "timeout") for o in outcomes):
                break                                              # the run's time is up, or its episodes done
    except KeyboardInterrupt:
        fault = "interrupted (Ctrl-C)"
        outcomes.append("interrupted")
    finally:
        robot.stop()
        stop_s = time.monotonic()
        if camera is not None:
            camera.close()
        if worker is not None:
            worker.close()
        if rt_priority:
            os.sched_setscheduler(0, os.SCHED_OTHER, os.sched_param(0))
        os.sched_setaffinity(0, all_cpus)
    elapsed_s = time.monotonic() - t_start_s
    n_done = sum(o in ("success", "timeout") for o in outcomes)
    n_success = outcomes.count("success")
    detected_s, hold_s = totals.get("fault_s"), totals.get("hold_s")
    stats = dict(
        backend=cfg.backend, hz=cfg.hz, policy_hz=POLICY_HZ, dry_run=policy is None, duration_s=round(elapsed_s, 2),
        inference=cfg.inference if policy is not None else None,
        ticks=totals["ticks"], deadline_misses=totals["missed"], ticks_skipped=totals["skipped"],
        deadline_met_fraction=1 - (totals["missed"] + totals["skipped"]) / max(1, totals["ticks"] + totals["skipped"]),
        achieved_hz=totals["ticks"] / max(1e-9, elapsed_s - reset_s - totals["paused_s"]),
        video_render_s=round(totals["paused_s"], 2),
        latency_ms={s: percentiles(lat[s]) for s in LATENCY_KEYS}, inference_calls=len(lat["inference"]),
        actions_skipped=totals["actions_skipped"], safety_clips=safety.clips, fault=fault,
        injected=None if "injected_s" not in totals else dict(fault=cfg.inject, at_s=round(totals["injected_s"] - t_start_s, 3)),
        fault_to_hold_ms=None if detected_s is None or hold_s is None else round((hold_s - detected_s) * 1e3, 3),
        fault_to_stop_ms=None if detected_s is None else round((stop_s - detected_s) * 1e3, 3),
        camera=None if camera is None else camera.stats(), sim=getattr(robot, "stats", lambda: None)(),
        episodes=n_done, successes=n_success, outcomes=outcomes, success_rate=n_success / n_done if n_done else None,
        ci95=envs.wilson_interval(n_success, n_done), episodes_unfinished=len(outcomes) - n_done,
        load_avg_1m=[round(load_start, 2), round(os.getloadavg()[0], 2)],
        torch_threads=cfg.torch_threads, rt_priority=rt_priority, ckpt=cfg.ckpt or None,
        cpus=dict(loop=sorted(loop_cpus or all_cpus), workers=sorted(workers_cpus or all_cpus)),
        recorded=None if recorder is None else dict(path=recorder.path, teleop=getattr(recorder.source, "name", "callable"),
                                                    episodes=len(recorder.episodes), before=recorder.first_index))
    return stats


# ----------------------------------------------------------------------------- CLI
def parse(argv):
    """Flags -> RobotConfig; a bad flag or value exits with one line."""
    return cli.parse(RobotConfig, __doc__, argv)


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
    if st["sim"]:
        print(f"  sim physics substep {st['sim']['physics_ms']}, time dropped {st['sim']['lag_s']} s")
    if st["recorded"]:
        r = st["recorded"]
        print(f"  recorded {r['episodes']} episode(s) by {r['teleop']} to {r['path']} ({r['before'] + r['episodes']} in it)")
    if st["injected"]:
        print(f"  injected {st['injected']['fault']} at {st['injected']['at_s']} s")
    if st["fault"]:
        hold = "no hold command got through" if st["fault_to_hold_ms"] is None else \
            f"hold commanded {st['fault_to_hold_ms']} ms after it was detected"
        print(f"STOPPED: {st['fault']}; {hold}, both arms stopped {st['fault_to_stop_ms']} ms after it")


def main(argv=None):
    cfg = parse(sys.argv[1:] if argv is None else argv)
    policy = camera = None
    if cfg.record:  # a demonstrator drives
        try:
            source = ExpertSource() if cfg.teleop == "expert" else ReplaySource(cfg.teleop.partition(":")[2])
            policy = Recorder(source, os.path.join(cfg.record, f"{TASK}_recorded.npz"), camera=bool(cfg.camera))
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
    elif not cfg.dry_run:  # check the checkpoint before any arm moves
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
        if getattr(policy, "obs_mode", "state") == "pixels" and cfg.inference == "inline":  # a worker moves it itself
            policy.to(cli.resolve_device(cfg.device))
    try:
        workers_cpus = cpu_plan(cfg.loop_cpu)[1]                   # the sim and camera processes: off the loop's CPU
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        robot = SimBackend(cfg, workers_cpus) if cfg.backend == "sim" else URBackend(cfg)
    except (ImportError, ValueError, RuntimeError) as e:  # ur_rtde missing, bad IPs, no connection
        sys.exit(f"error: cannot start the {cfg.backend} backend: {e}")
    if getattr(policy, "obs_mode", "state") == "pixels":
        try:
            hw = policy.image_shape[2:] if hasattr(policy, "image_shape") else envs.SimConfig().camera_hw
            camera = SimCamera(robot, workers_cpus) if cfg.backend == "sim" else ThreadCamera(
                opencv_grab([int(i) for i in cfg.camera.split(",")], hw), f"opencv {cfg.camera}")
        except (ImportError, RuntimeError) as e:  # opencv-python missing, a device that does not open
            robot.stop()
            sys.exit(f"error: cannot start the camera: {e}")
    try:
        stats = run(cfg, robot, policy, camera)
    except RuntimeError as e:  # the policy worker did not start (the arms were stopped)
        sys.exit(f"error: {e}")
    if isinstance(policy, Recorder) and policy.steps and cfg.backend == "ur":  # the operator labels the episode
        answer = input(f"record the episode ({len(policy.steps)} steps)? y: a success, n: a failure, else drop it: ")
        if answer.strip().lower()[:1] in ("y", "n"):
            stats["recorded"]["episodes"] += policy.end("unfinished", success=answer.strip().lower().startswith("y"))
    print_stats(stats)
    if cfg.stats_json:
        os.makedirs(os.path.dirname(os.path.abspath(cfg.stats_json)), exist_ok=True)
        with open(cfg.stats_json + ".tmp", "w") as f:
            json.dump(stats, f, indent=2)
        os.replace(cfg.stats_json + ".tmp", cfg.stats_json)
        print(f"wrote {cfg.stats_json}")
    return 1 if stats["fault"] else 0


if __name__ == "__main__":
    sys.exit(main())
