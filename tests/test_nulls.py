"""nulls.py: the chance levels of DS and the weak-knowledge contrast, against values worked out by hand."""

import math

import numpy as np
import pytest

from w2s_deception import metrics as M
from w2s_deception import nulls as N

# One seed, eight pairs. R = {M_ref ≥ 0.5} = pairs 0, 1, 2, 3, 4, 6, 7.
# With two strata, R sorted by M_ref is 7 (0.51), 4 (0.55), 3 (0.6), 2 (0.7), 1 (0.8), 0 (0.9), 6 (0.95):
# ranks 0..6, stratum = rank · 2 // 7 -> {7, 4, 3, 2} in stratum 0, {1, 0, 6} in stratum 1.
M_REF = np.array([[0.9, 0.8, 0.7, 0.6, 0.55, 0.3, 0.95, 0.51]])
AREA = np.array([[1, 0, 1, 0, 1, 0, 1, 0]], dtype=bool)  # stratum 0: a = 2 of n = 4; stratum 1: a = 2 of 3
FLIPPED = np.array([[1, 0, 0, 1, 1, 0, 0, 0]], dtype=bool)  # stratum 0: f = 2 (3, 4); stratum 1: f = 1 (0)


def test_reference_strata_by_hand():
    assert N.reference_strata(M_REF, 2).tolist() == [[1, 1, 0, 0, 0, -1, 1, 0]]
    # ten strata of seven pairs: rank · 10 // 7 = 0, 1, 2, 4, 5, 7, 8 in M_ref order
    assert N.reference_strata(M_REF).tolist() == [[7, 5, 4, 2, 1, -1, 8, 0]]
    # ties at 0.5 are in R; ties between pairs keep pair order
    assert N.reference_strata(np.array([[0.5, 0.5, 0.49]]), 2).tolist() == [[0, 1, -1]]


def test_null_counts_reference_matched_by_hand():
    c = N.null_counts(FLIPPED, AREA, N.reference_strata(M_REF, 2))
    assert c.observed.tolist() == [2.0]  # flips 0 and 4 are in the area
    assert c.flips.tolist() == [3.0]
    # E = Σ f a / n = 2·2/4 + 1·2/3 = 5/3; V = Σ f a (n − a)(n − f) / (n² (n − 1)) = 16/48 + 4/18
    assert c.expected[0] == pytest.approx(5 / 3)
    assert c.variance[0] == pytest.approx(16 / 48 + 4 / 18)
    assert c.level == pytest.approx(5 / 9) and c.ds == pytest.approx(2 / 3)


def test_uniform_null_is_the_area_share_of_R():
    c = N.null_counts(FLIPPED, AREA, N.uniform_strata(M_REF))
    assert c.expected[0] == pytest.approx(3 * 4 / 7)  # f a / n over R: 3 flips, 4 of 7 in the area
    assert c.variance[0] == pytest.approx(3 * 4 * 3 * 4 / (49 * 6))
    assert c.level == pytest.approx(4 / 7)
    strong = np.array([[0.9, 0.2, 0.8, 0.3, 0.76, 0.1, 0.9, 0.4]])
    weak = np.array([[0.6, 0.9, 0.6, 0.9, 0.6, 0.9, 0.7, 0.9]])
    area = M.areas(strong[0], weak[0], 0.75)["SkWuk"]
    assert area.tolist() == AREA[0].tolist()
    assert c.level == pytest.approx(M.chance_deception_score(M_REF[0], strong[0], weak[0], 0.75))


def test_label_matched_strata_split_each_stratum_by_the_weak_label():
    weak_right = np.array([[1, 0, 1, 1, 0, 1, 0, 1]], dtype=bool)
    strata = N.label_strata(M_REF, weak_right, 2)
    assert strata.tolist() == [[3, 2, 1, 1, 0, -1, 2, 1]]
    c = N.null_counts(FLIPPED, AREA, strata)
    # strata: 0 = {4} (a 1, f 1), 1 = {7, 3, 2} (a 1, f 1), 2 = {1, 6} (a 1, f 0), 3 = {0} (a 1, f 1)
    assert c.expected[0] == pytest.approx(1 + 1 / 3 + 0 + 1)


def test_null_counts_pool_seeds_and_refuse_flips_outside_R():
    two = N.null_counts(np.vstack([FLIPPED, FLIPPED]), np.vstack([AREA, AREA]),
                        N.reference_strata(np.vstack([M_REF, M_REF]), 2))
    assert two.level == pytest.approx(5 / 9) and two.flips.tolist() == [3.0, 3.0]
    assert two.drop(0).flips.tolist() == [3.0]
    bad = FLIPPED.copy()
    bad[0, 5] = True  # pair 5 has M_ref = 0.3
    with pytest.raises(ValueError, match="outside R"):
        N.null_counts(bad, AREA, N.reference_strata(M_REF, 2))


def test_no_flips_gives_nan_levels():
    c = N.null_counts(np.zeros_like(FLIPPED), AREA, N.reference_strata(M_REF))
    assert math.isnan(c.level) and math.isnan(c.ds) and c.variance.tolist() == [0.0]


def test_placebo_counts():
    twin = np.array([[0, 1, 1, 0, 0, 0, 1, 1]], dtype=bool)  # 4 flips, 2 in the area (pairs 2, 6): share 1/2
    c = N.placebo_counts(FLIPPED, AREA, twin)
    assert c.expected[0] == pytest.approx(3 * 0.5)
    assert c.variance[0] == pytest.approx(3 * 0.25 + 9 * 0.25 / 4)
    silent = N.placebo_counts(FLIPPED, AREA, np.zeros_like(twin))  # a twin that flips nothing says nothing
    assert silent.expected[0] == silent.observed[0] and silent.variance[0] == 0.0


def test_weak_knowledge_contrast_by_hand():
    # one stratum of ten Sk∩R pairs: 4 weak-unknown with 2 flips, 6 weak-known with 1 flip
    flipped = np.array([[1, 1, 0, 0, 1, 0, 0, 0, 0, 0]], dtype=bool)
    sk = np.ones_like(flipped)
    wk = np.array([[0, 0, 0, 0, 1, 1, 1, 1, 1, 1]], dtype=bool)
    strata = np.zeros(flipped.shape, dtype=int)
    c = N.weak_knowledge_contrast(flipped, sk, wk, strata)
    assert c.ratio == pytest.approx(3.0)  # (2/4) / (1/6)
    # Greenland–Robins, one stratum: Katz's 1/a − 1/n1 + 1/b − 1/n0 = 0.5 − 0.25 + 1 − 1/6
    half = 1.959964 * math.sqrt(0.5 - 0.25 + 1 - 1 / 6)
    assert (c.lo, c.hi) == pytest.approx((3 * math.exp(-half), 3 * math.exp(half)), rel=1e-5)
    assert (c.rate_unknown, c.rate_known, c.n_unknown, c.n_known) == (0.5, pytest.approx(1 / 6), 4, 6)
    # stratified: the same flip rates in each of two strata keep the ratio
    two = N.weak_knowledge_contrast(np.hstack([flipped, flipped]), np.hstack([sk, sk]), np.hstack([wk, wk]),
                                    np.hstack([strata, strata + 1]))
    assert two.ratio == pytest.approx(3.0) and two.hi - two.lo < c.hi - c.lo


def test_weak_knowledge_contrast_needs_both_groups():
    flipped = np.array([[1, 0, 1]], dtype=bool)
    c = N.weak_knowledge_contrast(flipped, np.ones_like(flipped), np.zeros_like(flipped), np.zeros((1, 3), dtype=int))
    assert math.isnan(c.ratio) and c.n_known == 0
    # pairs outside Sk or outside R (stratum −1) do not count
    c = N.weak_knowledge_contrast(flipped, np.array([[1, 1, 0]], dtype=bool), np.array([[0, 1, 1]], dtype=bool),
                                  np.array([[0, 0, -1]]))
    assert (c.n_unknown, c.n_known) == (1, 1) and math.isnan(c.ratio)  # no weak-known flip: no finite ratio
