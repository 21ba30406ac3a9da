"""The control loop of robot.py: one episode of ticks at a fixed rate, on absolute deadlines (ROBOT.md, Architecture).

Each tick reads the robot's state, checks it (robot_safety.Safety), takes a finished chunk from the policy worker,
commands the target interpolated between two policy targets, and waits for its deadline (sleep, then spin). At the
first tick of each policy step it takes the step's observation and, when no target lies ahead, posts it for the next
chunk. robot.run runs the episodes one after another; run_episode is one.

    python robot_loop.py        # a quick demo: a dry-run episode of 0.5 s on a stub backend, its counts and latencies
"""
import math
import time

import numpy as np

from robot_io import N_ARMS, POLICY_HZ
from robot_safety import Safety

LATENCY_KEYS = ("state_read", "inference", "command", "tick",  # what the loop times; camera: a frame's age when
                "camera", "end_to_end")  # taken, end_to_end: observation -> first command of its chunk


def wait_until(deadline_s, spin_s):
    """Sleep until spin_s before the deadline (the OS wakes us late by ~0.1 ms), then spin."""
    remaining_s = deadline_s - time.monotonic() - spin_s
    if remaining_s > 0:
        time.sleep(remaining_s)
    while time.monotonic() < deadline_s:
        pass


def agent_pos(state):
    """A pixel policy's proprioception (4 * N_ARMS,): per arm EE xyz and gripper opening, as envs' agent_pos."""
    return np.concatenate([np.append(e, g) for e, g in zip(state["ee_pos"], state["gripper"])]).astype(np.float32)


def policy_input(hist):
    """The obs history (To entries, oldest first) as predict_action's batch of one."""
    if isinstance(hist[0], dict):
        return {key: np.stack([h[key] for h in hist])[None] for key in hist[0]}
    return np.stack(hist)[None]


class Episode:
    """One episode of ticks at cfg.hz until success, the time limit or t_end_s (run_episode's arguments; run()
    runs it). Tick k is due at t0_s + k dt_s; it falls in policy step j, and its target lies on the segment from
    w_from (the target of step j-1) to w_to (step j's, from the chunk; None: hold w_from)."""

    def __init__(self, cfg, robot, worker, safety, lat, counts, t_end_s, frames=None, camera=None, inject=None):
        self.cfg, self.robot, self.worker, self.safety, self.camera = cfg, robot, worker, safety, camera
        self.lat, self.counts, self.frames, self.inject = lat, counts, frames, inject
        self.dt_s, self.dt_policy_s = 1.0 / cfg.hz, 1.0 / POLICY_HZ
        self.spin_s = min(cfg.spin_s, self.dt_s / 4)  # never spin a whole tick: a SCHED_FIFO spinner gets throttled
        self.To, self.Ta = (worker.n_obs_steps, worker.n_action_steps) if worker is not None else (1, 1)
        # the fault to play, as a time: no list look-ups at each tick (inf: none, or played already)
        self.inject_at_s = inject[1] if inject is not None and inject[0] else math.inf
        self.hist, self.chunk, self.chunk_j0, self.j_last = [], None, 0, -1
        self.w_from = self.w_to = None          # the segment being interpolated: targets of steps j-1 and j
        self.state, self.k, self.t0_s, self.t_end_s, self.j = None, 0, time.monotonic(), t_end_s, 0
        self.pending = None                     # (stamp, agent_pos) of the step waiting for its camera frame
        self.obs_stamp_s = self.e2e_from_s = None   # the newest observation's stamp; a new chunk's, until commanded

    def run(self):
        """The ticks. Returns (outcome, fault): outcome 'success', 'timeout', 'unfinished' or 'fault'."""
        robot, safety, worker, dt_s = self.robot, self.safety, self.worker, self.dt_s
        read_state, command, monotonic = robot.read_state, robot.command, time.monotonic   # bound once, not per tick
        lat_state_read, lat_command, lat_tick, lat_e2e = (self.lat[s].append for s in
                                                          ("state_read", "command", "tick", "end_to_end"))
        try:
            while True:
                t_a = monotonic()
                if t_a >= self.inject_at_s:                        # --inject: the fault starts now
                    self._inject(t_a)
                self.state = state = read_state()
                t_c = monotonic()
                lat_state_read(t_c - t_a)
                fault = self._check(state, t_c)
                if fault:
                    return self._fault(fault)
                steps = self.k * dt_s / self.dt_policy_s           # policy steps since the episode's start
                self.j = j = int(steps + 1e-9)                     # policy step this tick falls in
                if j != self.j_last:                               # first tick of policy step j
                    if self.frames is not None:                    # off the clock, for the loop too
                        paused_s = self._render()
                        t_a, t_c = t_a + paused_s, t_c + paused_s
                    outcome = self._begin_step(state, j)
                    if outcome is not None:
                        return outcome, None
                if self.pending is not None:                       # pixels: has this step's frame come?
                    self._take_frame(t_c)
                if worker is not None and (got := worker.poll()) is not None:
                    self._take(got)
                w_from, w_to = self.w_from, self.w_to
                target = w_from if w_to is None else w_from + (w_to - w_from) * (steps - j)  # steps - j: in [0, 1)
                target, fault = safety.filter(target)
                if fault:
                    return self._fault(fault)
                command(target)
                t_d = monotonic()
                lat_command(t_d - t_c)
                if self.e2e_from_s is not None:                    # the first command of a new chunk
                    lat_e2e(t_d - self.e2e_from_s)
                    self.e2e_from_s = None
                if self.w_to is None and self.pending is None and not (worker is not None and worker.busy()):
                    self._next_chunk(j)
                # ---- absolute deadlines: tick k must end by t0 + (k + 1) dt
                now_s = monotonic()
                lat_tick(now_s - t_a)
                fault = safety.check_timing(self._count_tick(now_s))
                if fault:
                    return self._fault(fault)
                deadline_s = self.t0_s + self.k * dt_s
                if deadline_s >= self.t_end_s:                     # the next tick would start after the end
                    return "unfinished", None
                wait_until(deadline_s, self.spin_s)
        except Exception as e:  # noqa: BLE001 -- a lost connection, a refused command: hold, then stop, with the reason
            return self._fault(f"{type(e).__name__}: {e}")
        finally:  # on a fault (or an exception) the last safe command is a hold where the arms are
            self._hold()

    def _inject(self, now_s):
        """Play the --inject fault on the robot or the policy worker, once."""
        fault = self.inject[0]
        (self.worker if fault.startswith("worker") else self.robot).inject(fault)
        self.counts["injected_s"], self.inject[0], self.inject_at_s = now_s, None, math.inf

    def _check(self, state, now_s):
        """A fault of the state, the policy worker, or the frame the step awaits, at now_s; or None."""
        fault = self.safety.check_state(state, now_s) or (self.worker.check(now_s) if self.worker is not None else None)
        timeout_s = self.cfg.camera_timeout_s
        if not fault and self.pending is not None and now_s - self.pending[0] > timeout_s:  # the step's frame is late
            newest, error = self.camera.frame(), self.camera.stats().get("error")
            fault = (f"stale camera frame: none of the policy step's state {(now_s - self.pending[0]) * 1e3:.0f} ms "
                     f"on, the newest {(now_s - newest[0]) * 1e3:.0f} ms old (timeout {timeout_s * 1e3:.0f} ms)"
                     + (f"; the camera failed: {error}" if error else ""))
        return fault

    def _fault(self, message):
        self.counts["fault_s"] = time.monotonic()
        return "fault", message

    def _render(self):
        """Render the step's video frame off the clock: the deadlines move by the time it took, which it returns."""
        t_s = time.monotonic()
        self.frames.append(self.robot.render())
        paused_s = time.monotonic() - t_s
        self.t0_s, self.t_end_s = self.t0_s + paused_s, self.t_end_s + paused_s
        self.counts["paused_s"] += paused_s
        return paused_s

    def _begin_step(self, state, j):
        """The first tick of policy step j: score the step before (as env.step), then move on to the segment
        toward target j and take the step's observation. Returns 'success', 'timeout' or None (go on)."""
        robot = self.robot
        if j > 0 and robot.success():
            return "success"
        if robot.max_policy_steps is not None and j >= robot.max_policy_steps:
            return "timeout"
        self.w_from = Safety.hold(state) if self.w_to is None else self.w_to
        i = j - self.chunk_j0
        self.w_to = self.chunk[i].reshape(N_ARMS, 4) if self.chunk is not None and i < self.Ta else None
        if self.camera is not None:                            # pixels: the obs comes with the frame
            if self.pending is None:                           # (a camera still busy with the last is not rushed)
                self.camera.request(state)
                self.pending = (state["stamp_s"], agent_pos(state))
        elif state["obs"] is not None:                         # history at the policy rate, (To, Do)
            self._observe(state["obs"], state["stamp_s"])
        self.j_last = j
        return None

    def _observe(self, obs, stamp_s):
        """Append the step's observation to the history of To (filled with it at the episode's first step)."""
        self.hist, self.obs_stamp_s = (self.hist or [obs] * self.To)[1:] + [obs], stamp_s

    def _take_frame(self, now_s):
        """The pending step's observation, once a frame stamped at or after its state has come."""
        newest = self.camera.frame()
        if newest[0] >= self.pending[0]:
            self.lat["camera"].append(now_s - newest[0])
            (stamp_s, pos), self.pending = self.pending, None
            self._observe({"image": newest[1], "agent_pos": pos}, stamp_s)

    def _take(self, got):
        """A finished chunk: its targets from step j on (those of steps already past are skipped)."""
        chunk, stamp_s, self.chunk_j0, infer_s = got
        self.chunk = chunk
        self.lat["inference"].append(infer_s)
        self.counts["actions_skipped"] += min(self.j - self.chunk_j0, self.Ta)
        if self.j - self.chunk_j0 < self.Ta:
            self.w_to, self.e2e_from_s = chunk[self.j - self.chunk_j0].reshape(N_ARMS, 4), stamp_s

    def _next_chunk(self, j):
        """Nothing ahead: ask for the next chunk, from this step's obs (a dry run holds)."""
        if self.worker is None:
            self.w_to = self.w_from
            return
        self.worker.submit(policy_input(self.hist), self.obs_stamp_s, j)
        if (got := self.worker.poll()) is not None:            # inline: done already
            self._take(got)

    def _count_tick(self, now_s):
        """Tick k is over at now_s: count it, skip the ticks whose deadline has passed -> whether it missed its own."""
        self.k += 1
        counts, t0_s, dt_s = self.counts, self.t0_s, self.dt_s
        counts["ticks"] += 1
        missed = now_s > t0_s + self.k * dt_s
        counts["missed"] += missed
        if now_s > t0_s + (self.k + 1) * dt_s:                 # more than a period late: skip ticks
            k_now = int((now_s - t0_s) / dt_s)
            counts["skipped"] += k_now - self.k
            self.k = k_now
        return missed

    def _hold(self):
        """Command a hold where the arms are (when the last state tells where), and time it in counts["hold_s"]."""
        state = self.state
        if state is not None and all(np.isfinite(state[key]).all() for key in ("ee_pos", "gripper")):
            try:
                self.robot.command(Safety.hold(state))
                self.counts["hold_s"] = time.monotonic()
            except Exception:  # noqa: BLE001 -- the connection is gone: robot.stop() is the stop left
                self.counts["hold_s"] = None


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
    return Episode(cfg, robot, worker, safety, lat, counts, t_end_s, frames, camera, inject).run()


if __name__ == "__main__":
    from robot import RobotConfig
    from robot_io import percentiles

    class StubArms:
        """A backend whose arms stand still: a dry run holds them where they are."""
        max_policy_steps, joint_lower, joint_upper = None, np.full((N_ARMS, 7), -2.0), np.full((N_ARMS, 7), 2.0)

        def read_state(self):
            return dict(stamp_s=time.monotonic(), joint_pos=np.zeros((N_ARMS, 7)), obs=None,
                        ee_pos=np.tile([0.5, 0.0, 0.2], (N_ARMS, 1)), gripper=np.zeros(N_ARMS))

        def command(self, target):
            pass

        def success(self):
            return False

    cfg, arms = RobotConfig(hz=200.0), StubArms()
    lat, counts = {s: [] for s in LATENCY_KEYS}, dict(ticks=0, missed=0, skipped=0, actions_skipped=0)
    safety = Safety(cfg, 1.0 / cfg.hz, arms.joint_lower, arms.joint_upper)
    outcome = run_episode(cfg, arms, None, safety, lat, counts, time.monotonic() + 0.5)
    print(outcome, {key: counts[key] for key in ("ticks", "missed", "skipped")})
    print({s: percentiles(lat[s]) for s in ("state_read", "command", "tick")})
