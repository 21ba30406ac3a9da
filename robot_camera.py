"""The cameras of robot.py's control loop, for a pixel checkpoint: each reads its frames off the loop's thread
(ROBOT.md, Pixels).

  SimCamera     the sim task's fixed cameras, rendered from a mirror of the scene in a process of their own;
  ThreadCamera  any grab() -> (V, 3, H, W) uint8 called on a thread, e.g. opencv_grab (real cameras).

Interface: reset(seed) (a new episode; returns once a frame of it is out), request(state) (a policy step began at
this robot state: a camera that renders on request renders its scene_pose), frame() -> (stamp_s, images (V, 3, H, W)
uint8) or None, stats(), close(). A frame's stamp is the monotonic time of what it shows, as the state's stamp is.

    python robot_camera.py      # a quick demo: a ThreadCamera on a stub grab, its first frame and stats
"""
import ctypes
import multiprocessing as mp
import threading
import time

import numpy as np

import envs
from robot_io import TASK, percentiles, pin_cpus, spawn_worker


def _render_worker(conn, frame, stamp, cpus):
    """SimCamera's process: a mirror of the task's scene, teleported to each posted pose and rendered."""
    pin_cpus(cpus)
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

    def __init__(self, backend, cpus=None):
        ctx = mp.get_context("spawn")
        self.backend, self.shape = backend, (len(envs.BimanualEnv.CAMERAS), 3, *envs.SimConfig().camera_hw)
        self._frame = ctx.Array(ctypes.c_uint8, int(np.prod(self.shape)))   # with a lock: no torn frames
        self._stamp = ctx.RawArray(ctypes.c_double, 1)                      # written under the frame's lock
        self._images = np.frombuffer(self._frame.get_obj(), np.uint8).reshape(self.shape)   # a view of the frame
        self._last = None       # (stamp_s, images): the newest frame copied out, so it is copied once
        self._conn, self._proc, _ = spawn_worker(ctx, "sim camera", _render_worker, self._frame, self._stamp, cpus)
        self.render_s = None

    def reset(self, seed, timeout_s=5.0):  # the wait is off the sim's clock: nothing moves until it ends
        self.backend.pause()
        state = self.backend.read_state()
        try:
            self._conn.send(("reset", seed))
            self._conn.send(("pose", state["stamp_s"], state["scene_pose"]))
        except OSError as e:  # the process is gone
            raise RuntimeError(f"the sim camera process is gone ({e})") from None
        t_end_s = time.monotonic() + timeout_s
        while self._stamp[0] != state["stamp_s"]:
            if time.monotonic() > t_end_s or not self._proc.is_alive():
                raise RuntimeError(f"the sim camera process gave no frame in {timeout_s:g} s")
            time.sleep(0.001)
        self.backend.resume()

    def request(self, state):
        try:
            self._conn.send(("pose", state["stamp_s"], state["scene_pose"]))
        except OSError:  # the process is gone: no frame comes, and the loop stops on the stale one
            pass

    def frame(self):
        """The newest frame; the loop asks every tick while it waits for one, and only a new frame is copied."""
        with self._frame.get_lock():
            stamp_s = self._stamp[0]
            if not stamp_s:
                return None
            if self._last is None or self._last[0] != stamp_s:
                self._last = (stamp_s, self._images.copy())
            return self._last

    def stats(self):
        return dict(source="sim (rendered in its own process at the policy rate)", shape=list(self.shape),
                    frames=None if self.render_s is None else len(self.render_s),
                    render_ms=percentiles(self.render_s or []))

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

    def request(self, state):
        pass  # free-running: the loop waits for the first frame newer than the step's state

    def frame(self):
        return self._frame

    def stats(self):
        return dict(source=self.name, shape=None if self._frame is None else list(self._frame[1].shape),
                    frames=len(self.grab_s), grab_ms=percentiles(self.grab_s), error=self.error)

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


if __name__ == "__main__":
    camera = ThreadCamera(lambda: (time.sleep(0.01), np.zeros((1, 3, 32, 32), np.uint8))[1], "stub")
    camera.reset(seed=0)
    stamp_s, images = camera.frame()
    print(f"frame {images.shape} {images.dtype}, {(time.monotonic() - stamp_s) * 1e3:.1f} ms old")
    camera.close()
    print(camera.stats())
