"""Tests of dbp.py: drift-loss properties, small real learning checks, the policy API, checkpoints, the NumPy policy.

It needs dbp.py alone (with torch, numpy and pytest): copy the two files into any folder and run
    python -m pytest -q test_dbp.py                 # under a minute on 2 CPU cores
    python -m pytest -q -m "not slow" test_dbp.py   # without the test that runs them so in a subprocess
"""
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest
import torch

import dbp

HERE = os.path.dirname(os.path.abspath(__file__))
with warnings.catch_warnings():  # the repo's pytest.ini registers the mark; a folder holding only dbp.py has none
    warnings.simplefilter("ignore", pytest.PytestUnknownMarkWarning)
    slow = pytest.mark.slow
    device = pytest.mark.device     # runs on DBP_TEST_DEVICE (gpu_check.sh: cuda)


# ----------------------------------------------------------------------------- drift loss
def test_drift_loss_shape_finite_and_gradient_only_through_gen():
    gen = torch.randn(8, 4, 6, requires_grad=True)
    pos = torch.randn(8, 3, 6, requires_grad=True)
    w = torch.rand(8, 3, requires_grad=True)
    loss, _ = dbp.drift_loss(gen, pos, w)
    assert loss.shape == () and torch.isfinite(loss)
    loss.backward()
    assert gen.grad is not None and gen.grad.abs().sum() > 0
    assert pos.grad is None and w.grad is None  # the target is stop-gradient


def test_drift_field_vanishes_between_symmetric_positives_and_points_to_the_nearer():
    pos = torch.tensor([[[1.0, 0.5], [-1.0, -0.5]]])                  # (B=1, K=2, L=2)
    gen = torch.zeros(1, 1, 2, requires_grad=True)                      # on the midpoint
    loss, _ = dbp.drift_loss(gen, pos)
    loss.backward()
    assert loss.item() == 0.0 and gen.grad.abs().max() == 0.0
    gen = torch.tensor([[[0.2, 0.1]]], requires_grad=True)              # nearer to +pos
    dbp.drift_loss(gen, pos)[0].backward()
    assert (gen.grad < 0).all()  # descending the loss moves x toward the nearer positive


def test_drift_loss_rejects_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, G, L\)"):
        dbp.drift_loss(torch.randn(4, 6), torch.randn(4, 2, 6))
    with pytest.raises(ValueError, match="pos_weights"):
        dbp.drift_loss(torch.randn(4, 2, 6), torch.randn(4, 3, 6), torch.ones(4, 2))


def test_neighbor_positives_weights_self_first_and_far_neighbours_down():
    data = torch.tensor([[0.0], [0.01], [0.02], [1.0]]).reshape(4, 1, 1)      # (N, To, Do)
    acts = torch.arange(4.0).reshape(4, 1, 1)                                 # (N, Th, Da)
    pos, w = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=0.02)
    assert pos.shape == (4, 4, 1, 1) and w.shape == (4, 4)
    assert torch.equal(pos[:, 0], acts) and torch.all(w[:, 0] == 1)        # own chunk, full weight
    assert w[0, 1] > 0.8 and w[0, 3] < 1e-6                                  # near ~1, far ~0
    _, w_plain = dbp.neighbor_positives(data, data, acts, k=4, bandwidth=math.inf)
    assert torch.all(w_plain == 1)


# ----------------------------------------------------------------------------- learning toys
def _train_toy(obs, actions, mode, steps, k=16):
    """mode: 'k1' (paper), 'knn' (unweighted), 'weighted' (our default) or 'mse' (regression)."""
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(horizon=1, n_obs_steps=1, n_action_steps=1, hidden_dim=64, n_blocks=2, k=k,
                        bandwidth=math.inf if mode == "knn" else 0.02)
    policy = dbp.DBPPolicy(obs_dim=1, action_dim=1, cfg=cfg)
    policy.normalizer.fit(obs, actions)
    nobs = policy.normalizer.normalize_obs(obs)
    pos = w = None
    if mode in ("knn", "weighted"):
        pos, w = policy.positives(obs, actions)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(obs), (64,))
        if mode == "mse":  # plain regression of the chunk: the same network fed z = 0
            pred = policy.net(torch.zeros(64, 1), nobs[i].reshape(64, 1))
            loss = torch.nn.functional.mse_loss(pred, policy.normalizer.normalize_actions(actions[i]).reshape(64, 1))
        else:
            loss, _ = policy.compute_loss(obs[i], actions[i], None if pos is None else pos[i], None if w is None else w[i])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return policy


def test_bimodal_toy_neighbor_positives_keep_both_modes_and_regression_averages():
    torch.manual_seed(0)
    obs = torch.rand(1000, 1, 1) * 2 - 1                               # (N, To, Do)
    actions = torch.randint(0, 2, (1000, 1, 1)) * 1.6 - 0.8            # +-0.8, independent of obs
    q = torch.rand(2000, 1, 1) * 2 - 1
    a = _train_toy(obs, actions, "weighted", 300).predict_action(q).flatten()
    up, down, middle = (a > 0.4).float().mean(), (a < -0.4).float().mean(), (a.abs() < 0.4).float().mean()
    assert up > 0.35 and down > 0.35 and middle < 0.1, (up, down, middle)
    policy = _train_toy(obs, actions, "mse", 300)
    nq = policy.normalizer.normalize_obs(q).reshape(-1, 1)
    a_mse = policy.normalizer.unnormalize_actions(policy.net(torch.zeros(len(q), 1), nq).reshape(-1, 1, 1)).flatten()
    assert (a_mse.abs() < 0.4).float().mean() > 0.9                    # regression sits in the empty middle


def test_sparse_unimodal_toy_weighting_keeps_the_precision_plain_knn_loses():
    torch.manual_seed(0)
    obs = torch.rand(64, 1, 1) * 2 - 1                                 # sparse: 64 samples
    actions = 0.8 * torch.sin(3 * obs)                                 # precise, unimodal
    q = obs.repeat(8, 1, 1)

    def error(mode):
        return (_train_toy(obs, actions, mode, 600).predict_action(q) - 0.8 * torch.sin(3 * q)).abs().mean().item()

    weighted, plain = error("weighted"), error("knn")
    assert weighted < 0.6 * plain, (weighted, plain)


# ----------------------------------------------------------------------------- policy API
def _tiny_policy(**kw):
    torch.manual_seed(0)
    cfg = dbp.DBPConfig(horizon=4, n_obs_steps=2, n_action_steps=3, hidden_dim=32, n_blocks=1, **kw)
    policy = dbp.DBPPolicy(obs_dim=3, action_dim=2, cfg=cfg)
    policy.normalizer.fit(torch.rand(50, 2, 3) * 5, torch.rand(50, 4, 2) - 3)
    return policy


def test_predict_action_is_one_network_evaluation_and_unnormalized():
    policy = _tiny_policy()
    calls = []
    policy.net.register_forward_hook(lambda *_: calls.append(1))
    a = policy.predict_action(np.random.rand(5, 2, 3).astype(np.float32))
    assert isinstance(a, np.ndarray) and a.shape == (5, 4, 2) and len(calls) == 1
    z = torch.randn(5, 4, 2)
    obs = torch.rand(5, 2, 3)
    assert torch.equal(policy.predict_action(obs, z), policy.predict_action(obs, z))   # z fixes the action
    assert policy.predict_action(obs).mean() < -1.5                                     # in raw action units


@pytest.mark.parametrize("call, match", [
    (lambda p: p.predict_action(torch.rand(5, 3)), r"obs must be shaped \(B, 2, 3\)"),
    (lambda p: p.predict_action(torch.full((1, 2, 3), float("nan"))), "NaN"),
    (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 5, 2)), r"actions must be shaped \(4, 4, 2\)"),
    (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2), torch.rand(4, 3, 4, 2), torch.rand(4, 2)),
     "pos_weights"),
    (lambda p: p.normalizer.fit(torch.rand(10, 2, 4), torch.rand(10, 4, 2)), "last dim 3"),
])
def test_bad_input_gets_a_clear_error(call, match):
    with pytest.raises(ValueError, match=match):
        call(_tiny_policy())


def _pixel_policy(seed=0):
    """A small pixel DBPPolicy (V = 1 camera of 3 x 32 x 32, agent_pos Do = 4, To = 2, Th = 4, Da = 2), normalizer fit."""
    torch.manual_seed(seed)
    cfg = dbp.DBPConfig(obs="pixels", horizon=4, n_obs_steps=2, n_action_steps=2, hidden_dim=32, n_blocks=1, crop=28,
                        encoder_channels=8, image_features=8)
    policy = dbp.DBPPolicy(4, 2, cfg, image_shape=(1, 3, 32, 32))
    policy.normalizer.fit(torch.rand(50, 2, 4), torch.rand(50, 4, 2))
    return policy


def _pixel_obs(B, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"image": torch.randint(0, 256, (B, 2, 1, 3, 32, 32), dtype=torch.uint8, generator=g),
            "agent_pos": torch.rand(B, 2, 4, generator=g)}


def test_pixel_policy_trains_round_trips_and_refuses_the_other_kind_of_obs(tmp_path):
    policy, obs = _pixel_policy(), _pixel_obs(8)
    loss, _ = policy.compute_loss(obs, torch.rand(8, 4, 2))
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in policy.encoder.parameters())  # pixels are used
    # random crops in training, the centre crop in evaluation: the condition varies only in training
    assert not torch.equal(policy.condition(obs), policy.condition(obs))
    policy.eval()
    assert torch.equal(policy.condition(obs), policy.condition(obs))
    z = torch.randn(8, 4, 2)
    chunk = policy.predict_action({k: v.numpy() for k, v in obs.items()}, z.numpy())
    assert isinstance(chunk, np.ndarray) and chunk.shape == (8, 4, 2)
    torch.save(policy.checkpoint(task="lift"), tmp_path / "px.pt")
    loaded = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "px.pt"))
    assert loaded.obs_mode == "pixels" and loaded.image_shape == (1, 3, 32, 32)
    assert torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))
    with pytest.raises(ValueError, match="trained on pixels"):
        loaded.predict_action(torch.rand(1, 2, 4))
    with pytest.raises(ValueError, match="uint8 of shape"):
        loaded.predict_action({"image": obs["image"][:, :, :, :, :30], "agent_pos": obs["agent_pos"]})
    with pytest.raises(ValueError, match="trained on state"):
        _tiny_policy().predict_action({k: v[:1] for k, v in obs.items()})
    with pytest.raises(dbp.ConfigError, match="k = 4: must be 1 with obs 'pixels'"):
        dbp.DBPConfig(obs="pixels", k=4)


def test_a_checkpoint_from_before_pixels_loads_as_a_state_policy(tmp_path):
    policy = _tiny_policy()
    ckpt = {"format": dbp.CKPT_FORMAT, "state_dict": policy.state_dict(),
            "config": {k: v for k, v in policy.config.items() if k not in dbp.PIXEL_FIELDS + ("image_shape",)}}
    loaded = dbp.DBPPolicy.from_checkpoint(ckpt)
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    assert loaded.obs_mode == "state" and torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))


def test_checkpoint_round_trip_and_mismatch_errors(tmp_path):
    policy = _tiny_policy()
    path = str(tmp_path / "ckpt.pt")
    torch.save(policy.checkpoint(step=7), path)
    loaded = dbp.DBPPolicy.from_checkpoint(path, expect={"obs_dim": 3, "action_dim": 2})
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    assert torch.equal(loaded.predict_action(obs, z), policy.predict_action(obs, z))
    with pytest.raises(ValueError, match="'obs_dim' is 3, expected 9"):
        dbp.DBPPolicy.from_checkpoint(path, expect={"obs_dim": 9})
    ckpt = torch.load(path, weights_only=True)
    assert ckpt["step"] == 7 and ckpt["format"] == dbp.CKPT_FORMAT
    ckpt["config"]["hidden_dim"] = 64                                   # config no longer fits weights
    with pytest.raises(ValueError, match="do not match"):
        dbp.DBPPolicy.from_checkpoint(ckpt)
    for config, message in ((dict(ckpt["config"], extra=1), "unknown field 'extra'"),
                            ({k: v for k, v in ckpt["config"].items() if k != "k"}, "lacks field 'k'"),
                            (dict(ckpt["config"], horizon=0), "horizon = 0: must be >= 1")):
        with pytest.raises(ValueError, match=message):                  # strict: each field named
            dbp.DBPPolicy.from_checkpoint(dict(ckpt, config=config))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match=f"ckpt must be a {dbp.CKPT_FORMAT} checkpoint"):
        dbp.DBPPolicy.from_checkpoint(tmp_path / "other.pt")
    for junk in (b"not a checkpoint", b""):
        (tmp_path / "junk.pt").write_bytes(junk)
        with pytest.raises(ValueError, match="junk.pt is not a readable checkpoint"):
            dbp.DBPPolicy.from_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError):
        dbp.DBPPolicy.from_checkpoint(tmp_path / "absent.pt")
    with pytest.raises(ValueError, match=f"ckpt must be a {dbp.CKPT_FORMAT} checkpoint"):
        dbp.DBPPolicy.from_checkpoint(dict(ckpt, format="dbp-checkpoint-v1"))


# ----------------------------------------------------------------------------- dbp.py alone
@slow
def test_dbp_py_and_its_tests_pass_alone_in_an_empty_folder(tmp_path):
    """Copied alone beside dbp.py, this file's tests pass (nothing else on the path; the two toys that train for
    seconds are left to the run in the repository)."""
    for name in ("dbp.py", "test_dbp.py"):
        (tmp_path / name).write_text(open(os.path.join(HERE, name)).read())
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-m", "not slow", "-k", "not toy",
                          "test_dbp.py"], cwd=tmp_path, capture_output=True, text=True,
                         timeout=300, env={**os.environ, "PYTHONPATH": ""})
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    assert re.search(r"\b\d\d+ passed", out.stdout) and "failed" not in out.stdout, out.stdout[-500:]


@device
def test_a_checkpoint_saved_on_one_device_loads_on_the_other_with_the_same_actions(tmp_path):
    """DBP_TEST_DEVICE (cpu here; cuda on a lent GPU): saved there, loaded on the CPU, and the reverse."""
    where = torch.device(os.environ.get("DBP_TEST_DEVICE", "cpu"))
    policy = _unfit_policy()
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    for source, target in ((where, torch.device("cpu")), (torch.device("cpu"), where)):
        torch.save(policy.to(source).checkpoint(), tmp_path / "ckpt.pt")
        loaded = dbp.DBPPolicy.from_checkpoint(tmp_path / "ckpt.pt").to(target)
        assert loaded.normalizer.obs_center.device.type == target.type
        expected = policy.predict_action(obs.to(source), z.to(source)).cpu()
        assert torch.allclose(loaded.predict_action(obs.to(target), z.to(target)).cpu(), expected, atol=1e-5)


def _imports(path):
    """The top-level modules a file imports."""
    import ast
    tree = ast.parse(open(path).read())
    names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    names |= {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.level == 0}
    return {name.split(".")[0] for name in names}


def test_dbp_py_and_its_tests_import_only_torch_numpy_pytest_and_the_standard_library():
    allowed = set(sys.stdlib_module_names) | {"numpy", "torch"}
    assert _imports(os.path.join(HERE, "dbp.py")) <= allowed - {"argparse", "sys"}    # a library: it never exits
    assert _imports(os.path.join(HERE, "test_dbp.py")) <= allowed | {"pytest", "dbp"}


# ----------------------------------------------------------------------------- bad input: one clear line
def _unfit_policy():
    torch.manual_seed(0)
    return dbp.DBPPolicy(3, 2, dbp.DBPConfig(horizon=4, n_obs_steps=2, n_action_steps=2, hidden_dim=16, n_blocks=1))


# Every documented call of dbp.py, given data it cannot use: one ValueError or TypeError naming the argument.
BAD_CALLS = {
    "empty batch": (lambda p: p.predict_action(torch.rand(0, 2, 3)), ValueError, r"obs must be shaped .*no size 0"),
    "text obs": (lambda p: p.predict_action(np.full((1, 2, 3), "a")), TypeError, "obs must hold real numbers"),
    "bool obs": (lambda p: p.predict_action(np.zeros((1, 2, 3), bool)), TypeError, "obs must hold real numbers"),
    "huge finite obs": (lambda p: p.predict_action(torch.full((1, 2, 3), 1e38)), ValueError, "chunk is not finite"),
    "noise shape": (lambda p: p.predict_action(torch.rand(2, 2, 3), noise=torch.rand(2, 3, 2)), ValueError,
                    r"noise must be shaped \(2, 4, 2\)"),
    "negative pos_weights": (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2), torch.rand(4, 2, 4, 2),
                                                      -torch.ones(4, 2)), ValueError, "pos_weights must be finite and >= 0"),
    "a row of zero pos_weights": (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2),
                                                           torch.rand(4, 2, 4, 2), torch.zeros(4, 2)),
                                  ValueError, "a positive weight in every row"),
    "NaN actions": (lambda p: p.compute_loss(torch.rand(4, 2, 3), torch.full((4, 4, 2), float("nan"))), ValueError,
                    "actions contains NaN"),
    "k not an int": (lambda p: dbp.neighbor_positives(torch.rand(2, 2, 3), torch.rand(9, 2, 3), torch.rand(9, 4, 2), 2.0,
                                                      0.1), ValueError, "k must be an int"),
    "bandwidth 0": (lambda p: dbp.neighbor_positives(torch.rand(2, 2, 3), torch.rand(9, 2, 3), torch.rand(9, 4, 2), 2,
                                                     0.0), ValueError, "bandwidth must be a number > 0"),
    "windows disagree": (lambda p: dbp.neighbor_positives(torch.rand(2, 2, 3), torch.rand(9, 2, 3), torch.rand(8, 4, 2),
                                                          2, 0.1), ValueError, r"data_actions must be shaped \(9, _, _\)"),
    "no temperatures": (lambda p: dbp.drift_loss(torch.rand(2, 4, 6), torch.rand(2, 1, 6), temperatures=()), ValueError,
                        "temperatures must be a non-empty"),
    "fit on nothing": (lambda p: p.normalizer.fit(torch.rand(0, 2, 3), torch.rand(0, 4, 2)), ValueError, "Normalizer.fit"),
    "fit on NaN": (lambda p: p.normalizer.fit(torch.full((5, 2, 3), float("nan")), torch.rand(5, 4, 2)), ValueError,
                   "must be finite"),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_every_documented_call_refuses_bad_data_in_one_line(case):
    call, error, match = BAD_CALLS[case]
    policy = _unfit_policy()
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    with pytest.raises(error, match=match) as e:
        call(policy)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("make, error, match", [
    (lambda: dbp.DBPConfig(temperatures=()), TypeError, r"temperatures = \(\): must be a non-empty tuple"),
    (lambda: dbp.DBPConfig(temperatures=[0.1, -0.2]), ValueError, r"temperatures = \(0.1, -0.2\): must be > 0"),
    (lambda: dbp.DBPConfig(horizon=8.0), TypeError, "horizon = 8.0: must be an int"),
    (lambda: dbp.DBPConfig(k=True), TypeError, "k = True: must be an int"),
    (lambda: dbp.DBPConfig(obs=1), TypeError, "obs = 1: must be a str"),
    (lambda: dbp.DBPConfig(bandwidth=float("nan")), ValueError, "bandwidth = nan"),
    (lambda: dbp.DBPPolicy(3.5, 2), TypeError, "obs_dim must be an int >= 1"),
    (lambda: dbp.DBPPolicy(3, 0), TypeError, "action_dim must be an int >= 1"),
    (lambda: dbp.DBPPolicy(3, 2, cfg={"horizon": 4}), TypeError, "cfg must be a DBPConfig"),
    (lambda: dbp.DBPPolicy.from_checkpoint({"config": {}}), ValueError, "'config' and 'state_dict'"),
])
def test_configs_and_constructors_refuse_wrong_types_and_ranges(make, error, match):
    with pytest.raises(error, match=match):
        make()


def test_config_values_of_a_compatible_type_are_converted():
    cfg = dbp.DBPConfig(temperatures=[0.1, 0.2], bandwidth=1, horizon=np.int64(8))
    assert cfg.temperatures == (0.1, 0.2) and type(cfg.bandwidth) is float and type(cfg.horizon) is int


def test_an_unfit_normalizer_is_refused_and_a_loaded_policy_counts_as_fit(tmp_path):
    policy = _unfit_policy()
    for call in (lambda: policy.predict_action(torch.rand(1, 2, 3)),
                 lambda: policy.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2))):
        with pytest.raises(ValueError, match="the normalizer is not fit: call policy.normalizer.fit"):
            call()
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    torch.save(policy.checkpoint(), tmp_path / "ckpt.pt")
    assert dbp.DBPPolicy.from_checkpoint(tmp_path / "ckpt.pt").predict_action(torch.rand(1, 2, 3)).shape == (1, 4, 2)
    old = {k: v for k, v in policy.state_dict().items() if k != "normalizer.fitted"}    # written before the flag
    assert dbp.DBPPolicy.from_checkpoint(dict(config=policy.config, state_dict=old)).normalizer.fitted


def test_a_checkpoint_with_non_finite_weights_is_refused():
    policy = _unfit_policy()
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    state = {k: v.clone() for k, v in policy.state_dict().items()}
    state["net.inp.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="checkpoint weight 'net.inp.weight' holds NaN or inf"):
        dbp.DBPPolicy.from_checkpoint(dict(config=policy.config, state_dict=state))


def test_compute_loss_returns_its_force_rms_as_tensors_read_only_when_logged():
    policy = _unfit_policy()
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    _, info = policy.compute_loss(torch.rand(4, 2, 3), torch.rand(4, 4, 2))
    assert list(info) == policy.info_keys
    assert all(isinstance(v, torch.Tensor) and v.dim() == 0 and torch.isfinite(v) for v in info.values())
