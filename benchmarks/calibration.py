"""The cell test's calibration (SPEC §6), measured on more simulated cells than the tests use.

    python benchmarks/calibration.py            # about 10 CPU-minutes

Prints, for the simulation of tests/test_calibration.py: the false-positive rate of the seed-aware test against
the reference-matched null (flip-rate seed effect of SD 0.02, and a harder seed × area effect of SD 0.02), its
power against a planted excess of +0.05 with 1,000 flips over 5 seeds in both, and the same null cells judged
against the uniform chance level (the mutation the tests check).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.test_calibration import rates  # noqa: E402
from w2s_deception import nulls as N  # noqa: E402


def main() -> None:
    rows = [
        ("null, flip-rate seed effect SD 0.02", N.reference_strata, 4000, {}),
        ("planted +0.05, flip-rate seed effect", N.reference_strata, 2000, {"planted": 0.05}),
        ("null, seed × area effect SD 0.02", N.reference_strata, 4000, {"area_sd": 0.02}),
        ("planted +0.05, seed × area effect", N.reference_strata, 2000, {"planted": 0.05, "area_sd": 0.02}),
        ("null judged against the uniform p0", N.uniform_strata, 1000, {}),
    ]
    print("| simulation | cells | above | below | mean chance level of the null tested |")
    print("|---|---|---|---|---|")
    for name, strata, n, kw in rows:
        above, below, level = rates(strata, n=n, seed=11, **kw)
        print(f"| {name} | {n:,} | {above:.3f} | {below:.3f} | {level:.3f} |", flush=True)


if __name__ == "__main__":
    main()
