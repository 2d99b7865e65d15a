"""Settings: defaults, overridable by environment variables, then by CLI flags."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path


def _default_db() -> str:
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return str(Path(base) / "evident" / "db")


@dataclass(frozen=True)
class Settings:
    """Run-constant choices. `model=None` means: the collection's own encoder when
    searching, the bundled default when indexing."""

    db: str = field(default_factory=lambda: os.environ.get("EVIDENT_DB") or _default_db())
    collection: str = field(default_factory=lambda: os.environ.get("EVIDENT_COLLECTION", "images"))
    model: str | None = field(default_factory=lambda: os.environ.get("EVIDENT_MODEL") or None)
    lock_timeout: float = 10.0
