"""Dual-arm real-time control loop: a trained DBP policy drives two arms at --hz (default 100).

The deployment side of Gao et al. 2026 (arXiv 2604.03540; the paper: dual-arm UR5, 105.2 Hz,
9.5 ms end to end). This file holds the config, the run of episodes with its stats, and the CLI; the layers,
top to bottom, each have a file of their own:
  policy   DBPPolicy at the task's control rate (10 Hz): one chunk of Ta targets per inference,
           receding horizon, obs history To sampled at the policy rate; it runs in a worker process
           (robot_io.PolicyWorker): the loop posts an observation and picks the chunk up when it is
           done, skipping the targets whose time has passed (each chunk carries its observation's stamp);
  loop     (robot_loop.py) fixed rate --hz on time.monotonic() absolute deadlines, sleep-then-spin waits;
           it interpolates linearly from one policy target to the next (target a_j is where the
           EE should be at the end of policy step j);
  safety   (robot_safety.py) workspace box, EE speed, gripper bounds, joint limits, NaN/inf, stale or
           jumped state clock, stale camera frame, a dead or silent policy worker, a lost connection or
           refused command, overrun streak -> hold position and stop; try/finally stops both arms;
  camera   (robot_camera.py) a pixel checkpoint (train.py --obs pixels) sees frames, off the loop's
           thread: 'sim' renders its cameras in a process of their own, 'ur' reads OpenCV devices (--camera);
  backend  (robot_io.py) 'sim': the bimanual PyBullet task (envs.py) in a process of its own, stepping its
           physics in wall-clock real time as a controller would; 'ur': two UR arms by IP through ur_rtde
           (untested on hardware, see robot_io.URBackend). --inject plays a fault on the sim.
--record (robot_record.py) drives the loop by a demonstrator instead and writes its episodes as demos.

    python robot.py --ckpt runs/pretrain-bimanual-s0/ckpt.pt --duration-s 60 --stats-json stats.json
    python robot.py --ckpt runs/px/bimanual/ckpt.pt   # a pixel checkpoint: the sim renders its cameras
    python robot.py --ckpt CKPT --inject freeze@2.5   # the state freezes 2.5 s in: the loop holds and stops
    python robot.py --record runs/rec --episodes 100 --duration-s 900   # the expert demonstrates; train.py --dataset
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
import numpy_policy
import rollouts
import training
from dbp import option
from robot_camera import SimCamera, ThreadCamera, opencv_grab
from robot_io import (ACTION_DIM, FAULTS, N_ARMS, OBS_DIM, POLICY_HZ, TASK, InlinePolicy, PolicyWorker, SimBackend,
                      URBackend, cpu_plan, percentiles)
from robot_loop import LATENCY_KEYS, run_episode
from robot_record import ExpertSource, Recorder, ReplaySource
from robot_safety import Safety

AGENT_POS_DIM = 4 * N_ARMS                       # a pixel policy's agent_pos: per arm EE xyz, gripper opening


@dataclass
class RobotConfig(cli.SeedConfig, cli.DeviceConfig):  # seed: sim episode i resets with envs.eval_seed(seed, i), as in evaluation
    ckpt: str = option("", "checkpoint written by train.py (either stage) for the bimanual task")
    backend: str = option("sim", "'sim': the bimanual PyBullet task stepped in real time; 'ur': two UR arms "
                          "through ur_rtde (untested on hardware; see robot_io.URBackend)")
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
    record: str = option("", "record demonstrations into DIR, a LeRobot v3 dataset at the policy's step rate (a new "
                         "one, or appended to), with each frame's stamp and each episode's success label: a --teleop "
                         "source drives instead of a policy; train.py --dataset DIR trains on it")
    teleop: str = option("expert", "--record's demonstrator: 'expert' (sim: the scripted expert) or 'replay:PATH' "
                         "(the actions of a recording or npz demo file, open loop); your own: "
                         "robot_record.Recorder(source, root) in robot.run")
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
            raise dbp.ConfigError("teleop", self.teleop, "must be 'expert' or 'replay:PATH'")
        if self.record and self.teleop == "expert" and self.backend != "sim":
            raise dbp.ConfigError("teleop", self.teleop, "the expert acts on the sim's state: use replay:PATH on arms")
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
    ckpt = training.load_checkpoint(path)
    if ckpt.get("task") not in (TASK, envs.TASKS[TASK]):
        raise ValueError(f"{path} was trained for task {ckpt.get('task')!r}; this loop drives the {TASK!r} task")
    pixels = ckpt.get("config", {}).get("obs") == "pixels"  # its obs_dim is then the agent_pos's
    return dbp.DBPPolicy.from_checkpoint(ckpt, expect={"obs_dim": AGENT_POS_DIM if pixels else OBS_DIM,
                                                      "action_dim": ACTION_DIM})


# ----------------------------------------------------------------------------- run
def _warmup_obs(policy):
    """Zeros of the policy's input, (1, To, ...), for the calls that warm it up before the loop starts."""
    To = policy.n_obs_steps
    if getattr(policy, "obs_mode", "state") == "pixels":
        return {"image": np.zeros((1, To, *policy.image_shape), np.uint8),
                "agent_pos": np.zeros((1, To, AGENT_POS_DIM), np.float32)}
    return np.zeros((1, To, OBS_DIM), np.float32)


def _start_policy(cfg, policy, cpus):
    """What the loop asks for chunks: the Recorder itself, the policy in a PolicyWorker on `cpus` (or inline), or
    None (a dry run). RuntimeError when the worker does not start."""
    if policy is None or isinstance(policy, Recorder):
        return policy
    if cfg.inference == "process":
        return PolicyWorker(policy, _warmup_obs(policy), cfg.inference_timeout_s, cli.resolve_device(cfg.device),
                            cfg.torch_threads, cfg.seed, cpus)
    return InlinePolicy(policy, _warmup_obs(policy))


def _run_episodes(cfg, robot, worker, camera, safety, lat, totals, outcomes, t_start_s):
    """Episodes one after another from t_start_s, each reset off the clock (totals["reset_s"]), until the run's time
    is up, cfg.episodes have finished or a fault. Appends each outcome to outcomes; returns the fault or None."""
    recorder = worker if isinstance(worker, Recorder) else None
    seed_of, first = (envs.demo_seed, recorder.first_index) if recorder else (envs.eval_seed, 0)  # demos: other resets
    fault_name, _, at = cfg.inject.partition("@")
    inject = [fault_name, t_start_s + float(at)] if fault_name else None
    t_end_s = t_start_s + cfg.duration_s
    while time.monotonic() < t_end_s + totals["paused_s"]:
        t_s = time.monotonic()
        seed, frames = seed_of(cfg.seed, first + len(outcomes)), [] if len(outcomes) < cfg.video else None
        robot.reset(seed)                                      # between episodes: off the clock
        if camera is not None:
            try:
                camera.reset(seed)
            except RuntimeError as e:
                return f"camera: {e}"
        totals["reset_s"] += time.monotonic() - t_s
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
            rollouts.write_video(os.path.join(cfg.video_dir, rollouts.video_name(TASK, seed, outcome)), frames, POLICY_HZ)
        n_done = sum(o in ("success", "timeout") for o in outcomes)
        if fault is not None or outcome == "unfinished" or 0 < cfg.episodes <= n_done:
            return fault                                       # a fault, the run's time is up, or its episodes done
    return None


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
    # paused_s: rendering --video frames; reset_s: resetting the episodes (both off the clock)
    totals = dict(ticks=0, missed=0, skipped=0, actions_skipped=0, paused_s=0.0, reset_s=0.0)
    safety = Safety(cfg, 1.0 / cfg.hz, robot.joint_lower, robot.joint_upper)
    outcomes, fault, load_start, worker, rt_priority = [], None, os.getloadavg()[0], None, 0
    recorder = policy if isinstance(policy, Recorder) else None
    all_cpus, (loop_cpus, workers_cpus) = os.sched_getaffinity(0), cpu_plan(cfg.loop_cpu)
    try:
        worker = _start_policy(cfg, policy, workers_cpus)
        if loop_cpus:
            os.sched_setaffinity(0, loop_cpus)
        rt_priority = _set_rt_priority(cfg.rt_priority)
        gc.collect()
        gc.freeze()  # objects made so far are never re-scanned: shorter collector pauses in the loop
        t_start_s = time.monotonic()
        fault = _run_episodes(cfg, robot, worker, camera, safety, lat, totals, outcomes, t_start_s)
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
    n_done, n_success = sum(o in ("success", "timeout") for o in outcomes), outcomes.count("success")
    detected_s, hold_s = totals.get("fault_s"), totals.get("hold_s")
    return dict(
        backend=cfg.backend, hz=cfg.hz, policy_hz=POLICY_HZ, dry_run=policy is None, duration_s=round(elapsed_s, 2),
        inference=cfg.inference if policy is not None else None,
        ticks=totals["ticks"], deadline_misses=totals["missed"], ticks_skipped=totals["skipped"],
        deadline_met_fraction=1 - (totals["missed"] + totals["skipped"]) / max(1, totals["ticks"] + totals["skipped"]),
        achieved_hz=totals["ticks"] / max(1e-9, elapsed_s - totals["reset_s"] - totals["paused_s"]),
        video_render_s=round(totals["paused_s"], 2),
        latency_ms={s: percentiles(lat[s]) for s in LATENCY_KEYS}, inference_calls=len(lat["inference"]),
        actions_skipped=totals["actions_skipped"], safety_clips=safety.clips, fault=fault,
        injected=None if "injected_s" not in totals else dict(fault=cfg.inject, at_s=round(totals["injected_s"] - t_start_s, 3)),
        fault_to_hold_ms=None if detected_s is None or hold_s is None else round((hold_s - detected_s) * 1e3, 3),
        fault_to_stop_ms=None if detected_s is None else round((stop_s - detected_s) * 1e3, 3),
        camera=None if camera is None else camera.stats(), sim=getattr(robot, "stats", lambda: None)(),
        episodes=n_done, successes=n_success, outcomes=outcomes, success_rate=n_success / n_done if n_done else None,
        ci95=rollouts.wilson_interval(n_success, n_done), episodes_unfinished=len(outcomes) - n_done,
        load_avg_1m=[round(load_start, 2), round(os.getloadavg()[0], 2)],
        torch_threads=cfg.torch_threads, rt_priority=rt_priority, ckpt=cfg.ckpt or None,
        cpus=dict(loop=sorted(loop_cpus or all_cpus), workers=sorted(workers_cpus or all_cpus)),
        recorded=None if recorder is None else recorder.summary())


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


def _policy_from_flags(cfg):
    """What drives: a Recorder (--record), the checkpoint's policy (a state policy as numpy_policy.NumpyPolicy), or None
    (--dry-run). A checkpoint that does not fit the backend and its cameras exits with one line, before any arm moves."""
    if cfg.record:  # a demonstrator drives
        try:
            source = ExpertSource() if cfg.teleop == "expert" else ReplaySource(cfg.teleop.partition(":")[2])
            return Recorder(source, cfg.record, camera=bool(cfg.camera))
        except (ValueError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
    if cfg.dry_run:
        return None
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
        policy = numpy_policy.NumpyPolicy(policy)                       # NumPy on the CPU: the fastest at batch 1
    elif cfg.backend == "ur" and not cfg.camera:
        sys.exit("error: a pixel checkpoint on --backend ur needs --camera (OpenCV device indices)")
    elif cfg.backend == "sim" and policy.image_shape != (views, 3, *envs.SimConfig().camera_hw):
        sys.exit(f"error: {cfg.ckpt} takes images {policy.image_shape}; the sim's cameras give "
                 f"{(views, 3, *envs.SimConfig().camera_hw)}")
    elif policy.image_shape[0] != views:
        sys.exit(f"error: {cfg.ckpt} takes {policy.image_shape[0]} camera view(s); --camera names {views}")
    if getattr(policy, "obs_mode", "state") == "pixels" and cfg.inference == "inline":  # a worker moves it itself
        policy.to(cli.resolve_device(cfg.device))
    return policy


def _camera_from_flags(cfg, policy, robot, cpus):
    """The camera a pixel policy sees through (the sim's, rendered on `cpus`, or OpenCV devices), else None. A camera
    that does not start stops the arms and exits with one line."""
    if getattr(policy, "obs_mode", "state") != "pixels":
        return None
    try:
        hw = policy.image_shape[2:] if hasattr(policy, "image_shape") else envs.SimConfig().camera_hw
        return SimCamera(robot, cpus) if cfg.backend == "sim" else ThreadCamera(
            opencv_grab([int(i) for i in cfg.camera.split(",")], hw), f"opencv {cfg.camera}")
    except (ImportError, RuntimeError) as e:  # opencv-python missing, a device that does not open
        robot.stop()
        sys.exit(f"error: cannot start the camera: {e}")


def _write_json(path, data):
    with open(path, "w") as f:
        json.dump(data, f, indent=2)


def main(argv=None):
    cfg = parse(sys.argv[1:] if argv is None else argv)
    policy = _policy_from_flags(cfg)
    try:
        workers_cpus = cpu_plan(cfg.loop_cpu)[1]                   # the sim and camera processes: off the loop's CPU
    except ValueError as e:
        sys.exit(f"error: {e}")
    try:
        robot = SimBackend(cfg, workers_cpus) if cfg.backend == "sim" else URBackend(cfg)
    except (ImportError, ValueError, RuntimeError) as e:  # ur_rtde missing, bad IPs, no connection
        sys.exit(f"error: cannot start the {cfg.backend} backend: {e}")
    camera = _camera_from_flags(cfg, policy, robot, workers_cpus)
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
        training.atomic_write(cfg.stats_json, lambda tmp: _write_json(tmp, stats))   # a crash never leaves half a file
        print(f"wrote {cfg.stats_json}")
    return 1 if stats["fault"] else 0


if __name__ == "__main__":
    sys.exit(main())
