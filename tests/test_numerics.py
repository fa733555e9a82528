"""A run's numbers do not depend on how it is launched: every run computes on `numerics.RUN_THREADS` threads
whatever the caller's settings, and its cache key holds the numerics it computed under."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from w2s_deception import numerics
from w2s_deception.cache import RunCache

# A smoke reward head and a smoke SimPO policy (pre-training, SFT and SimPO on one thread each), with
# their per-pair results written out; the caller's thread count is set before anything trains.
TRAIN = textwrap.dedent("""
    import sys, torch
    torch.set_num_threads(int(sys.argv[1]))
    from w2s_deception.config import get_config
    from w2s_deception.experiments import gt_entry, open_cache
    from w2s_deception.preference import po_config, po_gt_entry
    cfg = get_config("smoke", runs_dir=sys.argv[2], n_pairs=64)
    rm = gt_entry(cfg, "s-nano", 0, open_cache(cfg))
    po_cfg = po_config("smoke", runs_dir=sys.argv[2], po_pairs=24)
    po = po_gt_entry(po_cfg, "simpo", "s-nano", 0, open_cache(po_cfg))
    rm.results.assign(run="rm").to_parquet(sys.argv[3] + "-rm.parquet")
    po.results.assign(run="po").to_parquet(sys.argv[3] + "-po.parquet")
    print(torch.get_num_threads(), rm.record["spec"]["numerics"]["threads"])
""")


def train_in_fresh_process(tmp_path: Path, name: str, threads: int) -> tuple[dict[str, pd.DataFrame], str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TQDM_DISABLE": "1"}
    done = subprocess.run([sys.executable, "-c", TRAIN, str(threads), str(tmp_path / f"runs-{name}"),
                           str(tmp_path / name)], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return {k: pd.read_parquet(tmp_path / f"{name}-{k}.parquet") for k in ("rm", "po")}, done.stdout.split()


def test_a_run_gives_the_same_numbers_whatever_the_callers_threads(tmp_path: Path) -> None:
    """Two fresh processes, one on one thread and one on two (OMP_NUM_THREADS and torch.set_num_threads),
    each from an empty runs folder: the same per-pair confidences to the last bit; the caller's thread count
    is restored after the run, and the record says the run used one."""
    one, said_one = train_in_fresh_process(tmp_path, "one", 1)
    two, said_two = train_in_fresh_process(tmp_path, "two", 2)
    assert said_one == ["1", str(numerics.RUN_THREADS)] and said_two == ["2", str(numerics.RUN_THREADS)]
    for kind in ("rm", "po"):
        pd.testing.assert_frame_equal(one[kind], two[kind], check_exact=True)
        assert one[kind]["confidence"].nunique() > 10  # a real run, not a constant


def test_numerics_are_fixed_inside_a_run_and_restored_after(tmp_path: Path) -> None:
    import torch

    before = torch.get_num_threads()
    seen = {}

    def compute(tmp):
        seen["threads"] = torch.get_num_threads()
        seen["deterministic"] = torch.are_deterministic_algorithms_enabled()
        return pd.DataFrame({"confidence": [0.5]}), {}

    torch.set_num_threads(2)
    try:
        entry = RunCache(tmp_path).get_or_compute("rm", {"seed": 0}, compute)
        assert torch.get_num_threads() == 2 and not torch.are_deterministic_algorithms_enabled()
    finally:
        torch.set_num_threads(before)
    assert seen == {"threads": numerics.RUN_THREADS, "deterministic": True}
    assert entry.record["spec"]["numerics"] == numerics.settings()
    assert set(numerics.settings()) >= {"torch", "device", "kernels", "threads"}


def test_an_entry_computed_under_other_kernels_is_never_served(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The key holds the CPU kernel level: a cache filled under AVX2 kernels has nothing for a process that
    dispatches to the portable ones (ATEN_CPU_CAPABILITY=default), which computes its own entry."""
    cache = RunCache(tmp_path)
    calls = []

    def compute(tmp):
        calls.append(1)
        return pd.DataFrame({"confidence": [0.25]}), {}

    cache.get_or_compute("rm", {"seed": 0}, compute)
    other = {**numerics.settings(), "kernels": "OTHER"}
    monkeypatch.setattr(numerics, "settings", lambda: other)
    assert not cache.has("rm", {"seed": 0})
    cache.get_or_compute("rm", {"seed": 0}, compute)
    assert len(calls) == 2
    # and a process started with the portable kernels reports them
    probe = subprocess.run([sys.executable, "-c", "import json; from w2s_deception import numerics; "
                            "print(json.dumps(numerics.settings()))"],
                           env={**os.environ, "ATEN_CPU_CAPABILITY": "default"}, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr
    assert json.loads(probe.stdout)["kernels"] == "DEFAULT"
