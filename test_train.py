"""Tests of train.py: both stages end to end (state and pixels, torchrun), a killed or interrupted run
resuming, its command line and --help, stage 2's checkpoint lookup, and --plot.

    python -m pytest -q test_train.py       # a few minutes on 2 CPU cores
"""
import csv
import dataclasses
import json
import os
import re
import signal
import struct
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

import dbp
import finetune
import robot
import run_dir
import train
import training
from conftest import DEVICE, TINY, gif_frames, save_tiny_policy

HERE = os.path.dirname(os.path.abspath(__file__))


# ----------------------------------------------------------------------------- stage pretrain
def test_a_robomimic_file_made_by_h5py_trains_through_dataset_and_the_checkpoint_names_its_keys(tmp_path):
    import h5py
    import demonstrations
    import envs
    demo = envs.load_demos(demonstrations.collect_demos("push", 4, seed=0, cache_dir=str(tmp_path), progress=False))
    starts, path = np.concatenate([[0], demo["episode_ends"][:-1]]), str(tmp_path / "push.hdf5")
    with h5py.File(path, "w") as f:                              # robomimic's layout, written without our code
        for i, (s, e) in enumerate(zip(starts, demo["episode_ends"])):
            f[f"data/demo_{i}/actions"] = demo["actions"][s:e]
            f[f"data/demo_{i}/obs/eef"], f[f"data/demo_{i}/obs/block"] = demo["obs"][s:e, :4], demo["obs"][s:e, 4:]
        f["mask/train"] = np.array([b"demo_0", b"demo_2", b"demo_3"])
    out = tmp_path / "run"
    result = train.main(["--stage", "pretrain", *TINY, "--steps", "20", "--dataset", path, "--dataset-obs-keys",
                         "eef,block", "--task", "push", "--out", str(out)])
    assert result["dataset"] == path and result["demos"] == 3                         # the train split only
    ckpt = training.load_checkpoint(str(out / "ckpt.pt"))
    assert ckpt["dataset"]["format"] == "robomimic" and ckpt["dataset"]["obs_keys"] == ["eef", "block"]
    cfg = train.PretrainConfig(dataset=path, dataset_obs_keys="eef,block", n_obs_steps=2, horizon=8)
    _, obs, actions = demonstrations.load_windows(cfg, "push")
    keep = {k: v for k, v in demo.items() if k not in ("episode_ends", "modes", "version")}
    ends = demo["episode_ends"]
    cut = np.concatenate([np.arange(s, e) for i, (s, e) in enumerate(zip(starts, ends)) if i != 1])
    want = demonstrations.make_windows(dict(keep, obs=demo["obs"][cut], actions=demo["actions"][cut],
                                            episode_ends=np.cumsum(np.diff(np.concatenate([[0], ends]))[[0, 2, 3]])), 2, 8)
    assert np.array_equal(obs.numpy(), want[0]) and np.array_equal(actions.numpy(), want[1])   # the same windows
    with pytest.raises(SystemExit, match=r"--dataset: .*no data/demo_0/obs/nope; .* holds \[.block., .eef.\]"):
        train.main(["--stage", "pretrain", *TINY, "--dataset", path, "--dataset-obs-keys", "eef,nope", "--task", "push",
                    "--out", str(tmp_path / "bad")])


def test_a_dataset_without_a_task_trains_and_saves_unevaluated_and_fps_is_checked_with_one(tmp_path, capsys):
    import demonstrations
    import envs
    import lerobot_writer
    demo = envs.load_demos(demonstrations.collect_demos("push", 3, seed=0, cache_dir=str(tmp_path), progress=False))
    root = lerobot_writer.write_lerobot(str(tmp_path / "arm"), demo, fps=30)   # say, a real arm's 30 Hz
    result = train.main(["--stage", "pretrain", *TINY, "--steps", "20", "--dataset", root, "--out", str(tmp_path / "r")])
    assert result["task"] is None and result["evaluated"] is False and result["steps"] == 20 and result["demos"] == 3
    assert "Not evaluated: no --task" in capsys.readouterr().out
    assert json.load(open(tmp_path / "r" / "eval.json")) == result
    ckpt = training.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))
    assert ckpt["task"] is None and ckpt["dataset"]["shapes"] == {"observation.state": [9], "action": [4]}
    with pytest.raises(SystemExit, match=r"trained on a dataset without --task: DBPO needs a task's env"):
        train.main(["--stage", "dbpo", "--ckpt", str(tmp_path / "r" / "ckpt.pt"), "--out", str(tmp_path / "d")])
    with pytest.raises(SystemExit, match=r"recorded at 30 fps; task 'push' steps at 10 Hz"):
        train.main(["--stage", "pretrain", *TINY, "--dataset", root, "--task", "push", "--out", str(tmp_path / "p")])
    with pytest.raises(SystemExit, match=r"--task : may be empty only with --dataset"):
        train.main(["--stage", "pretrain", *TINY, "--task", "", "--out", str(tmp_path / "q")])


def _train(tmp_path, *args, **kw):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--stage", "pretrain", *TINY,
           "--demo-dir", str(tmp_path / "demos"), *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


@pytest.mark.slow
def test_torchrun_two_processes_train_the_weights_of_one(tmp_path):
    """Two gloo processes, each on its half of every global batch, the drift loss's statistics all-reduced:
    after K steps the weights equal one process's on the whole batches, to float tolerance."""
    args = ["--stage", "pretrain", *TINY, "--steps", "25", "--warmup-steps", "5", "--eval-episodes", "1",
            "--demo-dir", str(tmp_path / "demos"), "--device", "cpu"]
    one = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), *args, "--out", "one"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert one.returncode == 0, one.stderr[-3000:]
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(HERE, "train.py"), *args, "--out", "two"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert two.returncode == 0, two.stderr[-3000:]
    assert "x 2 processes" in two.stdout and two.stdout.count("success ") == 1       # rank 0 alone reports
    a, b = (training.load_checkpoint(str(tmp_path / d / "ckpt.pt")) for d in ("one", "two"))
    assert a["train"]["step"] == b["train"]["step"] == 25
    for key in ("model", "optimizer"):
        flat = lambda sd: [v for v in (sd["state"].values() if key == "optimizer" else [sd]) for v in v.values()
                           if torch.is_tensor(v) and v.is_floating_point()]
        pairs = list(zip(flat(a["train"][key]), flat(b["train"][key])))
        assert pairs and all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in pairs), key
    assert all(torch.allclose(x, y, rtol=1e-4, atol=1e-6) for x, y in zip(a["state_dict"].values(), b["state_dict"].values()))
    assert all(v["exp_avg"].abs().sum() > 0 for v in a["train"]["optimizer"]["state"].values())  # it did train
    odd = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          os.path.join(HERE, "train.py"), *args, "--batch-size", "15", "--out", "odd"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert odd.returncode != 0 and "error: --batch-size 15 must split evenly over the 2 processes" in odd.stderr


@pytest.mark.slow
def test_torchrun_run_stops_together_on_a_signal_and_resumes(tmp_path):
    args = ["--stage", "pretrain", *TINY, "--steps", "1500", "--eval-every", "100000", "--eval-episodes", "1",
            "--save-every-s", "0.5", "--demo-dir", str(tmp_path / "demos"), "--device", "cpu", "--out", "r"]
    launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
              os.path.join(HERE, "train.py"), *args]
    run = subprocess.Popen(launch, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                           start_new_session=True)
    for _ in range(2400):                                  # wait for a first checkpoint (<= 120 s), then Ctrl-C
        if (tmp_path / "r" / "ckpt.pt").exists() or run.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(run.pid, signal.SIGINT)                      # as a terminal's Ctrl-C: torchrun and its workers
    out, err = run.communicate(timeout=300)
    stopped = training.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))["train"]["step"]
    assert 0 < stopped < 1500 and not (tmp_path / "r" / "eval.json").exists(), err[-2000:]
    assert (out + err).count("continue with: torchrun --nproc_per_node=2 train.py") == 1   # rank 0 says it
    resumed = subprocess.run(launch + ["--resume"], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "r" / "log.csv")) if r["loss"]]
    assert steps == list(range(100, 1501, 100))                        # nothing lost, nothing repeated


@pytest.mark.slow
@pytest.mark.device
def test_train_both_stages_from_pixels_run_end_to_end(tmp_path):
    run = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--stage", "pretrain", "--obs", "pixels",
                          "--task", "lift", "--demos", "2", "--steps", "6", "--warmup-steps", "2", "--batch-size", "8",
                          "--eval-episodes", "1", "--hidden-dim", "32", "--n-blocks", "1", "--encoder-channels", "8",
                          "--out", "px", "--demo-dir", str(tmp_path / "demos"), "--device", DEVICE],
                         cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    assert json.load(open(tmp_path / "px" / "eval.json"))["n_episodes"] == 1
    policy = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "px" / "ckpt.pt"))
    assert policy.obs_mode == "pixels" and policy.image_shape == (1, 3, 64, 64) and policy.obs_dim == 4
    assert (tmp_path / "demos" / "lift_n2_s0_pixels64x64.npz").exists()
    # stage 2 from the pixel policy: its encoder frozen, the envs render, the checkpoint stays a pixel policy
    dbpo_run = subprocess.run([sys.executable, os.path.join(HERE, "train.py"), "--stage", "dbpo", "--ckpt", "px/ckpt.pt",
                               "--iterations", "2", "--n-envs", "2", "--n-decisions", "4", "--eval-every", "1",
                               "--eval-episodes", "1", "--critic-warmup-iters", "1", "--minibatch-size", "4", "--out", "rl",
                               "--device", DEVICE],
                              cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert dbpo_run.returncode == 0, dbpo_run.stderr[-3000:]
    tuned = dbp.DBPPolicy.from_checkpoint(str(tmp_path / "rl" / "ckpt.pt"))
    assert tuned.obs_mode == "pixels"
    assert all(torch.equal(a, b) for a, b in zip(tuned.encoder.state_dict().values(), policy.encoder.state_dict().values()))


@pytest.mark.slow
def test_train_pretrain_runs_and_a_killed_run_resumes_to_the_same_weights(tmp_path):
    straight = _train(tmp_path, "--out", "a", "--video", "1")
    out, err = straight.communicate(timeout=300)
    assert straight.returncode == 0, err
    result = json.load(open(tmp_path / "a" / "eval.json"))
    for key in ("success_rate", "ci95", "n_episodes", "mode_fractions", "train_seconds"):
        assert key in result
    assert result["n_episodes"] == 3 and set(result["mode_fractions"]) == {"left", "right"}
    (video,) = (tmp_path / "a" / "videos").iterdir()                  # --video 1: the first episode only
    assert re.fullmatch(r"push_seed0_(failure|success-(left|right))\.gif", video.name), video.name
    frames = gif_frames(video)                                        # one per env step, the reset included
    assert len(frames) > 1 and frames[0].shape == (240, 320, 3) and not np.array_equal(frames[0], frames[-1])
    assert open(tmp_path / "a" / "log.csv").readline().startswith("step,loss,lr,force_rms")

    # SIGKILL (no chance to save) after a checkpoint taken on the clock, not at eval_every. Ctrl-C,
    # which saves first, goes through the same Run plumbing: the DBPO test below sends it.
    killed, ckpt_path = _train(tmp_path, "--out", "c", "--save-every-s", "0.3"), tmp_path / "c" / "ckpt.pt"
    deadline = time.time() + 120
    while killed.poll() is None and time.time() < deadline:
        if ckpt_path.exists() and training.load_checkpoint(str(ckpt_path))["train"]["step"] % 500:
            killed.kill()
        time.sleep(0.02)
    killed.communicate(timeout=60)
    assert killed.returncode == -signal.SIGKILL
    resumed = _train(tmp_path, "--out", "c", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    a, c = (training.load_checkpoint(str(tmp_path / d / "ckpt.pt")) for d in "ac")
    assert all(torch.equal(a["state_dict"][k], c["state_dict"][k]) for k in a["state_dict"])
    assert json.load(open(tmp_path / "c" / "eval.json"))["success_rate"] == result["success_rate"]
    steps = [int(r["step"]) for r in csv.DictReader(open(tmp_path / "c" / "log.csv")) if r["loss"]]
    assert steps == list(range(100, 2001, 100)), steps                  # each row once, none lost
    assert not (tmp_path / "c" / "videos").exists()                     # no --video, no rendering


# ----------------------------------------------------------------------------- command line
@pytest.mark.slow
@pytest.mark.parametrize("args, message", [
    (["--task", "nope"], "known tasks"),
    (["--stepz", "5"], "unrecognized arguments"),
    (["--steps", "ten"], "invalid int value"),
    (["--out", "missing", "--resume"], "no checkpoint"),
    (["--steps", "-5"], "error: --steps -5: must be >= 1"),
])
def test_train_cli_errors_are_clear(tmp_path, args, message):
    run = _train(tmp_path, *args)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and message in err and "Traceback" not in err, err
    said = [line for line in err.splitlines() if line.strip() and not line.startswith("pybullet build time")]
    assert len(said) == 1, err                                          # one line, no usage dump


def test_ema_max_decay_zero_evaluates_the_raw_weights_and_the_default_averages():
    policy = dbp.DBPPolicy(3, 2, dbp.DBPConfig(horizon=4, n_obs_steps=2, n_action_steps=2, hidden_dim=16, n_blocks=1))
    for decay, averaged in ((0.0, False), (0.9999, True)):
        state = train.Pretraining(policy, train.PretrainConfig(ema_max_decay=decay), torch.device("cpu"))
        for _ in range(20):
            with torch.no_grad():
                next(policy.parameters()).add_(1.0)
            state.ema.update(policy)
        gap = (next(state.ema.model.parameters()) - next(policy.parameters())).abs().max().item()
        assert (gap > 1.0) == averaged, (decay, gap)


@pytest.mark.parametrize("args, message", [
    (["--steps", "-5"], "error: --steps -5: must be >= 1"),
    (["--demos", "0"], "error: --demos 0: must be >= 1"),
    (["--horizon", "1"], "error: --horizon 1: must be >= n_obs_steps - 1 + n_action_steps = 3"),
    (["--eval-episodes", "0"], "error: --eval-episodes 0: must be >= 1"),
    (["--bandwidth", "nan"], "error: --bandwidth nan: must be > 0.0 and <= inf"),
    (["--k", "100000"], "error: --k 100000: must be <= the"),
    (["--ema-max-decay", "1"], "error: --ema-max-decay 1.0: must be >= 0.0 and < 1.0"),
])
def test_bad_input_ends_in_one_line(tmp_path, args, message):
    with pytest.raises(SystemExit) as e:    # the command line prints the exit message alone (test_train_cli_errors_are_clear)
        train.main([*TINY, "--demo-dir", str(tmp_path / "demos"), "--out", str(tmp_path / "r"), *args])
    assert str(e.value.code).startswith(message) and "\n" not in str(e.value.code), e.value.code


@pytest.mark.parametrize("stage, cls", [("pretrain", train.PretrainConfig), ("dbpo", train.DBPOStageConfig)])
def test_train_help_explains_every_flag_with_its_default_and_range(stage, cls, capsys):
    with pytest.raises(SystemExit) as e:
        train.main(["--stage", stage, "--help"])
    out = capsys.readouterr().out
    assert e.value.code == 0 and "--stage NAME --help" in out
    for f in dataclasses.fields(cls):
        assert "--" + f.name.replace("_", "-") in out, f.name
    assert out.count("(default:") == sum(f.type is not bool for f in dataclasses.fields(cls))
    assert "15000; >= 1)" in out or stage == "dbpo"                            # --steps: default and range


def test_pixels_bring_their_own_step_defaults_and_flags_still_apply():
    _, cfg, _ = train.parse(["--obs", "pixels"])
    assert (cfg.steps, cfg.warmup_steps, cfg.eval_every) == (6000, 300, 2000)
    _, cfg, _ = train.parse(["--obs", "pixels", "--steps", "100"])
    assert (cfg.steps, cfg.warmup_steps) == (100, 300)
    _, cfg, _ = train.parse([])
    assert (cfg.obs, cfg.steps, cfg.warmup_steps, cfg.eval_every) == ("state", 15000, 500, 5000)


# ----------------------------------------------------------------------------- stage dbpo
def _ctrl_c_once_saved(run, ckpt_path):
    """Ctrl-C a training subprocess once its first checkpoint exists: it must save and exit, hinting --resume."""
    deadline = time.time() + 120
    while not ckpt_path.exists() and time.time() < deadline:
        time.sleep(0.05)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode != 0 and "--resume" in err, err


def _dbpo(tmp_path, *args):
    cmd = [sys.executable, os.path.join(HERE, "train.py"), "--stage", "dbpo", "--n-envs", "2", "--n-decisions", "4",
           "--eval-episodes", "1", "--critic-warmup-iters", "1", "--minibatch-size", "4", *args]
    return subprocess.Popen(cmd, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_train_dbpo_runs_end_to_end_and_an_interrupted_run_resumes(tmp_path):
    stage1 = save_tiny_policy(str(tmp_path / "bimanual.pt"), "bimanual", 14, 8)
    _ctrl_c_once_saved(_dbpo(tmp_path, "--ckpt", stage1, "--iterations", "60", "--eval-every", "3", "--out", "r"),
                       tmp_path / "r" / "ckpt.pt")
    stopped = training.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))["train"]["iteration"]
    assert 3 <= stopped < 60
    resumed = _dbpo(tmp_path, "--out", "r", "--resume")
    _, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    rows = list(csv.DictReader(open(tmp_path / "r" / "log.csv")))
    for key in ("losses/policy", "losses/value", "losses/anchor", "losses/entropy", "losses/approx_kl",
                "losses/clipfrac", "charts/success_rate", "charts/return", "charts/SPS", "eval/success_rate",
                "eval/ci95_low", "eval/ci95_high", "time/rollout_s", "time/update_s"):
        assert key in rows[0], key
    assert all(float(r["time/rollout_s"]) > 0 and float(r["time/update_s"]) > 0 for r in rows if r["losses/policy"])
    assert (tmp_path / "r" / "curve.png").read_bytes()[:4] == b"\x89PNG"
    iters = [int(r["iteration"]) for r in rows if r["losses/policy"]]
    assert iters == list(range(1, 61))                                    # nothing lost, nothing repeated
    # the resumed run continued its episodes where they were: it matches an uninterrupted run row for row
    _, err = _dbpo(tmp_path, "--ckpt", stage1, "--iterations", "60", "--eval-every", "3", "--out", "u").communicate(timeout=300)
    same = [k for k in rows[0] if k not in ("minutes", "charts/SPS", "time/rollout_s", "time/update_s")]
    assert [[r[k] for k in same] for r in csv.DictReader(open(tmp_path / "u" / "log.csv"))] == [[r[k] for k in same] for r in rows]
    result = json.load(open(tmp_path / "r" / "eval.json"))
    assert result["stage"] == "dbpo" and result["iterations"] == 60 and result["history"][0]["iteration"] == 0
    assert {"success_rate", "ci95", "n_episodes", "env_steps", "history"} <= set(result)
    ckpt = training.load_checkpoint(str(tmp_path / "r" / "ckpt.pt"))            # loads as a plain DBP policy
    policy = dbp.DBPPolicy.from_checkpoint(ckpt, expect=dict(obs_dim=14, action_dim=8))
    assert ckpt["task"] == "bimanual" and policy.predict_action(np.zeros((1, 2, 14), np.float32)).shape == (1, 4, 8)
    assert not torch.equal(policy.net.out[1].weight, dbp.DBPPolicy.from_checkpoint(stage1).net.out[1].weight)
    deployed = robot.load_policy(str(tmp_path / "r" / "ckpt.pt"))           # and as robot.py's policy
    assert all(torch.equal(a, b) for a, b in zip(deployed.state_dict().values(), policy.state_dict().values()))


def test_paper_preset_sets_the_papers_coefficients_and_flags_still_apply():
    _, cfg, _ = train.parse(["--stage", "dbpo", "--preset", "paper", "--actor-lr", "2e-5"])
    assert (cfg.clip_coef, cfg.std_init, cfg.actor_lr, cfg.anchor_over_chunk) == (0.02, 0.03, 2e-5, True)
    _, cfg, _ = train.parse(["--stage", "dbpo"])
    assert (cfg.clip_coef, cfg.std_init, cfg.actor_lr, cfg.anchor_over_chunk) == (0.1, 0.1, 3e-5, False)
    with pytest.raises(SystemExit, match="--preset best: must be '' or one of \\['latent', 'paper'\\]"):
        train.parse(["--stage", "dbpo", "--preset", "best"])


def test_train_dbpo_finds_the_default_stage1_run_and_checks_the_task(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    save_tiny_policy("runs/pretrain-push-s3/ckpt.pt", "push", 9, 4)      # where `--stage pretrain --seed 3` saves
    _, cfg, given = train.parse(["--stage", "dbpo", "--seed", "3"])
    policy, task = finetune.load_stage1(cfg, given)
    assert task == "push" and cfg.ckpt == os.path.join("runs", "pretrain-push-s3", "ckpt.pt") and policy.obs_dim == 9
    _, cfg, given = train.parse(["--stage", "dbpo", "--ckpt", save_tiny_policy("lift.pt", "lift", 9, 4)])
    assert finetune.load_stage1(cfg, given)[1] == "lift" and cfg.task == "lift"    # recorded in the run's config
    _, cfg, given = train.parse(["--stage", "dbpo", "--ckpt", "runs/pretrain-push-s3/ckpt.pt", "--task", "lift"])
    with pytest.raises(ValueError, match="--task lift disagrees with the task of .* \\(push\\)"):
        finetune.load_stage1(cfg, given)


@pytest.mark.parametrize("make, message", [
    (lambda d: None, "no stage-1 checkpoint at runs/pretrain-push-s0/ckpt.pt; make it with `python train.py "
                     "--stage pretrain --task push --seed 0`"),
    (lambda d: d + "/missing.pt", "no checkpoint at"),
    (lambda d: open(d + "/junk.pt", "wb").write(b"junk") and d + "/junk.pt", "not a readable checkpoint"),
    (lambda d: save_tiny_policy(d + "/notask.pt", None, 9, 4), "missing the field 'task'"),
    (lambda d: save_tiny_policy(d + "/dims.pt", "lift", 14, 4), "'obs_dim' is 14, expected 9"),
])
def test_train_dbpo_refuses_bad_checkpoints_clearly(tmp_path, make, message, monkeypatch):
    monkeypatch.chdir(tmp_path)                                             # no runs/ here: the default --ckpt is missing
    path = make(str(tmp_path))
    with pytest.raises(SystemExit) as e:
        train.main(["--stage", "dbpo", "--out", str(tmp_path / "run")] + ([] if path is None else ["--ckpt", path]))
    assert str(e.value.code).startswith("error:") and message in str(e.value.code), e.value.code


def test_an_mse_objective_trains_a_regressor_in_dbps_interface(tmp_path):
    out = tmp_path / "m"
    result = train.main(["--stage", "pretrain", *TINY, "--steps", "20", "--objective", "mse", "--out", str(out)])
    assert result["steps"] == 20 and open(out / "log.csv").readline().startswith("step,loss,lr,success_rate")
    policy = dbp.DBPPolicy.from_checkpoint(str(out / "ckpt.pt"))
    assert policy.cfg.objective == "mse" and policy.info_keys == []


def test_the_presets_bring_their_settings_the_paper_its_scaled_rollouts_and_flags_still_apply():
    _, run, _ = train.parse(["--stage", "dbpo", "--preset", "paper", "--n-envs", "4"])
    assert (run.n_envs, run.n_decisions, run.iterations, run.eval_every) == (4, 250, 100, 5)
    assert (run.minibatch_size, run.adv_norm, run.reward_scale, run.clip_coef) == (50000, "rollout", "rollout", 0.02)
    _, default, _ = train.parse(["--stage", "dbpo"])
    assert (default.n_envs, default.n_decisions, default.adv_norm, default.reward_scale) == (8, 32, "minibatch", "return")
    _, latent, _ = train.parse(["--stage", "dbpo", "--preset", "latent", "--actor-lr", "5e-4"])
    assert (latent.steer, latent.anchor_coef, latent.actor_lr, latent.n_decisions) == ("latent", 0.0, 5e-4, 32)


# ----------------------------------------------------------------------------- plot
def test_plot_overlays_runs_with_their_intervals_and_modes(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    header = "iteration,env_steps,losses/policy,eval/success_rate,eval/ci95_low,eval/ci95_high,eval/mode_left,eval/mode_right\n"
    for name, rates in (("a", (0.4, 0.6, 0.9)), ("b", (0.5, 0.5, 0.7))):
        os.makedirs(name)
        with open(f"{name}/log.csv", "w") as f:
            f.write(header + "".join(f"{i},{i * 100},{'' if i % 2 else 0.1},{r},{r - 0.1},{r + 0.05},0.3,0.7\n"
                                     for i, r in enumerate(rates)) + "7,700,0.1,,,,,\n")
    os.makedirs("c")                                                   # per-mode counts: successes per 100 episodes
    with open("c/log.csv", "w") as f:
        f.write("iteration,env_steps,eval/success_rate,eval/episodes,eval/attempts_left,eval/attempts_right,"
                "eval/successes_left,eval/successes_right\n0,0,0.8,50,30,20,24,16\n1,100,0.9,50,28,22,25,20\n")
    os.makedirs("pre")
    with open("pre/log.csv", "w") as f:
        f.write("step,loss,success_rate\n100,0.5,\n5000,0.4,0.6\n15000,0.3,0.9\n")
    size = lambda: struct.unpack(">II", open("curves.png", "rb").read(24)[16:])   # the PNG's width, height
    train.main(["--plot", "a", "b", "c", "pre"])
    assert open("curves.png", "rb").read(4) == b"\x89PNG" and size() == (700, 600)   # success, then the modes
    train.main(["--plot", "pre"])
    assert size() == (700, 400)                                                       # no modes: success alone
    assert run_dir.read_evaluations("a")[:2] == ("env_steps", "eval/success_rate") and len(run_dir.read_evaluations("a")[2]) == 3
    assert run_dir.read_evaluations("pre")[:2] == ("step", "success_rate") and len(run_dir.read_evaluations("pre")[2]) == 2
    with pytest.raises(SystemExit, match="error: nothing/log.csv does not exist"):
        train.main(["--plot", "nothing"])
