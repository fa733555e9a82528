"""The code's style: ruff over the package, the tests and the benchmarks, with the rules, line length and
exceptions set in pyproject.toml's [tool.ruff] (the notebooks are not linted). A test runs it because CI runs
only the test command: a lint error fails the suite like any other broken promise."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_ruff_finds_nothing() -> None:
    lint = subprocess.run([sys.executable, "-m", "ruff", "check", "src", "tests", "benchmarks"], cwd=REPO,
                          capture_output=True, text=True, check=False)
    assert lint.returncode == 0, f"ruff check src tests benchmarks:\n{lint.stdout}{lint.stderr}"
