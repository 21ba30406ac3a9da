"""Every numeric flag of train.py (both stages) and robot.py, given -1, nan and 0 on top of a tiny valid run.
Classifies each run: traceback, refused (one line), accepted. Run from the repo root with its venv python."""
import dataclasses, json, os, subprocess, sys, time
sys.path.insert(0, os.getcwd())
import train, robot
W = "/tmp/fp"
os.makedirs(W, exist_ok=True)
PY = sys.executable
TINY = ["--demos", "5", "--steps", "200", "--eval-every", "100", "--eval-episodes-periodic", "1", "--eval-episodes", "2",
        "--hidden-dim", "32", "--n-blocks", "1", "--batch-size", "16", "--demo-dir", f"{W}/demos"]
def sh(cmd, timeout=600):
    t = time.time()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    return r, time.time() - t
# stage-1 checkpoints for dbpo (push) and robot (bimanual)
for task in ("push", "bimanual"):
    if not os.path.exists(f"{W}/s1-{task}/ckpt.pt"):
        r, _ = sh([PY, "train.py", "--task", task, *TINY, "--out", f"{W}/s1-{task}"])
        assert r.returncode == 0, r.stderr[-2000:]
entries = {
    "pretrain": (train.PretrainConfig, lambda out: [PY, "train.py", "--stage", "pretrain", *TINY, "--out", out]),
    "dbpo": (train.DBPOStageConfig, lambda out: [PY, "train.py", "--stage", "dbpo", "--ckpt", f"{W}/s1-push/ckpt.pt",
             "--n-envs", "2", "--n-decisions", "4", "--iterations", "3", "--eval-every", "2", "--eval-episodes", "1",
             "--critic-warmup-iters", "1", "--minibatch-size", "4", "--out", out]),
    "robot": (robot.RobotConfig, lambda out: [PY, "robot.py", "--ckpt", f"{W}/s1-bimanual/ckpt.pt", "--duration-s", "1",
              "--stats-json", out + ".json"]),
}
rows, n = [], 0
for name, (cls, base) in entries.items():
    for f in dataclasses.fields(cls):
        if f.type not in (int, float, tuple):
            continue
        for v in ("-1", "nan", "0"):
            n += 1
            vals = [v] * (len(f.default) if f.type is tuple else 1)
            r, secs = sh(base(f"{W}/runs/{name}-{f.name}-{v}") + ["--" + f.name.replace("_", "-"), *vals])
            tb = "Traceback" in r.stderr
            kind = "traceback" if tb else ("accepted" if r.returncode == 0 else "refused")
            lines = [l for l in r.stderr.splitlines() if l.startswith("error:")]
            rows.append(dict(entry=name, flag=f.name, value=v, kind=kind, rc=r.returncode, seconds=round(secs, 1),
                             message=lines[-1] if lines else (r.stderr.strip().splitlines() or [""])[-1][:200]))
            print(json.dumps(rows[-1]), flush=True)
json.dump(rows, open("/tmp/flagpass.json", "w"), indent=1)
from collections import Counter
print(n, "runs:", Counter(r["kind"] for r in rows))
print("accepted:", sorted((r["entry"], r["flag"], r["value"]) for r in rows if r["kind"] == "accepted"))
