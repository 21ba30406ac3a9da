# Evaluate device-trained slim checkpoints as train.py's final evaluation would; write eval.json + log.csv to results/study cells.
import sys, os, json, glob, shutil, torch, dbp, train, training
torch.set_num_threads(1)
for d in sorted(os.path.dirname(p) + "/" for p in glob.glob("runs/devback/runs/dev/*/slim.pt")):
    name = os.path.basename(d.rstrip("/"))
    task, dd, setting, s = name.split("-")
    seed = int(s[1:])
    keep = f"results/study/{task}-{dd}/{setting}-{s}"
    if os.path.exists(f"{keep}/eval.json"):
        continue
    ck = training.load_checkpoint(d + "slim.pt")
    pol = dbp.DBPPolicy.from_checkpoint(ck); pol.eval()
    r = train.evaluate(pol, task, 50, seed)
    log = open(d + "log.csv").read().splitlines()
    r.update(task=task, steps=15000, demos=int(dd[1:]), train_seconds=float(log[-1].split(",")[-1]),
             trained_on="device CPU, 16 runs side by side, one torch thread each (train_seconds is not a timing)")
    os.makedirs(keep, exist_ok=True)
    json.dump(r, open(f"{keep}/eval.json", "w"), indent=2)
    last = log[-1].split(",")
    last[-2] = str(r["success_rate"])  # the device could not evaluate (no pybullet): fill in this evaluation
    open(f"{keep}/log.csv", "w").write("\n".join(log[:-1] + [",".join(last)]) + "\n")
    print(name, r["success_rate"], flush=True)
