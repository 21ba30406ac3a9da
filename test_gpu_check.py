"""Tests of gpu_check.py, the script a lent GPU machine runs: its CPU dry run here, so it does not first break there.

    python -m pytest -q test_gpu_check.py
"""
import json
import math

import gpu_check


def test_the_gpu_check_dry_run_measures_every_figure_and_writes_its_files(tmp_path):
    results = gpu_check.main(["--device", "cpu", "--quick", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "gpu_check.json").read_text())
    assert saved == json.loads(json.dumps(results)) and list(saved["devices"]) == ["cpu"]
    figures = saved["devices"]["cpu"]
    values = [figures["latency"][k]["p50_ms"] for k in ("dbp_b1", "dbp_b256", "dp_unet_ddpm100_b1", "dp_unet_ddim10_b1")]
    values += [figures["train"][k]["steps_per_s"] for k in ("state_b128", "state_b1024", "pixels_b128")]
    values += [figures["dbpo_update"]["p50_ms"], figures["latency"]["ddpm100_over_dbp_b1"]]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert figures["latency"]["dp_unet_ddpm100_b1"]["p50_ms"] > figures["latency"]["dp_unet_ddim10_b1"]["p50_ms"]
    table = (tmp_path / "gpu_check.md").read_text()
    assert "DDPM-100 / DBP latency at b1" in table and len(table.splitlines()) == 11
