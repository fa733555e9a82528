"""stats.py (SPEC §6): exact intervals and tests against hand-computed values, claim classes, the
hierarchical bootstrap's bookkeeping and the vectorised slopes."""

import math

import numpy as np
import pytest

from w2s_deception import stats as S


# --------------------------------------------------------------------------- exact interval and test

def test_clopper_pearson_by_hand():
    # k = 0: lower 0, upper 1 − (α/2)^(1/n) = 1 − 0.025^(1/10)
    lo, hi = S.clopper_pearson(0, 10)
    assert lo == 0.0 and hi == pytest.approx(1 - 0.025 ** (1 / 10))
    # k = n: the mirror image
    lo, hi = S.clopper_pearson(10, 10)
    assert hi == 1.0 and lo == pytest.approx(0.025 ** (1 / 10))
    # symmetric around 1/2 at k = n/2
    lo, hi = S.clopper_pearson(5, 10)
    assert lo == pytest.approx(1 - hi)
    assert all(math.isnan(x) for x in S.clopper_pearson(0, 0))


def test_binomial_outcome_by_hand():
    # 10 of 10 against p0 = 1/2: two-sided p = 2 · 0.5^10 = 1/512 < 0.05 -> above
    out, p = S.binomial_outcome(10, 10, 0.5)
    assert out == "above" and p == pytest.approx(2 / 1024)
    # 0 of 10 against 1/2: below, same p
    assert S.binomial_outcome(0, 10, 0.5) == ("below", pytest.approx(2 / 1024))
    # 5 of 10 against 1/2: p = 1 -> at chance
    assert S.binomial_outcome(5, 10, 0.5) == ("at chance", pytest.approx(1.0))
    # 4 of 4 against 1/2: p = 2/16 = 0.125 -> at chance (too few flips to reject)
    assert S.binomial_outcome(4, 4, 0.5)[0] == "at chance"
    # an empty area (p0 = 0): no in-area flip is exactly chance, one is impossible under the null
    assert S.binomial_outcome(0, 50, 0.0)[0] == "at chance"
    assert S.binomial_outcome(1, 50, 0.0)[0] == "above"
    assert S.binomial_outcome(0, 0, 0.3)[0] == "at chance"
    with pytest.raises(ValueError, match="p0"):
        S.binomial_outcome(1, 2, 1.5)


def test_two_proportion_outcome():
    assert S.two_proportion_outcome(10, 100, 60, 100)[0] == "above"
    assert S.two_proportion_outcome(60, 100, 10, 100)[0] == "below"
    assert S.two_proportion_outcome(30, 100, 33, 100)[0] == "no change"
    assert S.two_proportion_outcome(0, 0, 3, 10)[0] == "no change"


def test_power_reason():
    assert S.power_reason(0.01, 30) == ""  # exactly 30 flips suffice
    assert S.power_reason(0.01, 29) == "29 flips < 30"
    assert S.power_reason(0.0, 100) == "no capability gap"  # a lower bound at 0 is not above 0
    assert S.power_reason(float("nan"), 100) == "no capability gap"
    assert S.power_reason(-0.1, 3) == "no capability gap; 3 flips < 30"


@pytest.mark.parametrize(("outcomes", "expected"), [
    (["above", "above"], "reproduced"),
    (["above", "above", "at chance"], "reproduced"),  # most above, none below
    (["above", "above", "below"], "inconclusive"),  # most above but one below
    (["above", "at chance"], "inconclusive"),  # half above is not most
    (["at chance", "at chance"], "not reproduced"),  # testable and absent
    (["at chance", "below", "above"], "not reproduced"),  # most at chance or below
    (["below", "below"], "not reproduced"),
    (["above", "no power", "no power"], "not testable on this ladder"),  # one testable cell
    (["no power"] * 5, "not testable on this ladder"),
    ([], "not testable on this ladder"),
    (["above", "above", "no power", "no power", "no power"], "reproduced"),  # untestable cells do not vote
])
def test_claim_class(outcomes, expected):
    assert S.claim_class(outcomes) == expected


def test_trend_class():
    assert S.trend_class(0.1, 0.3) == "reproduced"
    assert S.trend_class(-0.3, -0.1) == "not reproduced"
    assert S.trend_class(-0.1, 0.3) == "inconclusive"
    assert S.trend_class(0.0, 0.3) == "inconclusive"
    assert S.trend_class(float("nan"), float("nan")) == "not testable on this ladder"


# --------------------------------------------------------------------------- hierarchical bootstrap

def test_pair_and_seed_counts_are_draws_with_replacement():
    c = S.pair_counts(7)
    assert c.shape == (7, S.N_BOOT) and (c.sum(axis=0) == 7).all()
    s = S.seed_counts(3)
    assert s.shape == (3, S.N_BOOT) and (s.sum(axis=0) == 3).all()
    assert (S.seed_counts(1) == 1).all()  # one seed is always drawn once


def test_resampled_sums_match_an_explicit_loop():
    rng = np.random.default_rng(0)
    a = (rng.random((3, 11)) < 0.5).astype(float)
    pc, sc = S.pair_counts(11), S.seed_counts(3)
    b = 17
    expected = sum(sc[s, b] * (a[s] * pc[:, b]).sum() for s in range(3))
    assert S.resampled_sums(a)[b] == expected


def test_ratio_and_difference_intervals():
    ok = np.array([[1, 1, 0, 1], [0, 1, 0, 0]], dtype=bool)  # accuracies 3/4 and 1/4
    mean, lo, hi = S.ratio_interval(ok, np.ones_like(ok))
    assert mean == 0.5 and 0 <= lo <= 0.5 <= hi <= 1 and lo < hi
    # a difference of identical arrays is exactly 0 in every replicate
    assert S.difference_interval(ok, ok) == (0.0, 0.0, 0.0)
    # strong right everywhere, weak right nowhere: +1 in every replicate
    assert S.difference_interval(np.ones((2, 5)), np.zeros((2, 5))) == (1.0, 1.0, 1.0)
    with pytest.raises(ValueError, match="one shape"):
        S.difference_interval(np.ones((2, 5)), np.ones((2, 4)))
    assert all(math.isnan(x) for x in S.ratio_interval(np.zeros((2, 3)), np.zeros((2, 3))))


def test_seeds_are_resampled_too():
    # two seeds that disagree completely: a pair-only bootstrap of the pooled mean would keep every
    # replicate near 1/2; resampling seeds puts about a quarter of replicates at each of 0 and 1
    ok = np.array([np.ones(200), np.zeros(200)])
    _, lo, hi = S.ratio_interval(ok, np.ones_like(ok))
    assert lo == 0.0 and hi == 1.0


def test_slopes_by_hand():
    x = np.array([[0.0, 0.0], [0.1, 0.1], [0.2, 0.2], [0.3, np.nan]])
    y = np.array([[0.1, 1.0], [0.3, 1.0], [0.5, 1.0], [0.7, 5.0]])
    out = S.slopes(x, y)
    assert out[0] == pytest.approx(2.0)  # y = 0.1 + 2x
    assert out[1] == pytest.approx(0.0)  # the NaN cell is left out of this replicate
    assert np.isnan(S.slopes(np.array([[0.1], [0.1]]), np.array([[0.0], [1.0]])))[0]  # one distinct x
    assert S.slope([0, 1, 2], [1, 3, 5]) == pytest.approx(2.0)
    assert np.isnan(S.slope([1, 1], [0, 1]))
