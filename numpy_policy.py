"""NumpyPolicy: a DBP state policy's predict_action in NumPy, for real-time loops (robot.py runs state policies
through it). Between a loop's ticks torch ops go cold (~50 us each: the torch forward took 2.3 ms in robot.py's loop
against 0.6 ms back to back); a NumPy op costs ~15 us. It mirrors dbp.DriftNet.forward op for op (tested equal to
1e-5 in test_numpy_policy.py) and imports only NumPy and torch (to read the weights): copy it beside dbp.py.

    fast = NumpyPolicy(policy)                 # a dbp.DBPPolicy with obs "state", its weights copied once
    chunk = fast.predict_action(obs)           # obs (B, To, Do) raw -> (B, Th, Da) raw, one network evaluation
"""
import numpy as np
import torch


class NumpyPolicy:
    """dbp.DBPPolicy.predict_action with the same weights in NumPy, DriftNet.forward op for op."""

    def __init__(self, policy):
        if policy.encoder is not None:
            raise ValueError("NumpyPolicy mirrors the state network only; a pixel policy runs in torch (predict_action)")
        self.n_obs_steps, self.n_action_steps, self.executed = policy.n_obs_steps, policy.n_action_steps, policy.executed
        self.shape = (policy.horizon, policy.action_dim)
        w = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in policy.state_dict().items()}
        lin = lambda name: (np.ascontiguousarray(w[f"{name}.weight"].T), w[f"{name}.bias"])  # x @ W.T + b
        self.obs_center, self.obs_half_range = w["normalizer.obs_center"], w["normalizer.obs_half_range"]
        self.act_center, self.act_half_range = w["normalizer.act_center"], w["normalizer.act_half_range"]
        self.cond0, self.cond2, self.inp, self.out1 = lin("net.cond.0"), lin("net.cond.2"), lin("net.inp"), lin("net.out.1")
        self.out_norm = (w["net.out.0.weight"], w["net.out.0.bias"])
        self.blocks = [(lin(f"net.blocks.{i}.film"), lin(f"net.blocks.{i}.fc1"), lin(f"net.blocks.{i}.fc2"))
                       for i in range(len(policy.net.blocks))]
        self.rng = np.random.default_rng(torch.initial_seed())

    @staticmethod
    def _norm(x):  # LayerNorm without affine, eps as torch's default
        x = x - x.mean(-1, keepdims=True)
        return x / np.sqrt((x * x).mean(-1, keepdims=True) + 1e-5)

    def predict_action(self, obs, noise=None):
        """obs (B, To, Do) raw -> (B, Th, Da) raw, one network evaluation, z ~ N(0, I) unless given.
        Bad obs (shape, dtype, NaN) and a non-finite chunk are ValueErrors, as in DBPPolicy.predict_action."""
        silu = lambda x: x * 0.5 * (1.0 + np.tanh(0.5 * x))  # x * sigmoid(x), overflow-free
        affine = lambda x, wb: x @ wb[0] + wb[1]
        obs = np.asarray(obs)
        if obs.dtype.kind not in "fiu" or obs.shape[1:] != (self.n_obs_steps, len(self.obs_center)) or not len(obs):
            raise ValueError(f"obs must be real numbers shaped (B, {self.n_obs_steps}, {len(self.obs_center)}), "
                             f"B >= 1; got {obs.dtype} {obs.shape}")
        B = len(obs)
        c = ((obs - self.obs_center) / self.obs_half_range).reshape(B, -1).astype(np.float32)  # (B, To*Do)
        z = self.rng.standard_normal((B, self.shape[0] * self.shape[1]), np.float32) if noise is None \
            else np.asarray(noise, np.float32).reshape(B, -1)                                  # (B, Th*Da)
        e = affine(silu(affine(c, self.cond0)), self.cond2)
        h = affine(np.concatenate([z, c], axis=-1), self.inp)
        for film, fc1, fc2 in self.blocks:
            gamma, beta = np.split(affine(e, film), 2, axis=-1)
            h = h + affine(silu(affine(self._norm(h) * (1 + gamma) + beta, fc1)), fc2)
        nact = affine(self._norm(h) * self.out_norm[0] + self.out_norm[1], self.out1)
        actions = nact.reshape(B, *self.shape) * self.act_half_range + self.act_center
        if not np.isfinite(actions).all():      # checked once, at the output, which NaN or inf in obs reaches
            if not np.isfinite(obs).all():
                raise ValueError("obs contains NaN or inf")
            raise ValueError("predict_action: the chunk is not finite: obs far outside the training data?")
        return actions
