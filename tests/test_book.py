"""The book build (`w2s_deception.book`) on a throwaway repo root with two tiny chapters.

`good` prints something derived from its `profile` parameter; `bad` raises. Neither name is in
`experiments.CHAPTER_RUNS`, so nothing trains. The HTML is built once (the slow part).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from w2s_deception.book import ChapterError, check_parameters, main

REPO = Path(__file__).resolve().parents[1]

GOOD = 'print(f"chapter ran with profile {profile.upper()}")'
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
    mathjax = REPO / "book" / "_static" / "mathjax"  # vendored, as in the real repo
    if mathjax.is_dir():
        shutil.copytree(mathjax, root / "book" / "_static" / "mathjax")
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


def test_failing_chapter_stops_the_build(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A raising chapter: non-zero exit, a message naming it, the error kept in book/, no HTML."""
    root = make_root(tmp_path, ["good", "bad"])
    assert main(["--profile", "smoke", "--skip-html"], root=root) != 0
    out = capsys.readouterr().out
    failed = [line for line in out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1, out
    assert "bad" in failed[0] and "ValueError" in failed[0], out
    assert (root / "book" / "good.ipynb").exists()  # toc order: good ran first
    executed = root / "book" / "bad.ipynb"
    assert executed.exists()
    assert "deliberate failure" in outputs_text(executed)

    # Without --skip-html a failed run still builds no HTML.
    assert main(["--profile", "smoke", "--chapters", "bad"], root=root) != 0
    assert "FAILED bad" in capsys.readouterr().out
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


def test_parameters_cell_must_declare_every_parameter(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
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
    failed = [line for line in capsys.readouterr().out.splitlines() if line.startswith("FAILED")]
    assert len(failed) == 1 and failed[0].startswith("FAILED noprofile:"), failed
    assert not (root / "book" / "noprofile.ipynb").exists()


@pytest.fixture(scope="module")
def built_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One full build (execute + HTML) of a book whose only chapter is `good`."""
    root = make_root(tmp_path_factory.mktemp("site"), ["good"])
    assert main(["--profile", "smoke"], root=root) == 0
    return root / "_build" / "html"


def test_full_build_writes_the_site(built_site: Path) -> None:
    """The chapter page and the local Vega bundle are in the built site."""
    assert (built_site / "book" / "good.html").is_file()
    assert (built_site / "_static" / "vega-bundle.js").is_file()
    assert "chapter ran with profile SMOKE" in (built_site / "book" / "good.html").read_text(
        encoding="utf-8"
    )


def test_built_pages_load_nothing_from_outside_the_site(built_site: Path) -> None:
    """No built page loads a script or stylesheet from an http(s) (or protocol-relative) URL."""
    pages = sorted(built_site.rglob("*.html"))
    assert built_site / "book" / "good.html" in pages
    external = {
        str(page.relative_to(built_site)): EXTERNAL.findall(page.read_text(encoding="utf-8"))
        for page in pages
    }
    assert {page: urls for page, urls in external.items() if urls} == {}
