import io
import json

import pytest
from PIL import Image

from evident.tools.errors import InputError
from evident.tools.ingest.images import ImageFile, discover, read_image
from evident.tools.records import Skipped


def png_bytes(im: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt)
    return buf.getvalue()


def write_bad_corpus(folder):
    """Each kind of bad file the issue names, with the reason we expect."""
    folder.mkdir(parents=True, exist_ok=True)
    good = png_bytes(Image.new("RGB", (40, 30), "red"))
    (folder / "zero.png").write_bytes(b"")
    (folder / "text.jpg").write_bytes(b"this is not an image, only words")
    (folder / "truncated.png").write_bytes(good[: len(good) // 2])
    (folder / "corrupt.jpg").write_bytes(png_bytes(Image.new("RGB", (64, 64)), "JPEG")[:200])
    (folder / "bomb.png").write_bytes(png_bytes(Image.new("1", (9000, 9000))))
    return {
        "zero.png": "empty file",
        "text.jpg": "not an image",
        "truncated.png": "truncated",
        "corrupt.jpg": "truncated",
        "bomb.png": "decompression bomb",
    }


def test_bad_files_raise_input_error_with_reason(tmp_path):
    expected = write_bad_corpus(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(InputError, match=reason):
            read_image(tmp_path / name)


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "LA", "1", "I;16"])
def test_any_mode_becomes_rgb(tmp_path, mode):
    im = Image.new("RGB", (33, 17), (200, 20, 20)).convert(mode)
    path = tmp_path / "x.png"
    im.save(path)
    out = read_image(path)
    assert out.mode == "RGB" and out.size == (33, 17)


def test_transparent_pixels_composite_on_white(tmp_path):
    im = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    im.save(tmp_path / "t.png")
    assert read_image(tmp_path / "t.png").getpixel((0, 0)) == (255, 255, 255)


def test_discover_recurses_filters_and_reads_captions(tmp_path):
    red = png_bytes(Image.new("RGB", (8, 8), "red"))
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "one.png").write_bytes(red)
    (tmp_path / "one.txt").write_text("  a red square \n")
    (tmp_path / "a" / "two.JPG").write_bytes(png_bytes(Image.new("RGB", (8, 8)), "JPEG"))
    (tmp_path / "a" / "two.json").write_text(
        json.dumps({"caption": "a dark photo", "kind": "photo", "year": 2024, "nested": {"x": 1}})
    )
    (tmp_path / "a" / "b" / "three.webp").write_bytes(red)
    (tmp_path / "a" / "b" / "captions.jsonl").write_text(
        json.dumps({"file": "three.webp", "caption": "from jsonl", "source": "lab"})
        + "\nnot json\n"
    )
    (tmp_path / "notes.md").write_text("not an image")
    everything = list(discover([tmp_path]))
    found = {f.path.name: f for f in everything if isinstance(f, ImageFile)}
    assert set(found) == {"one.png", "two.JPG", "three.webp"}
    # the line that is not JSON is reported, with its number, not dropped in silence
    (bad,) = [f for f in everything if isinstance(f, Skipped)]
    assert bad.path.endswith("captions.jsonl") and bad.reason.startswith("line 2 ignored")
    assert found["one.png"].caption == "a red square"
    assert found["two.JPG"].caption == "a dark photo"
    assert found["two.JPG"].metadata == {"kind": "photo", "year": 2024}
    assert found["three.webp"].caption == "from jsonl"
    assert found["three.webp"].metadata == {"source": "lab"}


def test_discover_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="no such file or folder: '.*nope'"):
        list(discover([tmp_path / "nope"]))
