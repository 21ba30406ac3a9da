# Success of checkpoints over 4 x 50 seeded episodes (eval seeds 0-3), as train.evaluate does it.
import sys, torch, train, dbp, training
torch.set_num_threads(1)
for ck in sys.argv[1:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck); pol.eval()
    task = training.load_checkpoint(ck)["task"]
    rs = [train.evaluate(pol, task, 50, s) for s in range(4)]
    print(ck, [r["n_success"] for r in rs], sum(r["n_success"] for r in rs) / 200,
          "modes", [sum(r["mode_counts"].get(m, 0) for r in rs) for m in rs[0]["mode_counts"]], flush=True)
