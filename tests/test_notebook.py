"""Chapter helpers that hand results to the book: `record_verdicts`, `results_link`, `book_root`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from IPython.core.formatters import format_display_data

from w2s_deception.notebook import VERDICTS_KEY, book_root, read_results, record_verdicts, results_link, write_results

REPO = Path(__file__).resolve().parents[1]


def long_table() -> pd.DataFrame:
    """A two-row per-pair table like `run_rm_matrix`'s."""
    return pd.DataFrame({"model": ["gt", "explicit"], "weak": ["s-pico", "s-pico"], "strong": ["s-pico", "s-mini"],
                         "seed": [0, 0], "pair_id": [7, 7], "confidence": [0.123456789, 2 / 3]})


def test_book_root_is_a_folder_with_a_toc_and_book(tmp_path: Path) -> None:
    """The repo root qualifies; `notebooks/` (where nbval runs chapters) and a bare folder do not."""
    assert book_root(REPO) == REPO
    assert book_root(REPO / "notebooks") is None
    assert book_root(tmp_path) is None
    (tmp_path / "_toc.yml").write_text("root: book/intro\n", encoding="utf-8")
    assert book_root(tmp_path) is None  # no book/ folder
    (tmp_path / "book").mkdir()
    assert book_root(tmp_path) == tmp_path


def test_results_link_writes_full_precision_parquet_in_the_book_and_links_to_it(tmp_path: Path) -> None:
    """In a book root: `book/_static/results/<chapter>.parquet`, confidences as float32 (the precision the
    chapters compute from, so nothing is rounded onto 0.5), and a link relative to the chapter page
    (`book/<chapter>.html`) that reaches `_static/results/`."""
    (tmp_path / "_toc.yml").write_text("root: book/intro\n", encoding="utf-8")
    (tmp_path / "book").mkdir()
    table = long_table()
    table.loc[1, "confidence"] = np.float32(0.49999997)  # below 0.5 in float32: must stay below it
    data, _ = format_display_data(results_link("ch", table, root=tmp_path))
    back = read_results(tmp_path / "book" / "_static" / "results" / "ch.parquet")
    assert back["confidence"].dtype == np.float32 and back["confidence"].iloc[1] < 0.5
    assert back["confidence"].tolist() == table["confidence"].astype(np.float32).tolist()
    assert back.drop(columns="confidence").to_dict("list") == table.drop(columns="confidence").to_dict("list")
    assert 'href="../_static/results/ch.parquet"' in data["text/html"] and "2 rows" in data["text/html"]
    assert "](../_static/results/ch.parquet)" in data["text/markdown"]
    # _build/html/book/ch.html + ../_static/results/ch.parquet = _build/html/_static/results/ch.parquet
    assert (Path("_build/html/book") / "../_static/results/ch.parquet").resolve() == (
        Path("_build/html/_static/results/ch.parquet").resolve())
    # parts: one file each
    results_link("multi", {"simpo": table, "dpo": table.iloc[:1]}, root=tmp_path)
    assert sorted(p.name for p in (tmp_path / "book" / "_static" / "results").glob("multi-*")) == [
        "multi-dpo.parquet", "multi-simpo.parquet"]


def test_results_link_outside_the_book_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where nbval runs chapters (not a book root): the same link, no file anywhere."""
    monkeypatch.chdir(tmp_path)
    data, _ = format_display_data(results_link("ch", long_table()))
    assert "../_static/results/ch.parquet" in data["text/html"]
    assert list(tmp_path.rglob("*")) == []


def test_write_results_is_byte_identical_for_equal_tables(tmp_path: Path) -> None:
    a, b = long_table(), long_table()
    assert (write_results(a, tmp_path / "a.parquet").read_bytes()
            == write_results(b, tmp_path / "b.parquet").read_bytes())
    b.loc[0, "confidence"] += 1e-4
    assert (write_results(a, tmp_path / "a.parquet").read_bytes()
            != write_results(b, tmp_path / "b.parquet").read_bytes())


def test_record_verdicts_shows_the_table_and_carries_its_rows() -> None:
    """Shown as the book's verdict table (each row anchored `verdict-<n>` for the intro's links, the class as a
    badge, the check that moved a fragile claim); the rows, as strings, in the output's metadata with the
    run-cache entries read and the cells' flip counts; a verdict outside the four classes is refused."""
    from w2s_deception.analysis import Verdict

    verdicts = pd.DataFrame([{"claim": "c", "verdict": "reproduced", "evidence": "slope 0.5", "extra": 1}])
    data, metadata = format_display_data(record_verdicts("ch", verdicts, "cpu"))
    html = data["text/html"]
    assert '<tr id="verdict-0">' in html and 'class="w2s-badge w2s-reproduced">reproduced<' in html
    assert "extra" not in html
    payload = metadata[VERDICTS_KEY]
    assert payload["verdicts"] == [{"claim": "c", "verdict": "reproduced", "evidence": "slope 0.5", "key": "",
                                    "setting": "", "fragile": ""}]
    assert (payload["chapter"], payload["profile"], type(payload["runs"])) == ("ch", "cpu", list)
    fragile = Verdict("c", "inconclusive", "e", "gap", "HH policies", fragile="leaving out seed 2: reproduced")
    ds = pd.DataFrame([{"weak": "w", "strong": "s", "objective": "implicit", "flips": 40, "in_area": 12,
                        "p0_placebo": float("nan")}])
    data, metadata = format_display_data(record_verdicts("ch", [fragile], "cpu", checks=[
        dict(table=ds, select={"alpha": 0.5}, reference="no_conflict", T=0.75)]))
    assert "(fragile: leaving out seed 2: reproduced)" in data["text/html"]
    assert metadata[VERDICTS_KEY]["verdicts"][0]["key"] == "gap"
    assert metadata[VERDICTS_KEY]["checks"] == [{"select": {"alpha": 0.5}, "reference": "no_conflict", "cells": [
        {"weak": "w", "strong": "s", "objective": "implicit", "T": 0.75, "flips": 40, "in_area": 12, "placebo": False,
         "class": ""}]}]
    with pytest.raises(ValueError, match=r"ch: verdicts table lacks columns \['evidence'\]"):
        record_verdicts("ch", verdicts.drop(columns="evidence"))
    with pytest.raises(ValueError, match="none of the classes"):
        record_verdicts("ch", verdicts.assign(verdict="reproduced (mostly)"))


def test_results_over_the_size_kept_with_the_book_are_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A results file is committed with the book: over RESULTS_MAX_BYTES it is refused, and nothing (not even a
    temporary file) is left."""
    from w2s_deception import notebook

    monkeypatch.setattr(notebook, "RESULTS_MAX_BYTES", 50)
    with pytest.raises(ValueError, match="big.parquet: .* bytes, over the 50"):
        write_results(pd.DataFrame({"x": range(1000)}), tmp_path / "big.parquet")
    assert list(tmp_path.iterdir()) == []


def test_check_parameters_refuses_an_injected_name_the_parameters_cell_lacks() -> None:
    """papermill's injected cell follows the parameters cell in the kernel's history: a name it sets that
    the parameters cell does not is a ConfigError naming it and the declared ones; no injection, no check."""
    from w2s_deception.config import ConfigError
    from w2s_deception.notebook import check_parameters

    params = 'import os\nprofile = "cpu"\nthreshold = 0.75\nseeds = None\n'
    check_parameters({"_ih": ["", params, '# Parameters\nprofile = "smoke"\nthreshold = 0.9\n']})
    with pytest.raises(ConfigError, match=r"unknown parameter\(s\) treshold: this chapter's parameters are profile, "
                                          r"seeds, threshold"):
        check_parameters({"_ih": ["", params, '# Parameters\ntreshold = 0.9\n']})
    check_parameters({"_ih": ["", params, "x = 1"]})  # Jupyter or nbval: nothing injected


def test_a_misspelt_papermill_parameter_fails_before_anything_trains(tmp_path: Path) -> None:
    """Through papermill on a real chapter: `-p treshold 0.9` stops in the setup cell, the one after the
    parameters, with the ConfigError (nothing trained: the runs folder stays empty)."""
    import papermill
    from papermill.exceptions import PapermillExecutionError

    repo = Path(__file__).resolve().parents[1]
    runs = tmp_path / "runs"
    with pytest.raises(PapermillExecutionError) as err:
        papermill.execute_notebook(str(repo / "notebooks" / "thresholds.ipynb"), str(tmp_path / "out.ipynb"),
                                   parameters={"profile": "smoke", "treshold": 0.9, "runs_dir": str(runs)},
                                   kernel_name="python3", progress_bar=False, cwd=str(tmp_path))
    assert err.value.ename == "ConfigError" and "treshold" in err.value.evalue
    assert not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("thresholds, message", [([], "at least one T"), ([0.7, "high"], "number"),
                                                  ([0.5], "open interval"), ("0.7", "list of numbers")])
def test_check_thresholds_refuses_before_training(thresholds, message) -> None:
    from w2s_deception.config import ConfigError, check_thresholds

    with pytest.raises(ConfigError, match=message):
        check_thresholds(thresholds)
    assert check_thresholds(0.8) == [0.8] and check_thresholds([0.7, 0.85]) == [0.7, 0.85]
