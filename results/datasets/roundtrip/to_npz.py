"""A LeRobot v3 recording (robot.py --record DIR) as an npz demo file of envs' format, the same episodes array for
array: python results/datasets/roundtrip/to_npz.py DIR OUT.npz"""
import os
import sys

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", ".."))
import dataset_io  # noqa: E402
import envs  # noqa: E402

root, out = sys.argv[1:]
demo = dataset_io.read_dataset(root)
keep = ("obs", "actions", "episode_ends", "modes", "success", "seeds", "stamps_s")
np.savez_compressed(out, version=np.array(envs.DEMO_VERSION), **{k: demo[k] for k in keep})
print(f"{root}: {len(demo['episode_ends'])} episodes, {len(demo['obs'])} steps -> {out}")
