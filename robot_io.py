"""What robot.py's control loop talks to, each off the loop's thread: the arms and the policy (the cameras:
robot_camera.py).

  backends  SimBackend: the bimanual PyBullet task (envs.py) in a process of its own that steps its physics in
            wall-clock real time, as a robot's controller runs beside the loop; URBackend: two UR arms (ur_rtde).
            Interface: reset(seed), read_state() -> dict(stamp_s, joint_pos (N_ARMS, n_joints), ee_pos (N_ARMS, 3),
            gripper (N_ARMS,) opening in m, obs (Do,) or None, scene_pose or None), command(target (N_ARMS, 4)),
            success(), stop() (hold where the arms are, then release); joint_lower/joint_upper (N_ARMS, n_joints),
            max_policy_steps per episode (None: one long episode). A lost connection raises.
  policy    PolicyWorker: predict_action in a process of its own; the loop posts an observation and picks the chunk
            up when it is done, so inference never takes a tick. InlinePolicy: the same interface in the loop's thread.
  helpers   cpu_plan (which CPUs the loop and the processes run on), spawn_worker, percentiles, hold_target.

    python robot_io.py      # a quick demo: the sim backend in its process, its state read and a hold commanded
"""
import ctypes
import multiprocessing as mp
import os
import time

import numpy as np

import envs

TASK = "bimanual"
OBS_DIM = len(envs.BimanualEnv.obs_names)       # Do = 14: ee0 xyz, gripper0, ee1 xyz, gripper1, bar ends
N_ARMS = len(envs.BimanualEnv.ARM_BASES)
ACTION_DIM = 4 * N_ARMS                          # Da = 8: per arm absolute EE target (x, y, z, g)
POLICY_HZ = envs.SimConfig.control_hz            # the rate the policy was trained at
FAULTS = ("disconnect", "read-timeout", "refuse", "freeze", "clock-jump", "worker-crash", "worker-hang")
CLOCK_JUMP_S = 1.0                               # how far an injected clock-jump moves the robot's clock
ALIVE_CHECK_S = 0.05                             # how often the loop asks whether the policy worker still lives


def cpu_plan(loop_cpu):
    """-> (the loop thread's CPUs, the worker processes' CPUs), sets of this process's CPUs, or None for no pinning:
    'auto' gives the loop the last CPU to itself when there are >= 2 and the sim, policy and camera processes the
    others, so a physics step or an inference never takes the loop's core; an index picks the loop's CPU; 'off'."""
    cpus = sorted(os.sched_getaffinity(0))
    if loop_cpu == "off" or (loop_cpu == "auto" and len(cpus) < 2):
        return None, None
    loop = cpus[-1] if loop_cpu == "auto" else int(loop_cpu)
    if loop not in cpus:
        raise ValueError(f"--loop-cpu {loop_cpu}: this process runs on CPUs {cpus}")
    return {loop}, (set(cpus) - {loop}) or None


def pin_cpus(cpus):
    """Run this process on `cpus` (None: leave it where it is)."""
    if cpus:
        os.sched_setaffinity(0, cpus)


def percentiles(x_s):
    """Seconds -> dict of p50, p99, max in ms and the count; None for none."""
    if not x_s:
        return None
    ms = np.asarray(x_s) * 1e3
    return dict(p50=round(float(np.percentile(ms, 50)), 4), p99=round(float(np.percentile(ms, 99)), 4),
                max=round(float(ms.max()), 4), n=len(ms))


def hold_target(state):
    """Target (N_ARMS, 4) that keeps the arms where they are: measured EE, gripper at its opening."""
    g = 1.0 - np.clip(state["gripper"] / envs.MAX_OPENING, 0.0, 1.0)
    return np.concatenate([state["ee_pos"], g[:, None]], axis=1)


def spawn_worker(ctx, what, target, *args, timeout_s=60.0):
    """Start target(conn, *args) in a spawned process; wait for its first message (it is ready) -> (conn, process,
    message). RuntimeError when it dies or stays silent (its imports and scene take seconds)."""
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=target, args=(child, *args), daemon=True)
    proc.start()
    t_end_s = time.monotonic() + timeout_s
    while not conn.poll(0.1):
        if not proc.is_alive() or time.monotonic() > t_end_s:
            proc.terminate()
            raise RuntimeError(f"the {what} process did not start" + (f" in {timeout_s:g} s" if proc.is_alive() else
                                                                      f": it exited with code {proc.exitcode}"))
    return conn, proc, conn.recv()


def _ask(conn, proc, what, msg, timeout_s):
    """Send msg to a worker process and wait for its answer; RuntimeError when it is gone or silent."""
    try:
        conn.send(msg)
        if conn.poll(timeout_s):
            return conn.recv()
    except (OSError, EOFError) as e:
        raise RuntimeError(f"the {what} process is gone ({type(e).__name__}: {e})") from None
    raise RuntimeError(f"the {what} process gave no answer to {msg[0]!r} in {timeout_s:g} s"
                       + ("" if proc.is_alive() else f" (it exited with code {proc.exitcode})"))


# ----------------------------------------------------------------------------- sim backend
def _state_layout(env):
    """Where each field of the sim's state lies in the shared buffer: {name: (offset, shape)}, and its length."""
    shapes = dict(stamp_s=(), success=(), joint_pos=(N_ARMS, len(envs.ARM_JOINTS)), ee_pos=(N_ARMS, 3),
                  gripper=(N_ARMS,), obs=(OBS_DIM,), scene_pose=env.scene_pose().shape)
    layout, at = {}, 0
    for name, shape in shapes.items():
        layout[name], at = (at, shape), at + int(np.prod(shape))
    return layout, at


class _SimProcess:
    """SimBackend's process: the task stepped one physics substep (1 / physics_hz s) at a time as the monotonic
    clock makes it due, the latest command turned into joint targets (IK) before each, the state published after.
    Between substeps it answers SimBackend's messages: reset, pause/resume, render, the injected faults, stop."""

    def __init__(self, conn, lock, state_buf, cmd_buf, video):
        self.conn, self.lock = conn, lock
        self.wrapped = envs.make_env(TASK, render_mode="rgb_array" if video else None)
        self.env = self.wrapped.unwrapped
        self.hz = self.env.cfg.physics_hz
        self.max_catchup = round(self.hz / POLICY_HZ)   # a stall: never run more than one policy step (0.1 s) at once
        self.env.reset(seed=0)
        self.layout, n_used = _state_layout(self.env)
        self.state, self.cmd = np.frombuffer(state_buf, np.float64), np.frombuffer(cmd_buf, np.float64)
        assert n_used <= len(self.state), "SimBackend's state buffer is too small"
        self.slots = [(name, slice(i, i + int(np.prod(shape)))) for name, (i, shape) in self.layout.items()]
        self.t0_s = self.paused_s = None    # the clock: substep n is due at t0_s + (n + 1) / hz; paused_s: since when
        self.n, self.frozen, self.clock_offset_s, self.lag_s, self.step_s = 0, False, 0.0, 0.0, []

    def publish(self):
        """Write the state after substep n into the shared buffer, stamped with its simulated time."""
        if self.frozen:                 # an injected freeze: the state stops changing, stamp and all
            return
        env, arms = self.env, self.env.arm_state()
        values = dict(stamp_s=self.t0_s + self.n / self.hz + self.clock_offset_s, success=float(env.score()[1]),
                      joint_pos=[a["joint_pos"] for a in arms], ee_pos=[a["ee_pos"] for a in arms],
                      gripper=[a["gripper"] for a in arms], obs=env.get_obs(), scene_pose=env.scene_pose())
        with self.lock:
            for name, slot in self.slots:
                self.state[slot] = np.ravel(values[name])

    def handle(self, kind, args):
        """Answer one message from SimBackend; False once it asked to stop (the arms then hold)."""
        now_s, env = time.monotonic(), self.env
        if kind == "reset":
            env.reset(seed=args[0])
            self.cmd[0] = 0.0                   # no command yet: the arms keep their reset targets
            self.t0_s, self.paused_s, self.n, self.frozen, self.clock_offset_s = now_s, None, 0, False, 0.0
        elif kind == "pause":
            self.paused_s = now_s
        elif kind == "resume":
            self.t0_s, self.paused_s = self.t0_s + now_s - self.paused_s, None
        elif kind == "render":                  # simulated time stands still while it renders
            frame = env.render()
            self.t0_s += time.monotonic() - now_s
        elif kind == "freeze":
            self.frozen = True
        elif kind == "clock-jump":
            self.clock_offset_s += CLOCK_JUMP_S
        elif kind == "stop":                    # hold: joint targets for the EE where it is now, then release
            arms = env.arm_state()
            env.apply_action(hold_target(dict(ee_pos=np.array([a["ee_pos"] for a in arms]),
                                              gripper=np.array([a["gripper"] for a in arms]))).ravel())
            self.conn.send("held")
            self.conn.send(dict(physics_ms=percentiles(self.step_s), lag_s=round(self.lag_s, 4)))
            env.close()
            return False
        if kind in ("reset", "resume", "render", "clock-jump"):
            self.publish()
        if kind in ("reset", "pause", "resume", "render"):
            self.conn.send(frame if kind == "render" else "ok")
        return True

    def step(self):
        """Run the substeps that have fallen due (at most max_catchup), with the latest command; publish the state."""
        t_s = time.monotonic()
        due = int((t_s - self.t0_s) * self.hz) - self.n
        if due <= 0:
            return
        if due > self.max_catchup:              # stalled: drop time rather than burst (it shows up as lag_s)
            self.t0_s += (due - self.max_catchup) / self.hz
            self.lag_s += (due - self.max_catchup) / self.hz
            due = self.max_catchup
        with self.lock:
            target = self.cmd[1:].copy() if self.cmd[0] else None
        if target is not None:
            self.env.apply_action(target)
        self.env.step_physics(due)
        self.n += due
        self.publish()
        self.step_s.append(time.monotonic() - t_s)

    def run(self):
        """Say it is ready (with the state's layout and the arms' joint limits), then step and answer until stop."""
        env = self.env
        self.conn.send(("ready", self.layout, [a.lower for a in env.arms], [a.upper for a in env.arms],
                        self.wrapped.spec.max_episode_steps))
        while True:
            running = self.t0_s is not None and self.paused_s is None
            if self.conn.poll(max(0.0, self.t0_s + (self.n + 1) / self.hz - time.monotonic()) if running else None):
                kind, *args = self.conn.recv()
                if not self.handle(kind, args):
                    return
            else:
                self.step()


def _sim_worker(conn, lock, state_buf, cmd_buf, video, cpus):
    """SimBackend's process (spawned): pinned to `cpus`, it runs _SimProcess until SimBackend stops it."""
    pin_cpus(cpus)
    _SimProcess(conn, lock, state_buf, cmd_buf, video).run()


class SimBackend:
    """The bimanual task of envs.py in a process of its own that runs its physics in wall-clock real time, one
    substep (1 / physics_hz s, 120 Hz) as each falls due, whatever the loop's rate: like a robot's controller,
    it never waits for the loop, and the loop reads its latest state and posts commands through shared memory
    (microseconds). The state changes only at substeps; its stamp is the simulated time of the last one, on the
    monotonic clock. inject(fault) plays the faults of FAULTS (robot.py --inject)."""

    def __init__(self, cfg, cpus=None):
        ctx = mp.get_context("spawn")
        self._lock, self._state = ctx.Lock(), ctx.RawArray(ctypes.c_double, 256)
        self._cmd = ctx.RawArray(ctypes.c_double, 1 + ACTION_DIM)   # [command count, target]
        self._conn, self._proc, ready = spawn_worker(ctx, "sim", _sim_worker, self._lock, self._state, self._cmd,
                                                     cfg.video, cpus)
        _, layout, lower, upper, self.max_policy_steps = ready   # 60 policy steps = 6 s
        self._views = {name: (i, i + int(np.prod(shape)), shape) for name, (i, shape) in layout.items()}
        self._np_state, self._np_cmd = np.frombuffer(self._state, np.float64), np.frombuffer(self._cmd, np.float64)
        # views made once, not at every tick: the part of the state buffer in use, the command's target
        self._np_used = self._np_state[:max(j for _, j, _ in self._views.values())]
        self._np_target, self._success_i = self._np_cmd[1:], self._views["success"][0]
        self.joint_lower, self.joint_upper = np.array(lower), np.array(upper)
        self.injected, self.sim_stats = None, None

    def _ask(self, *msg, timeout_s=10.0):
        return _ask(self._conn, self._proc, "sim", msg, timeout_s)

    def reset(self, seed):
        self._ask("reset", seed)

    def read_state(self):
        if self.injected in ("disconnect", "read-timeout"):
            raise (ConnectionError("lost the connection to the robot") if self.injected == "disconnect"
                   else TimeoutError("no state from the robot in time"))
        with self._lock:
            flat = self._np_used.copy()
        state = {name: flat[i:j].reshape(shape) for name, (i, j, shape) in self._views.items()}
        state["stamp_s"], state["obs"] = float(state["stamp_s"]), state["obs"].astype(np.float32)
        return state

    def command(self, target):
        if self.injected in ("disconnect", "refuse"):
            raise (ConnectionError("lost the connection to the robot") if self.injected == "disconnect"
                   else RuntimeError("the controller refused the command"))
        with self._lock:
            self._np_target[:] = np.ravel(target)
            self._np_cmd[0] += 1.0              # applied before the next physics substep

    def success(self):
        return bool(self._np_state[self._success_i] > 0.5)

    def render(self):
        """A frame (H, W, 3) uint8 of the video camera (cfg.video), off the clock: simulated time stands still."""
        return self._ask("render")

    def pause(self):
        """Simulated time stands still until resume() (a camera's start, off the clock)."""
        self._ask("pause")

    def resume(self):
        self._ask("resume")

    def inject(self, fault):
        """Play a fault from now on: the interface's (disconnect, read-timeout, refuse) here, the state's (freeze,
        clock-jump: the robot's clock moves CLOCK_JUMP_S ahead) in the sim process."""
        if fault in ("freeze", "clock-jump"):
            self._conn.send((fault,))
        else:
            self.injected = fault

    def stop(self):
        """Hold both arms where they are, then release the sim; also after a lost connection (the sim plays the
        controller's own stop, as a UR arm stops when its servo commands stop coming)."""
        try:  # returns once the hold is applied; the process then releases the sim and exits on its own
            self._ask("stop", timeout_s=5.0)
        except RuntimeError:
            self._proc.terminate()

    def stats(self):
        """The sim process's own figures (physics substep time, time dropped), once it has stopped."""
        if self.sim_stats is None and self._conn.poll(5.0):
            self.sim_stats = self._conn.recv()
        return self.sim_stats


# ----------------------------------------------------------------------------- policy worker
def _policy_worker(conn, policy, device, threads, seed, cpus):
    import torch
    pin_cpus(cpus)
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    if hasattr(policy, "to"):
        policy.to(device)
    conn.send("ready")
    while True:
        kind, *args = conn.recv()
        if kind == "obs":
            obs, stamp_s, j0 = args
            t_s = time.monotonic()
            chunk = policy.predict_action(obs)[0, policy.executed]     # (Ta, Da)
            conn.send((np.asarray(chunk), stamp_s, j0, time.monotonic() - t_s))
        elif kind == "worker-crash":
            os._exit(3)
        elif kind == "worker-hang":
            time.sleep(1e9)
        else:
            return


class PolicyWorker:
    """policy.predict_action in a process of its own (spawned: the policy is pickled there; a torch policy runs
    on `device`, a NumPy one on the CPU), so a slow inference delays a chunk, never a tick. submit() posts an
    observation history with its stamp and policy step; poll() returns (chunk (Ta, Da), stamp_s, j0, seconds) once
    done, else None; check(now_s) names a fault: the process died, or a chunk is timeout_s late."""

    def __init__(self, policy, warmup_obs, timeout_s, device="cpu", threads=1, seed=0, cpus=None):
        self.n_obs_steps, self.n_action_steps = policy.n_obs_steps, policy.n_action_steps
        self.timeout_s, self.sent_s, self.alive_check_s = timeout_s, None, 0.0
        ctx = mp.get_context("spawn")
        self._conn, self._proc, _ = spawn_worker(ctx, "policy worker", _policy_worker, policy, device, threads, seed,
                                                 cpus, timeout_s=120.0)
        for _ in range(20):  # warm up: the first calls allocate
            self.submit(warmup_obs, 0.0, 0)
            while self.poll() is None:
                if fault := self.check(time.monotonic()):
                    self.close()
                    raise RuntimeError(f"warming up: {fault}")
                time.sleep(0.0005)

    def submit(self, obs, stamp_s, j0):
        self._conn.send(("obs", obs, stamp_s, j0))
        self.sent_s = time.monotonic()

    def busy(self):
        return self.sent_s is not None

    def poll(self):
        if self.sent_s is None or not self._conn.poll():
            return None
        self.sent_s = None
        return self._conn.recv()

    def check(self, now_s):
        if now_s >= self.alive_check_s:            # a syscall: every ALIVE_CHECK_S, not every tick
            self.alive_check_s = now_s + ALIVE_CHECK_S
            if not self._proc.is_alive():
                return f"the policy worker died (exit code {self._proc.exitcode})"
        if self.sent_s is not None and now_s - self.sent_s > self.timeout_s:
            return (f"the policy worker gave no chunk in {(now_s - self.sent_s) * 1e3:.0f} ms "
                    f"(timeout {self.timeout_s * 1e3:.0f} ms)")
        return None

    def inject(self, fault):
        self._conn.send((fault,))

    def close(self):
        if self._proc.is_alive() and self.sent_s is None:  # idle: it stops; busy (or hung): it is terminated
            try:
                self._conn.send(("stop",))
                self._proc.join(timeout=2.0)
            except OSError:
                pass
        if self._proc.is_alive():
            self._proc.terminate()


class InlinePolicy:
    """PolicyWorker's interface in the loop's own thread: submit() runs predict_action at once, after the tick's
    command (robot.py --inference inline: for a debugger, or a stub policy in a test)."""

    def __init__(self, policy, warmup_obs):
        self.policy, self.result = policy, None
        self.n_obs_steps, self.n_action_steps = policy.n_obs_steps, policy.n_action_steps
        for _ in range(20):
            policy.predict_action(warmup_obs)

    def submit(self, obs, stamp_s, j0):
        t_s = time.monotonic()
        chunk = self.policy.predict_action(obs)[0, self.policy.executed]
        self.result = (np.asarray(chunk), stamp_s, j0, time.monotonic() - t_s)

    def busy(self):
        return self.result is not None

    def poll(self):
        result, self.result = self.result, None
        return result

    def check(self, now_s):
        return None

    def inject(self, fault):
        raise ValueError(f"{fault} needs the policy worker (--inference process)")

    def close(self):
        pass


# ----------------------------------------------------------------------------- UR backend
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
                    gripper=gripper, obs=obs, scene_pose=None)

    def command(self, target):
        for i, c in enumerate(self.ctrl):
            pose = [*(target[i, :3] - self.base_m[i]), *self.rotvec[i]]
            if not c.servoL(pose, 0.0, 0.0, self.dt_s, 0.1, 300):  # speed/accel unused; lookahead 0.1 s, gain 300
                raise RuntimeError(f"UR arm {i} refused the servo command")
            if (target[i, 3] > 0.5) != (self.g[i] > 0.5):
                self.io[i].setStandardDigitalOut(self.cfg.ur_gripper_pin, bool(target[i, 3] > 0.5))
            self.g[i] = target[i, 3]

    def success(self):
        return False

    def stop(self):
        for c in self.ctrl:
            c.servoStop()
            c.stopScript()


if __name__ == "__main__":
    from types import SimpleNamespace
    sim = SimBackend(SimpleNamespace(video=0))      # the physics runs in its own process from here on
    sim.reset(seed=0)
    time.sleep(0.1)
    state = sim.read_state()
    print({k: np.shape(v) for k, v in state.items()}, f"state {(time.monotonic() - state['stamp_s']) * 1e3:.1f} ms old")
    sim.command(hold_target(state))
    sim.stop()
    print("sim stats", sim.stats())
