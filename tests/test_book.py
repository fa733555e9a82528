"""The book build (`w2s_deception.book`) on a throwaway repo root with tiny chapters.

`good` prints something derived from its `profile` parameter; `bad` raises; `toy` draws a chart,
links its results and records a verdict. No training is declared for any of them
(`w2s_deception.trainings`), so the workflow runs their notebooks at once.
The HTML is built once (the slow part), for the real book plus `good` and `toy`, and every page
is opened in headless Chromium.
"""

from __future__ import annotations

import ast
import json
import logging
import os
import re
import shlex
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import papermill
import pytest
import yaml
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from w2s_deception.book import (
    VERDICTS_END,
    VERDICTS_START,
    ChapterError,
    check_parameters,
    main,
    render_verdicts,
    toc_paths,
    update_intro,
)
from w2s_deception.cache import RunCache
from w2s_deception.trainings import runs_logged

REPO = Path(__file__).resolve().parents[1]

GOOD = 'print(f"chapter ran with profile {profile.upper()}")'
TOY = """\
import altair as alt
import pandas as pd
from IPython.display import display
from w2s_deception.charts import show
from w2s_deception.notebook import record_verdicts, results_link

table = pd.DataFrame({"model": ["gt", "gt"], "pair_id": [0, 1], "confidence": [0.25, 1 / 3]})
display(show(alt.Chart(table).mark_point().encode(x="pair_id:Q", y="confidence:Q").properties(title="toy")))
display(results_link("toy", table))
record_verdicts("toy", pd.DataFrame([{"claim": "A toy claim", "verdict": "reproduced", "evidence": "2 pairs"}]),
                profile)
"""
BAD = 'raise ValueError("deliberate failure")'
# A script or stylesheet loaded from outside the site: http(s):// or protocol-relative //.
EXTERNAL = re.compile(
    r"""<script\b[^>]*\bsrc\s*=\s*["']?(?:https?:)?//[^"'\s>]*"""
    r"""|<link\b[^>]*\bhref\s*=\s*["']?(?:https?:)?//[^"'\s>]*""",
    re.IGNORECASE,
)


def notebook(path: Path, body: str, parameters: str = 'profile = "cpu"') -> None:
    """A chapter notebook: a markdown title, a `parameters` cell, then `body`."""
    parameters_cell = new_code_cell(parameters)
    parameters_cell.metadata["tags"] = ["parameters"]
    nb = new_notebook(
        cells=[new_markdown_cell(f"# {path.stem}"), parameters_cell, new_code_cell(body)],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
            "language_info": {"name": "python"},
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


def make_root(root: Path, chapters: list[str]) -> Path:
    """A repo root with the real `_config.yml`, a toc of `chapters`, and notebooks good and bad."""
    root.mkdir(parents=True, exist_ok=True)
    shutil.copy(REPO / "_config.yml", root / "_config.yml")
    shutil.copy(REPO / "references.bib", root / "references.bib")  # bibtex_bibfiles in _config.yml
    mathjax = REPO / "book" / "_static" / "mathjax"  # vendored, as in the real repo
    if mathjax.is_dir():
        shutil.copytree(mathjax, root / "book" / "_static" / "mathjax")
    for name in ("w2s.css",):  # the book's stylesheet (html_css_files in _config.yml)
        shutil.copy(REPO / "book" / "_static" / name, root / "book" / "_static" / name)
    shutil.copytree(REPO / "book" / "_ext", root / "book" / "_ext")  # sphinx.local_extensions in _config.yml
    toc = "format: jb-book\nroot: book/intro\nchapters:\n" + "".join(
        f"  - file: book/{name}\n" for name in chapters
    )
    (root / "_toc.yml").write_text(toc, encoding="utf-8")
    (root / "book").mkdir(exist_ok=True)
    (root / "book" / "intro.md").write_text("# Intro\n\nA test book.\n", encoding="utf-8")
    notebook(root / "notebooks" / "good.ipynb", GOOD)
    notebook(root / "notebooks" / "bad.ipynb", BAD)
    return root


def outputs_text(path: Path) -> str:
    """All text outputs (streams, results, tracebacks) of the notebook at `path`, joined."""
    nb = nbformat.read(path, as_version=4)
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
            parts.extend([out.get("ename", ""), out.get("evalue", ""), *out.get("traceback", [])])
    return "\n".join(parts)


@pytest.fixture(autouse=True)
def own_runs_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Each test's builds keep their run cache and flags in the test's own folder."""
    monkeypatch.setenv("W2S_RUNS_DIR", str(tmp_path / "runs"))
    return tmp_path / "runs"


# A chapter that reads one run-cache entry (computing it when missing) and records its verdict.
CACHED = """\
import pandas as pd
from w2s_deception.cache import RunCache, default_runs_dir
from w2s_deception.notebook import record_verdicts

RunCache(default_runs_dir()).get_or_compute("toy", {"n": 1}, lambda tmp: (pd.DataFrame({"confidence": [0.5]}), {}))
record_verdicts("cached", pd.DataFrame([{"claim": "c", "verdict": "reproduced", "evidence": "e"}]), profile)
"""


def test_the_build_never_passes_off_a_stale_chapter(tmp_path: Path, own_runs_folder: Path,
                                                   capfd: pytest.CaptureFixture[str]) -> None:
    """A chapter is re-executed when its runs are gone from the cache, when a failed or hand-made papermill run
    was left in book/, or when it was built for another profile; a warm build re-executes nothing."""
    root = make_root(tmp_path / "root", ["cached"])
    notebook(root / "notebooks" / "cached.ipynb", CACHED)
    argv = ["--profile", "smoke", "--skip-html"]
    assert main(argv, root=root) == 0
    executed = root / "book" / "cached.ipynb"
    assert (own_runs_folder / "toy").is_dir()
    first = executed.read_bytes()
    capfd.readouterr()

    assert main(argv, root=root) == 0  # warm
    assert "re-executing" not in "".join(capfd.readouterr()) and executed.read_bytes() == first

    shutil.rmtree(own_runs_folder)  # (b) the run cache deleted
    assert main(argv, root=root) == 0
    assert ("re-executing cached: book/cached.ipynb is stale (1 of the runs it read are not in"
            in "".join(capfd.readouterr()))
    assert (own_runs_folder / "toy").is_dir() and executed.read_bytes() == first

    with pytest.raises(papermill.PapermillExecutionError):  # (c) a failed run by hand, left in book/
        papermill.execute_notebook(str(root / "notebooks" / "bad.ipynb"), str(executed), kernel_name="python3",
                                   progress_bar=False)
    assert main(argv, root=root) == 0
    assert "re-executing cached: book/cached.ipynb is stale (a failed execution)" in "".join(capfd.readouterr())
    assert executed.read_bytes() == first

    assert main(["--profile", "cpu", "--skip-html"], root=root) == 0  # another profile
    assert "is stale (built for the 'smoke' profile)" in "".join(capfd.readouterr())


def test_the_build_checks_the_data_and_says_what_is_wrong_in_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                                       capfd: pytest.CaptureFixture[str]) -> None:
    """(a) A data file changed by one byte, SHA256SUMS unchanged: the build stops before any job, with one line."""
    from w2s_deception.data import resolve_data_dir

    shared = resolve_data_dir()
    data = tmp_path / "data"
    for item in shared.rglob("*"):
        if item.is_file():
            (data / item.relative_to(shared)).parent.mkdir(parents=True, exist_ok=True)
            (data / item.relative_to(shared)).symlink_to(item)
    raw = bytearray((shared / "hh-harmless/train_gt.jsonl").read_bytes())
    raw[raw.index(b"Assistant:") + 11] ^= 0x01
    (data / "hh-harmless/train_gt.jsonl").unlink()
    (data / "hh-harmless/train_gt.jsonl").write_bytes(bytes(raw))
    monkeypatch.setenv("W2S_DATA_DIR", str(data))
    root = make_root(tmp_path / "root", ["good"])
    assert main(["--profile", "smoke", "--skip-html"], root=root) == 1
    err = capfd.readouterr().err
    assert [line for line in err.splitlines() if line.strip()] == [
        line for line in err.splitlines() if line.startswith("FAILED") and "train_gt.jsonl: its sha256" in line], err
    assert not (root / "book" / "good.ipynb").exists()


def test_the_profile_comes_from_w2s_profile_as_in_the_tests_and_notebooks(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    root = make_root(tmp_path / "root", ["good"])
    monkeypatch.setenv("W2S_PROFILE", "smoke")
    assert main(["--skip-html"], root=root) == 0
    assert "chapter ran with profile SMOKE" in outputs_text(root / "book" / "good.ipynb")


def test_failing_chapter_stops_the_build(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A raising chapter: non-zero exit, a message naming it, the executed notebook with the error kept in
    _build/failed/, no HTML; the other chapter still runs (the workflow keeps going)."""
    root = make_root(tmp_path, ["good", "bad"])
    cwd = os.getcwd()
    assert main(["--profile", "smoke", "--skip-html", "--jobs", "2"], root=root) != 0
    assert os.getcwd() == cwd  # chapters run in their own processes: papermill's chdir stays there
    out = "".join(capfd.readouterr())
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out
    assert "bad" in failed[0] and "ValueError" in failed[0], out
    assert (root / "book" / "good.ipynb").exists()
    assert not (root / "book" / "bad.ipynb").exists() and "_build/failed/bad.ipynb" in failed[0], out
    assert "deliberate failure" in outputs_text(root / "_build" / "failed" / "bad.ipynb")

    # Without --skip-html a failed run still builds no HTML.
    assert main(["--profile", "smoke", "--chapters", "bad"], root=root) != 0
    assert "FAILED bad" in "".join(capfd.readouterr())
    assert not (root / "_build" / "html").exists()


def test_passing_chapter_is_parameterised_normalised_and_deterministic(tmp_path: Path) -> None:
    """`good` sees the injected profile; no timestamps are kept; a re-run is byte-identical."""
    root = make_root(tmp_path, ["good", "bad"])
    argv = ["--profile", "smoke", "--skip-html", "--chapters", "good"]
    assert main(argv, root=root) == 0
    executed = root / "book" / "good.ipynb"
    assert "chapter ran with profile SMOKE" in outputs_text(executed)
    assert not (root / "book" / "bad.ipynb").exists()  # not selected

    nb = nbformat.read(executed, as_version=4)
    for meta in [nb.metadata] + [cell.metadata for cell in nb.cells]:
        papermill_meta = meta.get("papermill", {})
        assert "start_time" not in papermill_meta and "end_time" not in papermill_meta, meta
        assert "execution" not in meta, meta
    first = executed.read_bytes()
    assert b"start_time" not in first and b"end_time" not in first

    assert main(argv, root=root) == 0
    assert executed.read_bytes() == first


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_build_fixes_the_torch_thread_counts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, jobs: str) -> None:
    """Kernels run on KERNEL_THREADS whatever the machine's cores, `--jobs` or the caller's OMP_NUM_THREADS
    (the thread count moves CPU results); a training job sets its declared threads (`quiet_worker`)."""
    import torch

    from w2s_deception import book
    from w2s_deception.trainings import quiet_worker

    root = make_root(tmp_path, ["threads"])
    notebook(root / "notebooks" / "threads.ipynb", 'import torch\nprint(f"kernel threads {torch.get_num_threads()}")')
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert main(["--profile", "smoke", "--skip-html", "--jobs", jobs], root=root) == 0
    assert f"kernel threads {book.KERNEL_THREADS}\n" in outputs_text(root / "book" / "threads.ipynb")
    before = torch.get_num_threads()
    try:
        quiet_worker(before + 1)
        assert torch.get_num_threads() == before + 1 and os.environ["OMP_NUM_THREADS"] == str(before + 1)
    finally:
        torch.set_num_threads(before)


def test_parameters_cell_must_declare_every_parameter(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """Unknown parameters, or a parameters cell without `profile`, are refused in one line."""
    root = make_root(tmp_path, ["good", "noprofile"])
    good = root / "notebooks" / "good.ipynb"
    with pytest.raises(ChapterError) as unknown:
        check_parameters(good, {"profile": "smoke", "seeds": 3})
    message = str(unknown.value)
    assert message.startswith("good:") and "seeds" in message and "\n" not in message
    check_parameters(good, {"profile": "smoke"})  # declared: accepted

    lacking = root / "notebooks" / "noprofile.ipynb"
    notebook(lacking, GOOD, parameters="seed = 0")
    with pytest.raises(ChapterError) as missing:
        check_parameters(lacking, {"profile": "smoke"})
    message = str(missing.value)
    assert message.startswith("noprofile:") and "profile" in message and "\n" not in message

    # Through main: refused before any kernel starts, with a single FAILED line naming it.
    assert main(["--profile", "smoke", "--skip-html", "--chapters", "noprofile"], root=root) != 0
    failed = [line for line in "".join(capfd.readouterr()).splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED noprofile:"), failed
    assert not (root / "book" / "noprofile.ipynb").exists()


def real_chapters() -> list[str]:
    """The real book's chapter files (`book/<name>`), in reading order."""
    return toc_paths(REPO)[1]


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full build (execute + HTML) of the real book — its intro and every chapter of its toc —
    followed by the test chapters `good` and `toy`.

    The real chapters enter as already executed: their smoke outputs stored in `notebooks/`,
    which nbval proves current, so nothing is executed twice. `good` and `toy` are executed by
    the build, so `toy`'s results CSV and verdict go through the same path a real chapter's do.
    """
    root = make_root(tmp_path_factory.mktemp("site"), [])
    notebook(root / "notebooks" / "toy.ipynb", TOY)
    toc = ("format: jb-book\nroot: book/intro\nchapters:\n"
           + "".join(f"  - file: {file}\n" for file in [*real_chapters(), "book/good", "book/toy"]))
    (root / "_toc.yml").write_text(toc, encoding="utf-8")
    shutil.copy(REPO / "book" / "intro.md", root / "book" / "intro.md")
    if (REPO / "book" / "_static" / "results").is_dir():  # committed with the book (checked below)
        shutil.copytree(REPO / "book" / "_static" / "results", root / "book" / "_static" / "results")
    for file in real_chapters():
        stored, page = REPO / "notebooks" / f"{Path(file).name}.ipynb", REPO / f"{file}.md"
        source = stored if stored.is_file() else page
        shutil.copy(source, root / Path(file).parent / source.name)
    # Only `good` and `toy` are executed: the real chapters' stored outputs are not the build's own (it would
    # re-execute them as stale); the HTML renders every page of the toc.
    with pytest.MonkeyPatch.context() as env:
        env.setenv("W2S_RUNS_DIR", str(root / "runs"))
        assert main(["--profile", "smoke", "--chapters", "good", "toy"], root=root) == 0
    return root / "_build" / "html"


def test_full_build_writes_the_site(built_site: Path) -> None:
    """The chapter page and the local Vega bundle are in the built site."""
    assert (built_site / "book" / "good.html").is_file()
    assert (built_site / "_static" / "vega-bundle.js").is_file()
    assert "chapter ran with profile SMOKE" in (built_site / "book" / "good.html").read_text(
        encoding="utf-8"
    )


def test_an_edited_stylesheet_reaches_the_site_and_nothing_else_reruns(built_site: Path) -> None:
    """A rebuild after editing only `w2s.css`: the HTML re-renders and the site gets the new stylesheet
    (Sphinx copies `_static` only when a page is out of date); the Vega bundle, unchanged, keeps its
    time, so a further rebuild renders nothing."""
    root = built_site.parents[1]
    css, bundle = root / "book" / "_static" / "w2s.css", root / "book" / "_static" / "vega-bundle.js"
    css.write_text(css.read_text(encoding="utf-8") + "/* edited */\n", encoding="utf-8")
    written = bundle.stat().st_mtime_ns
    assert main(["--profile", "smoke"], root=root) == 0
    assert (built_site / "_static" / "w2s.css").read_text(encoding="utf-8").endswith("/* edited */\n")
    assert bundle.stat().st_mtime_ns == written
    page = built_site / "book" / "intro.html"  # the root page: re-written by every render
    rendered = page.stat().st_mtime_ns
    assert main(["--profile", "smoke"], root=root) == 0
    assert page.stat().st_mtime_ns == rendered


def test_built_pages_load_nothing_from_outside_the_site(built_site: Path) -> None:
    """No built page loads a script or stylesheet from an http(s) (or protocol-relative) URL."""
    pages = sorted(built_site.rglob("*.html"))
    assert built_site / "book" / "good.html" in pages
    external = {
        str(page.relative_to(built_site)): EXTERNAL.findall(page.read_text(encoding="utf-8"))
        for page in pages
    }
    assert {page: urls for page, urls in external.items() if urls} == {}


def test_intro_lists_every_recorded_verdict_with_a_link(built_site: Path) -> None:
    """The build wrote `toy`'s verdict, its profile and a link to its evidence into the intro's folded table."""
    intro = (built_site / "book" / "intro.html").read_text(encoding="utf-8")
    row = re.search(r"<tr><td><a href=\"toy.html#verdict-0\">toy</a>: A toy claim(.*?)</tr>", intro, re.DOTALL)
    assert row, "the toy chapter's verdict is not in the intro's table"
    assert 'w2s-reproduced" href="toy.html#verdict-0"' in row[1] and "2 pairs" in row[1], row[1]
    assert "Profile: smoke." in intro and re.search(r"\d+ reproduced", intro)


def test_results_link_resolves_in_the_built_site(built_site: Path) -> None:
    """`toy`'s results link points at the Parquet file the chapter wrote, served from `_static/results/`."""
    from w2s_deception.notebook import read_results

    page = built_site / "book" / "toy.html"
    hrefs = re.findall(r'href="([^"]*_static/results/[^"]*)"', page.read_text(encoding="utf-8"))
    assert hrefs == ["../_static/results/toy.parquet"], hrefs
    back = read_results((page.parent / hrefs[0]).resolve())
    assert back.to_dict("list") == {"model": ["gt", "gt"], "pair_id": [0, 1],
                                    "confidence": [0.25, pytest.approx(1 / 3, rel=1e-7)]}


class _Links(HTMLParser):
    """Every href and src of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [v for k, v in attrs if k in ("href", "src") and v]


def test_every_link_in_the_built_site_resolves(built_site: Path) -> None:
    """Each local href/src of every page (results files, figures, other pages, anchors' pages) is a file of
    the site: a clean clone's book links to nothing missing."""
    dead = []
    for page in built_site.rglob("*.html"):
        if page.relative_to(built_site).parts[0] == "_static":
            continue  # the themes' template sources, copied as static files
        parser = _Links()
        parser.feed(page.read_text(encoding="utf-8"))
        for url in parser.urls:
            target = url.split("#", 1)[0].split("?", 1)[0]
            if not target or re.match(r"^[a-z][a-z0-9+.-]*:", target) or target.startswith("//"):
                continue  # an anchor on the page, or an external / mailto / data / javascript URL
            if "_static/results/" in target and not RESULTS.is_dir():
                continue  # the committed book predates its kept results: test_results_files_kept_with_the_book says so
            if not (page.parent / target).exists():
                dead.append(f"{page.relative_to(built_site)} → {url}")
    assert not dead, "\n".join(sorted(set(dead))[:40])


def test_every_chart_of_a_chapter_is_a_numbered_captioned_figure(built_site: Path) -> None:
    """Each chart of the real chapters sits in a figure with its number and a caption that names what it
    shows (the cell's `mystnb.figure` metadata)."""
    for file in real_chapters():
        page = (built_site / f"{file}.html").read_text(encoding="utf-8")
        charts = CHART.findall(page)
        captions = re.findall(r'<figcaption>\s*<p><span class="caption-number">Fig\. [\d.]+ </span>'
                              r'<span class="caption-text">([^<]{20,})', page)
        assert len(captions) == len(charts), (file, len(charts), captions)


def test_the_paper_is_cited_with_a_bibliography(built_site: Path) -> None:
    """The intro cites the paper through sphinxcontrib-bibtex and lists it in its references."""
    intro = (built_site / "book" / "intro.html").read_text(encoding="utf-8")
    assert 'class="reference internal" href="#id' in intro and "Yang <em>et al.</em>" in intro
    assert "Super(ficial)-alignment: Strong Models May Deceive Weak Models" in intro


RESULTS = REPO / "book" / "_static" / "results"


def test_results_files_kept_with_the_book_are_small() -> None:
    """Every chapter's results files are committed under book/_static/results (one per chapter, or one per part),
    Parquet, each under 5 MB."""
    from w2s_deception.notebook import RESULTS_MAX_BYTES

    files = {p.name: p.stat().st_size for p in RESULTS.glob("*.parquet")}
    for file in real_chapters():
        name = Path(file).name
        assert any(f == f"{name}.parquet" or f.startswith(f"{name}-") for f in files), (name, files)
    assert all(size <= RESULTS_MAX_BYTES for size in files.values()), files
    assert not list(RESULTS.glob("*.csv.gz"))  # rounded CSVs are gone: they put confidences onto 0.5


# ---------------------------------------------------------------------------
# Every page of the built book in headless Chromium: each chart drew, and nothing was requested
# from outside the site. External hosts are made unresolvable (so a chart that needs a CDN also
# fails to draw, with or without internet), and Chromium's NetLog records every request that
# goes through the network stack — i.e. everything but file:// — which must be none.
# ---------------------------------------------------------------------------

BROWSERS = ("chromium-headless-shell", "chromium", "chromium-browser", "google-chrome")
BROWSER_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--virtual-time-budget=5000", "--host-resolver-rules=MAP * ~NOTFOUND")
KNOWN_JS_ERRORS: tuple[str, ...] = ()  # none
# Console messages that must not appear: a script declared twice (sphinx-thebe's THEBE_JS_URL, now dropped by
# book/_ext/w2s_sphinx.py), a spec of another Vega or Vega-Lite version than the bundle's, and the theme's
# invalid-mode error (no default mode set).
CONSOLE_FAULTS = re.compile(r"already been declared|spec uses Vega|Got invalid theme mode")
LOCAL_SCHEMES = ("file:", "data:", "blob:", "about:", "chrome:", "chrome-extension:", "devtools:")
# A chart: a <div id=...> directly followed by the script that calls vegaEmbed on it (ours, from
# charts.show, and Altair's own HTML renderer alike).
CHART = re.compile(r"""<div id="([^"]+)"[^>]*>\s*</div>\s*<script\b[^>]*>((?:(?!</script>).)*)</script>""",
                   re.DOTALL)


def browser() -> str:
    """A headless Chromium on PATH. Without one the browser tests skip with the reason, except where
    W2S_REQUIRE_BROWSER=1 (.ci/run sets it): there they fail, so CI always proves the charts draw."""
    found = next((shutil.which(name) for name in BROWSERS if shutil.which(name)), None)
    if found is None:
        reason = (f"no headless Chromium on PATH (looked for {', '.join(BROWSERS)}); install one, e.g. "
                  "`apt-get install -y chromium-headless-shell` (Debian; .ci/run does this)")
        if os.environ.get("W2S_REQUIRE_BROWSER") == "1":
            pytest.fail(reason + "; W2S_REQUIRE_BROWSER=1 makes it required", pytrace=False)
        pytest.skip(reason)
    return found


def net_log_urls(path: Path) -> set[str]:
    """Every URL in a Chromium NetLog file (closed by hand if Chromium exited before finishing it)."""
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    try:
        log = json.loads(text)
    except json.JSONDecodeError:
        log = json.loads(text.rstrip().rstrip(",") + "]}")
    return {event["params"]["url"] for event in log.get("events", []) if "url" in event.get("params", {})}


class Drawn(HTMLParser):
    """Walk a DOM dump; for each element whose id is in `ids`, note whether a chart drew in it:
    an <svg class="marks"> with a positive size and at least one path, or a sized <canvas>."""

    VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}

    def __init__(self, ids: set[str]) -> None:
        super().__init__()
        self.ids, self.drawn, self.open = ids, {i: False for i in ids}, []  # open: [id, depth, svg_ok]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        for frame in self.open:
            sized = all((a.get(k) or "0").isdigit() and int(a.get(k) or "0") > 0 for k in ("width", "height"))
            if tag == "svg" and "marks" in (a.get("class") or "").split() and sized:
                frame[2] = True
            if (tag == "path" and frame[2]) or (tag == "canvas" and sized):
                self.drawn[frame[0]] = True
        if tag in self.VOID:
            return
        for frame in self.open:
            frame[1] += 1
        if a.get("id") in self.ids:
            self.open.append([a["id"], 1, False])

    def handle_endtag(self, tag: str) -> None:
        if tag in self.VOID:
            return
        for frame in self.open:
            frame[1] -= 1
        self.open = [frame for frame in self.open if frame[1] > 0]


def open_in_browser(page: Path, scratch: Path) -> dict:
    """Load `page` in headless Chromium; its charts, which drew, its requests and its JS errors."""
    charts = {m[1] for m in CHART.finditer(page.read_text(encoding="utf-8")) if "vegaEmbed" in m[2]}
    scratch.mkdir(parents=True)
    net_log = scratch / "netlog.json"
    run = subprocess.run(
        [browser(), *BROWSER_FLAGS, f"--user-data-dir={scratch / 'profile'}", f"--log-net-log={net_log}",
         "--enable-logging=stderr", "--dump-dom", page.as_uri()],
        capture_output=True, text=True, timeout=120, check=False)
    parser = Drawn(charts)
    parser.feed(run.stdout)
    return {"returncode": run.returncode, "charts": charts,
            "not_drawn": sorted(i for i, ok in parser.drawn.items() if not ok),
            "external": sorted(u for u in net_log_urls(net_log) if not u.startswith(LOCAL_SCHEMES)),
            "js_errors": [line for line in run.stderr.splitlines()
                          if ("Uncaught" in line or (":CONSOLE" in line and CONSOLE_FAULTS.search(line)))
                          and not any(known in line for known in KNOWN_JS_ERRORS)]}


@pytest.fixture(scope="module")
def browsed(built_site: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict]:
    """Every page of the toc (intro, the real chapters, `good`, `toy`) opened once, two at a time."""
    browser()  # fail before starting any page when there is none
    scratch = tmp_path_factory.mktemp("browser")
    pages = ["book/intro", *real_chapters(), "book/good", "book/toy"]
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = pool.map(lambda p: open_in_browser(built_site / f"{p}.html", scratch / p.replace("/", "_")),
                           pages)
        return dict(zip(pages, results))


def test_every_chart_draws_in_a_browser(browsed: dict[str, dict]) -> None:
    """Chromium loaded each page and every chart on it drew (no JS error either)."""
    assert {page: r["returncode"] for page, r in browsed.items() if r["returncode"]} == {}
    assert browsed["book/toy"]["charts"], "the toy chapter's chart was not found in its page"
    for chapter in real_chapters():  # a chapter whose stored outputs show charts must show them
        stored = (REPO / "notebooks" / f"{Path(chapter).name}.ipynb")
        if stored.is_file() and "vegaEmbed" in stored.read_text(encoding="utf-8"):
            assert browsed[chapter]["charts"], f"{chapter}: no chart found in the built page"
    assert {page: r["not_drawn"] for page, r in browsed.items() if r["not_drawn"]} == {}
    assert {page: r["js_errors"] for page, r in browsed.items() if r["js_errors"]} == {}


def test_pages_request_nothing_outside_the_site(browsed: dict[str, dict]) -> None:
    """No page asked for anything but local files (a CDN script, font, image or beacon fails this)."""
    assert {page: r["external"] for page, r in browsed.items() if r["external"]} == {}


# ---------------------------------------------------------------------------
# The intro's verdict table, from hand-made inputs.
# ---------------------------------------------------------------------------

def verdicts_payload(chapter: str, profile: str | None, *rows: tuple[str, ...]) -> dict:
    """What `record_verdicts` stores for `rows` of (claim, verdict, evidence[, key, setting, fragile])."""
    fields = ("claim", "verdict", "evidence", "key", "setting", "fragile")
    return {"chapter": chapter, "profile": profile, "runs": [],
            "verdicts": [{**dict.fromkeys(fields, ""), **dict(zip(fields, row))} for row in rows]}


def test_render_verdicts_findings_matrix_and_folded_table() -> None:
    """Sentences generated from the verdicts (a tally by class, what each setting finds), then the matrix of the
    paper's claims × settings with one badge per verdict linking to its evidence in the chapter, then every
    claim folded; HTML escaped; the missing placebo twins said."""
    html = render_verdicts([
        ("reward_modeling.html", "Reward modeling", verdicts_payload(
            "reward_modeling", "cpu", ("Deception exists", "reproduced", "5 above, 0 below of 6 cells", "exists",
                                       "HH reward models"),
            ("DS grows <b> gap", "inconclusive", "slope 0.010,\n95% [-0.002, 0.020]", "gap", "HH reward models",
             "leaving out seed 1: reproduced"))),
        ("parts/po.html", "PO", verdicts_payload("po", "cpu", ("PO deceives too", "not testable on this ladder",
                                                               "0 of 3", "po", "sums policies"))),
    ])
    findings, rest = html.split("</div>", 1)
    assert "<b>3 claims</b>: 1 reproduced, 0 not reproduced, 1 inconclusive, 1 not testable on this ladder" in findings
    assert "(1 of the inconclusive ones fragile" in findings
    assert ("On <b>HH reward models</b>, 2 of 2 claims are testable. Reproduced: Weak-to-strong deception exists (§4)."
            in findings)
    assert "On <b>sums policies</b>, 0 of 1 claims are testable, and none is reproduced or shown absent." in findings
    assert "No placebo twins have been trained yet" in findings
    matrix, table = rest.split("<details", 1)
    assert matrix.index("Weak-to-strong deception exists") < matrix.index("It grows with the capability gap")
    row = re.search(r"<tr><th scope=\"row\">Weak-to-strong deception exists \(§4\)</th>(.*?)</tr>", matrix)[1]
    cells = row.split("<td>")[1:]
    assert 'href="reward_modeling.html#verdict-0"' in cells[0] and ">reproduced</a>" in cells[0]
    assert "—" in cells[1] and "—" in cells[2]  # no verdict in these settings
    gap = re.search(r"It grows with the capability gap.*?</tr>", matrix)[0]
    assert 'href="reward_modeling.html#verdict-1"' in gap and "inconclusive (fragile)" in gap
    assert 'href="parts/po.html#verdict-0"' in matrix and ">not testable</a>" in matrix
    rows = table.split("<tr>")[2:]
    assert len(rows) == 3
    assert '<a href="reward_modeling.html#verdict-0">Reward modeling</a>: Deception exists' in rows[0]
    assert "DS grows &lt;b&gt; gap" in rows[1] and "slope 0.010, 95% [-0.002, 0.020]" in rows[1]
    assert ">not testable on this ladder</a>" in rows[2]
    assert render_verdicts([]).startswith("*No chapter has recorded verdicts yet")


def executed_chapter(path: Path, payload: dict | None) -> None:
    """An executed notebook at `path` whose last output carries `payload` as recorded verdicts."""
    output = nbformat.v4.new_output("execute_result", data={"text/plain": "verdicts"}, execution_count=1,
                                    metadata={"w2s_deception_verdicts": payload} if payload else {})
    cell = new_code_cell("record_verdicts(...)", outputs=[output], execution_count=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(new_notebook(cells=[new_markdown_cell(f"# {path.stem}"), cell]), path)


def test_update_intro_rewrites_only_between_the_markers(tmp_path: Path) -> None:
    """The table is regenerated from the executed chapters in toc order; the rest of the page and
    chapters without verdicts are left alone; a page without markers is not touched."""
    (tmp_path / "_toc.yml").write_text(
        "format: jb-book\nroot: book/intro\nchapters:\n  - file: book/b\n  - file: book/a.ipynb\n"
        "  - file: book/page\n  - file: book/silent\n", encoding="utf-8")
    executed_chapter(tmp_path / "book" / "a.ipynb", verdicts_payload("a", "smoke", ("claim A", "reproduced", "e")))
    executed_chapter(tmp_path / "book" / "b.ipynb", verdicts_payload("b", "smoke", ("claim B", "inconclusive", "f")))
    executed_chapter(tmp_path / "book" / "silent.ipynb", None)
    (tmp_path / "book" / "page.md").write_text("# A page\n", encoding="utf-8")
    intro = tmp_path / "book" / "intro.md"
    intro.write_text(f"# Intro\n\nBefore.\n\n{VERDICTS_START}\nstale table\n{VERDICTS_END}\n\nAfter.\n",
                     encoding="utf-8")

    assert update_intro(tmp_path)
    text = intro.read_text(encoding="utf-8")
    assert text.startswith(f"# Intro\n\nBefore.\n\n{VERDICTS_START}\n<div class=\"w2s-findings\">") and text.endswith(
        f"</table></details>\n{VERDICTS_END}\n\nAfter.\n")
    assert "stale" not in text
    # the rows after the header
    rows = text.split(VERDICTS_START)[1].split(VERDICTS_END)[0].split("<details")[1].split("<tr>")[2:]
    assert '<a href="b.html#verdict-0">b</a>: claim B' in rows[0]
    assert '<a href="a.html#verdict-0">a</a>: claim A' in rows[1]
    assert len(rows) == 2
    assert update_intro(tmp_path) and intro.read_text(encoding="utf-8") == text  # idempotent

    intro.write_text("# Intro without markers\n", encoding="utf-8")
    assert not update_intro(tmp_path)
    assert intro.read_text(encoding="utf-8") == "# Intro without markers\n"


# ---------------------------------------------------------------------------
# What every chapter notebook offers its reader (checked on the sources in notebooks/).
# ---------------------------------------------------------------------------

def chapter_sources() -> list[Path]:
    """The notebooks of the real book's chapters, in toc order."""
    paths = [REPO / "notebooks" / f"{Path(file).name}.ipynb" for file in real_chapters()]
    return [path for path in paths if path.is_file()]


@pytest.mark.parametrize("source", chapter_sources(), ids=lambda path: path.stem)
def test_papermill_reads_every_parameter(source: Path) -> None:
    """papermill sees each name the parameters cell assigns (it skips a line with a second `=`,
    even in a comment, and then calls that parameter unknown)."""
    nb = nbformat.read(source, as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    assigned = [t.id for node in ast.parse(cell.source).body if isinstance(node, ast.Assign)
                for t in node.targets if isinstance(t, ast.Name)]
    assert list(papermill.inspect_notebook(str(source))) == assigned


@pytest.mark.parametrize("source", chapter_sources(), ids=lambda path: path.stem)
def test_chapter_quotes_its_claim_gives_its_command_and_links_its_results(source: Path) -> None:
    """A quoted claim; a papermill command from notebooks/ into book/ with declared parameters
    only; a link to the per-pair results; verdicts recorded for the intro."""
    nb = nbformat.read(source, as_version=4)
    markdown = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(r'^> "', markdown, re.MULTILINE), "no quoted claim (a '> \"...\"' line)"
    commands = [line for line in markdown.splitlines() if line.startswith("papermill ")]
    assert commands, "no papermill command to re-run the chapter"
    declared = set(papermill.inspect_notebook(str(source)))
    for command in commands:
        argv = shlex.split(command)
        assert argv[1:3] == [f"notebooks/{source.name}", f"book/{source.name}"], command
        names = [argv[i + 1] for i, arg in enumerate(argv) if arg in ("-p", "--parameters")]
        names += [key for i, arg in enumerate(argv) if arg in ("-y", "--parameters_yaml")
                  for key in yaml.safe_load(argv[i + 1])]
        assert set(names) <= declared, f"{command}: undeclared {sorted(set(names) - declared)}"
    assert f'results_link("{source.stem}", ' in code, "no results_link call for this chapter"
    assert f'record_verdicts("{source.stem}", ' in code, "no record_verdicts call for this chapter"


def test_a_build_log_shows_one_line_per_computed_run_and_nothing_after(tmp_path: Path, capsys) -> None:
    cache = RunCache(tmp_path)
    compute = lambda tmp: (pd.DataFrame({"x": [1]}), {})  # noqa: E731
    log = logging.getLogger("w2s_deception")
    before = (list(log.handlers), log.level)
    with runs_logged():
        cache.get_or_compute("rm", {"run": 1}, compute)
        cache.get_or_compute("rm", {"run": 1}, compute)  # cached: no line
    cache.get_or_compute("rm", {"run": 2}, compute)  # after the build: quiet again
    lines = capsys.readouterr().err.splitlines()
    line = r"\d\d:\d\d:\d\d rm entry [0-9a-f]{12} computed in \d+\.\d s \(\d+\.\d CPU-s\)"
    assert len(lines) == 1 and re.fullmatch(line, lines[0])
    assert (list(log.handlers), log.level) == before
