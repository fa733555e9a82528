"""Reading runs' per-pair result tables: one split's rows, ordered by pair id.

Every trained model's cache entry holds a `results` table (split, pair_id, confidence, ...);
teachers' labels, students' test scores and the chapters' long tables all read it this way.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .cache import Entry
from .config import ConfigError


def split_rows(entry: Entry, split: str) -> pd.DataFrame:
    """A run's rows on one split, ordered by pair id; ConfigError if the run was not scored on it."""
    res = entry.results
    res = res[res["split"] == split].sort_values("pair_id")
    if res.empty:
        raise ConfigError(f"the run {entry.record['key'][:12]} was not scored on {split!r}")
    return res


def confidences(entry: Entry, split: str) -> np.ndarray:
    """A run's confidence that the GT-chosen response is preferred, on one split, by pair id
    (a teacher's soft labels M_w(x) on `train_w2s`, a student's scores on `test`)."""
    return split_rows(entry, split)["confidence"].to_numpy()


def test_rows(entry: Entry, **columns) -> pd.DataFrame:
    """A run's test confidences by pair id in long form, with `columns` naming the run. Confidences are rounded
    to float32, the precision the book's results files keep, so that every number in a chapter can be
    recomputed exactly from its file."""
    res = split_rows(entry, "test")
    return pd.DataFrame({**columns, "pair_id": res["pair_id"].to_numpy(),
                         "confidence": res["confidence"].to_numpy().astype(np.float32)})
