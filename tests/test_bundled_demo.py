"""The bundled figure model and the demo's offline path."""

import re
import socket

import pytest
from rich.console import Console

from evident.agent.assistant import Assistant
from evident.agent.demo import run_demo
from evident.tools.encoders import load_encoder
from evident.tools.specs import bundled_model, parse_spec


def test_bundled_spec_is_location_independent():
    spec = bundled_model()
    assert spec == "bundled:evident-figures"
    assert str(parse_spec(spec)) == spec  # what collections record: no install path in it
    enc = load_encoder(spec)
    assert enc.spec == spec and enc.dim == 384 and enc.image_size == 192


def test_the_demo_runs_offline_and_cites_checked_regions(tmp_path, monkeypatch):
    def no_network(*args, **kwargs):
        raise OSError("the demo must not touch the network")

    monkeypatch.setattr(socket, "create_connection", no_network)
    monkeypatch.setattr(socket.socket, "connect", no_network)
    console = Console(record=True, width=200)
    assert run_demo(tmp_path / "demo", console=console) == 0
    text = console.export_text()
    assert "bundled:evident-figures" in text and "model trained in seconds" not in text
    counts = re.search(r"(\d+) citations, (\d+) valid, (\d+) supported, 0 removed", text)
    assert counts, text  # nothing the template wrote had to be taken out
    cited, valid, supported = map(int, counts.groups())
    assert cited >= 1 and cited == valid == supported  # it cites regions that passed
    db = tmp_path / "demo" / "db"
    overlays = list((db / "overlays").glob("*.overlay.png"))
    assert overlays, "the demo writes overlays where the database is"
    # `evident chat --db demo-out/db` right after: the default collection, captions and
    # metadata indexed, so a filter follow-up finds figures with a legend
    monkeypatch.delenv("EVIDENT_COLLECTION", raising=False)
    with Assistant(db=db, llm="none", history=":memory:") as assistant:
        first = assistant.ask("a bar chart")
        assert first.search["scoring"].startswith("hybrid")
        for r in first.results:  # evidence, never the whole image
            area = r["metadata"]["width"] * r["metadata"]["height"]
            for g in r["regions"]:
                x0, y0, x1, y1 = g["box"]
                assert (x1 - x0) * (y1 - y0) <= 0.5 * area, g
        kept = assistant.ask("only the ones with a legend")
    assert kept.results and all(r["metadata"]["has_legend"] for r in kept.results)
    assert all(r["metadata"]["legend_position"] for r in kept.results)


@pytest.mark.parametrize("bad", ["bundled:", "bundled:nope"])
def test_unknown_bundled_model_is_a_clear_error(bad):
    from evident.tools.errors import ModelLoadError

    with pytest.raises(ModelLoadError):
        load_encoder(bad)
