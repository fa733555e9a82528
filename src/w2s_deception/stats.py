"""SPEC §6 (version 3) on counts: power, seed-aware tests against a null, claim classes, resampling.

Pure functions of counts and per-pair indicator arrays; `analysis` feeds them the chapters' runs. The
Clopper–Pearson interval and the t and normal distributions come from scipy; the seed-aware test and the
hierarchical bootstrap are written here because no library tests an effect over a handful of training seeds
with a within-seed floor, or resamples seeds and pairs jointly across cells that share models.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats as sps

MIN_FLIPS = 30  # §6 power: a cell needs at least this many flips, pooled over seeds
MIN_KNOWN = 0.05  # §6 power: the weak GT model must know at least this share of the test pairs
LEVEL = 0.95
ALPHA = 0.05  # two-sided test level
N_BOOT = 1000
DELTA = 0.05  # the smallest effect of interest: "not reproduced" and "no change" need an interval inside it
MIN_TREND_CELLS = 4

# a cell's outcome against one null, and against all of them (`cell_class`)
ABOVE, AT_CHANCE, BELOW, MIXED, NO_POWER = "above", "at chance", "below", "mixed", "no power"
# a comparison's outcome: moved (ABOVE / BELOW), shown unchanged (interval within ±δ), or not shown either way
NO_CHANGE, UNCLEAR = "no change", "unclear"
# the four claim classes, in the order the intro tallies them
REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE = (
    "reproduced", "not reproduced", "inconclusive", "not testable on this ladder")
CLASSES = (REPRODUCED, NOT_REPRODUCED, INCONCLUSIVE, NOT_TESTABLE)

# why a cell has no power (§6), kept as data
NO_GAP, NO_BOUNDARY, FEW_FLIPS = "no capability gap", "no knowledge boundary", "too few flips"


@dataclass(frozen=True)
class Power:
    """The three power conditions of a cell (§6): a real capability gap (the paired interval of strong − weak
    GT accuracy lies above 0), a knowledge boundary (the weak GT model knows ≥ MIN_KNOWN of the test pairs)
    and enough flips (≥ MIN_FLIPS pooled over seeds)."""

    gap_lo: float
    weak_known: float
    flips: int

    @property
    def reasons(self) -> tuple[str, ...]:
        """Why the cell has no power (empty when it has)."""
        out = []
        if not self.gap_lo > 0:  # NaN counts as no gap
            out.append(NO_GAP)
        if not self.weak_known >= MIN_KNOWN:
            out.append(NO_BOUNDARY)
        if self.flips < MIN_FLIPS:
            out.append(FEW_FLIPS)
        return tuple(out)

    @property
    def testable(self) -> bool:
        return not self.reasons

    def text(self) -> str:
        """For a cell without power ('' when testable): every condition with its value and what it needs, whichever
        failed (the reasons are `reasons`; the text keeps one shape, so machines whose runs differ show the same)."""
        if self.testable:
            return ""
        return (f"gap interval from {self.gap_lo:+.3f}, needs > 0; weak model knows {self.weak_known:.1%} of pairs, "
                f"needs ≥ {MIN_KNOWN:.0%}; {self.flips} flips, needs ≥ {MIN_FLIPS}")


def clopper_pearson(k: int, n: int, level: float = LEVEL) -> tuple[float, float]:
    """Exact binomial interval of k/n (NaN, NaN when n = 0)."""
    if n == 0:
        return float("nan"), float("nan")
    ci = sps.binomtest(int(k), int(n)).proportion_ci(confidence_level=level, method="exact")
    return float(ci.low), float(ci.high)


def calibration_error(conf: np.ndarray, bins: int = 10) -> float:
    """Expected calibration error of a preference model (top-label ECE): the confidence in the side it picks,
    max(c, 1 − c), against how often that side is right (c ≥ 0.5, ties right as in Eq. 7), over `bins` equal-width
    bins of [0.5, 1], weighted by their pairs. Written here: sklearn's `calibration_curve` scores the positive
    class, not the picked side, and returns no bin counts to weight by."""
    c = np.asarray(conf, dtype=np.float64).ravel()
    if c.size == 0:
        raise ValueError("calibration_error needs at least one confidence")
    picked, right = np.maximum(c, 1.0 - c), c >= 0.5
    edges = np.linspace(0.5, 1.0, bins + 1)
    which = np.minimum(np.searchsorted(edges, picked, side="right") - 1, bins - 1)  # an edge opens its bin; 1 is last
    gap = np.bincount(which, weights=right - picked, minlength=bins)  # per bin: Σ (right − confidence)
    return float(np.abs(gap).sum() / c.size)


def cell_class(outcomes: Sequence[str]) -> str:
    """A testable cell's class from its outcomes against each informed null: above (significantly above every
    one), below (below every one), at chance (differs from none), mixed otherwise."""
    if not outcomes:
        return AT_CHANCE
    if all(o == ABOVE for o in outcomes):
        return ABOVE
    if all(o == BELOW for o in outcomes):
        return BELOW
    if all(o == AT_CHANCE for o in outcomes):
        return AT_CHANCE
    return MIXED


def claim_class(outcomes: Sequence[str], effects: Sequence[SeedTest]) -> str:
    """A claim's class from its cells' classes (§6 v3), over testable cells only: not testable with fewer than
    two; reproduced when most are above and none below; not reproduced when most are at chance or below and
    every pooled effect (DS minus an informed null) has its interval entirely below DELTA; else inconclusive."""
    testable = [o for o in outcomes if o != NO_POWER]
    if len(testable) < 2:
        return NOT_TESTABLE
    above, below = testable.count(ABOVE), testable.count(BELOW)
    if above > len(testable) / 2 and below == 0:
        return REPRODUCED
    quiet = testable.count(AT_CHANCE) + below
    if quiet > len(testable) / 2 and effects and all(e.below(DELTA) for e in effects):
        return NOT_REPRODUCED
    return INCONCLUSIVE


def change_class(test: SeedTest) -> str:
    """One comparison's outcome: above / below when the change is significant, no change when its interval lies
    inside ±DELTA, unclear otherwise."""
    moved = test.outcome()
    if moved != AT_CHANCE:
        return moved
    return NO_CHANGE if test.within(DELTA) else UNCLEAR


def change_claim_class(changes: Sequence[str], pooled: SeedTest, direction: str) -> str:
    """A claim that a change moves DS `direction` (ABOVE or BELOW), over testable comparisons: not testable with
    fewer than two; reproduced when most move that way and none the other way; not reproduced when most show no
    change or the other way and the pooled change's interval excludes a move of DELTA that way; else
    inconclusive."""
    other = BELOW if direction == ABOVE else ABOVE
    testable = [c for c in changes if c != NO_POWER]
    if len(testable) < 2:
        return NOT_TESTABLE
    if testable.count(direction) > len(testable) / 2 and testable.count(other) == 0:
        return REPRODUCED
    quiet = testable.count(NO_CHANGE) + testable.count(other)
    ruled_out = pooled.hi < DELTA if direction == ABOVE else pooled.lo > -DELTA
    if quiet > len(testable) / 2 and np.isfinite(pooled.lo) and ruled_out:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def trend_class(lo: float, hi: float, gap_range: float, n_cells: int) -> str:
    """'Excess DS grows with the gap' from its slope interval (per unit of gap): not testable with fewer than
    MIN_TREND_CELLS testable cells; reproduced above 0; not reproduced when the interval rules out a rise of
    DELTA across the measured range of gaps (hi × range < DELTA); else inconclusive."""
    if n_cells < MIN_TREND_CELLS or not (np.isfinite(lo) and np.isfinite(hi)):
        return NOT_TESTABLE
    if lo > 0:
        return REPRODUCED
    if hi * gap_range < DELTA:
        return NOT_REPRODUCED
    return INCONCLUSIVE


def tally(outcomes: Sequence[str]) -> str:
    """'a above, c at chance, m mixed, b below (t of N cells testable)' for verdict evidence."""
    testable = [o for o in outcomes if o != NO_POWER]
    parts = [f"{testable.count(o)} {o}" for o in (ABOVE, AT_CHANCE, MIXED, BELOW) if o != MIXED or MIXED in testable]
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


# ---------------------------------------------------------------------------
# Seed-aware tests (SPEC §6 v3): seeds are the independent replicates of a training; a cell's excess over a
# null is judged by how it varies from seed to seed, not by pooling every seed's flips as independent draws.
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SeedTest:
    """An effect pooled over seeds with its standard error, degrees of freedom, two-sided p-value and 95 %
    interval (NaN where no seed carries information)."""

    estimate: float
    se: float
    df: float
    p: float
    lo: float
    hi: float
    seeds: int

    def outcome(self, alpha: float = ALPHA) -> str:
        """'above' / 'below' when the test rejects at `alpha` in that direction, else 'at chance'."""
        if not np.isfinite(self.p) or self.p >= alpha:
            return AT_CHANCE
        return ABOVE if self.estimate > 0 else BELOW

    def within(self, delta: float = DELTA) -> bool:
        """Whether the whole interval lies inside (−delta, +delta): the effect is shown small."""
        return bool(np.isfinite(self.lo) and -delta < self.lo and self.hi < delta)

    def below(self, delta: float = DELTA) -> bool:
        """Whether the whole interval lies below +delta: an effect of delta or more is ruled out."""
        return bool(np.isfinite(self.hi) and self.hi < delta)


NO_TEST = SeedTest(float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), float("nan"), 0)


def seed_test(d: np.ndarray, w: np.ndarray, v: np.ndarray, level: float = LEVEL) -> SeedTest:
    """Pool per-seed effects `d` with weights `w` (flips) into D = Σ w d / Σ w and test D = 0 over seeds.

    The variance is the cluster-robust one with seeds as clusters, K/(K−1) Σ w²(d − D)² / (Σ w)², with a
    t distribution of K − 1 degrees of freedom: it counts how much seeds disagree, which a test pooling every
    seed's flips as one sample ignores (with 3 seeds and 17,015 flips such a test calls a seed-to-seed wobble
    significant). Where seeds agree more closely than their own sampling noise allows, the within-seed
    variance Σ w² v / (Σ w)² (`v`: each d's sampling variance) is the floor. One seed: that variance and a
    normal test. Seeds with weight 0 carry no information and are left out. Calibrated by simulation in
    tests/test_calibration.py (SPEC §6).
    """
    d, w, v = (np.asarray(x, dtype=np.float64) for x in (d, w, v))
    keep = (w > 0) & np.isfinite(d)
    d, w, v = d[keep], w[keep], np.nan_to_num(v[keep])
    k = len(d)
    if k == 0:
        return NO_TEST
    total = w.sum()
    est = float((w * d).sum() / total)
    within = float((w * w * v).sum() / total**2)
    if k > 1:
        between = float(k / (k - 1) * (w * w * (d - est) ** 2).sum() / total**2)
        var, df = max(between, within), float(k - 1)
    else:
        var, df = within, float("inf")
    se = float(np.sqrt(var))
    crit = float(sps.t.ppf(0.5 + level / 2, df)) if np.isfinite(df) else float(sps.norm.ppf(0.5 + level / 2))
    if se == 0:
        p = 1.0 if est == 0 else 0.0
    else:
        t = abs(est) / se
        p = float(2 * (sps.t.sf(t, df) if np.isfinite(df) else sps.norm.sf(t)))
    return SeedTest(est, se, df, p, est - crit * se, est + crit * se, k)


def excess_test(observed: np.ndarray, expected: np.ndarray, variance: np.ndarray, flips: np.ndarray) -> SeedTest:
    """DS minus a chance level, tested over seeds: per seed (O − E)/F with weight F and variance V/F²; the
    pooled estimate is ΣO/ΣF − ΣE/ΣF."""
    f = np.asarray(flips, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        d = (np.asarray(observed) - np.asarray(expected)) / f
        v = np.asarray(variance) / f**2
    return seed_test(d, f, v)


def difference_test(per_seed_a: tuple[np.ndarray, np.ndarray, np.ndarray],
                    per_seed_b: tuple[np.ndarray, np.ndarray, np.ndarray]) -> SeedTest:
    """Effect b − effect a, paired seed by seed: each argument is (d, w, v) per seed; a seed's weight is the
    harmonic combination of its two weights (so a seed where either side has few flips counts little), its
    variance the sum of the two."""
    (da, wa, va), (db, wb, vb) = per_seed_a, per_seed_b
    wa, wb = np.asarray(wa, dtype=np.float64), np.asarray(wb, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        w = np.where((wa > 0) & (wb > 0), wa * wb / (wa + wb), 0.0)
    return seed_test(np.asarray(db) - np.asarray(da), w, np.asarray(va) + np.asarray(vb))
