"""GPU check: the speed figures of every network path, measured on one machine's GPU and on its CPU, in one call.

Run on a lent GPU machine through gpu_check.sh (it installs the carried wheels first), or here as a dry run:
    python gpu_check.py --device cpu --quick --out runs/gpu-check      # seconds, what CI tests
    python gpu_check.py --device cuda --out $OUT                        # on the GPU: cuda, then the same machine's CPU
It measures, per device:
    predict_action latency at batch 1 and 256 (numpy in, numpy out: what a robot loop pays)
    Diffusion Policy (U-Net) latency at batch 1 with DDPM-100 and DDIM-10, and DDPM-100 / DBP
    training steps/s at batch 128 and 1024 (state) and 128 (pixels: one 64 x 64 camera)
    one DBPO update (ppo_update on a full 8 x 32 rollout, the defaults)
and writes gpu_check.json and gpu_check.md to --out. It imports dbp, dbpo and baselines only (no simulator), so it
runs where pybullet is not installed. The device tests (train.py, bench.py, robot.py on --device) are `pytest -m
device` with DBP_TEST_DEVICE=cuda; gpu_check.sh runs them after this.
"""
import argparse
import json
import os
import platform
import time

import numpy as np
import torch

import baselines
import dbp
import dbpo
import training

OBS_DIM, ACTION_DIM = 9, 4                                 # push-sized state, as bench.py's latency table
FULL = dict(latency_calls=200, train_steps=50, warmup=10)
QUICK = dict(latency_calls=5, train_steps=3, warmup=1)


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device, calls, warmup):
    """Median and p99 wall time (ms) of fn() over `calls` calls after `warmup`, each call synchronized."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(calls):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return dict(p50_ms=float(np.median(times) * 1e3), p99_ms=float(np.percentile(times, 99) * 1e3))


def fitted(policy, rng):
    policy.normalizer.fit(rng.uniform(-1, 1, (256, policy.n_obs_steps, policy.obs_dim)),
                          rng.uniform(-1, 1, (256, policy.horizon, policy.action_dim)))
    return policy


def latencies(device, n):
    """predict_action at batch 1 and 256, and the U-Net Diffusion Policy's DDPM-100 and DDIM-10 at batch 1."""
    rng, cfg = np.random.default_rng(0), dbp.DBPConfig()
    policy = fitted(dbp.DBPPolicy(OBS_DIM, ACTION_DIM, cfg), rng).to(device).eval()
    unet = fitted(baselines.DiffusionPolicy(OBS_DIM, ACTION_DIM, cfg, backbone="unet"), rng).to(device).eval()
    obs = {b: rng.uniform(-1, 1, (b, cfg.n_obs_steps, OBS_DIM)).astype(np.float32) for b in (1, 256)}
    out = {f"dbp_b{b}": timed(lambda: policy.predict_action(obs[b]), device, n["latency_calls"], n["warmup"])
           for b in (1, 256)}
    for name, use in (("ddpm100_b1", ("ddpm", 100)), ("ddim10_b1", ("ddim", 10))):
        unet.use(*use)
        out[f"dp_unet_{name}"] = timed(lambda: unet.predict_action(obs[1]), device, max(2, n["latency_calls"] // 10),
                                       n["warmup"])
    out["ddpm100_over_dbp_b1"] = out["dp_unet_ddpm100_b1"]["p50_ms"] / out["dbp_b1"]["p50_ms"]
    return out


def train_rate(device, batch, n, pixels=False):
    """Training steps/s of DBP (drift loss, AdamW, K = 1) at `batch`: state, or pixels from one 64 x 64 camera."""
    g = torch.Generator().manual_seed(0)
    if pixels:
        cfg = dbp.DBPConfig(obs="pixels")
        policy = dbp.DBPPolicy(4, ACTION_DIM, cfg, image_shape=(1, 3, 64, 64))
        obs = {"image": torch.randint(0, 256, (batch, 2, 1, 3, 64, 64), dtype=torch.uint8, generator=g).to(device),
               "agent_pos": torch.rand(batch, 2, 4, generator=g).to(device)}
        policy.normalizer.fit(obs["agent_pos"].cpu(), torch.rand(batch, cfg.horizon, ACTION_DIM))
    else:
        cfg = dbp.DBPConfig()
        policy = dbp.DBPPolicy(OBS_DIM, ACTION_DIM, cfg)
        obs = torch.rand(batch, 2, OBS_DIM, generator=g).to(device)
        policy.normalizer.fit(obs.cpu(), torch.rand(batch, cfg.horizon, ACTION_DIM))
    policy = policy.to(device).train()
    actions = torch.rand(batch, cfg.horizon, ACTION_DIM, generator=g).to(device)
    opt = torch.optim.AdamW(policy.parameters(), lr=1e-4, fused=device.type in ("cpu", "cuda"))

    def step():
        loss, _ = policy.compute_loss(obs, actions)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    t = timed(step, device, n["train_steps"], n["warmup"])
    return dict(steps_per_s=1e3 / t["p50_ms"], **t)


def dbpo_update(device, n):
    """Wall time of one ppo_update on a full rollout of 8 envs x 32 decisions (DBPOConfig's defaults)."""
    rng = np.random.default_rng(0)
    policy = fitted(dbp.DBPPolicy(OBS_DIM, ACTION_DIM, dbp.DBPConfig()), rng)
    cfg = dbpo.DBPOConfig(critic_warmup_iters=0)
    agent = dbpo.DBPOAgent(policy, cfg).to(device)
    N, T = 8, 32
    buffer = agent.make_buffer(T, N)
    no = np.zeros(N, bool)
    for _ in range(T):
        _, step = agent.act(rng.uniform(-1, 1, (N, 2, OBS_DIM)).astype(np.float32))
        buffer.add(**step, reward=rng.normal(size=N), terminated=no, truncated=no, final_value=np.zeros(N))
    optimizers, schedulers = dbpo.make_optimizers(agent, cfg, None)
    last = torch.zeros(N, device=device)
    t = timed(lambda: dbpo.ppo_update(agent, buffer, last, optimizers, schedulers, cfg), device,
              max(1, n["train_steps"] // 10), 1)
    return dict(decisions=N * T, **t)


def measure(device, n):
    torch.manual_seed(0)
    out = dict(latency=latencies(device, n),
               train=dict(state_b128=train_rate(device, 128, n), state_b1024=train_rate(device, 1024, n),
                          pixels_b128=train_rate(device, 128, n, pixels=True)),
               dbpo_update=dbpo_update(device, n))
    return out


def machine():
    info = dict(python=platform.python_version(), torch=torch.__version__, cpu_count=os.cpu_count(),
                torch_threads=torch.get_num_threads(), platform=platform.platform())
    if torch.cuda.is_available():
        info.update(gpu=torch.cuda.get_device_name(0), cuda=torch.version.cuda)
    return info


def table(results):
    """The figures as a Markdown table, one column per device."""
    devices = list(results["devices"])
    rows = [("predict_action b1, p50 ms", lambda r: r["latency"]["dbp_b1"]["p50_ms"]),
            ("predict_action b256, p50 ms", lambda r: r["latency"]["dbp_b256"]["p50_ms"]),
            ("DP U-Net DDPM-100 b1, p50 ms", lambda r: r["latency"]["dp_unet_ddpm100_b1"]["p50_ms"]),
            ("DP U-Net DDIM-10 b1, p50 ms", lambda r: r["latency"]["dp_unet_ddim10_b1"]["p50_ms"]),
            ("DDPM-100 / DBP latency at b1", lambda r: r["latency"]["ddpm100_over_dbp_b1"]),
            ("train steps/s, state b128", lambda r: r["train"]["state_b128"]["steps_per_s"]),
            ("train steps/s, state b1024", lambda r: r["train"]["state_b1024"]["steps_per_s"]),
            ("train steps/s, pixels b128", lambda r: r["train"]["pixels_b128"]["steps_per_s"]),
            ("one DBPO update (8 x 32), ms", lambda r: r["dbpo_update"]["p50_ms"])]
    lines = ["| figure | " + " | ".join(devices) + " |", "|---|" + "---|" * len(devices)]
    lines += [f"| {name} | " + " | ".join(f"{get(results['devices'][d]):.3g}" for d in devices) + " |"
              for name, get in rows]
    return "\n".join(lines) + "\n"


def write_text(path, text):
    with open(path, "w") as f:
        f.write(text)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda", help="the accelerator to measure (then the CPU too): cuda, "
                        "cuda:N, or cpu for the dry run (default: cuda)")
    parser.add_argument("--quick", action="store_true", help="a few calls each: checks the script, not the speed")
    parser.add_argument("--out", default="runs/gpu-check", help="folder for gpu_check.json and gpu_check.md")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error(f"--device {args.device}: no CUDA device here (use --device cpu for the dry run)")
    n = QUICK if args.quick else FULL
    devices = [device] + ([torch.device("cpu")] if device.type != "cpu" else [])
    results = dict(machine=machine(), quick=args.quick, devices={})
    for d in devices:
        print(f"measuring on {d} ...", flush=True)
        results["devices"][str(d)] = measure(d, n)
    text = table(results)
    for name, content in (("gpu_check.json", json.dumps(results, indent=1)), ("gpu_check.md", text)):
        training.atomic_write(os.path.join(args.out, name), lambda tmp: write_text(tmp, content))
    print(text)
    return results


if __name__ == "__main__":
    main()
