"""Sphinx tweaks of the book's HTML (loaded through `sphinx.local_extensions` in _config.yml)."""

from __future__ import annotations

from typing import Any


def drop_thebe(app: Any, pagename: str, templatename: str, context: dict, doctree: Any) -> None:
    """Leave out sphinx-thebe's scripts: the book has no live kernels (launch_buttons.thebe is off), and
    sphinx-thebe, which Jupyter Book always loads, declares `const THEBE_JS_URL` twice on every page,
    a console error in every browser."""
    scripts = context.get("script_files")
    if scripts is not None:
        context["script_files"] = [s for s in scripts if "THEBE" not in str(getattr(s, "attributes", {}).get("body", ""))
                                   and "sphinx-thebe" not in str(getattr(s, "filename", s) or "")]


def root_always_outdated(app: Any, env: Any, added: set, changed: set, removed: set) -> list[str]:
    """Re-write the root page on every build: with no page out of date Sphinx skips copying `_static`,
    so an edited stylesheet or results file would never reach the site (the workflow renders only
    when an input changed, so this costs one page)."""
    return [app.config.root_doc]


def setup(app: Any) -> dict[str, Any]:
    app.connect("html-page-context", drop_thebe, priority=900)
    app.connect("env-get-outdated", root_always_outdated)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
