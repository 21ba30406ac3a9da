"""Tests of run_dir.py: a resumed run's log.csv. (Run's checkpoints, Ctrl-C and eval.json, and the learning curves,
are tested through train.py's runs in test_train.py.)

    python -m pytest -q test_run_dir.py     # a second
"""
import run_dir


def test_resumed_log_drops_rows_past_the_checkpoint_and_a_cut_line(tmp_path):
    (tmp_path / "log.csv").write_text("step,loss\n100,1\n200,2\n300,3\n40")   # killed mid-row
    log_file, log = run_dir.open_log(str(tmp_path), ["step", "loss"], resume_at=200)
    log.writerow(dict(step=300, loss=9))
    log_file.close()
    assert (tmp_path / "log.csv").read_text().splitlines() == ["step,loss", "100,1", "200,2", "300,9"]
