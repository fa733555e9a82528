"""Chapter helpers: quiet set-up (executed notebooks carry results only, so re-runs compare equal
under nbval), and what a chapter hands to the book: its verdicts and its per-pair results."""

from __future__ import annotations

import gzip
import warnings
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

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
VERDICT_COLUMNS = ("claim", "verdict", "evidence")
RESULTS_DIR = Path("book/_static/results")  # served as _static/results/ (html_static_path in _config.yml)
RESULTS_URL = "../_static/results"  # from a chapter page, _build/html/book/<chapter>.html


@dataclass(frozen=True)
class Display:
    """Notebook display data: a MIME bundle (each front end picks what it can show) and metadata."""

    bundle: dict[str, Any]
    metadata: dict[str, Any] | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """The bundle, with the metadata when there is some."""
        return (self.bundle, self.metadata) if self.metadata else self.bundle


def book_root(cwd: Path | None = None) -> Path | None:
    """The repository root when the kernel runs in it (it holds `_toc.yml` and `book/`), else None.

    `python -m w2s_deception.book` and the chapters' `papermill` command (run from the repository
    root) execute chapters there; nbval and `--store-test-outputs` run them in `notebooks/`, as
    does Jupyter opened on a notebook, so tests never overwrite what the book links to.
    """
    cwd = Path.cwd() if cwd is None else cwd
    return cwd if (cwd / "_toc.yml").is_file() and (cwd / "book").is_dir() else None


def record_verdicts(chapter: str, verdicts: pd.DataFrame, profile: str | None = None) -> Display:
    """Show a chapter's verdicts table and tag it, so the book build can list it in the intro.

    `verdicts` has one row per claim with columns claim, verdict (one of `stats.CLASSES`) and evidence.
    The table is shown colour-coded by class; the same rows travel in the output's metadata under
    `VERDICTS_KEY`, which `w2s_deception.book` reads from the executed chapter in `book/`.
    """
    missing = [c for c in VERDICT_COLUMNS if c not in verdicts.columns]
    if missing:
        raise ValueError(f"{chapter}: verdicts table lacks columns {missing}; expected {list(VERDICT_COLUMNS)}")
    from .stats import CLASSES
    from .tables import show_table

    import pandas as pd

    rows = [{c: str(row[c]) for c in VERDICT_COLUMNS} for _, row in verdicts.iterrows()]
    unknown = sorted({r["verdict"] for r in rows} - set(CLASSES))
    if unknown:
        raise ValueError(f"{chapter}: verdicts {unknown} are none of the classes {list(CLASSES)}")
    from .cache import touched

    # the run-cache entries this chapter read: a build re-executes it when any of them is gone
    payload = {"chapter": chapter, "profile": profile, "verdicts": rows, "runs": touched()}
    table = show_table(pd.DataFrame(rows, columns=list(VERDICT_COLUMNS)), verdict_column="verdict",
                       widths={"claim": "14em", "evidence": "18em"})
    return Display(table.bundle, {VERDICTS_KEY: payload})


RESULTS_MAX_BYTES = 5_000_000  # a results file is committed with the book: it must stay small


def write_results(table: pd.DataFrame, path: Path, decimals: int = 6) -> Path:
    """Write `table` as gzipped CSV (`path` ends in .csv.gz) with floats rounded to `decimals` places,
    byte-identical for equal tables (no timestamp in the gzip header); refuse a file over 5 MB."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = table.round(decimals).to_csv(index=False, lineterminator="\n")
    data = gzip.compress(text.encode(), compresslevel=9, mtime=0)  # no name or time in the header
    if len(data) > RESULTS_MAX_BYTES:
        raise ValueError(f"{path.name}: {len(data):,} bytes compressed, over the {RESULTS_MAX_BYTES:,} kept with the book")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    tmp.replace(path)
    return path


def pool_parts(parts: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """One per-pair table of several parts of a chapter; a row that parts share (the same cached run,
    e.g. SimPO at α = 0.5 in the α sweep) is kept once, with every part it belongs to in `part`."""
    import pandas as pd

    table = pd.concat([frame.assign(part=name) for name, frame in parts.items()], ignore_index=True)
    columns = [c for c in table.columns if c != "part"]
    return table.groupby(columns, dropna=False, sort=False)["part"].agg("; ".join).reset_index()


def results_link(chapter: str, table: pd.DataFrame, root: Path | None = None, decimals: int = 6) -> Display:
    """Write a chapter's per-pair results to `book/_static/results/<chapter>.csv.gz` (committed with the
    book, so every rendered copy links to a real file) and link to it.

    Written only when the chapter runs in the book (`book_root`); elsewhere only the link is
    shown, so test runs leave the book's file alone. The link is relative to the chapter's page
    in the built HTML (`book/<chapter>.html` → `_static/results/<chapter>.csv.gz`).
    """
    root = book_root() if root is None else root
    name = f"{chapter}.csv.gz"
    if root is not None:
        write_results(table, root / RESULTS_DIR / name, decimals)
    columns = ", ".join(table.columns)
    url = f"{RESULTS_URL}/{name}"
    markdown = (f"Per-pair results of this run: [`{name}`]({url}) ({len(table):,} rows; columns {columns}; "
                f"floats rounded to {decimals} decimals; gzipped CSV).")
    html = (f'<p>Per-pair results of this run: <a href="{url}"><code>{name}</code></a> ({len(table):,} rows; '
            f"columns {columns}; floats rounded to {decimals} decimals; gzipped CSV).</p>")
    return Display({"text/html": html, "text/markdown": markdown, "text/plain": f"Per-pair results: {url}"})
