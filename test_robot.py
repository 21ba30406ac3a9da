"""Tests of robot.py and the modules of its loop (robot_loop, robot_safety, robot_io, robot_camera, robot_record):
the safety layer, the control loop (faults, interpolation, late chunks, cameras), sim runs with their stats, videos,
injected faults, recording demos, and refused checkpoints.

    python -m pytest -q test_robot.py       # about a minute on 2 CPU cores
"""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

import dataset_io
import dbp
import envs
import robot
import robot_camera
import robot_io
import robot_loop
import robot_safety
import train
import training
from conftest import DEVICE, TINY, gif_frames, save_tiny_policy

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- robot.py
def _robot_state(**kw):
    """A healthy two-arm state at the homes, stamped now."""
    state = dict(stamp_s=0.0, joint_pos=np.zeros((2, 7)), ee_pos=np.array([[0.5, -0.15, 0.2], [0.5, 0.15, 0.2]]),
                 gripper=np.array([0.08, 0.08]), obs=np.zeros(14, np.float32))
    state.update(kw)
    return state


def _safety(**kw):
    cfg = robot.RobotConfig(**kw)
    return robot_safety.Safety(cfg, 1.0 / cfg.hz, np.full((2, 7), -2.0), np.full((2, 7), 2.0))


def _target(xyz0=(0.5, -0.15, 0.2), xyz1=(0.5, 0.15, 0.2), g=(0.0, 0.0)):
    return np.array([[*xyz0, g[0]], [*xyz1, g[1]]])


# ----------------------------------------------------------------------------- safety layer
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_action_and_state_are_faults(bad):
    safety = _safety()
    target = _target()
    target[1, 2] = bad
    safe, fault = safety.filter(target)
    assert safe is None and "non-finite" in fault
    assert "non-finite" in safety.check_state(_robot_state(ee_pos=np.array([[0.5, 0.0, bad], [0.5, 0.1, 0.2]])), 0.0)
    assert "non-finite" in safety.check_state(_robot_state(obs=np.full(14, bad)), 0.0)
    assert safety.check_state(_robot_state(), 0.0) is None


def test_out_of_box_targets_are_clipped_into_the_workspace():
    safety = _safety()
    safe, fault = safety.filter(_target(xyz0=(2.0, -1.0, -0.5), xyz1=(0.0, 1.0, 3.0)))
    assert fault is None
    lo, hi = np.array(safety.box_lo), np.array(safety.box_hi)
    assert np.allclose(safe[0, :3], [hi[0], lo[1], lo[2]]) and np.allclose(safe[1, :3], [lo[0], hi[1], hi[2]])
    assert safety.clips["workspace"] == 1


def test_huge_steps_are_limited_per_tick_and_small_ones_pass():
    safety = _safety(hz=100.0, max_ee_speed_m_s=0.5)                  # 5 mm per tick
    start, _ = safety.filter(_target())
    safe, fault = safety.filter(_target(xyz0=(0.6, -0.15, 0.2), xyz1=(0.5, 0.15, 0.0)))  # 10 cm, 20 cm jumps
    assert fault is None
    assert np.allclose(np.linalg.norm(safe[:, :3] - start[:, :3], axis=1), 0.005)
    assert np.allclose(safe[0, :3], [0.505, -0.15, 0.2])                # along the commanded direction
    small = safe.copy()
    small[:, 0] += 0.001
    assert np.allclose(safety.filter(small)[0], small) and safety.clips["step"] == 1


def test_gripper_is_bounded():
    safe, fault = _safety().filter(_target(g=(1.7, -0.3)))
    assert fault is None and safe[0, 3] == 1.0 and safe[1, 3] == 0.0


def test_stale_state_and_joint_limits_are_faults():
    safety = _safety(state_timeout_s=0.05)
    assert safety.check_state(_robot_state(stamp_s=10.0), 10.04) is None
    assert "stale" in safety.check_state(_robot_state(stamp_s=10.0), 10.06)
    joints = np.zeros((2, 7))
    joints[1, 3] = 1.99                                                # 1 cm from the 2 rad limit
    assert "arm 1 joint 3" in safety.check_state(_robot_state(joint_pos=joints), 0.0)


def test_overrun_streak_is_a_fault_and_a_met_deadline_resets_it():
    safety = _safety(max_overrun_streak=3)
    assert [safety.check_timing(m) for m in (True, True, False, True, True)] == [None] * 5
    assert "3 consecutive missed deadlines" in safety.check_timing(True)


# ----------------------------------------------------------------------------- control loop
class FakeArms:
    """A backend that goes bad after some reads: the loop must hold and stop."""
    max_policy_steps = None
    joint_lower, joint_upper = np.full((2, 7), -2.0), np.full((2, 7), 2.0)

    def __init__(self, spoil, after=20):
        self.spoil, self.after, self.reads, self.commands, self.stopped = spoil, after, 0, [], False

    def reset(self, seed):
        pass

    def sync(self, now_s):
        return 0

    def read_state(self):
        self.reads += 1
        state = _robot_state(stamp_s=robot.time.monotonic())
        if self.reads > self.after:
            self.spoil(state)
        return state

    def command(self, target):
        self.commands.append(np.array(target))

    def success(self):
        return False

    def stop(self):
        self.stopped = True


def _raise(state):
    raise RuntimeError("connection lost")


@pytest.mark.parametrize("spoil, message", [
    (lambda s: s["ee_pos"].__setitem__((0, 0), np.nan), "non-finite"),
    (lambda s: s.__setitem__("stamp_s", s["stamp_s"] - 1.0), "stale"),
])
def test_loop_holds_and_stops_on_a_fault(spoil, message):
    arms = FakeArms(spoil)
    stats = robot.run(robot.RobotConfig(hz=200.0, duration_s=5.0), arms)
    assert message in stats["fault"] and arms.stopped and stats["ticks"] == 20
    assert np.allclose(arms.commands[-1], robot_safety.Safety.hold(_robot_state()))  # last command: hold where the arms were


def test_a_backend_exception_is_a_fault_that_holds_and_stops_both_arms():
    arms = FakeArms(_raise)
    stats = robot.run(robot.RobotConfig(hz=200.0, duration_s=5.0), arms)
    assert stats["fault"] == "RuntimeError: connection lost" and arms.stopped and stats["ticks"] == 20
    assert np.allclose(arms.commands[-1], robot_safety.Safety.hold(_robot_state()))  # last command: hold where the arms were
    assert 0 <= stats["fault_to_hold_ms"] < 5 and stats["fault_to_stop_ms"] >= stats["fault_to_hold_ms"]


class StepPolicy:
    """Stub policy: chunk c holds the targets of policy steps c*Ta .. c*Ta+Ta-1, arm 0 moving +1 mm in x per step."""
    n_obs_steps, n_action_steps, horizon, executed = 2, 2, 3, slice(1, 3)

    def __init__(self, delay_s=0.0):
        self.obs_shapes, self.delay_s = [], delay_s

    def predict_action(self, obs):
        self.obs_shapes.append(obs.shape)
        j0 = len(self.obs_shapes) - 1
        chunk = np.tile(robot_safety.Safety.hold(_robot_state()).ravel(), (1, self.horizon, 1))   # (1, Th, Da)
        chunk[0, 1:, 0] += 0.001 * (j0 * self.n_action_steps + 1 + np.arange(self.horizon - 1))  # executed slice [To-1, To-1+Ta)
        return chunk


def _episode(worker, hz, seconds):
    cfg, arms = robot.RobotConfig(hz=hz), FakeArms(spoil=None, after=10 ** 9)
    counts, lat = dict(ticks=0, missed=0, skipped=0, actions_skipped=0), {s: [] for s in robot_loop.LATENCY_KEYS}
    safety = robot_safety.Safety(cfg, 1 / cfg.hz, arms.joint_lower, arms.joint_upper)
    outcome, fault = robot_loop.run_episode(cfg, arms, worker, safety, lat, counts, robot.time.monotonic() + seconds)
    assert outcome == "unfinished" and fault is None and counts["skipped"] == 0
    return np.array([c[0, 0] for c in arms.commands[:-1]]), counts     # the last command is the final hold


def test_loop_interpolates_between_policy_targets_and_infers_once_per_chunk():
    policy = StepPolicy()
    worker = robot_io.InlinePolicy(policy, np.zeros((1, 2, 14), np.float32))
    policy.obs_shapes.clear()                                          # the warm-up calls
    x, counts = _episode(worker, hz=20.0, seconds=0.49)                # 2 ticks per policy step
    assert np.allclose(x, 0.5 + 0.0005 * np.arange(len(x)))            # a straight ramp through the targets
    assert len(x) == 10 and len(policy.obs_shapes) == 3 and policy.obs_shapes[0] == (1, 2, 14)  # steps 0, 2, 4
    assert counts["actions_skipped"] == 0


class SlowWorker:
    """PolicyWorker's interface around StepPolicy, each chunk delay_s late: a slow inference off the loop's thread."""
    n_obs_steps, n_action_steps = StepPolicy.n_obs_steps, StepPolicy.n_action_steps

    def __init__(self, delay_s):
        self.policy, self.delay_s, self.job = StepPolicy(), delay_s, None

    def submit(self, obs, stamp_s, j0):
        self.job = (robot.time.monotonic() + self.delay_s, self.policy.predict_action(obs)[0, 1:3], stamp_s, j0)

    def busy(self):
        return self.job is not None

    def poll(self):
        if self.job is None or robot.time.monotonic() < self.job[0]:
            return None
        (_, chunk, stamp_s, j0), self.job = self.job, None
        return chunk, stamp_s, j0, self.delay_s

    def check(self, now_s):
        return None


def test_a_late_chunk_skips_the_targets_whose_time_has_passed_and_no_tick_waits_for_it():
    x, counts = _episode(SlowWorker(delay_s=0.135), hz=100.0, seconds=0.69)  # chunks of steps 0, 2, 4: 1 step late
    assert counts["actions_skipped"] == 3 and counts["ticks"] == 69     # every tick ran while the chunks were late
    assert np.allclose(x[:14], 0.5)                                    # step 0 and the tick the chunk came: hold
    # from tick 14 the chunk's target for step 1 (0.502, its step-0 target 0.501 skipped) at 0.4 of the step
    assert np.allclose(x[14:20], 0.5 + 0.002 * np.arange(4, 10) / 10)


def _robot_pixel_policy(hw=(32, 32)):
    """An untrained pixel policy with the robot's layout: agent_pos 8, action 8, one camera."""
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(obs="pixels", horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=1,
                        crop=hw[0] - 4, encoder_channels=8, image_features=8)
    policy = dbp.DBPPolicy(8, 8, cfg, image_shape=(1, 3, *hw))
    pos, act = _robot_state()["obs"][:8] + np.array([0.5, -0.15, 0.2, 0.04, 0.5, 0.15, 0.2, 0.04]), _target().ravel()
    policy.normalizer.fit(pos + 0.02 * torch.randn(64, 2, 8).numpy(), act + 0.02 * torch.randn(64, 16, 8).numpy())
    return policy.eval()


def _grab_until(seconds, fail=None):
    """A camera that gives frames for `seconds`, then hangs (fail None) or raises fail."""
    t_end_s = robot.time.monotonic() + seconds

    def grab():
        robot.time.sleep(0.01)
        if robot.time.monotonic() > t_end_s:
            if fail:
                raise fail
            robot.time.sleep(60)
        return np.zeros((1, 3, 32, 32), np.uint8)
    return grab


@pytest.mark.parametrize("fail, message", [(None, "stale camera frame"), (OSError("USB unplugged"), "USB unplugged")])
def test_a_stale_camera_frame_stops_the_loop(fail, message):
    arms, policy = FakeArms(spoil=None, after=10 ** 9), _robot_pixel_policy()
    camera = robot_camera.ThreadCamera(_grab_until(1.0, fail))
    cfg = robot.RobotConfig(hz=100.0, duration_s=5.0, camera_timeout_s=0.1, inference="inline")
    stats = robot.run(cfg, arms, policy, camera)
    assert message in stats["fault"] and "stale camera frame" in stats["fault"] and arms.stopped
    assert stats["duration_s"] < 1.5 and stats["inference_calls"] >= 1         # it ran on frames, then stopped
    assert np.allclose(arms.commands[-1], robot_safety.Safety.hold(_robot_state()))   # last command: hold where the arms were
    assert stats["latency_ms"]["camera"]["n"] >= 5 and stats["camera"]["frames"] >= 20


def test_a_pixel_policy_waits_for_each_steps_frame_and_needs_a_camera():
    arms, policy = FakeArms(spoil=None, after=10 ** 9), _robot_pixel_policy()
    with pytest.raises(ValueError, match="pixel policy needs a camera"):
        robot.run(robot.RobotConfig(duration_s=0.5), arms, policy)
    stats = robot.run(robot.RobotConfig(hz=100.0, duration_s=1.0), arms, policy, robot_camera.ThreadCamera(_grab_until(10)))
    assert stats["fault"] is None and stats["inference_calls"] == 2            # policy steps 0 and 8, in the worker
    assert stats["inference"] == "process" and stats["actions_skipped"] == 0
    cam, e2e = stats["latency_ms"]["camera"], stats["latency_ms"]["end_to_end"]
    assert cam["n"] == 10 and cam["max"] < 50 and e2e["n"] == 2                # one frame per policy step
    assert stats["camera"]["source"] == "callable" and stats["camera"]["shape"] == [1, 3, 32, 32]


# ----------------------------------------------------------------------------- runs
@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory):
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(14, 8, dbp.DBPConfig(horizon=16, n_obs_steps=2, n_action_steps=8, hidden_dim=32, n_blocks=1))
    home = np.array([0.5, -0.15, 0.2, 0.04, 0.5, 0.15, 0.2, 0.04, 0.5, -0.18, 0.02, 0.5, 0.18, 0.02])
    act = np.array([0.5, -0.15, 0.15, 0.0, 0.5, 0.15, 0.15, 0.0])
    policy.normalizer.fit(home + 0.02 * torch.randn(64, 2, 14).numpy(), act + 0.02 * torch.randn(64, 16, 8).numpy())
    path = str(tmp_path_factory.mktemp("ckpt") / "ckpt.pt")
    training.save_checkpoint(path, policy, task="bimanual")
    return path


@pytest.mark.device
def test_short_sim_run_writes_the_stats(tiny_ckpt, tmp_path):
    out = str(tmp_path / "stats.json")
    assert robot.main(["--ckpt", tiny_ckpt, "--duration-s", "2.5", "--stats-json", out, "--device", DEVICE]) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and not stats["dry_run"] and stats["hz"] == 100.0
    assert stats["ticks"] > 100 and 0 <= stats["deadline_met_fraction"] <= 1 and stats["achieved_hz"] > 0
    assert stats["inference_calls"] >= 3                               # one chunk per 8 policy steps (0.8 s)
    for stage in ("state_read", "inference", "command", "tick", "end_to_end"):
        assert set(stats["latency_ms"][stage]) == {"p50", "p99", "max", "n"}
    assert stats["sim"]["physics_ms"]["n"] > 200 and stats["inference"] == "process"   # 120 Hz in its own process
    assert stats["episodes"] + stats["episodes_unfinished"] >= 1 and len(stats["ci95"]) == 2
    assert set(stats["safety_clips"]) == {"workspace", "gripper", "step"}
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) >= 2:                                                 # the loop thread has a CPU to itself
        assert stats["cpus"] == dict(loop=cpus[-1:], workers=cpus[:-1])


def test_the_loop_cpu_plan_keeps_the_workers_off_the_loops_cpu():
    cpus = sorted(os.sched_getaffinity(0))
    assert robot_io.cpu_plan("off") == (None, None)
    assert robot_io.cpu_plan(str(cpus[0])) == ({cpus[0]}, set(cpus[1:]) or None)
    assert robot_io.cpu_plan("auto") == ((({cpus[-1]}, set(cpus[:-1])) if len(cpus) >= 2 else (None, None)))
    with pytest.raises(ValueError, match="this process runs on CPUs"):
        robot_io.cpu_plan("4096")
    with pytest.raises(SystemExit, match="must be 'auto', 'off' or a CPU index"):
        robot.parse(["--loop-cpu", "last"])


def test_video_run_writes_a_gif_per_episode_and_keeps_its_deadlines(tiny_ckpt, tmp_path):
    out = str(tmp_path / "stats.json")
    args = ["--ckpt", tiny_ckpt, "--duration-s", "1.0", "--video", "1", "--video-dir", str(tmp_path / "v"), "--stats-json", out]
    assert robot.main(args) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and stats["video_render_s"] > 0 and stats["ticks"] > 50  # rendered off the clock
    (video,) = (tmp_path / "v").iterdir()
    assert video.name == "bimanual_seed0_unfinished.gif"               # 1 s of a 6 s episode
    frames = gif_frames(video)
    assert len(frames) >= 5 and frames[0].shape == (240, 320, 3)       # one per policy step (10 Hz)


def test_pixel_checkpoint_drives_the_sim_from_its_rendered_cameras(tmp_path):
    path, out = str(tmp_path / "px.pt"), str(tmp_path / "stats.json")
    training.save_checkpoint(path, _robot_pixel_policy(hw=(64, 64)), task="bimanual")
    assert robot.main(["--ckpt", path, "--duration-s", "2.0", "--stats-json", out]) == 0
    stats = json.load(open(out))
    assert stats["fault"] is None and stats["inference_calls"] >= 2 and stats["camera"]["frames"] >= 5
    assert stats["camera"]["shape"] == [1, 3, 64, 64] and stats["camera"]["render_ms"]["p50"] > 0
    assert stats["latency_ms"]["camera"]["n"] >= 5 and stats["latency_ms"]["end_to_end"]["n"] >= 2
    assert stats["latency_ms"]["end_to_end"]["p50"] >= stats["latency_ms"]["camera"]["p50"]  # frame, then inference
    small = str(tmp_path / "px32.pt")
    training.save_checkpoint(small, _robot_pixel_policy(hw=(32, 32)), task="bimanual")
    for args, message in [(["--ckpt", small], "takes images (1, 3, 32, 32); the sim's cameras give (1, 3, 64, 64)"),
                          (["--ckpt", path, "--backend", "ur", "--ur-ips", "a,b"], "needs --camera"),
                          (["--ckpt", path, "--backend", "ur", "--camera", "0,1"], "takes 1 camera view(s); --camera names 2")]:
        with pytest.raises(SystemExit) as e:
            robot.main(args)
        assert message in str(e.value.code)
    with pytest.raises(SystemExit):  # the sim renders its own: --camera is a ur flag
        robot.parse(["--camera", "0"])


def test_dry_run_holds_without_a_policy(tmp_path):
    out = str(tmp_path / "stats.json")
    assert robot.main(["--dry-run", "--duration-s", "1.0", "--stats-json", out]) == 0
    stats = json.load(open(out))
    assert stats["dry_run"] and stats["inference_calls"] == 0 and stats["latency_ms"]["inference"] is None
    assert stats["fault"] is None and stats["ticks"] > 50 and stats["safety_clips"]["step"] == 0


@pytest.mark.parametrize("fault, message", [
    ("disconnect", "ConnectionError: lost the connection to the robot"),
    ("read-timeout", "TimeoutError: no state from the robot in time"),
    ("refuse", "RuntimeError: the controller refused the command"),
    ("freeze", "stale robot state"),
    ("clock-jump", "the robot's clock jumped"),
    ("worker-crash", "the policy worker died (exit code 3)"),
    ("worker-hang", "the policy worker gave no chunk"),
])
def test_each_injected_fault_holds_and_stops_both_arms(tiny_ckpt, tmp_path, fault, message):
    out = str(tmp_path / "stats.json")
    run = ["--ckpt", tiny_ckpt] if fault.startswith("worker") else ["--dry-run"]
    assert robot.main([*run, "--duration-s", "10", "--inject", f"{fault}@0.3", "--stats-json", out]) == 1
    stats = json.load(open(out))
    assert message in stats["fault"] and stats["injected"] == dict(fault=f"{fault}@0.3", at_s=pytest.approx(0.3, abs=0.05))
    assert stats["duration_s"] < 2.5                                   # detected at once (a hang: at its next chunk)
    if fault in ("disconnect", "refuse"):                              # no command gets through: the sim's own stop
        assert stats["fault_to_hold_ms"] is None
    else:                                                              # the hold: in the tick that found the fault
        assert 0 <= stats["fault_to_hold_ms"] < 10
    assert stats["fault_to_stop_ms"] < 50 and stats["sim"]["physics_ms"]["n"] > 10    # and the sim confirmed it


def test_inject_is_checked_before_anything_starts():
    for flags, message in [(["--inject", "melt@1"], "FAULT one of"), (["--inject", "freeze"], "FAULT@SECONDS"),
                           (["--inject", "worker-crash@1", "--dry-run"], "needs a policy"),
                           (["--inject", "freeze@1", "--backend", "ur"], "needs --backend sim")]:
        with pytest.raises(SystemExit) as e:
            robot.parse(flags)
        assert message in str(e.value.code)


def test_record_writes_a_lerobot_dataset_that_appends_replays_and_trains(tmp_path):
    rec, out = str(tmp_path / "rec"), str(tmp_path / "stats.json")
    assert robot.main(["--record", rec, "--episodes", "2", "--duration-s", "60", "--stats-json", out]) == 0
    demo = dataset_io.read_dataset(rec)
    assert json.load(open(out))["recorded"] == dict(path=rec, teleop="expert", episodes=2, before=0)
    assert demo["fps"] == 10 and demo["source"]["format"] == "lerobot" and demo["obs"].shape[1:] == (14,)
    assert demo["success"].tolist() == [True, True] and demo["seeds"].tolist() == [envs.demo_seed(0, i) for i in (0, 1)]
    first = demo["stamps_s"][:demo["episode_ends"][0]]                 # stamped at the policy rate
    assert first[0] == 0 and np.allclose(np.diff(first), 0.1, atol=0.02)
    steps, _, _, _ = envs.expert_episode(envs.make_env("bimanual"), envs.demo_seed(0, 0))
    assert len(steps) <= len(first) <= 2 * len(steps)                  # the expert's episode (the loop ramps to each
                                                                       # target over its step, envs jumps: a bit slower)
    # a replay of the recording is a teleoperation source; the new episodes are appended, seeded after the old
    args = ["--record", rec, "--teleop", f"replay:{rec}", "--episodes", "1", "--duration-s", "60", "--stats-json", out]
    assert robot.main(args) == 0
    again = dataset_io.read_dataset(rec)
    assert len(again["episode_ends"]) == 3 and again["seeds"][2] == envs.demo_seed(0, 2) and again["success"][2]
    assert np.array_equal(again["actions"][len(demo["obs"]):][:5], demo["actions"][:5])   # episode 0's actions
    for flags, message in [(["--teleop", "joystick"], "must be 'expert' or 'replay:PATH'"),
                           (["--record", rec, "--dry-run"], "leave out --ckpt and --dry-run")]:
        with pytest.raises(SystemExit) as e:
            robot.parse(flags)
        assert message in str(e.value.code)
    train.main(["--stage", "pretrain", *TINY, "--steps", "50", "--dataset", rec, "--task", "bimanual",
                "--out", str(tmp_path / "r")])
    assert json.load(open(tmp_path / "r" / "eval.json"))["demos"] == 3
    with pytest.raises(SystemExit) as e:                               # a recording of another task's dims
        train.main(["--stage", "pretrain", *TINY, "--dataset", rec, "--task", "push", "--out", str(tmp_path / "p")])
    assert "holds obs/action dims (14, 8); task 'push' with --obs state needs (9, 4)" in str(e.value.code)


def test_a_camera_recording_keeps_its_frames_as_video_and_a_dropped_episode_leaves_no_trace(tmp_path):
    from robot_record import Recorder
    rng, root = np.random.default_rng(0), str(tmp_path / "cam")
    recorder = Recorder(lambda obs: obs["agent_pos"][:8] * 0.5, root, camera=True)
    frames = rng.integers(0, 256, (2, 5, 1, 3, 4, 4), dtype=np.uint8).repeat(8, axis=-1).repeat(8, axis=-2)  # 32 x 32
    for e, outcome in enumerate(("success", "stopped", "timeout")):     # an operator's stop is not kept
        recorder.begin(seed=e)
        for t in range(5):
            obs = {"image": frames[min(e, 1), t][None, None], "agent_pos": np.full((1, 1, 8), t, np.float32)}
            recorder.submit(obs, 0.1 * t, t)
        assert recorder.end(outcome) == (outcome != "stopped")
    recorder.close()
    demo = dataset_io.read_dataset(root, image_keys=["observation.images.cam0"])
    assert demo["episode_ends"].tolist() == [5, 10] and demo["success"].tolist() == [True, False]
    assert demo["seeds"].tolist() == [0, 2] and demo["image"].shape == (10, 1, 3, 32, 32)
    error = lambda a, b: np.abs(a.astype(int) - b).mean()
    assert error(demo["image"][:5], frames[0]) < 8 < 40 < error(demo["image"][:5], frames[1])   # lossy video, its own
    assert np.array_equal(demo["obs"][:5, 0], np.arange(5)) and np.allclose(demo["actions"], demo["obs"] * 0.5)
    with pytest.raises(ValueError, match="not a robot.py recording without a camera"):
        Recorder(lambda obs: obs, root, camera=False)


# ----------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("make, message", [
    (lambda d: save_tiny_policy(d + "/push.pt", "push", 9, 4), "trained for task 'push'"),
    (lambda d: save_tiny_policy(d + "/notask.pt", None, 14, 8), "trained for task None"),
    (lambda d: save_tiny_policy(d + "/dims.pt", "DBPBimanual-v0", 9, 8), "'obs_dim' is 9, expected 14"),
    (lambda d: open(d + "/junk.pt", "wb").write(b"junk") and d + "/junk.pt", "not a readable checkpoint"),
    (lambda d: d + "/missing.pt", "no checkpoint at"),
])
def test_mismatched_checkpoints_are_refused(tmp_path, make, message):
    path = make(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        robot.main(["--ckpt", path, "--duration-s", "1"])
    assert str(e.value.code).startswith("error:") and message in str(e.value.code)


@pytest.mark.slow
def test_refusal_from_the_command_line_is_one_line_without_traceback(tmp_path):
    path = save_tiny_policy(str(tmp_path / "push.pt"), "push", 9, 4)
    proc = subprocess.run([sys.executable, "robot.py", "--ckpt", path], cwd=HERE, capture_output=True, text=True)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert "error: " in proc.stderr and "'push'" in proc.stderr
    proc = subprocess.run([sys.executable, "robot.py", "--dry-run", "--no-such-flag"], cwd=HERE, capture_output=True, text=True)
    assert proc.returncode != 0 and "unrecognized arguments" in proc.stderr
