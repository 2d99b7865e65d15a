"""Shared fixtures. Real parts everywhere; tiny random or seconds-trained models only."""

import os

# Before torch loads: OpenMP threads that spin while waiting make every op ~10x slower
# as soon as anything else (a decode thread, another process) wants the CPU.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")

import json  # noqa: E402
import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

TINY_VIT = "random:evident-tiny-vit"
TINY_RN = "random:evident-tiny-rn"


@pytest.fixture(scope="session")
def tiny_encoder():
    from evident.tools.encoders import load_encoder

    return load_encoder(TINY_VIT)


@pytest.fixture(scope="session")
def bundled_encoder():
    """The figure model shipped in the package (real weights, no download)."""
    from evident.tools.encoders import load_encoder
    from evident.tools.specs import bundled_model

    return load_encoder(bundled_model())


@pytest.fixture(scope="session")
def figures_80(tmp_path_factory, bundled_encoder):
    """80 generated figures of a seed training never used (321), indexed with the bundled
    model without OCR: `(folder, db, queries)`, for the tests of search signals."""
    from evident.eval.figures.generate import generate_figures
    from evident.tools.ingest.index import index_paths
    from evident.tools.store import Store

    root = tmp_path_factory.mktemp("figures_80")
    generate_figures(root / "figs", 80, seed=321, splits=(0.0, 0.0, 1.0), workers=1)
    queries = [json.loads(line) for line in (root / "figs" / "test.jsonl").open()]
    with Store.open(root / "db", create=True) as store:
        index_paths([root / "figs" / "images"], store=store, encoder=bundled_encoder,
                    collection="images", ocr="off")  # fmt: skip
    return root / "figs", root / "db", queries


@pytest.fixture(scope="session")
def text_embedder():
    from evident.tools.text_embed import load_text_embedder

    return load_text_embedder()


def write_scenes(folder: Path, scenes, *, captions: bool = False) -> list[Path]:
    """Save scenes as PNGs (and `.txt` caption sidecars when asked); returns the paths."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, s in enumerate(scenes):
        p = folder / f"scene_{i:04d}.png"
        s.image.save(p)
        if captions:
            p.with_suffix(".txt").write_text(s.caption)
        paths.append(p)
    return paths


@pytest.fixture(scope="session")
def chroma_server(tmp_path_factory):
    """A real `chroma run` on 127.0.0.1 for the whole session (its URL)."""
    from tests.hostile.servers import start_chroma, stop

    proc, url = start_chroma(tmp_path_factory.mktemp("chroma-data"))
    yield url
    stop(proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def read_json(text: str):
    return json.loads(text)
