"""Helpers shared by the tests."""

from __future__ import annotations

import hashlib
from pathlib import Path


def write_sums(root: Path) -> Path:
    """Write `root/SHA256SUMS` for every JSON Lines file under `root` (a data folder the tests made): the
    project reads no data file its folder's SHA256SUMS does not list."""
    lines = [f"{hashlib.sha256(p.read_bytes()).hexdigest()}  {p.relative_to(root).as_posix()}\n"
             for p in sorted(root.rglob("*.jsonl"))]
    sums = root / "SHA256SUMS"
    if sums.is_symlink():
        sums.unlink()
    sums.write_text("".join(lines), encoding="utf-8")
    return sums
