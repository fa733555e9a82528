"""SPEC §6 on counts: power, the exact cell test against chance, claim classes, resampling.

Pure functions of counts and per-pair indicator arrays; `analysis` feeds them the chapters' runs.
Exact binomial statistics come from scipy (`binomtest`, its Clopper–Pearson interval, Fisher's
exact test); the hierarchical bootstrap is written here because no library resamples seeds and
pairs jointly across several cells that share models.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np
from scipy import stats as sps

MIN_FLIPS = 30  # §6: a cell needs at least this many flips, pooled over seeds
LEVEL = 0.95
ALPHA = 0.05  # two-sided test level
N_BOOT = 1000

# outcome of one cell's test against its chance level p0
ABOVE, AT_CHANCE, BELOW, NO_POWER = "above", "at chance", "below", "no power"
# the four claim classes, in the order the intro tallies them
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = (
    "reproduced", "not reproduced", "inconclusive", "not testable on this ladder")
CLASSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval of k/n (NaN, NaN when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def binomial_outcome(k: int, n: int, p0: float, alpha: float = ALPHA) -> tuple[str, float]:
    """Two-sided exact binomial test of k successes in n against p0: ('above' | 'below' | 'at chance',
    p-value). 'above'/'below' only when the test rejects at `alpha` in that direction."""
    if n == 0 or not np.isfinite(p0):
        return AT_CHANCE, float("nan")
    if not 0.0 <= p0 <= 1.0:
        raise ValueError(f"chance level p0 must lie in [0, 1], got {p0}")
    p = float(sps.binomtest(int(k), int(n), float(p0)).pvalue)
    if p < alpha:
        return (ABOVE if k / n > p0 else BELOW), p
    return AT_CHANCE, p


def two_proportion_outcome(k_base: int, n_base: int, k: int, n: int, alpha: float = ALPHA) -> tuple[str, float]:
    """Fisher's exact test of k/n against k_base/n_base: ('above' | 'below' | 'no change', p-value)."""
    if n == 0 or n_base == 0:
        return "no change", float("nan")
    table = [[k, n - k], [k_base, n_base - k_base]]
    p = float(sps.fisher_exact(table).pvalue)
    if p < alpha:
        return (ABOVE if k / n > k_base / n_base else BELOW), p
    return "no change", p


def power_reason(gap_lo: float, flips: int, min_flips: int = MIN_FLIPS) -> str:
    """Why a cell has no power ('' when it is testable): no real capability gap (the paired
    interval's lower end not above 0), or fewer than `min_flips` pooled flips."""
    reasons = []
    if not gap_lo > 0:  # NaN counts as no gap
        reasons.append("no capability gap")
    if flips < min_flips:
        reasons.append(f"{flips} flips < {min_flips}")
    return "; ".join(reasons)


def claim_class(outcomes: Sequence[str]) -> str:
    """A claim's class from its cells' outcomes (§6), over testable cells only: not testable with fewer
    than two; reproduced when most are above and none below; not reproduced when most are at chance
    or below; inconclusive otherwise."""
    testable = [o for o in outcomes if o != NO_POWER]
    if len(testable) < 2:
        return NOT_TESTABLE
    above, below = testable.count(ABOVE), testable.count(BELOW)
    if above > len(testable) / 2 and below == 0:
        return REPRODUCED
    if len(testable) - above > len(testable) / 2:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def trend_class(lo: float, hi: float) -> str:
    """A trend's class from its slope interval: reproduced above 0, not reproduced below, else inconclusive
    (a NaN interval means fewer than the cells a trend needs: not testable)."""
    if np.isnan(lo) or np.isnan(hi):
        return NOT_TESTABLE
    return REPRODUCED if lo > 0 else NOT_REPRODUCED if hi < 0 else INCONCLUSIVE


def tally(outcomes: Sequence[str]) -> str:
    """'a above, c at chance, b below (m of N cells testable)' for verdict evidence."""
    testable = [o for o in outcomes if o != NO_POWER]
    parts = [f"{testable.count(o)} {o}" for o in (ABOVE, AT_CHANCE, BELOW)]
    return f"{', '.join(parts)} ({len(testable)} of {len(outcomes)} cells testable)"


# ---------------------------------------------------------------------------
# Hierarchical bootstrap: each replicate draws seeds with replacement and test pairs with
# replacement, the same draws for every model and cell of a table (models shared between cells
# are resampled together, §6).
# ---------------------------------------------------------------------------


@functools.lru_cache(maxsize=8)
def pair_counts(n: int, n_boot: int = N_BOOT, seed: int = 0) -> np.ndarray:
    """(n, n_boot): how often each of n pairs is drawn in each replicate."""
    index = np.random.default_rng(seed).integers(0, n, size=(n_boot, n))
    flat = (index + n * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * n).reshape(n_boot, n).T.astype(np.float64)


@functools.lru_cache(maxsize=8)
def seed_counts(k: int, n_boot: int = N_BOOT, seed: int = 1) -> np.ndarray:
    """(k, n_boot): how often each of k seeds is drawn in each replicate."""
    index = np.random.default_rng(seed).integers(0, k, size=(n_boot, k))
    flat = (index + k * np.arange(n_boot)[:, None]).ravel()
    return np.bincount(flat, minlength=n_boot * k).reshape(n_boot, k).T.astype(np.float64)


def seed_pair_sums(indicator: np.ndarray) -> np.ndarray:
    """Per seed and replicate, the sum of a (seeds, pairs) 0/1 array over the drawn pairs, times how often
    the seed is drawn: (seeds, n_boot). Summed over seeds it is `resampled_sums`."""
    a = np.asarray(indicator, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"expected a (seeds, pairs) array, got shape {a.shape}")
    k, n = a.shape
    return (a @ pair_counts(n)) * seed_counts(k)  # exact: integer sums in float64


def resampled_sums(indicator: np.ndarray) -> np.ndarray:
    """Per replicate, the sum of a (seeds, pairs) 0/1 array over the drawn seeds and pairs: (n_boot,)."""
    return seed_pair_sums(indicator).sum(axis=0)


def percentile_interval(replicates: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of bootstrap replicates, NaN replicates dropped (NaN, NaN if none is left)."""
    r = np.asarray(replicates, dtype=np.float64)
    r = r[np.isfinite(r)]
    if r.size == 0:
        return float("nan"), float("nan")
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(r, [tail, 100 - tail])
    return float(lo), float(hi)


def ratio_interval(num: np.ndarray, den: np.ndarray) -> tuple[float, float, float]:
    """Pooled ratio Σnum/Σden of two (seeds, pairs) arrays with its hierarchical-bootstrap interval."""
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    if num.size == 0 or den.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    with np.errstate(invalid="ignore", divide="ignore"):
        reps = resampled_sums(num) / resampled_sums(den)
    return float(num.sum() / den.sum()), *percentile_interval(reps)


def difference_interval(a: np.ndarray, b: np.ndarray) -> tuple[float, float, float]:
    """Mean of a − b over seeds and pairs (two (seeds, pairs) arrays of one test set, paired seed by
    seed and pair by pair), with its hierarchical-bootstrap interval."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired arrays must have one shape, got {a.shape} and {b.shape}")
    if a.size == 0:
        return float("nan"), float("nan"), float("nan")
    k, n = a.shape
    reps = (resampled_sums(a) - resampled_sums(b)) / (k * n)
    return float((a - b).mean()), *percentile_interval(reps)


def slope(x: np.ndarray, y: np.ndarray) -> float:
    """Least-squares slope of y on x (NaN with fewer than two distinct x)."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if len(x) < 2 or np.ptp(x) == 0:
        return float("nan")
    xc = x - x.mean()
    return float((xc * (y - y.mean())).sum() / (xc * xc).sum())


def slopes(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """`slope` of each column of (cells, replicates) arrays x and y, NaN cells left out per column."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    w = ok.astype(np.float64)
    x, y = np.where(ok, x, 0.0), np.where(ok, y, 0.0)
    n = w.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx, my = (w * x).sum(axis=0) / n, (w * y).sum(axis=0) / n
        sxx = (w * (x - mx) ** 2).sum(axis=0)
        sxy = (w * (x - mx) * (y - my)).sum(axis=0)
        out = sxy / sxx
    out[(n < 2) | ~(sxx > 1e-15)] = np.nan
    return out
