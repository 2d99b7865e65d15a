"""Images inside HTML pages and PDFs, captioned by the text around them.

The PDFs are real ones drawn by matplotlib's PDF backend: raster images as XObjects and
captions as text, so pypdf sees what it would see in a paper.
"""

import base64
import io
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from evident.tools.errors import InputError
from evident.tools.ingest.documents import discover_with_documents, document_images, join_caption


def png(path: Path, colour=(200, 30, 30), size=(48, 40)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)
    return path


def png_bytes(colour=(0, 0, 255)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (40, 40), colour).save(buf, format="PNG")
    return buf.getvalue()


def pdf(path: Path, pages: list[list[tuple]]) -> Path:
    """Each page: ("image", rgb, [left, bottom, width, height]) or ("text", x, y, str)."""
    from matplotlib.backends.backend_pdf import PdfPages
    from matplotlib.figure import Figure

    with PdfPages(path) as out:
        for items in pages:
            fig = Figure(figsize=(6, 8))
            for item in items:
                if item[0] == "image":
                    ax = fig.add_axes(item[2])
                    ax.axis("off")
                    ax.imshow(np.full((40, 60, 3), item[1], np.uint8), aspect="auto")
                else:
                    fig.text(item[1], item[2], item[3], fontsize=10)
            out.savefig(fig)
    return path


@pytest.fixture
def site(tmp_path) -> Path:
    root = tmp_path / "docs"
    png(root / "img" / "edges.png")
    png(root / "img" / "hist.png", (30, 200, 30))
    png(root / "img" / "own.png", (30, 30, 200))
    (root / "img" / "own.txt").write_text("my own caption")
    png(root / "img" / "unused.png", (90, 90, 90))
    png(root / "img" / "old style.png", (200, 200, 30))
    png(root / "img" / "named.png", (200, 30, 200))
    data_uri = "data:image/png;base64," + base64.b64encode(png_bytes()).decode()
    (root / "index.html").write_text(
        f"""<html><body><img src="img/logo-missing.png">
        <h1>Edge detection<a class="headerlink" href="#e">¶</a></h1>
        <p>Text.</p>
        <figure><img src="img/edges.png" alt="Canny filter output">
          <figcaption><p>Figure 1: edges of a <b>noisy</b> square</p></figcaption></figure>
        <h2>Histograms</h2>
        <img src="./img/hist.png" alt="a histogram of pixel values" title="Histogram">
        <img src="https://example.org/remote.png" alt="remote">
        <img src="/static/site-absolute.png" alt="absolute">
        <img src="{data_uri}" alt="inline blue square">
        <img src="img/own.png" alt="page caption">
        <div class="figure"><div><img src="img/old%20style.png"></div>
          <p class="caption">Fig. 3: old Sphinx figure</p></div>
        </body></html>""",
        encoding="utf-8",
    )
    (root / "sub").mkdir()
    (root / "sub" / "page.html").write_text(
        '<h3>Intro</h3><img src="../img/edges.png" alt="edges">'
        '<img src="../img/named.png" alt="../img/named.png">',
        encoding="utf-8",
    )
    return root


def test_html_captions_join_heading_figcaption_alt_and_title(site, tmp_path):
    got = {f.path.name: f for f in document_images(site / "index.html", cache_dir=tmp_path / "c")}
    assert got["edges.png"].caption == (
        "Edge detection. Figure 1: edges of a noisy square. Canny filter output"
    )
    assert got["edges.png"].metadata == {
        "source": str((site / "index.html").resolve()),
        "heading": "Edge detection",
        "alt": "Canny filter output",
    }
    # the page title (first h1) leads; the img's title repeats the heading and is dropped
    assert got["hist.png"].caption == "Edge detection. Histograms. a histogram of pixel values"
    assert got["old style.png"].caption == "Edge detection. Histograms. Fig. 3: old Sphinx figure"
    inline = [f for name, f in got.items() if name not in {"edges.png", "hist.png", "own.png"}]
    assert len(got) == 5  # remote, site-absolute and missing files skipped
    decoded = [f for f in inline if f.path.parent == (tmp_path / "c").resolve()]
    assert (
        len(decoded) == 1 and decoded[0].caption == "Edge detection. Histograms. inline blue square"
    )
    assert decoded[0].path.read_bytes() == png_bytes()


def test_discover_with_documents_yields_each_image_once_with_the_best_caption(site, tmp_path):
    files = list(discover_with_documents([site], cache_dir=tmp_path / "cache"))
    paths = [f.path for f in files]
    assert len(paths) == len(set(paths)) == 7  # 6 on disk + 1 decoded from a data: URI
    by_name = {f.path.name: f for f in files}
    assert by_name["edges.png"].caption.startswith("Edge detection. Figure 1")  # longest wins
    assert by_name["edges.png"].metadata["pages"] == 2
    assert by_name["own.png"].caption == "my own caption"  # a sidecar beats the page
    assert by_name["unused.png"].caption is None
    assert by_name["named.png"].caption == "Intro"  # an alt that is just the file name is noise
    assert "alt" not in by_name["named.png"].metadata
    assert sum(f.caption is not None for f in files) == 6


def test_cache_inside_the_indexed_folder_is_not_indexed_twice(site):
    first = list(discover_with_documents([site], cache_dir=site / ".evident-cache"))
    again = list(discover_with_documents([site], cache_dir=site / ".evident-cache"))
    assert sorted(f.path for f in first) == sorted(f.path for f in again)
    assert len({f.path for f in again}) == len(again) == 7
    inline = [f for f in again if f.path.parent.name == ".evident-cache"]
    assert [f.caption for f in inline] == ["Edge detection. Histograms. inline blue square"]


def test_pdf_images_get_the_figure_caption_below_them(tmp_path):
    doc = pdf(
        tmp_path / "paper.pdf",
        [
            [
                ("text", 0.1, 0.95, "Some body text about methods."),
                ("image", (255, 0, 0), [0.1, 0.55, 0.5, 0.35]),
                ("text", 0.1, 0.5, "Figure 1: A red rectangle\non white paper."),
                ("image", (0, 0, 255), [0.1, 0.1, 0.5, 0.3]),
                ("text", 0.1, 0.05, "Fig. 2. A blue rectangle."),
            ],
            [("image", (255, 0, 0), [0.1, 0.5, 0.5, 0.35]), ("text", 0.1, 0.45, "Same again.")],
            [
                ("image", (0, 160, 0), [0.1, 0.5, 0.5, 0.3]),
                ("text", 0.1, 0.44, "A green square on grey."),
            ],
            [("image", (90, 90, 90), [0.1, 0.5, 0.5, 0.3]), ("text", 0.1, 0.45, "0 100 200 300")],
        ],
    )
    cache = tmp_path / "cache"
    got = list(document_images(doc, cache_dir=cache))
    assert [(f.caption, f.metadata["page"]) for f in got] == [
        ("Figure 1: A red rectangle on white paper.", 1),
        ("Fig. 2. A blue rectangle.", 1),
        ("A green square on grey.", 3),  # no "Figure" caption: the text block just below
        (None, 4),  # tick labels are not a caption
    ]  # the red image repeats on page 2 and is yielded once
    assert all(f.metadata["source"] == str(doc.resolve()) for f in got)
    assert all(f.path.parent == cache.resolve() and f.path.stat().st_size for f in got)
    red = np.asarray(Image.open(got[0].path).convert("RGB"))
    assert red[..., 0].mean() > 250 and red[..., 2].mean() < 5
    assert [f.path for f in document_images(doc, cache_dir=cache)] == [f.path for f in got]


def test_unreadable_pdf_is_logged_and_skipped(tmp_path, caplog):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    with caplog.at_level(logging.WARNING):
        (skipped,) = document_images(bad, cache_dir=tmp_path / "c")
    assert skipped.path == str(bad) and skipped.reason.startswith("unreadable PDF")
    assert "bad.pdf" in caplog.text


def test_other_files_and_missing_paths_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not an HTML or PDF"):
        list(document_images(tmp_path / "notes.txt", cache_dir=tmp_path))
    with pytest.raises(InputError, match="no such file"):
        list(discover_with_documents([tmp_path / "nope"], cache_dir=tmp_path))


def test_join_caption_drops_repeats():
    assert join_caption(["Histograms", "Histogram", "a histogram of values"]) == (
        "Histograms. a histogram of values"
    )
    assert join_caption([None, "", "  "]) is None


SKIMAGE_DOCS = Path("/usr/share/doc/python-skimage-doc/html")
# Queries, and which figures answer them, judged by the example's file name (not its caption).
SKIMAGE_QUERIES = {
    "a histogram": r"histogram|equalize|log_gamma|otsu|thresholding",
    "edge detection": r"canny|edge",
    "the Hough transform": r"hough",
    "image segmentation": r"segment|watershed|slic|felzenszwalb|chan_vese|random_walker|rag_",
    "denoising an image": r"denois|nonlocal|j_invariant|restoration|wiener|deconvolution",
}


@pytest.mark.docs
def test_skimage_documentation_is_captioned_and_searchable(tmp_path, monkeypatch, text_embedder):
    """Debian's python-skimage-doc: real Sphinx pages with real figures (and two PDFs).

    The encoder is `random:` unless EVIDENT_DOCS_ENCODER names a real one, so the image
    side is noise here and the caption side carries the search; findings go to stdout
    (`pytest -s`) and to `skimage_findings.json` under the test's tmp_path.
    """
    import json
    import os
    import re

    import evident.tools.ingest.index
    from evident.tools.encoders import load_encoder
    from evident.tools.hybrid import Weights
    from evident.tools.records import Query
    from evident.tools.retrieve import search_images
    from evident.tools.store import Store

    if not SKIMAGE_DOCS.is_dir():
        pytest.skip("apt-get install python-skimage-doc")
    cache = tmp_path / "document-images"
    files = list(discover_with_documents([SKIMAGE_DOCS], cache_dir=cache))
    captioned = [f for f in files if f.caption]
    found = {
        "images": len(files),
        "captioned": len(captioned),
        "captioned_share": round(len(captioned) / len(files), 3),
        "from_pdfs": sum(f.path.parent == cache.resolve() for f in files),
        "uncaptioned": sorted(f.path.name for f in files if not f.caption),
    }
    assert found["images"] >= 300 and found["captioned_share"] >= 0.9

    encoder = load_encoder(os.environ.get("EVIDENT_DOCS_ENCODER", "random:evident-tiny-vit"))
    found["encoder"] = encoder.spec
    with Store.open(tmp_path / "db", create=True) as store:
        report = evident.tools.ingest.index.index_paths(
            [SKIMAGE_DOCS],
            documents_cache=cache,
            store=store,
            encoder=encoder,
            collection="skimage",
            text_embedder=text_embedder,
        )
        found["indexed"] = report.indexed
        found["precision@5"] = {}
        for query, answers in SKIMAGE_QUERIES.items():
            for weight in (0.0, 0.5, 1.0):
                hits = search_images(
                    Query(query),
                    5,
                    store=store,
                    collection="skimage",
                    encoder=encoder,
                    text_embedder=text_embedder,
                    weights=Weights(image=1.0 - weight, caption=weight),
                ).hits
                good = sum(bool(re.search(answers, Path(h.uri).name)) for h in hits)
                found["precision@5"][f"{query} | caption weight {weight}"] = good / 5
                if weight == 0.5:
                    found.setdefault("top5", {})[query] = [Path(h.uri).name for h in hits]
    (tmp_path / "skimage_findings.json").write_text(json.dumps(found, indent=1))
    print(json.dumps(found, indent=1))
    p5 = found["precision@5"]
    assert p5["a histogram | caption weight 1.0"] >= 0.6
    assert p5["edge detection | caption weight 1.0"] >= 0.6
