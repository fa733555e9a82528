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


# --------------------------------------------------------------------------- power, as data

def test_power_conditions_are_kept_as_data():
    assert S.Power(0.01, 0.05, 30).reasons == ()  # exactly 30 flips and exactly 5 % known suffice
    assert S.Power(0.01, 0.05, 29).reasons == (S.FEW_FLIPS,)
    assert S.Power(0.0, 0.2, 100).reasons == (S.NO_GAP,)  # a lower bound at 0 is not above 0
    assert S.Power(float("nan"), 0.2, 100).reasons == (S.NO_GAP,)
    assert S.Power(0.1, 0.0499, 100).reasons == (S.NO_BOUNDARY,)  # the weak model must know something
    p = S.Power(-0.1, 0.01, 3)
    assert p.reasons == (S.NO_GAP, S.NO_BOUNDARY, S.FEW_FLIPS) and not p.testable
    assert p.text() == ("gap interval from -0.100, needs > 0; weak model knows 1.0% of pairs, needs ≥ 5%; 3 flips, "
                        "needs ≥ 30")
    assert S.Power(0.01, 0.05, 29).text() == (p.text().replace("-0.100", "+0.010").replace("1.0%", "5.0%")
                                              .replace("3 flips", "29 flips"))
    assert S.Power(0.01, 0.05, 30).text() == ""  # testable: nothing to explain


# --------------------------------------------------------------------------- the seed-aware test, by hand

def test_seed_test_by_hand():
    # d = 0.1, 0.2 with equal weights: D = 0.15; between-seed variance 2/1 · (0.05² + 0.05²) / 2² = 0.0025
    t = S.seed_test([0.1, 0.2], [1, 1], [0.0, 0.0])
    assert (t.estimate, t.se, t.df, t.seeds) == (pytest.approx(0.15), pytest.approx(0.05), 1.0, 2)
    assert t.p == pytest.approx(2 * 0.10241638)  # two-sided t = 3 with 1 df
    assert (t.lo, t.hi) == pytest.approx((0.15 - 12.7062047 * 0.05, 0.15 + 12.7062047 * 0.05))
    # seeds that agree closer than their own noise: the within-seed variance is the floor
    t = S.seed_test([0.1, 0.1, 0.1], [10, 10, 10], [0.04, 0.04, 0.04])
    assert t.se == pytest.approx(math.sqrt(3 * 100 * 0.04 / 900)) and t.df == 2.0
    # weights: D = Σ w d / Σ w; a seed without flips carries nothing
    t = S.seed_test([0.0, 0.3, float("nan")], [1, 2, 0], [0.0, 0.0, 0.0])
    assert t.estimate == pytest.approx(0.2) and t.seeds == 2
    # one seed: its own variance and a normal test
    t = S.seed_test([0.2], [50], [0.01])
    assert t.df == math.inf and t.se == pytest.approx(0.1) and t.p == pytest.approx(2 * 0.0227501319)
    assert S.seed_test([], [], []) is S.NO_TEST


def test_excess_and_difference_tests():
    # per seed O, E, V, F = (12, 10, 4, 40) and (14, 10, 4, 40): d = 0.05, 0.1; D = 26/80 − 20/80
    t = S.excess_test([12, 14], [10, 10], [4, 4], [40, 40])
    assert t.estimate == pytest.approx(6 / 80)
    # b − a, paired: weights 40·40/80 = 20 each, d = 0.1 − 0.05 and 0.1 − 0.1
    d = S.difference_test(([0.05, 0.1], [40, 40], [0.0025, 0.0025]), ([0.1, 0.1], [40, 40], [0.0025, 0.0025]))
    assert d.estimate == pytest.approx(0.025)


def test_outcome_within_and_below():
    up = S.SeedTest(0.1, 0.02, 4, 0.01, 0.04, 0.16, 5)
    assert up.outcome() == S.ABOVE and not up.within() and not up.below()
    small = S.SeedTest(0.01, 0.01, 4, 0.4, -0.02, 0.04, 5)
    assert small.outcome() == S.AT_CHANCE and small.within() and small.below()
    wide = S.SeedTest(0.01, 0.05, 4, 0.8, -0.12, 0.14, 5)
    assert not wide.within() and not wide.below()
    assert S.NO_TEST.outcome() == S.AT_CHANCE and not S.NO_TEST.within()


# --------------------------------------------------------------------------- classes

@pytest.mark.parametrize(("outcomes", "expected"), [
    (["above", "above"], "above"), (["below"], "below"), (["at chance", "at chance"], "at chance"),
    (["above", "at chance"], "mixed"), (["above", "below"], "mixed"), ([], "at chance")])
def test_cell_class(outcomes, expected):
    assert S.cell_class(outcomes) == expected


SMALL = S.SeedTest(0.0, 0.01, 4, 0.9, -0.02, 0.03, 5)  # rules out an effect of δ = 0.05
WIDE = S.SeedTest(0.0, 0.03, 4, 0.9, -0.07, 0.08, 5)  # does not


@pytest.mark.parametrize(("outcomes", "effects", "expected"), [
    (["above", "above"], [WIDE], "reproduced"),
    (["above", "above", "at chance"], [WIDE], "reproduced"),  # most above, none below
    (["above", "above", "below"], [WIDE], "inconclusive"),  # most above but one below
    (["above", "at chance"], [SMALL], "inconclusive"),  # half above is not most
    (["at chance", "at chance"], [SMALL], "not reproduced"),  # shown absent
    (["at chance", "at chance"], [WIDE], "inconclusive"),  # absence of significance is not absence of effect
    (["at chance", "at chance"], [SMALL, WIDE], "inconclusive"),  # every informed null must rule it out
    (["at chance", "mixed"], [SMALL], "inconclusive"),  # mixed is neither
    (["at chance", "below", "above"], [SMALL], "not reproduced"),
    (["below", "below"], [SMALL], "not reproduced"),
    (["above", "no power", "no power"], [WIDE], "not testable on this ladder"),  # one testable cell
    (["no power"] * 5, [], "not testable on this ladder"),
    ([], [], "not testable on this ladder"),
    (["above", "above", "no power", "no power", "no power"], [WIDE], "reproduced"),  # untestable cells do not vote
])
def test_claim_class(outcomes, effects, expected):
    assert S.claim_class(outcomes, effects) == expected


def test_change_classes():
    assert S.change_class(S.SeedTest(0.1, 0.02, 4, 0.01, 0.04, 0.16, 5)) == S.ABOVE
    assert S.change_class(S.SeedTest(-0.1, 0.02, 4, 0.01, -0.16, -0.04, 5)) == S.BELOW
    assert S.change_class(SMALL) == S.NO_CHANGE and S.change_class(WIDE) == S.UNCLEAR
    assert S.change_claim_class(["above", "above", "no change"], WIDE, S.ABOVE) == S.REPRODUCED
    assert S.change_claim_class(["no change", "no change"], SMALL, S.ABOVE) == S.NOT_REPRODUCED
    assert S.change_claim_class(["no change", "no change"], WIDE, S.ABOVE) == S.INCONCLUSIVE
    assert S.change_claim_class(["below", "below"], S.SeedTest(-0.1, 0.02, 4, 0.01, -0.16, -0.04, 5), S.ABOVE) \
        == S.NOT_REPRODUCED
    assert S.change_claim_class(["below", "below"], S.SeedTest(-0.1, 0.02, 4, 0.01, -0.16, -0.04, 5), S.BELOW) \
        == S.REPRODUCED
    assert S.change_claim_class(["above", "no power"], WIDE, S.ABOVE) == S.NOT_TESTABLE


def test_trend_class():
    assert S.trend_class(0.1, 0.3, 0.2, 4) == "reproduced"
    assert S.trend_class(-0.3, -0.1, 0.2, 4) == "not reproduced"
    assert S.trend_class(-0.1, 0.2, 0.2, 4) == "not reproduced"  # at most +0.04 over the 20-point range < δ
    assert S.trend_class(-0.1, 0.3, 0.2, 4) == "inconclusive"  # up to +0.06 over the range: not ruled out
    assert S.trend_class(0.0, 0.3, 0.2, 4) == "inconclusive"
    assert S.trend_class(0.1, 0.3, 0.2, 3) == "not testable on this ladder"
    assert S.trend_class(float("nan"), float("nan"), 0.2, 5) == "not testable on this ladder"


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


def test_calibration_error_by_hand():
    # picked side's confidence [0.9, 0.9, 0.6, 0.6], right [T, T, T, F]:
    # bin 0.9 |2 − 1.8| = 0.2, bin 0.6 |1 − 1.2| = 0.2
    assert S.calibration_error(np.array([0.9, 0.9, 0.6, 0.4])) == pytest.approx(0.4 / 4)
    # 0.75 and right three times in four: calibrated
    assert S.calibration_error(np.array([0.75, 0.75, 0.75, 0.25])) == pytest.approx(0.0)
    # confidence 1 falls in the last bin; 0 is a sure wrong pick; a tie at 0.5 counts right (Eq. 7)
    assert S.calibration_error(np.array([1.0])) == 0.0 and S.calibration_error(np.array([0.0])) == 1.0
    assert S.calibration_error(np.array([0.5])) == pytest.approx(0.5)
    # bins matter: with one bin the first case is calibrated on average
    assert S.calibration_error(np.array([0.9, 0.9, 0.6, 0.4]), bins=1) == pytest.approx(abs(3 - 3.0) / 4)
    with pytest.raises(ValueError, match="at least one"):
        S.calibration_error(np.array([]))
