"""The safety layer of robot.py's control loop: what stands between the policy and the arms (ROBOT.md, Safety).

  limits  the target is clipped and the tick counted: the workspace box, the EE step per tick (a speed limit),
          the gripper command in [0, 1];
  faults  the loop holds position and stops: NaN/inf in the state or the action, a stale state or one stamped
          ahead of the loop's clock, a joint near its limit, a streak of missed deadlines.

    python robot_safety.py      # a quick demo: a jump clipped to one tick's step, a NaN refused
"""
import numpy as np

from robot_io import N_ARMS, hold_target

FINITE_KEYS = ("joint_pos", "ee_pos", "gripper", "obs")   # the state's arrays that must hold no NaN/inf


class Safety:
    """Stands between policy and robot. Limits (clipped, counted): workspace box, EE step per
    tick, gripper in [0, 1]. Faults (the loop holds position and stops): NaN/inf in state or
    action, a stale state, a joint near its limit, an overrun streak. Methods return a fault
    message or None; targets are (N_ARMS, 4) arrays of (x, y, z, g)."""

    def __init__(self, cfg, dt_s, joint_lower, joint_upper):
        self.dt_s = dt_s
        self.state_timeout_s, self.max_overrun_streak = cfg.state_timeout_s, cfg.max_overrun_streak
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
        """A fault of the robot state read at now_s (every tick), or None."""
        for key in FINITE_KEYS:
            x = state[key]
            if x is not None and not np.isfinite(x).all():
                return "non-finite robot state (NaN/inf)"
        age_s = now_s - state["stamp_s"]
        if age_s > self.state_timeout_s:
            return f"stale robot state: {age_s * 1e3:.1f} ms old (watchdog {self.state_timeout_s * 1e3:.0f} ms)"
        if age_s < -self.state_timeout_s:
            return f"robot state stamped {-age_s * 1e3:.0f} ms ahead of the loop's clock: the robot's clock jumped"
        bad = (state["joint_pos"] < self.joint_lo) | (state["joint_pos"] > self.joint_hi)
        if bad.any():
            arm, joint = np.argwhere(bad)[0]
            return f"arm {arm} joint {joint} at {state['joint_pos'][arm, joint]:.3f} rad is within the limit margin"
        return None

    def check_timing(self, missed):
        """Count a tick that missed its deadline (or reset the streak); a fault after max_overrun_streak in a row."""
        self.overrun_streak = self.overrun_streak + 1 if missed else 0
        if self.overrun_streak >= self.max_overrun_streak:
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


if __name__ == "__main__":
    from types import SimpleNamespace
    cfg = SimpleNamespace(state_timeout_s=0.05, max_overrun_streak=10, workspace_low_m=(0.2, -0.5, 0.0),
                          workspace_high_m=(0.8, 0.5, 0.5), max_ee_speed_m_s=0.5, joint_margin_rad=0.02)
    safety = Safety(cfg, 0.01, np.full((N_ARMS, 7), -2.0), np.full((N_ARMS, 7), 2.0))
    start = np.array([[0.5, -0.15, 0.2, 0.0], [0.5, 0.15, 0.2, 0.0]])
    safety.filter(start)
    jump, _ = safety.filter(start + [[0.1, 0, 0, 0], [0, 0, 0, 2.0]])   # 10 cm in one tick; gripper 2
    print("10 cm jump ->", jump[0, :3] - start[0, :3], "m; gripper", jump[1, 3], "; clips", safety.clips)
    print("NaN target ->", safety.filter(np.full((N_ARMS, 4), np.nan))[1])
