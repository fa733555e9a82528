"""The mitigation experiments of §6 and App. M, N, P, composed from cached runs (no training code here).

Each function returns test confidences in the long form of `preference.run_po_matrix` /
`experiments.run_rm_matrix`, with one extra column naming the variant.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from .cache import RunCache
from .config import Config
from .preference import KEEP, keep_mask, po_gt_entry, run_bootstrap, run_po_matrix
from .results import confidences

FILTER_LABELS = {"all": "all weak labels", "oracle": "oracle: correct, M_w ≥ T",
                 "confident": "non-oracle: max(M_w, 1 − M_w) ≥ T"}


def _teachers(cfg: Config) -> list[str]:
    """The rungs that teach some weak → strong pair of the config, weakest first."""
    return cfg.by_rank({w for w, _ in cfg.pairs()})


def filter_runs(cfg: Config, cache: RunCache, method: str = "simpo",
                objective: str = "implicit") -> tuple[pd.DataFrame, list[str]]:
    """App. M: the matrix's no-conflict and `objective` students trained on all weak labels, on the
    oracle-filtered ones and on the non-oracle-filtered ones (column `keep`). A teacher whose filter
    keeps no pair for some seed teaches no filtered student; those (teacher, filter) cells are listed."""
    kept = kept_pairs(cfg, cache, method, reduce=False)
    frames, skipped = [], []
    for keep in KEEP:
        for weak in _teachers(cfg):
            if kept[(kept["teacher"] == weak) & (kept["keep"] == keep)]["pairs"].min() == 0:
                skipped.append(f"{weak}, {FILTER_LABELS[keep]}")
                continue
            one = replace(cfg, weak_rungs=(weak,))
            frames.append(run_po_matrix(one, cache, method, ("no_conflict", objective), keep=keep).assign(keep=keep))
    runs = pd.concat(frames, ignore_index=True).drop_duplicates(["model", "weak", "strong", "seed", "pair_id", "keep"])
    return runs.reset_index(drop=True), skipped


def kept_pairs(cfg: Config, cache: RunCache, method: str = "simpo", reduce: bool = True) -> pd.DataFrame:
    """How many `train_w2s` pairs each filter keeps per weak teacher, and the share of them whose
    weak label is correct: per seed, or (`reduce`) the mean over seeds."""
    rows = []
    for rung in _teachers(cfg):
        for seed in cfg.seeds:
            m_w = confidences(po_gt_entry(cfg, method, rung, seed, cache), "train_w2s")
            for keep in KEEP:
                mask = keep_mask(m_w, keep, cfg.threshold)
                rows.append({"teacher": rung, "seed": seed, "keep": keep, "pairs": int(mask.sum()),
                             "correct labels": float(np.mean(m_w[mask] >= 0.5)) if mask.any() else float("nan")})
    table = pd.DataFrame(rows)
    if not reduce:
        return table
    return table.groupby(["teacher", "keep"], sort=False)[["pairs", "correct labels"]].mean().reset_index()


def bootstrap_runs(cfg: Config, cache: RunCache, method: str = "simpo", objective: str = "implicit") -> pd.DataFrame:
    """App. N: the top rung's no-conflict and `objective` students, taught directly and via every
    intermediate rung (column `via`)."""
    return pd.concat([run_bootstrap(cfg, cache, method, o) for o in ("no_conflict", objective)], ignore_index=True)
