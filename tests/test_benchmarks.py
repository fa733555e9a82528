"""The training benchmark still runs end to end (on a tiny model), so its table cannot rot unnoticed.

It times nothing: the README's numbers come from full runs of `benchmarks/bench_train.py`. What it
checks is that each trainer trains and reports, and that the rows meant to be the same step agree.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TRAINERS = ["original (a)", "project", "project (whole batches)", "project-simpo", "project-simpo (whole batches)",
            "project-dpo"]


def test_benchmark_runs_every_core_trainer_on_a_tiny_model() -> None:
    # batches of 16 pairs: two micro-batches of 8 (Config.micro_batch) each, so the comparison is not trivial
    args = ["--pairs", "16", "--batch-size", "16", "--layers", "1", "--hidden", "32", "--heads", "2",
            "--repeat", "1", "--timeout", "120", "--only", ",".join(TRAINERS)]
    out = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "bench_train.py"), *args],
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = {}
    for line in out.stdout.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if line.startswith("| ") and cells[0] in TRAINERS:
            rows[cells[0]] = cells
    assert sorted(rows) == sorted(TRAINERS), out.stdout
    for name, cells in rows.items():
        assert cells[6].endswith("×"), f"{name} did not run: {cells[-1]}"  # "-" and a reason when it failed
    assert rows["original (a)"][6] == "1.00×"
    # micro-batches against whole batches: the same step up to float rounding
    for name in ("project (whole batches)", "project-simpo (whole batches)"):
        for value in re.findall(r"(?:loss|margin) ([0-9.e+-]+)", rows[name][8]):
            assert float(value) < 1e-4, (name, rows[name][8])
    assert "goal ≥ 5×" in out.stdout
