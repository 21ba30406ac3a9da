"""PyBullet tasks and their scripted experts for Drift-Based Policy, with the seeds, demo files and videos of their
episodes.

Franka Panda gymnasium tasks (TASKS, registered on import): push (a block into EITHER of two goal regions, 50/50 per
expert episode; their mean, straight ahead, ends in a pocket: averaging the modes fails), lift (a block above 10 cm),
bimanual (two arms lift a bar by its ends). Actions: per arm an absolute end-effector (EE) target and a gripper command,
(x, y, z, g) with g in [0, 1] (0 open), clipped to the workspace (= action_space) and to `max_ee_step_m` from the EE,
then PyBullet IK at 10 Hz; grasps are purely physical. Observations: low-dim float32, named in obs_names.
info: "success", and "mode": the index in mode_names of the mode the episode has committed to (push: the side the
block has left the start line towards, success or not), -1 before that or on a unimodal task.
Seeds: demo episode i resets with demo_seed(seed, i), evaluation episode i with eval_seed(seed, i): never the same.
Demo files: load_demos reads and checks them; demonstrations.py makes the expert's and cuts training windows;
rollouts.py runs a chunk policy's episodes (ChunkEnv) and evaluates it.

    python envs.py --episodes 5    # the scripted expert on each task: success and env steps per second
    python envs.py --export DIR --task push --demos 200    # those demos as a LeRobot v3 dataset (lerobot_writer)
"""

import argparse
import math
import time
import zipfile
from dataclasses import dataclass

import gymnasium as gym
import numpy as np
import pybullet as p
import pybullet_data

import metaworld_tasks

TASKS, DEFAULT_TASK = {"push": "DBPPush-v0", "lift": "DBPLift-v0", "bimanual": "DBPBimanual-v0"}, "push"
OBS_MODES = ("state", "pixels")  # what a policy sees: true object state, or camera images and the arms' own pose


@dataclass
class SimConfig:
    control_hz: float = 10.0         # env steps per second of simulated time
    physics_hz: float = 120.0        # physics steps per second (substeps = physics_hz / control_hz)
    solver_iterations: int = 20      # constraint solver iterations per physics step
    max_ee_step_m: float = 0.04      # max EE displacement commanded per env step (m)
    finger_force_n: float = 20.0     # gripper finger motor force (N)
    friction: float = 1.5            # lateral friction of objects (fingers have 1.0 in the URDF)
    ik_iterations: int = 20          # PyBullet IK iterations per arm per env step
    image_hw: tuple = (240, 320)     # render() image height, width (px)
    camera_hw: tuple = (64, 64)      # obs_mode="pixels": each camera's image height, width (px)


# Workspace of every arm, world frame (m): x forward, y left, z up; table top at z = 0.
WS_LOW, WS_HIGH = np.array([0.30, -0.30, 0.005], dtype=np.float32), np.array([0.70, 0.30, 0.30], dtype=np.float32)
PANDA_REST = [0.0, -0.3, 0.0, -2.2, 0.0, 1.9, 0.785]  # elbow-up, hand down
EE_LINK, FINGERS, ARM_JOINTS = 11, (9, 10), list(range(7))
# Reward shaping: each distance term saturates here, so a block flung off (or through) the table costs
# no more than one 30 cm from where it should be: unbounded terms gave returns of -200 (DBPO's value spikes).
SHAPING_M = 0.3
MAX_OPENING, FINGER_SPEED = 0.08, 0.1  # both fingers fully open (m), max speed of each finger (m/s)


# ----------------------------------------------------------------------------- helpers

def resolve_task(task):
    """Short name or gym id -> (short name, gym id); mw-<name> is a Meta-World task (metaworld_tasks.py), registered
    on first use; unknown names raise ValueError."""
    for short, env_id in TASKS.items():
        if task in (short, env_id):
            return short, env_id
    if isinstance(task, str) and task.startswith(metaworld_tasks.PREFIX):
        return task, metaworld_tasks.register(task)
    raise ValueError(f"unknown task {task!r}; known tasks: {sorted(TASKS)} or {sorted(TASKS.values())}, "
                     f"or {metaworld_tasks.PREFIX}<name> for a Meta-World task (e.g. mw-assembly)")


def make_env(task=DEFAULT_TASK, render_mode=None, **kwargs):
    """gymnasium.make for a short name ("push") or gym id ("DBPPush-v0")."""
    return gym.make(resolve_task(task)[1], render_mode=render_mode, **kwargs)


def mode_names(task):
    """Names of a task's modes, the keys of evaluate()'s mode_fractions ([] for a unimodal task)."""
    return list(gym.spec(resolve_task(task)[1]).entry_point.mode_names)


def _shaped(distance):
    return min(float(distance), SHAPING_M)


def _clip_norm(v, max_norm):
    return v if (n := np.linalg.norm(v)) <= max_norm else v * (max_norm / n)


# ----------------------------------------------------------------------------- simulation

class Panda:
    """One fixed-base Panda in a PyBullet client: IK position control of the EE + gripper."""

    def __init__(self, cid, base_pos, ee_yaw, ik_iterations, visual=True):
        self.cid, self.ik_iterations = cid, ik_iterations
        # Its visual meshes are most of a client's memory (89 of 138 MB on bimanual) and only cameras need them.
        self.body = p.loadURDF("franka_panda/panda.urdf", base_pos, useFixedBase=True, physicsClientId=cid,
                               flags=0 if visual else p.URDF_IGNORE_VISUAL_SHAPES)
        self.ee_orn = p.getQuaternionFromEuler([math.pi, 0.0, ee_yaw])  # hand pointing down
        info = [p.getJointInfo(self.body, j, physicsClientId=cid) for j in ARM_JOINTS]
        self.joints = list(range(p.getNumJoints(self.body, physicsClientId=cid)))  # all: arm, hand, fingers
        self.lower, self.upper, self.ranges = [i[8] for i in info], [i[9] for i in info], [i[9] - i[8] for i in info]

    def ik(self, target):
        return list(p.calculateInverseKinematics(
            self.body, EE_LINK, target, self.ee_orn, self.lower, self.upper, self.ranges, PANDA_REST,
            maxNumIterations=self.ik_iterations, physicsClientId=self.cid)[:7])

    def reset(self, ee_pos):
        """Teleport to the joint configuration that puts the EE at ee_pos, gripper open."""
        for i in range(6):  # rest pose, then IK 5 times: IK is iterative from the current state, re-seed it
            for j, q in zip(ARM_JOINTS, self.ik(ee_pos) if i else PANDA_REST):
                p.resetJointState(self.body, j, q, physicsClientId=self.cid)
        for j in FINGERS:
            p.resetJointState(self.body, j, MAX_OPENING / 2, physicsClientId=self.cid)
        self.command(ee_pos, 0.0, finger_force=0.0)

    def command(self, ee_target, g, finger_force):
        p.setJointMotorControlArray(self.body, ARM_JOINTS, p.POSITION_CONTROL, targetPositions=self.ik(ee_target),
                                    forces=[87.0] * 4 + [12.0] * 3, physicsClientId=self.cid)
        for j in FINGERS:  # speed-limited fingers: fast ones tunnel into the object
            p.setJointMotorControl2(self.body, j, p.POSITION_CONTROL, MAX_OPENING / 2 * (1.0 - g),
                                    force=finger_force, maxVelocity=FINGER_SPEED, physicsClientId=self.cid)

    def ee_pos(self):
        return np.array(p.getLinkState(self.body, EE_LINK, computeForwardKinematics=True, physicsClientId=self.cid)[4])

    def opening(self):
        return sum(s[0] for s in p.getJointStates(self.body, list(FINGERS), physicsClientId=self.cid))

    def touches(self, body):
        return all(p.getContactPoints(self.body, body, linkIndexA=f, physicsClientId=self.cid) for f in FINGERS)


class PandaTableEnv(gym.Env):
    """Table, arms, clipped IK control, render, seeding; subclasses define the objects, obs_names, modes and score.
    obs_mode "state": obs = the state (Do,) named in obs_names; "pixels": obs = {"image": (V, 3, H, W) uint8 from the
    V fixed CAMERAS, "agent_pos": each arm's EE xyz and gripper opening (4 * n_arms,)}, no object state."""
    metadata, n_modes, mode_names = {"render_modes": ["rgb_array"], "render_fps": 10}, 0, []
    ARM_BASES, HOMES = [(0.0, 0.0, 0.0)], [(0.50, 0.0, 0.20)]  # world position of each Panda base, its EE at reset
    EE_YAW = 0.0  # hand yaw; fingers close along world y at 0
    # Fixed cameras of obs_mode "pixels": target xyz (m), distance (m), yaw, pitch (deg), vertical field of view (deg)
    CAMERAS = [((0.45, 0.0, 0.0), 0.45, 90.0, -65.0, 60.0)]  # from beyond the table, towards the arm's base

    def __init__(self, render_mode=None, cfg: SimConfig = SimConfig(), obs_mode="state", terminate_on_success=True):
        """terminate_on_success=False: an episode ends only at the time limit (truncated), its rewards run on after a
        success, and info["success"] says whether it succeeded at any step so far."""
        if render_mode not in (None, "rgb_array"):
            raise ValueError(f"render_mode must be None or 'rgb_array', got {render_mode!r}")
        if obs_mode not in OBS_MODES:
            raise ValueError(f"obs_mode must be one of {OBS_MODES}, got {obs_mode!r}")
        self.render_mode, self.cfg, self.n_arms, self.obs_mode = render_mode, cfg, len(self.ARM_BASES), obs_mode
        self.terminate_on_success, self.succeeded = bool(terminate_on_success), False
        self.cid = cid = p.connect(p.DIRECT)
        p.setAdditionalSearchPath(pybullet_data.getDataPath(), physicsClientId=cid)
        p.setGravity(0, 0, -9.81, physicsClientId=cid)
        self.n_substeps = round(cfg.physics_hz / cfg.control_hz)
        p.setPhysicsEngineParameter(fixedTimeStep=1.0 / cfg.physics_hz, numSolverIterations=cfg.solver_iterations,
                                    deterministicOverlappingPairs=1, physicsClientId=cid)
        # A thin box as table top: cheaper than loading a table mesh.
        box = dict(shapeType=p.GEOM_BOX, halfExtents=[0.6, 0.6, 0.01], physicsClientId=cid)
        shapes = p.createCollisionShape(**box), p.createVisualShape(**box, rgbaColor=[0.8, 0.75, 0.65, 1])
        self.table = p.createMultiBody(0, *shapes, [0.5, 0.0, -0.01], physicsClientId=cid)
        visual = render_mode is not None or obs_mode == "pixels"  # else nothing is ever drawn
        self.arms = [Panda(cid, base, self.EE_YAW, cfg.ik_iterations, visual) for base in self.ARM_BASES]
        self.objects, self._shapes = [], {}  # bodies re-created at every reset, their shapes
        lo, hi = (np.tile(np.append(ws, g).astype(np.float32), self.n_arms) for ws, g in ((WS_LOW, 0), (WS_HIGH, 1)))
        self.action_space = gym.spaces.Box(lo, hi, dtype=np.float32)
        # Bounds: positions within 5 m, gripper opening 0..0.1 m, sin/cos in [-1, 1].
        lo, hi = zip(*[(0, 0.1) if n.startswith("gripper") else (-1, 1) if "_yaw" in n else (-5, 5) for n in self.obs_names])
        self.state_space = gym.spaces.Box(np.array(lo, np.float32), np.array(hi, np.float32), dtype=np.float32)
        P = 4 * self.n_arms  # agent_pos: the first P state entries (EE xyz, gripper per arm)
        self.observation_space = self.state_space if obs_mode == "state" else gym.spaces.Dict({
            "image": gym.spaces.Box(0, 255, (len(self.CAMERAS), 3, *cfg.camera_hw), np.uint8),
            "agent_pos": gym.spaces.Box(self.state_space.low[:P], self.state_space.high[:P], dtype=np.float32)})
        h, w = cfg.camera_hw
        self._cameras = [(p.computeViewMatrixFromYawPitchRoll(target, dist, yaw, pitch, 0.0, 2, physicsClientId=cid),
                          p.computeProjectionMatrixFOV(fov, w / h, 0.05, 5.0, physicsClientId=cid))
                         for target, dist, yaw, pitch, fov in self.CAMERAS]

    def reset(self, *, seed=None, options=None):
        super().reset(seed=seed)
        # Objects are re-created rather than moved: PyBullet keeps contact caches of moved
        # bodies (saveState/restoreState included), which makes rollouts depend on history.
        for body in self.objects:
            p.removeBody(body, physicsClientId=self.cid)
        self.objects = []
        for arm, home in zip(self.arms, self.HOMES):
            arm.reset(home)
        self._reset_objects(self.np_random)
        self.succeeded = False
        return self.get_obs(), {"success": False, "mode": -1}

    def step(self, action):
        self.apply_action(action)
        self.step_physics(self.n_substeps)
        obs, (reward, success, mode) = self.get_obs(), self.score()
        self.succeeded = self.succeeded or bool(success)
        return obs, float(reward), bool(success) and self.terminate_on_success, False, \
            {"success": self.succeeded, "mode": int(mode)}

    def render(self):
        if self.render_mode != "rgb_array":
            return None
        (h, w), cid = self.cfg.image_hw, self.cid
        view = p.computeViewMatrixFromYawPitchRoll([0.45, 0.0, 0.05], 0.85, 90.0, -40.0, 0.0, 2, physicsClientId=cid)
        proj = p.computeProjectionMatrixFOV(50.0, w / h, 0.05, 5.0, physicsClientId=cid)
        img = p.getCameraImage(w, h, view, proj, renderer=p.ER_TINY_RENDERER, physicsClientId=cid)[2]
        return np.asarray(img, dtype=np.uint8).reshape(h, w, 4)[:, :, :3].copy()

    def close(self):
        if self.cid is not None and p.isConnected(self.cid):
            p.disconnect(self.cid)
        self.cid = None

    # ---- real-time control (robot.py): step = apply_action + step_physics(n_substeps)
    def apply_action(self, action):
        """Set motor targets for action (n_arms * 4,), clipped to the workspace and max_ee_step_m; no physics step."""
        for arm, a in zip(self.arms, np.asarray(action, dtype=np.float64).reshape(self.n_arms, 4)):
            ee = arm.ee_pos()
            target = ee + _clip_norm(np.clip(a[:3], WS_LOW, WS_HIGH) - ee, self.cfg.max_ee_step_m)  # gentle contacts
            arm.command(target, float(np.clip(a[3], 0.0, 1.0)), self.cfg.finger_force_n)

    def step_physics(self, n_substeps):
        """Advance physics by n_substeps steps of 1 / physics_hz seconds, holding the motor targets."""
        for _ in range(n_substeps):
            p.stepSimulation(physicsClientId=self.cid)

    def arm_state(self):
        """Per arm, for a real-time controller: joint_pos (7,), ee_pos (3,) (m, world), gripper (opening, m)."""
        return [{"joint_pos": np.array([s[0] for s in p.getJointStates(a.body, ARM_JOINTS, physicsClientId=self.cid)]),
                 "ee_pos": a.ee_pos(), "gripper": float(a.opening())} for a in self.arms]

    def state(self):
        """The state (Do,) named in obs_names, whatever the obs_mode (the scripted experts act on it)."""
        obs = np.concatenate([np.concatenate([a.ee_pos(), [a.opening()]]) for a in self.arms] + [self._object_obs()])
        return np.clip(obs.astype(np.float32), self.state_space.low, self.state_space.high)

    def camera_images(self):
        """The fixed cameras' images (V, 3, H, W) uint8, H, W = cfg.camera_hw."""
        (h, w), cid = self.cfg.camera_hw, self.cid
        images = [p.getCameraImage(w, h, view, proj, renderer=p.ER_TINY_RENDERER, flags=p.ER_NO_SEGMENTATION_MASK,
                                   physicsClientId=cid)[2] for view, proj in self._cameras]
        return np.stack([np.asarray(im, np.uint8).reshape(h, w, 4)[:, :, :3].transpose(2, 0, 1) for im in images])

    def scene_pose(self):
        """What a camera sees of the scene, flat: every arm joint's position, every object's base pose (xyz, xyzw)."""
        cid = self.cid
        q = [s[0] for a in self.arms for s in p.getJointStates(a.body, a.joints, physicsClientId=cid)]
        return np.array(q + [v for b in self.objects for part in p.getBasePositionAndOrientation(b, physicsClientId=cid)
                             for v in part])

    def set_scene_pose(self, pose):
        """Teleport arms and objects to a scene_pose() of an env of this task (a mirror to render; no physics)."""
        pose, cid = iter(np.asarray(pose, np.float64).tolist()), self.cid
        for a in self.arms:
            for j in a.joints:
                p.resetJointState(a.body, j, next(pose), physicsClientId=cid)
        for b in self.objects:
            p.resetBasePositionAndOrientation(b, [next(pose) for _ in range(3)], [next(pose) for _ in range(4)],
                                              physicsClientId=cid)

    def get_obs(self):
        """Observation of the current state in obs_mode, as reset and step return it."""
        state = self.state()
        return state if self.obs_mode == "state" else {"image": self.camera_images(), "agent_pos": state[:4 * self.n_arms]}

    def _box(self, half, mass, rgba, pos, yaw):
        key, cid = (tuple(half), tuple(rgba)), self.cid
        if key not in self._shapes:  # shapes outlive bodies: create them once, not every reset
            self._shapes[key] = (p.createCollisionShape(p.GEOM_BOX, halfExtents=half, physicsClientId=cid),
                                 p.createVisualShape(p.GEOM_BOX, halfExtents=half, rgbaColor=rgba, physicsClientId=cid))
        body = p.createMultiBody(mass, *self._shapes[key], pos, p.getQuaternionFromEuler([0, 0, yaw]), physicsClientId=cid)
        p.changeDynamics(body, -1, lateralFriction=self.cfg.friction, physicsClientId=cid)
        self.objects.append(body)
        return body

    def _pose(self, body):
        pos, orn = p.getBasePositionAndOrientation(body, physicsClientId=self.cid)
        return np.array(pos), orn


# ----------------------------------------------------------------------------- tasks

class BlockEnv(PandaTableEnv):
    """One arm and one 4 cm cube placed near (0.5, 0) with random offset and yaw; obs (9,) as in obs_names."""
    BLOCK_CENTRE, BLOCK_HALF, BLOCK_MASS = (0.5, 0.0), 0.02, 0.1  # mean initial xy (m), cube half size (m), kg
    BLOCK_RANGE, BLOCK_YAW = 0.02, 0.3  # initial xy offset ~ U(-range, range) (m), yaw ~ U(-yaw, yaw) (rad)
    obs_names = ["ee_x", "ee_y", "ee_z", "gripper", "block_x", "block_y", "block_z", "block_sin_yaw", "block_cos_yaw"]

    def _reset_objects(self, rng):
        xy = np.array(self.BLOCK_CENTRE) + rng.uniform(-self.BLOCK_RANGE, self.BLOCK_RANGE, size=2)
        self.block = self._box([self.BLOCK_HALF] * 3, self.BLOCK_MASS, [0.9, 0.2, 0.2, 1],
                               [*xy, self.BLOCK_HALF], rng.uniform(-self.BLOCK_YAW, self.BLOCK_YAW))

    def _object_obs(self):
        pos, orn = self._pose(self.block)
        return np.concatenate([pos, [math.sin(yaw := p.getEulerFromQuaternion(orn)[2]), math.cos(yaw)]])


class PushEnv(BlockEnv):
    """Push the block to the left (+y) or right (-y) goal, 56 deg off straight ahead; a pocket dead ahead traps it."""
    BLOCK_CENTRE, BLOCK_RANGE = (0.40, 0.0), 0.01  # nearly symmetric starts (m), so the state hides the mode
    GOALS, GOAL_RADIUS = np.array([[0.50, 0.15], [0.50, -0.15]]), 0.045  # fixed, not in obs (m; index = mode), radius
    # Pocket walls (centre xy, half sizes; m), inside 6 x 6.5 x 3.5 cm: the hand passes over, a block only goes deeper.
    POCKET = [((0.555, 0.0), (0.005, 0.04, 0.0175)),
              ((0.5175, 0.035), (0.0325, 0.005, 0.0175)), ((0.5175, -0.035), (0.0325, 0.005, 0.0175))]
    HOMES, n_modes, mode_names = [(0.37, 0.0, 0.10)], 2, ["left", "right"]  # EE behind the block, in line with pocket
    COMMITTED_M = 0.02  # info["mode"] names a side once the block is this far off y = 0 (starts within 1 cm)

    def __init__(self, render_mode=None, cfg: SimConfig = SimConfig(), obs_mode="state", terminate_on_success=True):
        super().__init__(render_mode, cfg, obs_mode, terminate_on_success)
        for (x, y), rgba in zip(self.GOALS, [[0.2, 0.7, 0.2, 0.5], [0.2, 0.3, 0.8, 0.5]]):  # visual-only discs
            vis = p.createVisualShape(p.GEOM_CYLINDER, radius=self.GOAL_RADIUS, length=0.002, rgbaColor=rgba,
                                      physicsClientId=self.cid)
            p.createMultiBody(0, -1, vis, [x, y, 0.001], physicsClientId=self.cid)

    def _reset_objects(self, rng):
        super()._reset_objects(rng)
        for xy, half in self.POCKET:  # mass 0: static
            self._box(half, 0.0, [0.3, 0.3, 0.3, 1], [*xy, half[2]], 0.0)

    def score(self):
        pos, _ = self._pose(self.block)
        d_goal = np.linalg.norm(self.GOALS - pos[:2], axis=1)
        success = d_goal.min() < self.GOAL_RADIUS
        reward = -_shaped(d_goal.min()) - 0.5 * _shaped(np.linalg.norm(self.arms[0].ee_pos() - pos)) + 10.0 * success
        committed = success or abs(pos[1]) > self.COMMITTED_M  # the block has left the start line: a side is chosen
        return reward, success, int(d_goal.argmin()) if committed else -1


class LiftEnv(BlockEnv):
    """Grasp the block (random position within +-3 cm) and lift its centre above 10 cm."""
    BLOCK_MASS, BLOCK_RANGE, BLOCK_YAW, LIFT_Z = 0.05, 0.03, 0.15, 0.10  # fixed-yaw fingers slip on a block turned more
    CAMERAS = [((0.48, 0.0, 0.0), 0.40, 90.0, -55.0, 60.0)]  # lower: the lift's height shows

    def score(self):
        pos, _ = self._pose(self.block)
        success = pos[2] > self.LIFT_Z
        reward = (-_shaped(np.linalg.norm(self.arms[0].ee_pos() - pos)) - 2.0 * _shaped(max(0.0, self.LIFT_Z - pos[2]))
                  + 10.0 * success)
        return reward, success, -1


class BimanualEnv(PandaTableEnv):
    """Two Pandas side by side lift a 36 cm bar, each gripping one end. Success: both ends above 8 cm while both
    grippers touch the bar (one arm can't do it). obs (14,): see obs_names; arm 0 and bar end 0 (at reset) are on -y."""
    ARM_BASES, HOMES = [(0.0, -0.35, 0.0), (0.0, 0.35, 0.0)], [(0.50, -0.15, 0.20), (0.50, 0.15, 0.20)]
    EE_YAW, BAR_HALF, LIFT_Z = math.pi / 2, np.array([0.02, 0.18, 0.02]), 0.08  # fingers close along x, across the bar
    CAMERAS = [((0.50, 0.0, 0.02), 0.60, 90.0, -55.0, 60.0)]  # wider: both arms and the whole bar
    obs_names = ([f"ee0_{c}" for c in "xyz"] + ["gripper0"] + [f"ee1_{c}" for c in "xyz"] + ["gripper1"]
                 + [f"bar_end0_{c}" for c in "xyz"] + [f"bar_end1_{c}" for c in "xyz"])

    def _reset_objects(self, rng):
        xy = np.array([0.5, 0.0]) + rng.uniform(-0.02, 0.02, size=2)
        self.bar = self._box(self.BAR_HALF, 0.2, [0.9, 0.6, 0.1, 1], [*xy, self.BAR_HALF[2]], rng.uniform(-0.1, 0.1))

    def bar_ends(self):
        pos, orn = self._pose(self.bar)
        axis = np.array(p.getMatrixFromQuaternion(orn)).reshape(3, 3)[:, 1]  # bar's long (local y) axis
        return pos - axis * self.BAR_HALF[1], pos + axis * self.BAR_HALF[1]  # (3,), (3,)

    def _object_obs(self):
        return np.concatenate(self.bar_ends())

    def score(self):
        ends, held = self.bar_ends(), [arm.touches(self.bar) for arm in self.arms]
        success = min(e[2] for e in ends) > self.LIFT_Z and all(held)
        reward = (-sum(_shaped(np.linalg.norm(a.ee_pos() - e)) for a, e in zip(self.arms, ends)) * 0.5
                  - sum(_shaped(max(0.0, self.LIFT_Z - e[2])) for e in ends) + 10.0 * success)
        return reward, success, -1


for _env_id, _cls in zip(TASKS.values(), (PushEnv, LiftEnv, BimanualEnv)):
    gym.register(_env_id, entry_point=_cls, max_episode_steps=60)


# ----------------------------------------------------------------------------- scripted experts
# Experts act on the current obs only (+ push's goal choice), no timers: a policy seeing the state knows the phase.
EXPERT_STEP_M = 0.03  # expert moves its EE at most this far per step (below max_ee_step_m)


class PushExpert:
    """Get behind the block (opposite the goal), lower closed fingers, push through its centre; back off if it turns."""
    HOVER_Z, PUSH_Z, CONTACT = 0.08, 0.02, 0.045  # heights, EE-block gap pushing (m)
    # Aim 3 cm past the block centre, back off once the hand is 1 cm off the push line: 99.7 % success over 1200 seeded
    # episodes, against 96.8 % with (0.5 cm, 2 cm), whose pushes turned the block off line into timeouts
    # (results/push-screens/expert_variants.py).
    AHEAD, LATERAL = 0.03, 0.01

    def __init__(self, task_cls, rng, noise_m):
        self.rng, self.noise_m, self.mode = rng, noise_m, int(rng.integers(2))  # 50/50 goal choice: the multimodality
        self.goal = task_cls.GOALS[self.mode]

    def target(self, obs):
        ee, block, rel = obs[0:3], obs[4:6], obs[0:2] - obs[4:6]  # rel: EE xy relative to the block
        d = (self.goal - block) / (np.linalg.norm(self.goal - block) + 1e-9)  # push direction
        along, lat = rel @ d, np.linalg.norm(rel - (rel @ d) * d)
        if ee[2] < 0.05:
            if along < -0.025 and lat < self.LATERAL:  # behind the block: push through its centre
                return np.array([*(block + d * self.AHEAD), self.PUSH_Z])
            return np.array([*ee[:2], self.HOVER_Z])  # low but misplaced: back off upwards
        pre = block - d * (self.CONTACT + 0.02)
        err = np.linalg.norm(ee[:2] - pre)
        # Funnel: descend as the EE lines up with the pre-push point.
        return np.array([*pre, self.PUSH_Z + np.clip((err - 0.005) * 5, 0, self.HOVER_Z - self.PUSH_Z)])

    def act(self, obs):
        ee = obs[0:3]
        pos = ee + _clip_norm(self.target(obs) - ee, EXPERT_STEP_M) + self.rng.normal(0, self.noise_m, 3)
        return np.array([*pos, 1.0], dtype=np.float32)


class GraspExpert:
    """Lift, bimanual: each arm funnels onto its grasp point, gripper open, closes; all lift once every arm holds."""
    mode, LIFT_Z = -1, 0.2  # no goal choice; EE height to lift to (m)

    def __init__(self, task_cls, rng, noise_m):
        self.rng, self.noise_m, self.n_arms = rng, noise_m, len(task_cls.ARM_BASES)

    def grasp_points(self, obs):
        if self.n_arms == 1:
            return [obs[4:7]]  # block centre
        end0, end1 = obs[8:11], obs[11:14]
        inward = (end1 - end0) / np.linalg.norm(end1 - end0) * 0.04  # grip 4 cm in from each tip
        return [end0 + inward, end1 - inward]

    def act(self, obs):
        arms = [(obs[4 * i:4 * i + 3], obs[4 * i + 3], pt) for i, pt in enumerate(self.grasp_points(obs))]
        # Holding = fingers closed on the object (a 4 cm object stops them near 4 cm).
        holding = [opening < 0.042 and np.linalg.norm(ee - pt) < 0.025 for ee, opening, pt in arms]
        actions = []
        for (ee, opening, pt), held in zip(arms, holding):
            if held:
                goal, g = (np.array([*ee[:2], self.LIFT_Z]) if all(holding) else ee), 1.0
            else:  # funnel: the EE descends as its xy lines up with the grasp point
                err = np.linalg.norm(ee[:2] - pt[:2])
                goal = np.array([*pt[:2], pt[2] + np.clip((err - 0.004) * 5, 0, 0.08)])
                g = 1.0 if err < 0.012 and ee[2] - pt[2] < 0.012 else 0.0
            pos = ee + _clip_norm(goal - ee, EXPERT_STEP_M) + self.rng.normal(0, self.noise_m, 3)
            actions.append([*pos, g])
        return np.concatenate(actions).astype(np.float32)  # (Da,)


def make_expert(env, rng, noise_m=0.004):
    """Scripted expert for env or its task class (new after every reset; it acts on the state alone), Gaussian
    action noise noise_m (m); .mode: goal index or -1."""
    cls = env if isinstance(env, type) else type(env.unwrapped)
    if cls is metaworld_tasks.MetaWorldEnv:
        return metaworld_tasks.make_expert(env, rng)
    return {PushEnv: PushExpert, LiftEnv: GraspExpert, BimanualEnv: GraspExpert}[cls](cls, rng, noise_m)


# ----------------------------------------------------------------------------- seeds, demo files

DEMO_VERSION = 2  # of the experts: a cached demo file of another version is regenerated (2: push's AHEAD, LATERAL)


def demo_seed(seed, i):
    """Reset seed of demo episode i (disjoint from eval_seed for seed < 100, i < 10_000)."""
    return 1_000_000 + seed * 10_000 + i


def eval_seed(seed, i):
    """Reset seed of evaluation episode i."""
    return seed * 10_000 + i


def episode_seed(base, count):
    """Reset seed of the count-th episode after one reset with seed `base` (rollouts.ChunkEnv's autoresets)."""
    return base if count == 0 else int(np.random.SeedSequence([base, count]).generate_state(1)[0])


def expert_episode(env, reset_seed):
    """One noisy expert rollout -> (states (T, Do), actions (T, Da), last info, images (T, V, 3, H, W) of an env in
    obs_mode "pixels", else None). The expert acts on the state in either mode."""
    obs, _ = env.reset(seed=reset_seed)
    # The expert's generator must not replay the env's reset stream: a shared stream would
    # correlate the goal choice with the initial block position and leak the mode into obs.
    expert = make_expert(env, np.random.default_rng([reset_seed, 1]))
    states, actions, images, terminated, truncated = [], [], [], False, False
    while not (terminated or truncated):
        states.append(env.unwrapped.state())
        actions.append(expert.act(states[-1]))
        if isinstance(obs, dict):
            images.append(obs["image"])
        obs, _, terminated, truncated, info = env.step(actions[-1])
    return np.stack(states), np.stack(actions), info, np.stack(images) if images else None


def load_demos(path):
    """Load a demo .npz into a dict of arrays, checking keys, shapes and episode_ends."""
    try:
        with np.load(path) as f:
            data = {k: f[k] for k in f.files}
    except (OSError, EOFError, ValueError, zipfile.BadZipFile) as e:  # truncated or not an .npz
        raise ValueError(f"demo file {path} is unreadable ({type(e).__name__}: {e})") from None
    if missing := {"obs", "actions", "episode_ends", "modes"} - set(data):
        raise ValueError(f"{path}: missing arrays {sorted(missing)}")
    obs, actions, ends = data["obs"], data["actions"], data["episode_ends"]
    if obs.ndim != 2 or actions.ndim != 2 or len(obs) != len(actions):
        raise ValueError(f"{path}: expected obs (T, Do) and actions (T, Da) with equal T, got {obs.shape} and {actions.shape}")
    if ends.ndim != 1 or len(ends) == 0 or ends[-1] != len(obs) or np.any(np.diff(ends) <= 0) or ends[0] <= 0:
        raise ValueError(f"{path}: episode_ends must be increasing positive ints ending at T={len(obs)}, got {ends}")
    if data["modes"].shape != ends.shape:
        raise ValueError(f"{path}: modes must have shape {ends.shape} (one per episode), got {data['modes'].shape}")
    if "image" in data and (data["image"].ndim != 5 or data["image"].dtype != np.uint8 or len(data["image"]) != len(obs)
                            or data.get("agent_pos", np.zeros((0, 0))).shape[:1] != (len(obs),)):
        raise ValueError(f"{path}: expected image (T={len(obs)}, V, 3, H, W) uint8 and agent_pos (T, P), got "
                         f"{data['image'].shape} {data['image'].dtype} and {data.get('agent_pos', np.zeros(0)).shape}")
    return data


# ----------------------------------------------------------------------------- quick demo

def main(argv=None):
    """The command line: the expert check of every task, or --export."""
    parser = argparse.ArgumentParser(description="Run the scripted expert on each task; print success and speed.")
    parser.add_argument("--task", default="all", help=f"one of {sorted(TASKS)} or 'all'")
    parser.add_argument("--episodes", type=int, default=5, help="expert episodes per task")
    parser.add_argument("--obs", default="state", choices=OBS_MODES, help="observations (pixels: the render cost shows)")
    parser.add_argument("--export", metavar="DIR", help="write --demos scripted demos of --task (seed 0, the cache of "
                        "demonstrations.py) to DIR as a LeRobot v3 dataset, instead of the check above")
    parser.add_argument("--demos", type=int, default=200, help="demos that --export writes")
    args = parser.parse_args(argv)
    if args.export:
        import warnings
        with warnings.catch_warnings():    # importing demonstrations imports this file again, as envs: its
            warnings.simplefilter("ignore")    # registration of the tasks replaces this one's, which is what we want
            import demonstrations, lerobot_writer
        short = resolve_task("push" if args.task == "all" else args.task)[0]
        demo = load_demos(demonstrations.collect_demos(short, args.demos, obs_mode=args.obs))
        lerobot_writer.write_lerobot(args.export, demo, fps=round(SimConfig().control_hz), task=TASKS[short])
        print(f"wrote {len(demo['episode_ends'])} {short} demos to {args.export} (LeRobot v3)")
        return
    for short in sorted(TASKS) if args.task == "all" else [resolve_task(args.task)[0]]:
        env, t0 = make_env(short, obs_mode=args.obs), time.perf_counter()
        episodes = [expert_episode(env, eval_seed(0, i)) for i in range(args.episodes)]
        n_steps, infos = sum(len(e[0]) for e in episodes), [e[2] for e in episodes]  # (+ expert time)
        print(f"{TASKS[short]:15s} {args.obs} Do={env.unwrapped.state_space.shape[0]:2d} Da={env.action_space.shape[0]} "
              f"success {sum(i['success'] for i in infos)}/{args.episodes} steps/ep {n_steps / args.episodes:.1f} env steps/s "
              f"{n_steps / (time.perf_counter() - t0):.0f} final modes {[i['mode'] for i in infos]}")
        env.close()


if __name__ == "__main__":
    main()
