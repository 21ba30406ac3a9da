"""The bimodal bandit (toys.py) one-step (terminated) and with 8-decision episodes that only truncate, with and without a -1
reward offset, 80 iterations: the deployed reward before -> after, the positive share and the last value loss.

    python results/dbpo/truncation/bandit.py SRC_DIR     # SRC_DIR holds the dbp.py, dbpo.py (and toys.py) to run
"""
import sys
import time

sys.path.insert(0, sys.argv[1])
try:
    from toys import bimodal_bandit
except ImportError:   # an older SRC_DIR: the bandit was in dbpo.py
    from dbpo import bimodal_bandit

for ep, off in [(1, 0.0), (8, 0.0), (8, -1.0)]:
    t0 = time.time()
    before, after, stats = bimodal_bandit(iterations=80, episode=ep, offset=off)
    print(sys.argv[1], ep, off, round(before["reward"], 3), round(after["reward"], 3), round(after["positive"], 2),
          "vloss", round(stats["losses/value"], 3), f"{time.time() - t0:.0f}s", flush=True)
