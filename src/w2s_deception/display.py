"""What a chapter's cells display: a MIME bundle (each front end picks what it can show) and its metadata."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Display:
    """Notebook display data: a MIME bundle and, optionally, output metadata (e.g. a chapter's verdicts)."""

    bundle: dict[str, Any]
    metadata: dict[str, Any] | None = None

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> Any:
        """The bundle, with the metadata when there is some."""
        return (self.bundle, self.metadata) if self.metadata else self.bundle
