"""The conda environment and the book's table of contents agree with the repository."""

from __future__ import annotations

import tomllib
from pathlib import Path

import yaml
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from w2s_deception.book import toc_chapters

ROOT = Path(__file__).resolve().parents[1]
EXTRAS = ("book", "test")


def pyproject() -> dict:
    """Parsed pyproject.toml."""
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))


def conda_env() -> dict:
    """Parsed environment.yml."""
    return yaml.safe_load((ROOT / "environment.yml").read_text(encoding="utf-8"))


def conda_pip() -> list[str]:
    """The `pip:` list of environment.yml."""
    return next(d["pip"] for d in conda_env()["dependencies"] if isinstance(d, dict))


def normalised(requirements: list[str]) -> list[str]:
    """Requirements in canonical spelling, sorted, so formatting differences do not count."""
    return sorted(str(Requirement(r)) for r in requirements)


def test_conda_pins_match_pyproject() -> None:
    """environment.yml pins exactly pyproject's dependencies plus its book and test extras."""
    project = pyproject()["project"]
    expected = project["dependencies"] + [
        r for extra in EXTRAS for r in project["optional-dependencies"][extra]
    ]
    pinned = [r for r in conda_pip() if not r.startswith("-e")]
    assert normalised(pinned) == normalised(expected)


def test_conda_installs_the_package_editable() -> None:
    """environment.yml installs this package itself, in editable mode."""
    assert "-e ." in conda_pip()


def test_conda_python_satisfies_requires_python() -> None:
    """The conda Python version is one pyproject allows."""
    python = next(d for d in conda_env()["dependencies"] if str(d).startswith("python="))
    allowed = SpecifierSet(pyproject()["project"]["requires-python"])
    assert python.removeprefix("python=") in allowed


def test_toc_chapters_exist() -> None:
    """Each chapter in _toc.yml is a source notebook or a markdown page."""
    missing = [
        name
        for name in toc_chapters(ROOT)
        if not (ROOT / "notebooks" / f"{name}.ipynb").exists()
        and not (ROOT / "book" / f"{name}.md").exists()
    ]
    assert not missing, f"no notebooks/<name>.ipynb or book/<name>.md for {missing}"
