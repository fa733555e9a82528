"""Chapter helpers: quiet set-up (executed notebooks carry results only, so re-runs compare equal
under nbval), and what a chapter hands to the book: its verdicts and its per-pair results."""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .display import Display

if TYPE_CHECKING:  # pandas is imported by quiet_chapter, after warnings are silenced
    import pandas as pd


def quiet_chapter() -> None:
    """Silence library warnings and progress bars in a chapter; numbers shown to 3 decimals.

    Call it before importing the rest of the package: importing tqdm in a kernel without widgets
    warns (with a machine-specific path). Progress bars belong to the terminal that runs the book
    (the book command trains first, with bars); inside notebooks they would make cold and warm
    runs differ.
    """
    warnings.filterwarnings("ignore")
    import datasets
    import pandas as pd
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    datasets.disable_progress_bars()
    pd.set_option("display.precision", 3)


def check_parameters(namespace: dict[str, Any]) -> None:
    """Refuse parameters that papermill injected but the chapter's parameters cell does not declare (papermill
    itself only warns, and a misspelt `-p treshold 0.9` would run the chapter with the default T).

    Reads the kernel's input history (`_ih`): papermill's injected cell starts with "# Parameters" and runs
    right after the parameters cell. Without an injected cell (Jupyter, nbval) there is nothing to check.
    """
    import ast

    from .config import ConfigError

    history = [src for src in namespace.get("_ih", []) if isinstance(src, str)]
    injected = [i for i, src in enumerate(history) if src.lstrip().startswith("# Parameters")]
    if not injected or injected[-1] == 0:
        return

    def assigned(source: str) -> set[str]:
        return {t.id for node in ast.walk(ast.parse(source)) if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)}

    declared, given = assigned(history[injected[-1] - 1]), assigned(history[injected[-1]])
    unknown = sorted(given - declared)
    if unknown:
        raise ConfigError(f"unknown parameter(s) {', '.join(unknown)}: this chapter's parameters are "
                          f"{', '.join(sorted(declared))}")


# ---------------------------------------------------------------------------
# What a chapter hands to the rest of the book: its verdicts (summarised in the
# intro by `w2s_deception.book`) and its per-pair results (a CSV under _static).
# ---------------------------------------------------------------------------

VERDICTS_KEY = "w2s_deception_verdicts"  # output metadata key (ignored by renderers and by nbval)
VERDICT_COLUMNS = ("claim", "verdict", "evidence")  # what every verdict has
VERDICT_FIELDS = (*VERDICT_COLUMNS, "key", "setting", "fragile")  # and what the intro's matrix reads
RESULTS_DIR = Path("book/_static/results")  # served as _static/results/ (html_static_path in _config.yml)
RESULTS_URL = "../_static/results"  # from a chapter page, _build/html/book/<chapter>.html


def book_root(cwd: Path | None = None) -> Path | None:
    """The repository root when the kernel runs in it (it holds `_toc.yml` and `book/`), else None.

    `python -m w2s_deception.book` and the chapters' `papermill` command (run from the repository
    root) execute chapters there; nbval and `--store-test-outputs` run them in `notebooks/`, as
    does Jupyter opened on a notebook, so tests never overwrite what the book links to.
    """
    cwd = Path.cwd() if cwd is None else cwd
    return cwd if (cwd / "_toc.yml").is_file() and (cwd / "book").is_dir() else None


def record_verdicts(chapter: str, verdicts: Any, profile: str | None = None, checks: Any = None) -> Display:
    """Show a chapter's verdicts table and tag it, so the book build can list it in the intro.

    `verdicts`: `analysis.Verdict`s, or a table with columns claim, verdict (one of `stats.CLASSES`) and
    evidence, and optionally key and setting (the intro matrix's row and column) and fragile. Each row is
    shown with its class as a badge and an anchor (`verdict-<n>`) the intro links to; the same rows travel in
    the output's metadata under `VERDICTS_KEY` with the run-cache entries the chapter read (a build re-executes
    it when any is gone) and, given `checks` (DS tables and the results rows behind them, `cell_counts`), each
    cell's flip counts, which a test recomputes from the chapter's results files.
    """
    import pandas as pd

    from .cache import touched
    from .stats import CLASSES
    from .tables import verdict_html

    if isinstance(verdicts, pd.DataFrame):
        missing = [c for c in VERDICT_COLUMNS if c not in verdicts.columns]
        if missing:
            raise ValueError(f"{chapter}: verdicts table lacks columns {missing}; expected {list(VERDICT_COLUMNS)}")
        rows = [{c: str(row.get(c, "") or "") for c in VERDICT_FIELDS} for _, row in verdicts.iterrows()]
    else:
        rows = [{c: str(getattr(v, c, "") or "") for c in VERDICT_FIELDS} for v in verdicts]
    unknown = sorted({r["verdict"] for r in rows} - set(CLASSES))
    if unknown:
        raise ValueError(f"{chapter}: verdicts {unknown} are none of the classes {list(CLASSES)}")
    payload = {"chapter": chapter, "profile": profile, "verdicts": rows, "runs": touched()}
    if checks is not None:
        payload["checks"] = cell_counts(checks)
    html = verdict_html(rows)
    text = "\n".join(f"[{r['verdict']}] {r['claim']} — {r['evidence']}" for r in rows)
    return Display({"text/html": html, "text/plain": text}, {VERDICTS_KEY: payload})


def cell_counts(checks: Any) -> list[dict[str, Any]]:
    """What a test recomputes from a chapter's results files: per DS table (`checks`: dicts with `table`, the
    rows of the results files it was computed from as `select` — column → value, `file` naming another chapter's
    file — its `reference` and `T`), each cell's weak, strong, objective, T, flips and in-area flips, whether a
    placebo twin tested it, and its class."""
    import pandas as pd

    out = []
    for check in checks:
        table = check["table"]
        rows = [{"weak": r["weak"], "strong": r["strong"], "objective": r["objective"],
                 "T": float(r["T"]) if "T" in table.columns else float(check["T"]),
                 "flips": int(r["flips"]), "in_area": int(r["in_area"]),
                 "placebo": bool(pd.notna(r.get("p0_placebo"))), "class": str(r.get("class", ""))}
                for _, r in table.iterrows()]
        out.append({"select": dict(check.get("select", {})), "reference": check.get("reference", "no_conflict"),
                    "cells": rows})
    return out


RESULTS_MAX_BYTES = 5_000_000  # a results file is committed with the book: it must stay small


def write_results(table: pd.DataFrame, path: Path) -> Path:
    """Write `table` as Parquet (zstd; text columns dictionary-encoded; confidences float32, the precision the
    chapters compute from, so every number is recomputable exactly), byte-identical for equal tables; refuse a
    file over 5 MB (split the table into parts)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    frame = table.reset_index(drop=True)
    for col in frame.columns:
        if frame[col].dtype == object:
            frame[col] = frame[col].astype("category")
        elif frame[col].dtype == "float64" and col == "confidence":
            frame[col] = frame[col].astype("float32")
    tmp = path.with_name(f".{path.name}.tmp")
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp, compression="zstd", compression_level=19,
                   use_byte_stream_split=["confidence"] if "confidence" in frame else False)
    size = tmp.stat().st_size
    if size > RESULTS_MAX_BYTES:
        tmp.unlink()
        raise ValueError(f"{path.name}: {size:,} bytes, over the {RESULTS_MAX_BYTES:,} kept with the book; "
                         "split it into parts")
    tmp.replace(path)
    return path


def read_results(path: Path) -> pd.DataFrame:
    """A results file as written by `write_results` (text columns as plain strings)."""
    import pandas as pd

    frame = pd.read_parquet(path)
    for col in frame.columns:
        if isinstance(frame[col].dtype, pd.CategoricalDtype):
            frame[col] = frame[col].astype(object)
    return frame


def results_link(chapter: str, tables: pd.DataFrame | Mapping[str, pd.DataFrame], root: Path | None = None) -> Display:
    """Write a chapter's per-pair results to `book/_static/results/<chapter>.parquet` (or one file
    `<chapter>-<part>.parquet` per part when `tables` maps parts to tables), committed with the book so every
    rendered copy links to real files, and link to them.

    Written only when the chapter runs in the book (`book_root`); elsewhere only the links are shown, so test
    runs leave the book's files alone. Links are relative to the chapter's page in the built HTML.
    """
    import pandas as pd

    root = book_root() if root is None else root
    parts = {"": tables} if isinstance(tables, pd.DataFrame) else dict(tables)
    names = {part: f"{chapter}-{part}.parquet" if part else f"{chapter}.parquet" for part in parts}
    if root is not None:
        for part, table in parts.items():
            write_results(table, root / RESULTS_DIR / names[part])
    rows = sum(len(t) for t in parts.values())
    columns = ", ".join(dict.fromkeys(c for t in parts.values() for c in t.columns))
    what = (f"{rows:,} rows; columns {columns}; confidences as float32, the precision every number in this chapter "
            "is computed from; Parquet, e.g. <code>pandas.read_parquet</code>")
    links = [(names[p], f"{RESULTS_URL}/{names[p]}") for p in parts]
    html = ("<p>Per-pair results of this run: " + ", ".join(f'<a href="{url}"><code>{n}</code></a>' for n, url in links)
            + f" ({what}).</p>")
    markdown = ("Per-pair results of this run: " + ", ".join(f"[`{n}`]({url})" for n, url in links)
                + f" ({what.replace('<code>', '`').replace('</code>', '`')}).")
    return Display({"text/html": html, "text/markdown": markdown,
                    "text/plain": "Per-pair results: " + ", ".join(url for _, url in links)})
