# The first decision of mu(o, z) at the 100 evaluation starts x 64 z: which side the executed steps of its chunk
# (steps [To-1, To-1+Ta), the ones PPO shapes) move the hand: to -y (behind the block for the left goal, at +y) or
# to +y (for the right goal).
# Actions are absolute end-effector targets, so the move is the executed targets' mean y less the hand's y now.
#     PYTHONPATH=. python results/dbpo/diag/first_chunk.py CKPT...
import sys, numpy as np, torch, dbp, envs, rollouts
torch.set_num_threads(1)
for ck in sys.argv[1:]:
    pol = dbp.DBPPolicy.from_checkpoint(ck).eval()
    env = rollouts.make_chunk_env("push", pol.n_obs_steps, pol.n_action_steps)
    obs = np.stack([env.reset(seed=envs.eval_seed(0, i))[0] for i in range(100)])   # (100, To, Do)
    torch.manual_seed(0)
    o = torch.as_tensor(obs).repeat_interleave(64, 0)
    a = pol.predict_action(o).numpy()[:, pol.executed]       # (6400, Ta, Da): the executed steps
    dy = a[:, :, 1].mean(1) - o[:, -1, 1].numpy()            # their mean y target less the hand's y
    print(ck, "first decision dy<-0.005: %.2f  >0.005: %.2f  |dy| small: %.2f" % ((dy < -0.005).mean(), (dy > 0.005).mean(), (np.abs(dy) <= 0.005).mean()),
          "dy quantiles", np.round(np.quantile(dy, [0.05, 0.25, 0.5, 0.75, 0.95]), 3))
