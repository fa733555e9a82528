"""Chapter helpers that hand results to the book: `record_verdicts`, `results_link`, `book_root`."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from IPython.core.formatters import format_display_data

from w2s_deception.notebook import VERDICTS_KEY, book_root, record_verdicts, results_link, write_results

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


def test_results_link_writes_rounded_csv_in_the_book_and_links_to_it(tmp_path: Path) -> None:
    """In a book root: `book/_static/results/<chapter>.csv`, floats to 6 decimals, and a link
    relative to the chapter page (`book/<chapter>.html`) that reaches `_static/results/`."""
    (tmp_path / "_toc.yml").write_text("root: book/intro\n", encoding="utf-8")
    (tmp_path / "book").mkdir()
    data, _ = format_display_data(results_link("ch", long_table(), root=tmp_path))
    csv = tmp_path / "book" / "_static" / "results" / "ch.csv"
    assert csv.read_text(encoding="utf-8") == (
        "model,weak,strong,seed,pair_id,confidence\n"
        "gt,s-pico,s-pico,0,7,0.123457\n"
        "explicit,s-pico,s-mini,0,7,0.666667\n")
    assert 'href="../_static/results/ch.csv"' in data["text/html"] and "2 rows" in data["text/html"]
    assert "](../_static/results/ch.csv)" in data["text/markdown"]
    # _build/html/book/ch.html + ../_static/results/ch.csv = _build/html/_static/results/ch.csv
    assert (Path("_build/html/book") / "../_static/results/ch.csv").resolve() == (
        Path("_build/html/_static/results/ch.csv").resolve())


def test_results_link_outside_the_book_writes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Run where nbval runs chapters (not a book root): the same link, no file anywhere."""
    monkeypatch.chdir(tmp_path)
    data, _ = format_display_data(results_link("ch", long_table()))
    assert "../_static/results/ch.csv" in data["text/html"]
    assert list(tmp_path.rglob("*")) == []


def test_write_results_is_byte_identical_for_equal_tables(tmp_path: Path) -> None:
    """Equal tables give equal files (confidences equal to 6 decimals count as equal)."""
    a, b = long_table(), long_table()
    b.loc[0, "confidence"] += 1e-9
    assert write_results(a, tmp_path / "a.csv").read_bytes() == write_results(b, tmp_path / "b.csv").read_bytes()


def test_record_verdicts_shows_the_table_and_carries_its_rows() -> None:
    """Shown as a reader's table (no index, the verdict coloured by class, other columns dropped); the rows,
    as strings, in the output's metadata; a verdict outside the four classes is refused."""
    verdicts = pd.DataFrame([{"claim": "c", "verdict": "reproduced", "evidence": "slope 0.5", "extra": 1}])
    data, metadata = format_display_data(record_verdicts("ch", verdicts, "cpu"))
    assert data["text/plain"].split() == ["claim", "verdict", "evidence", "c", "reproduced", "slope", "0.5"]
    html = data["text/html"]
    assert ">reproduced</td>" in html and "color: #1a7f37" in html and ">extra<" not in html and "row_heading" not in html
    assert metadata[VERDICTS_KEY] == {"chapter": "ch", "profile": "cpu", "verdicts": [
        {"claim": "c", "verdict": "reproduced", "evidence": "slope 0.5"}]}
    with pytest.raises(ValueError, match=r"ch: verdicts table lacks columns \['evidence'\]"):
        record_verdicts("ch", verdicts.drop(columns="evidence"))
    with pytest.raises(ValueError, match="none of the classes"):
        record_verdicts("ch", verdicts.assign(verdict="reproduced (mostly)"))
