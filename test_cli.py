"""Tests of the command lines that cli.py builds for every entry point (train.py's two stages, robot.py,
bench.py): each numeric flag's range and the --device flag.

    python -m pytest -q test_cli.py         # a few seconds on 2 CPU cores
"""
import dataclasses

import pytest
import torch

import bench
import cli
import robot
import train


# ----------------------------------------------------------------------------- flags of every entry point
# Every numeric flag of every entry point, given -1, nan or 0: a one-line refusal naming the flag,
# except where the value means something. Those are listed here, so a new flag without a range fails.
MEANINGFUL = {("seed", "0"), ("weight_decay", "0"), ("warmup_steps", "0"), ("critic_warmup_iters", "0"), ("lr_warmup_iters", "0"), ("lr_floor", "0"),
              ("ent_coef", "0"), ("anchor_coef", "0"), ("imitation_coef", "0"), ("gamma", "0"), ("gae_lambda", "0"), ("logprob_min", "-1"),
              ("joint_margin_rad", "0"), ("spin_s", "0"), ("rt_priority", "0"), ("rt_priority", "-1"), ("ur_gripper_pin", "0"),
              ("workspace_low_m", "0"), ("video", "0"), ("episodes", "0"), ("ema_max_decay", "0")}


@pytest.mark.parametrize("parse, cls", [
    (lambda a: train.parse(["--stage", "pretrain", *a]), train.PretrainConfig),
    (lambda a: train.parse(["--stage", "dbpo", *a]), train.DBPOStageConfig),
    (robot.parse, robot.RobotConfig),
    (bench.parse, bench.BenchConfig),
])
def test_every_numeric_flag_refuses_meaningless_values_in_one_line(parse, cls):
    accepted = set()
    for f in dataclasses.fields(cls):
        if f.type not in (int, float, tuple):
            continue
        flag = "--" + f.name.replace("_", "-")
        for value in ("-1", "nan", "0"):
            try:
                parse([flag, *[value] * (len(f.default) if f.type is tuple else 1)])
                accepted.add((f.name, value))
            except SystemExit as e:
                assert str(e.code).startswith(f"error: {flag} ") or str(e.code).startswith(f"error: argument {flag}")
                assert "\n" not in str(e.code), e.code
    assert accepted == {a for a in MEANINGFUL if a[0] in {f.name for f in dataclasses.fields(cls)}}, accepted


@pytest.mark.parametrize("parse", [lambda a: train.parse(["--stage", "pretrain", *a]),
                                   lambda a: train.parse(["--stage", "dbpo", *a]), robot.parse, bench.parse])
def test_device_flag_takes_what_this_machine_has_and_refuses_the_rest_in_one_line(parse):
    assert cli.resolve_device("cpu") == torch.device("cpu")
    assert cli.resolve_device("auto") == torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = parse(["--device", "cpu"])
    assert (cfg[1] if isinstance(cfg, tuple) else cfg).device == "cpu"
    with pytest.raises(SystemExit, match="^error: --device tpu: must be auto, cpu, cuda, cuda:N or mps$"):
        parse(["--device", "tpu"])
    with pytest.raises(SystemExit, match="error: --device cuda:99: not available here"):  # no machine has 100 GPUs
        parse(["--device", "cuda:99"])
