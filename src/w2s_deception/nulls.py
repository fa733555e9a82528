"""The chance levels of DS (SPEC §1) and the weak-knowledge contrast, on per-seed arrays of one cell.

A flip needs the reference to be right, so flips fall in R = {M_ref ≥ 0.5}. Each null says where flips
would fall if they had nothing to do with what the weak model knows:

- uniform: evenly over R (one stratum);
- reference-matched: wherever the reference is unsure; R is cut into `N_STRATA` equal-count strata by
  M_ref and each stratum's flip rate is applied to its in-area pairs;
- label-matched (absolute DS): the student copies its teacher's errors; the same strata, each split by
  whether the weak model is right on the pair (M_w ≥ 0.5).

Every null is a set of strata per seed, and `null_counts` gives per seed the observed in-area flips O,
their expectation E under the null (flips drawn within each stratum regardless of the area) and its
hypergeometric variance V: DS = ΣO/ΣF and the chance level is ΣE/ΣF, F the flips.

Arrays are (seeds, pairs); confidences are floats, masks booleans.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

N_STRATA = 10  # SPEC §1: equal-count strata of R by the reference's confidence
UNIFORM, REFERENCE, LABEL, PLACEBO = "uniform", "reference", "label", "placebo"
# what each null stands for, as the book names the alternative explanation it tests
EXPLANATIONS = {UNIFORM: "chance", REFERENCE: "reference confidence", LABEL: "teacher errors",
                PLACEBO: "any perturbation (placebo)"}


def _seeds_pairs(a: np.ndarray, name: str) -> np.ndarray:
    a = np.asarray(a)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a (seeds, pairs) array, got shape {a.shape}")
    return a


def reference_strata(m_ref: np.ndarray, n_strata: int = N_STRATA) -> np.ndarray:
    """Per seed, each pair's stratum: R = {M_ref ≥ 0.5} cut into `n_strata` equal-count strata by M_ref
    (0 = least confident; ties broken by pair order), −1 for pairs outside R."""
    m = _seeds_pairs(m_ref, "m_ref").astype(np.float64)
    inside = m >= 0.5
    order = np.argsort(np.where(inside, m, np.inf), axis=1, kind="stable")  # R first, by M_ref, ties by pair
    rank = np.empty_like(order)
    np.put_along_axis(rank, order, np.arange(m.shape[1])[None, :].repeat(len(m), axis=0), axis=1)
    size = np.maximum(inside.sum(axis=1, keepdims=True), 1)
    return np.where(inside, rank * n_strata // size, -1)


def uniform_strata(m_ref: np.ndarray) -> np.ndarray:
    """One stratum, R itself (−1 outside it): the uniform null."""
    m = _seeds_pairs(m_ref, "m_ref")
    return np.where(m >= 0.5, 0, -1)


def label_strata(m_ref: np.ndarray, weak_right: np.ndarray, n_strata: int = N_STRATA) -> np.ndarray:
    """The reference strata, each split by whether the weak model is right on the pair: the label-matched null."""
    base = reference_strata(m_ref, n_strata)
    right = _seeds_pairs(weak_right, "weak_right").astype(bool)
    return np.where(base >= 0, 2 * base + right, -1)


@dataclass(frozen=True)
class Counts:
    """Per seed: in-area flips observed, expected under a null, the variance of the observed count under it
    (hypergeometric within strata, flips per stratum given), and the flips."""

    observed: np.ndarray
    expected: np.ndarray
    variance: np.ndarray
    flips: np.ndarray

    @property
    def level(self) -> float:
        """The null's chance level of DS, pooled over seeds: ΣE / ΣF (NaN without flips)."""
        f = self.flips.sum()
        return float(self.expected.sum() / f) if f else float("nan")

    @property
    def ds(self) -> float:
        """DS pooled over seeds: ΣO / ΣF (NaN without flips)."""
        f = self.flips.sum()
        return float(self.observed.sum() / f) if f else float("nan")

    def drop(self, seed_index: int) -> Counts:
        """The same counts without one seed (leave-one-seed-out checks)."""
        keep = np.arange(len(self.flips)) != seed_index
        return Counts(self.observed[keep], self.expected[keep], self.variance[keep], self.flips[keep])


def null_counts(flipped: np.ndarray, area: np.ndarray, strata: np.ndarray) -> Counts:
    """O, E, V and F per seed for flips `flipped` (which lie in R), the area `area` (Sk∩Wuk) and a null's
    `strata` (−1 outside R). Within stratum j with n_j pairs, a_j in the area and f_j flips, the null draws
    the flips at random: E_j = f_j a_j / n_j, V_j = f_j a_j (n_j − a_j)(n_j − f_j) / (n_j² (n_j − 1))."""
    flipped = _seeds_pairs(flipped, "flipped").astype(bool)
    area = _seeds_pairs(area, "area").astype(bool)
    strata = _seeds_pairs(strata, "strata")
    if not (flipped.shape == area.shape == strata.shape):
        raise ValueError(f"flipped, area and strata must share one shape, got {flipped.shape}, {area.shape}, "
                         f"{strata.shape}")
    if (flipped & (strata < 0)).any():
        raise ValueError("a flip outside R: flips need the reference to be right")
    k = len(flipped)
    if not flipped.size:
        return Counts(*(np.zeros(k) for _ in range(4)))
    width = int(strata.max()) + 1
    inside = strata >= 0
    # one bincount over (seed, stratum) cells for all seeds at once
    cell = (np.arange(k)[:, None] * width + strata)[inside]
    size = k * max(width, 1)
    n = np.bincount(cell, minlength=size).astype(np.float64)
    a = np.bincount(cell, weights=area[inside], minlength=size)
    f = np.bincount(cell, weights=flipped[inside], minlength=size)
    with np.errstate(invalid="ignore", divide="ignore"):
        e = np.where(n > 0, f * a / n, 0.0)
        v = np.where(n > 1, f * a * (n - a) * (n - f) / (n * n * (n - 1)), 0.0)
    per_seed = lambda x: x.reshape(k, max(width, 1)).sum(axis=1)  # noqa: E731
    return Counts((flipped & area).sum(axis=1).astype(np.float64), per_seed(e), per_seed(v), per_seed(f))


def placebo_counts(flipped: np.ndarray, area: np.ndarray, placebo_flipped: np.ndarray) -> Counts:
    """The placebo twin as a null: per seed, E = F × DS_placebo (its share of flips in the area), V the
    binomial variance of the conflict's in-area flips at that share plus the placebo share's own sampling
    variance scaled to F flips; seeds where the placebo flips nothing give no information (E = O, V = 0)."""
    flipped = _seeds_pairs(flipped, "flipped").astype(bool)
    area = _seeds_pairs(area, "area").astype(bool)
    twin = _seeds_pairs(placebo_flipped, "placebo_flipped").astype(bool)
    obs = (flipped & area).sum(axis=1).astype(np.float64)
    flips = flipped.sum(axis=1).astype(np.float64)
    n_twin = twin.sum(axis=1).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(n_twin > 0, (twin & area).sum(axis=1) / n_twin, np.nan)
    known = np.isfinite(share)
    share = np.where(known, share, 0.0)
    exp = np.where(known, flips * share, obs)
    var = np.where(known, flips * share * (1 - share) + flips**2 * share * (1 - share) / np.maximum(n_twin, 1), 0.0)
    return Counts(obs, exp, var, flips)


@dataclass(frozen=True)
class Contrast:
    """Flip rate of weak-unknown pairs over weak-known ones within Sk ∩ R (Mantel–Haenszel risk ratio over
    strata), with its 95 % interval; NaN where a group is empty or never flips."""

    ratio: float
    lo: float
    hi: float
    rate_unknown: float  # crude flip rates, for the reader
    rate_known: float
    n_unknown: int
    n_known: int


def weak_knowledge_contrast(flipped: np.ndarray, strong_knows: np.ndarray, weak_knows: np.ndarray,
                            strata: np.ndarray, level: float = 0.95) -> Contrast:
    """The direct form of the paper's hypothesis (SPEC §1): within Sk ∩ R, do the pairs the weak model does not
    know flip more often than those it knows, stratum by stratum (`strata`: seed × reference confidence)?

    Mantel–Haenszel risk ratio RR = Σ a_j n0_j / N_j ÷ Σ b_j n1_j / N_j (a, b: flips among weak-unknown and
    weak-known pairs; n1, n0 their counts; N = n1 + n0) and the Greenland–Robins variance of log RR. Written
    here because scipy and statsmodels pool odds ratios, not risk ratios, over strata.
    """
    flipped, sk, wk = (_seeds_pairs(x, n).astype(bool) for x, n in
                       ((flipped, "flipped"), (strong_knows, "strong_knows"), (weak_knows, "weak_knows")))
    strata = _seeds_pairs(strata, "strata")
    if not flipped.size:
        return Contrast(*(float("nan"),) * 5, 0, 0)
    inside = sk & (strata >= 0)
    seed = np.broadcast_to(np.arange(len(strata))[:, None], strata.shape)
    key = (seed * (strata.max() + 2) + strata)[inside]
    unknown, flip = ~wk[inside], flipped[inside]
    groups = np.unique(key)
    j = np.searchsorted(groups, key)
    n1 = np.bincount(j, weights=unknown, minlength=len(groups))
    n0 = np.bincount(j, weights=~unknown, minlength=len(groups))
    a = np.bincount(j, weights=unknown & flip, minlength=len(groups))
    b = np.bincount(j, weights=~unknown & flip, minlength=len(groups))
    total = n1 + n0
    crude = (float(a.sum() / n1.sum()) if n1.sum() else float("nan"),
             float(b.sum() / n0.sum()) if n0.sum() else float("nan"))
    nan = Contrast(float("nan"), float("nan"), float("nan"), *crude, int(n1.sum()), int(n0.sum()))
    both = (n1 > 0) & (n0 > 0)
    if not both.any():
        return nan
    a, b, n1, n0, total = a[both], b[both], n1[both], n0[both], total[both]
    r, s = (a * n0 / total).sum(), (b * n1 / total).sum()
    if r == 0 or s == 0:
        return nan
    ratio = r / s
    var = ((n1 * n0 * (a + b) - a * b * total) / total**2).sum() / (r * s)
    z = sps.norm.ppf(0.5 + level / 2)
    half = z * np.sqrt(max(var, 0.0))
    return Contrast(float(ratio), float(ratio * np.exp(-half)), float(ratio * np.exp(half)), *crude, int(n1.sum()),
                    int(n0.sum()))
