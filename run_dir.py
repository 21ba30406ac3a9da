"""A training run's directory, shared by both stages of train.py: log.csv, checkpoints on schedule, Ctrl-C, eval.json
and the learning curves drawn from log.csv.

    OUT/ckpt.pt     the checkpoint (written by the stage's save(), which Run calls every eval_every and save_every_s)
    OUT/log.csv     a row per logged step (stage 1) or iteration (stage 2); a resumed run continues it
    OUT/eval.json   the final evaluation
    OUT/curve.png   stage 2: its learning curve, redrawn at every evaluation

    python run_dir.py      # a log.csv written, resumed from a checkpoint at step 200, and its curve drawn
"""
import csv
import json
import os
import signal
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm

import rollouts
import training


def open_log(out, keys, resume_at):
    """log.csv of a run -> (file, csv.DictWriter). A new run starts the file with its header; a
    resumed one (resume_at = the checkpoint's step) first drops the rows written after that
    checkpoint, and a line cut off by a crash, so no row appears twice."""
    path = os.path.join(out, "log.csv")
    rows = []
    if resume_at is not None and os.path.exists(path):
        with open(path, newline="") as f:
            lines = f.read().splitlines(keepends=True)
        complete = [line for line in lines[1:] if line.endswith("\n")]
        rows = [r for r in csv.DictReader(lines[:1] + complete) if None not in r.values() and int(r[keys[0]]) <= resume_at]

    def write(tmp):
        with open(tmp, "w", newline="") as f:
            log = csv.DictWriter(f, keys)
            log.writeheader()
            log.writerows(rows)
    training.atomic_write(path, write)
    log_file = open(path, "a", newline="")
    return log_file, csv.DictWriter(log_file, keys)


class Run:
    """What both stages share around their loop: the run directory, log.csv, the progress bar,
    checkpoints (every eval_every and every save_every_s; atomic writes), Ctrl-C (finish the
    current step, save, exit with the command that resumes) and the final eval.json.
    done: steps (or iterations) already done; seconds: wall time already spent (resumed runs)."""

    def __init__(self, cfg, stage, keys, done, total, seconds, save, main=True):
        self.cfg, self.stage, self.main = cfg, stage, main  # main: the process that writes (rank 0 under torchrun)
        self.save = save if main else lambda: None
        if main:
            os.makedirs(cfg.out, exist_ok=True)
            self.log_file, self.log = open_log(cfg.out, keys, done if cfg.resume else None)
        self.bar = tqdm(total=total, initial=done, desc=stage, unit="step" if stage == "pretrain" else "iter",
                        dynamic_ncols=True, disable=not main)
        self.t0, self.last_save = time.time() - seconds, time.time()
        self.signalled = False    # set by Ctrl-C (torchrun: SIGTERM), at any moment
        self.interrupted = False  # set by stopping() alone, between steps: the loop finishes its step and stops
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: setattr(self, "signalled", True))

    @property
    def seconds(self):
        """Wall time of the run so far, earlier sessions of a resumed run included."""
        return time.time() - self.t0

    def write(self, row):
        """Log a row; in stage 2 a row with an evaluation also redraws OUT/curve.png."""
        if not self.main:
            return
        self.log.writerow(row)
        self.log_file.flush()
        if self.stage == "dbpo" and "eval/success_rate" in row:
            plot_curves([self.cfg.out], os.path.join(self.cfg.out, "curve.png"))

    def stopping(self, group=None, device=None):
        """Whether the loop stops after this step: a signal came; under torchrun, to any process (all stop at the
        same step). The handler sets only `signalled`, so a signal during the all-reduce is not lost."""
        self.interrupted = self.signalled
        if group is not None:
            flag = torch.tensor([float(self.interrupted)], device=device)
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
            self.interrupted = bool(flag.item())
        return self.interrupted

    def step(self, done, row=None, advance=True):
        """After step (or iteration) `done`: log its row, advance the bar, checkpoint when due."""
        if row:
            self.write(row)
        if not advance:
            return
        self.bar.update()
        if done % self.cfg.eval_every == 0 or time.time() - self.last_save > self.cfg.save_every_s:
            self.save()
            self.last_save = time.time()

    def end_loop(self):
        """After the loop: save; after Ctrl-C, exit with the command that continues the run."""
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        self.bar.close()
        self.save()
        if self.interrupted:
            if not self.main:
                sys.exit(1)                                  # rank 0 says it
            self.log_file.close()
            world = int(os.environ.get("WORLD_SIZE", "1"))
            launcher = f"torchrun --nproc_per_node={world}" if world > 1 else "python"
            sys.exit(f"interrupted; checkpoint saved; continue with: {launcher} train.py --stage {self.stage} "
                     f"--out {self.cfg.out} --resume")

    def finish(self, result, row, start=""):
        """Log the final row, write eval.json, print the result line (after `start`, if given)."""
        if not self.main:
            return result
        self.write(row)
        self.log_file.close()

        def write(tmp):
            with open(tmp, "w") as f:
                json.dump(result, f, indent=2)
        training.atomic_write(os.path.join(self.cfg.out, "eval.json"), write)
        if "ci95" not in result:   # not evaluated: the caller says why
            return result
        lo, hi = result["ci95"]
        print(f"success {start}{result['success_rate']:.2f} [{lo:.2f}, {hi:.2f}] over {result['n_episodes']} episodes; "
              f"modes {result['mode_fractions']}; trained {result['train_seconds']:.0f} s; wrote {self.cfg.out}/eval.json")
        return result



# ----------------------------------------------------------------------------- learning curves
def read_evaluations(run_dir):
    """The rows of a run's log.csv that hold an evaluation -> (x column, y column, rows)."""
    path = os.path.join(run_dir, "log.csv")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} does not exist: not a run directory of train.py?")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    x, y = ("env_steps", "eval/success_rate") if "env_steps" in (rows[0] if rows else {}) else ("step", "success_rate")
    return x, y, [r for r in rows if r.get(y)]


def _mode_series(rows):
    """Each mode's successes per 100 evaluation episodes (a log from before those counts: the mode's share of the
    successes) as [(mode, values)]; empty for a task without modes."""
    counted = bool(rows) and "eval/episodes" in rows[0]
    prefix = "eval/successes_" if counted else "eval/mode_"
    scale = (lambda r: 100 / float(r["eval/episodes"])) if counted else (lambda r: 1.0)
    keys = [k for k in (rows[0] if rows else {}) if k.startswith(prefix)]
    return [(k[len(prefix):], [float(r[k]) * scale(r) for r in rows]) for k in keys]


def plot_curves(run_dirs, path):
    """Success (its 95 % interval shaded, where logged) and, for tasks with modes, each mode's successes per 100
    evaluation episodes against env steps (stage 2; gradient steps for stage 1): one colour per run, written to
    path."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    runs = [(os.path.basename(os.path.normpath(d)), *read_evaluations(d)) for d in run_dirs]   # (label, x, y, rows)
    modes = [_mode_series(rows) for *_, rows in runs]
    if any(modes):                                            # a second panel for the modes' successes
        fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 6), sharex=True, height_ratios=(2, 1))
        bottom.set(ylabel="successes per 100 episodes\n(older logs: share of successes)")
    else:                                                     # a task without modes (Meta-World): success alone
        fig, top = plt.subplots(figsize=(7, 4))
    for i, ((label, xkey, ykey, rows), series) in enumerate(zip(runs, modes)):
        color, x = f"C{i % 10}", [int(r[xkey]) for r in rows]
        top.plot(x, [float(r[ykey]) for r in rows], "o-", color=color, ms=3, label=label)
        if rows and rows[0].get("eval/ci95_low"):
            top.fill_between(x, [float(r["eval/ci95_low"]) for r in rows], [float(r["eval/ci95_high"]) for r in rows],
                             color=color, alpha=0.15, lw=0)
        for style, (mode, values) in zip(("-", "--", ":", "-."), series):
            bottom.plot(x, values, style, color=color, label=f"{label}: {mode}")
    top.set(ylabel="success (95 % interval)", ylim=(0, 1.02))
    fig.axes[-1].set(xlabel=xkey.replace("_", " "))
    for ax in fig.axes:
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=7)
    fig.tight_layout()
    training.atomic_write(path, lambda tmp: fig.savefig(tmp, dpi=100), suffix=".png")
    plt.close(fig)
    return path


# ----------------------------------------------------------------------------- evaluation
def evaluate(policy, task, n_episodes, seed, progress=False, video=0, out="", batch=1):
    """rollouts.evaluate with the policy's noise z drawn from a seeded stream of its own: repeatable,
    and the training RNG is left where it was. The first `video` episodes go to out/videos/."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return rollouts.evaluate(task, policy, n_episodes, seed, progress, video, os.path.join(out, "videos"), batch)


# ----------------------------------------------------------------------------- quick demo
if __name__ == "__main__":
    import tempfile
    with tempfile.TemporaryDirectory() as out:
        keys = ["step", "loss", "success_rate"]
        log_file, log = open_log(out, keys, resume_at=None)
        log.writerows([dict(step=s, loss=1 / s, success_rate=s / 400 if s % 200 == 0 else "") for s in (100, 200, 300, 400)])
        log_file.close()
        open_log(out, keys, resume_at=200)[0].close()        # --resume from step 200's checkpoint: 300, 400 go
        print(open(os.path.join(out, "log.csv")).read())
        print(f"evaluations: {read_evaluations(out)}\nwrote {plot_curves([out], os.path.join(out, 'curves.png'))}")
