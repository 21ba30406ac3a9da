# The first chunk of mu(o, z) at the 100 evaluation starts x 64 z: how often it moves the hand towards -y (left mode) or +y.
import sys, numpy as np, torch, dbp, envs, rollouts
torch.set_num_threads(1)
env = rollouts.make_chunk_env("push", 2, 2)
obs = np.stack([env.reset(seed=envs.eval_seed(0, i))[0] for i in range(100)])   # (100, To, Do)
for ck in sys.argv[1:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck).eval()
    torch.manual_seed(0)
    o = torch.as_tensor(obs).repeat_interleave(64, 0)
    a = pol.predict_action(o).numpy()                      # (6400, Th, Da)
    dy = a[:, :, 1].sum(1)                                  # summed y command over the chunk
    print(ck, "first chunk dy<-0.005: %.2f  >0.005: %.2f  |dy| small: %.2f" % ((dy < -0.005).mean(), (dy > 0.005).mean(), (np.abs(dy) <= 0.005).mean()),
          "dy quantiles", np.round(np.quantile(dy, [0.05, 0.25, 0.5, 0.75, 0.95]), 3))
