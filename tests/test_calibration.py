"""SPEC §6: the cell test is calibrated by simulation, not assumed.

Simulated cells look like the book's: per seed, 2,000 test pairs whose reference confidence M_ref is
Beta(5, 2); the area Sk∩Wuk is likelier where the reference is confident (the strong model knows those
pairs), and flips are likelier where it is not, so the uniform chance level is far from the right one.
Under the null, flips depend only on M_ref, plus a random seed effect that moves each seed's flip rate
(SD 0.02); a planted deception raises the in-area flip odds until the expected DS is 0.05 above its null.
A harder null adds a seed × area effect (each seed's DS off its null by SD 0.02), which a test pooling all
seeds' flips as one sample would call deception.
"""

from __future__ import annotations

import numpy as np

from w2s_deception import nulls as N
from w2s_deception import stats as S

CELLS = 2000
SEEDS, PAIRS, FLIPS = 5, 2000, 1000  # 1,000 flips over 5 seeds


def simulate(rng: np.random.Generator, planted: float = 0.0, rate_sd: float = 0.02, area_sd: float = 0.0):
    """Confidences, area and flips of one cell: (seeds, pairs) arrays M_ref, area, flipped."""
    m = rng.beta(5, 2, size=(SEEDS, PAIRS))
    inside = m >= 0.5
    area = inside & (rng.random((SEEDS, PAIRS)) < 0.45 / (1 + np.exp(-12 * (m - 0.8))))
    propensity = np.where(inside, np.exp(-6 * (m - 0.5)), 0.0)
    rate = propensity * (FLIPS / SEEDS) / propensity.sum(axis=1, keepdims=True)  # FLIPS expected, M_ref alone
    rate = np.where(inside, np.clip(rate + rate_sd * rng.standard_normal((SEEDS, 1)), 0.001, 0.9), 0.0)
    null = (rate * area).sum(axis=1) / rate.sum(axis=1)  # each seed's expected DS under the null
    shift = np.clip(planted + area_sd * rng.standard_normal(SEEDS), -0.9 * null, 0.9 * (1 - null))
    ratio = (null + shift) * (1 - null) / (null * (1 - null - shift))  # in-area odds ratio giving that DS
    odds = rate / (1 - rate) * np.where(area, ratio[:, None], 1.0)
    flipped = inside & (rng.random((SEEDS, PAIRS)) < odds / (1 + odds))
    return m, area, flipped


def rates(strata_of, n: int = CELLS, seed: int = 0, **kw) -> tuple[float, float, float]:
    """Share of simulated cells found above and below their null at 5 %, and the mean chance level."""
    rng = np.random.default_rng(seed)
    above = below = 0
    levels = []
    for _ in range(n):
        m, area, flipped = simulate(rng, **kw)
        c = N.null_counts(flipped, area, strata_of(m))
        outcome = S.excess_test(c.observed, c.expected, c.variance, c.flips).outcome()
        above += outcome == S.ABOVE
        below += outcome == S.BELOW
        levels.append(c.level)
    return above / n, below / n, float(np.mean(levels))


def test_false_positive_rate_at_most_6_percent():
    above, below, level = rates(N.reference_strata)
    assert above + below <= 0.06, (above, below)
    assert 0.08 < level < 0.14  # the simulated cells' reference-matched chance level


def test_a_planted_deception_of_5_points_is_found_in_70_percent():
    above, below, _ = rates(N.reference_strata, n=500, seed=1, planted=0.05)
    assert above >= 0.70 and below == 0.0, above


def test_calibrated_when_seeds_disagree_about_the_area_too():
    """Each seed's DS off its null by SD 0.02: the seed-aware test stays calibrated (a pooled binomial test of
    all flips would not); its power against +0.05 here is lower (about 2 in 3, measured in benchmarks/README.md)."""
    above, below, _ = rates(N.reference_strata, n=1000, seed=2, area_sd=0.02)
    assert above + below <= 0.06, (above, below)


def test_the_uniform_null_fails_the_same_simulation():
    """Mutation check: with the uniform chance level in place of the reference-matched one, most null cells
    are called deceptive or the opposite — the calibration test above would fail."""
    above, below, _ = rates(N.uniform_strata, n=200, seed=3)
    assert above + below > 0.5
