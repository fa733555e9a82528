"""The committed book's numbers come from its results files: every DS cell's flips and in-area flips that a
chapter reports are recomputed here, exactly, from the per-pair confidences it published — written again from
SPEC §1 with pandas, not with the package's own metrics."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from w2s_deception.book import chapter_verdicts, toc_paths
from w2s_deception.notebook import RESULTS_DIR, read_results

REPO = Path(__file__).resolve().parents[1]
CHAPTERS = [Path(f).name for f in toc_paths(REPO)[1] if (REPO / f"{f}.ipynb").is_file()]


def _confidences(rows: pd.DataFrame, model: str, weak: str, strong: str) -> pd.Series:
    picked = rows[(rows["model"] == model) & (rows["weak"] == weak) & (rows["strong"] == strong)]
    return picked.set_index(["seed", "pair_id"])["confidence"]


def recount(rows: pd.DataFrame, weak: str, strong: str, objective: str, reference: str, T: float) -> tuple[int, int]:
    """Flips (reference right, student wrong) and those in Sk∩Wuk (M_s^gt ≥ T > M_w^gt), over the seeds every model
    has."""
    ref = _confidences(rows, "gt", strong, strong) if reference == "gt" else _confidences(rows, reference, weak, strong)
    frame = pd.concat({"ref": ref, "conf": _confidences(rows, objective, weak, strong),
                       "s": _confidences(rows, "gt", strong, strong), "w": _confidences(rows, "gt", weak, weak)},
                      axis=1)
    seeds = [s for s, g in frame.groupby(level="seed") if g.notna().all().all()]
    frame = frame[frame.index.get_level_values("seed").isin(seeds)]
    flips = (frame["ref"] >= 0.5) & (frame["conf"] < 0.5)
    area = (frame["s"] >= T) & (frame["w"] < T)
    return int(flips.sum()), int((flips & area).sum())


@pytest.mark.parametrize("chapter", CHAPTERS)
def test_every_flip_count_is_recomputed_exactly_from_the_results_files(chapter: str) -> None:
    payload = chapter_verdicts(REPO / "book" / f"{chapter}.ipynb")
    assert payload and payload.get("checks"), f"book/{chapter}.ipynb records no cells to check: rebuild the book"
    checked = 0
    for check in payload["checks"]:
        select = dict(check["select"])
        path = REPO / RESULTS_DIR / f"{select.pop('file', chapter)}.parquet"
        rows = read_results(path)
        for column, value in select.items():
            rows = rows[rows[column] == value]
        for cell in check["cells"]:
            got = recount(rows, cell["weak"], cell["strong"], cell["objective"], check["reference"], cell["T"])
            assert got == (cell["flips"], cell["in_area"]), (path.name, select, cell)
            checked += 1
    assert checked > 0
