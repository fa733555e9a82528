"""What an executed chapter and a training job were built from, so that a build never passes off a stale book.

Snakemake decides from file times and from its own metadata, which a fresh clone lacks and which cannot see
a deleted run cache or a chapter a reader re-ran with other parameters. So the build records, in each
executed chapter, its profile, parameters and a key of its notebook and the package, and the chapter lists
the run-cache entries it read (`cache.touched`); each training job writes the entries it produced into its
flag. Before the workflow starts, `stale_chapters` and `stale_flags` compare them with what is there now.
"""

from __future__ import annotations

import ast
import hashlib
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .cache import code_text, imported_modules, missing_entries

if TYPE_CHECKING:
    import nbformat

BUILD_KEY = "w2s_build"  # notebook metadata of a chapter the build executed: profile, parameters, key
PACKAGE = Path(__file__).resolve().parent


def notebook_text(path: Path) -> str:
    """The sources of a notebook's cells (code and Markdown, not outputs): what executing it depends on."""
    import nbformat  # the book's dependency; a training job never reads a notebook

    nb = nbformat.read(path, as_version=4)
    return json.dumps([[c.cell_type, c.source] for c in nb.cells])


def notebook_modules(path: Path) -> set[str]:
    """The package modules a notebook's code imports, directly or through others (`cache.imported_modules`)."""
    import nbformat  # the book's dependency; a training job never reads a notebook

    nb = nbformat.read(path, as_version=4)
    direct: set[str] = set()
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:  # IPython magics: such a cell imports nothing of ours
            continue
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == PACKAGE.name:
                parts = node.module.split(".")
                direct.update([parts[1]] if len(parts) > 1 else [a.name for a in node.names])
            elif isinstance(node, ast.Import):
                direct.update(a.name.split(".")[1] for a in node.names if a.name.startswith(f"{PACKAGE.name}."))
    return {m for d in direct if (PACKAGE / f"{d}.py").is_file() for m in imported_modules(d)}


def chapter_key(root: Path, name: str, profile: str) -> str:
    """Hash (16 hex) of what an executed chapter depends on besides the run cache: the profile, its notebook's
    cells and the code of the package modules it imports (an edit to a chart module re-executes only the
    chapters that import it)."""
    path = root / "notebooks" / f"{name}.ipynb"
    digest = hashlib.sha256(f"{profile}\0{notebook_text(path)}\0".encode())
    for module in sorted(notebook_modules(path)):
        digest.update(f"{module}\0{code_text((PACKAGE / f'{module}.py').read_text(encoding='utf-8'))}\0".encode())
    return digest.hexdigest()[:16]


def stamp(root: Path, name: str, profile: str, parameters: dict[str, Any]) -> None:
    """Record in the executed `book/<name>.ipynb` what the build executed it from."""
    import nbformat  # the book's dependency; a training job never reads a notebook

    path = root / "book" / f"{name}.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.metadata[BUILD_KEY] = {"profile": profile, "parameters": parameters, "key": chapter_key(root, name, profile)}
    nbformat.write(nb, path)


def read_runs(nb: nbformat.NotebookNode, key: str) -> list[str] | None:
    """The run-cache entries an executed chapter recorded it read (the last record under output metadata
    `key`), or None when it recorded none."""
    found = None
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            payload = out.get("metadata", {}).get(key)
            if payload is not None:
                found = payload.get("runs")
    return found


def why_stale(root: Path, name: str, profile: str, runs_dir: Path, verdicts_key: str) -> str | None:
    """Why `book/<name>.ipynb` does not match what a build of `profile` would make now (None when it does, or
    when it does not exist: the workflow makes missing outputs anyway)."""
    import nbformat  # the book's dependency; a training job never reads a notebook

    path = root / "book" / f"{name}.ipynb"
    if not path.is_file():
        return None
    try:
        nb = nbformat.read(path, as_version=4)
    except (OSError, ValueError, json.JSONDecodeError) as err:
        return f"unreadable ({type(err).__name__})"
    built = nb.metadata.get(BUILD_KEY)
    if built is None:
        failed = nb.metadata.get("papermill", {}).get("exception")
        return "a failed execution" if failed else "not executed by the build (e.g. a papermill run by hand)"
    if built.get("profile") != profile:
        return f"built for the {built.get('profile')!r} profile"
    if built.get("parameters") != {"profile": profile}:
        return f"built with other parameters ({built.get('parameters')})"
    if built.get("key") != chapter_key(root, name, profile):
        return "its notebook or the package changed since"
    gone = missing_entries(runs_dir, read_runs(nb, verdicts_key) or [])
    if gone:
        return f"{len(gone)} of the runs it read are not in {runs_dir} (e.g. {gone[0]})"
    return None


def stale_chapters(root: Path, names: Iterable[str], profile: str, runs_dir: Path, verdicts_key: str) -> dict[str, str]:
    """The chapters among `names` whose executed notebook is stale, with why."""
    found = {name: why_stale(root, name, profile, runs_dir, verdicts_key) for name in names}
    return {name: why for name, why in found.items() if why}


def write_flag(path: Path, entries: list[str]) -> None:
    """A training job's flag: the run-cache entries it read or computed (written whole, by one rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"entries": entries}, indent=0), encoding="utf-8")
    tmp.replace(path)


def stale_flags(flags_dir: Path, runs_dir: Path) -> list[Path]:
    """Flags of training jobs whose entries are no longer all in the run cache (or that list none: an older
    build's empty flag), which the build removes so that the workflow runs those jobs again."""
    out = []
    for flag in sorted(flags_dir.rglob("*.done")) if flags_dir.is_dir() else []:
        try:
            entries = json.loads(flag.read_text(encoding="utf-8"))["entries"]
        except (OSError, ValueError, KeyError, TypeError):
            out.append(flag)
            continue
        if missing_entries(runs_dir, entries):
            out.append(flag)
    return out
