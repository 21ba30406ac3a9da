"""Tests of training.py: the EMA of the weights, atomic writes, checkpoint files."""
import os
import sys

import pytest
import torch

import dbp
import training
from test_dbp import _imports


def _policy():
    torch.manual_seed(0)
    policy = dbp.DBPPolicy(3, 2, dbp.DBPConfig(horizon=4, n_obs_steps=2, n_action_steps=2, hidden_dim=16, n_blocks=1))
    policy.normalizer.fit(torch.rand(50, 2, 3), torch.rand(50, 4, 2))
    return policy


def test_ema_tracks_the_model():
    policy = _policy()
    ema = training.EMA(policy)
    with torch.no_grad():
        for p in policy.parameters():
            p.add_(1.0)
    for _ in range(200):
        ema.update(policy)
    gap = max((e - p).abs().max().item() for e, p in zip(ema.model.parameters(), policy.parameters()))
    assert 0 < gap < 0.3


@pytest.mark.parametrize("kw, match", [(dict(max_decay=float("nan")), "max_decay must be a number in"),
                                       (dict(power=0), "power must be a finite number > 0")])
def test_ema_refuses_bad_settings(kw, match):
    with pytest.raises(ValueError, match=match):
        training.EMA(torch.nn.Linear(1, 1), **kw)


def test_atomic_write_leaves_the_old_file_when_the_writer_fails(tmp_path):
    path = str(tmp_path / "f.txt")
    training.atomic_write(path, lambda tmp: open(tmp, "w").write("old"))

    def broken(tmp):
        open(tmp, "w").write("half")
        raise OSError("disk full")
    with pytest.raises(OSError):
        training.atomic_write(path, broken)
    assert open(path).read() == "old" and os.listdir(tmp_path) == ["f.txt"]


def test_a_saved_checkpoint_loads_with_its_extra_fields_and_bad_files_are_refused(tmp_path):
    policy, path = _policy(), str(tmp_path / "ckpt.pt")
    training.save_checkpoint(path, policy, step=7)
    ckpt = training.load_checkpoint(path)
    assert ckpt["step"] == 7 and os.listdir(tmp_path) == ["ckpt.pt"]            # the atomic write left no temp file
    obs, z = torch.rand(3, 2, 3), torch.randn(3, 4, 2)
    for source in (ckpt, path):
        assert torch.equal(dbp.DBPPolicy.from_checkpoint(source).predict_action(obs, z), policy.predict_action(obs, z))
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="not a readable checkpoint"):
        training.load_checkpoint(str(tmp_path / "junk.pt"))
    torch.save({"weights": torch.zeros(1)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="format"):
        training.load_checkpoint(str(tmp_path / "other.pt"))
    with pytest.raises(FileNotFoundError, match="no checkpoint at"):
        training.load_checkpoint(str(tmp_path / "absent.pt"))


def test_training_py_imports_only_torch_dbp_and_the_standard_library():
    assert _imports(training.__file__) <= set(sys.stdlib_module_names) | {"torch", "dbp"}
