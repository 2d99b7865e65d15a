"""The `Assistant`: one object model for scripts, notebooks and `evident ask`."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import re

import pytest
from agent_helpers import COLLECTION, HashTextEmbedder, build_collection
from PIL import Image

from evident.agent.assistant import Assistant
from evident.agent.cli import main
from evident.tools.errors import StoreError

CAPTIONS = {0: "red circles: a <b>bold</b> caption & more", 1: "a red circle"}


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder):
    return build_collection(tmp_path_factory.mktemp("assistant"), tiny_encoder, captions=CAPTIONS)


@pytest.fixture
def assistant(db, tiny_encoder, tmp_path):
    with Assistant(db=db, model=tiny_encoder, collection=COLLECTION, history=tmp_path / "h.sqlite",
                   text_embedder=HashTextEmbedder(), out_dir=tmp_path / "out") as a:  # fmt: skip
        yield a


def test_ask_returns_the_search_json_with_a_grounded_answer(assistant):
    answer = assistant.ask("red circles")
    d = json.loads(json.dumps(answer.to_dict()))
    assert {"query", "model", "collection", "scoring", "results"} <= d.keys()
    assert {"answer", "citations", "grounding", "steps", "llm"} <= d.keys()
    assert d["llm"] == "none" and d["query"]["text"] == "red circles" and len(d["results"]) == 5
    # one schema for every result: the unexplained ones have no regions and no heatmap
    assert all(
        {"regions", "heatmap", "evidence_error", "first_stage"} <= r.keys() for r in d["results"]
    )
    assert [bool(r["heatmap"]) for r in d["results"]] == [True] * 3 + [False] * 2
    assert [r["regions"] for r in d["results"][3:]] == [[], []]
    assert set(d["grounding"]) == {"sentences", "cited", "valid", "supported", "removed"}
    assert all({"node", "tool", "arguments", "ms"} <= s.keys() for s in d["steps"])
    # the top three are explained in one batched call
    tools = [(s["tool"], s["arguments"]) for s in d["steps"] if s["tool"]]
    assert tools == [
        ("search_images", {"query": "red circles", "k": 5}),
        ("explain_results", {"ranks": [1, 2, 3]}),
    ]
    assert d["answer"].startswith("I ranked 5 images")


def test_the_notebook_view_shows_thumbnails_answer_grounding_and_steps(assistant):
    answer = assistant.ask("red circles")
    html = answer._repr_html_()
    images = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(images) == 5
    for data in images:
        assert max(Image.open(io.BytesIO(base64.b64decode(data))).size) <= 256
    assert "Grounding:" in html and "explain_results" in html
    assert (
        "red circles: a &lt;b&gt;bold&lt;/b&gt; caption &amp; more" in html
        and "<b>bold</b>" not in html
    )
    assert "I ranked 5 images for &#x27;red circles&#x27;" in html


def test_follow_ups_and_history_survive_a_new_assistant(db, tiny_encoder, tmp_path):
    options = dict(
        db=db, model=tiny_encoder, collection=COLLECTION, text_embedder=HashTextEmbedder(),
        history=tmp_path / "chat.sqlite", thread="kept",
    )  # fmt: skip
    with Assistant(**options) as first:
        first.ask("red circles")
    with Assistant(**options) as second:
        answer = second.ask("why is #2 below #1?")
        assert [s["tool"] for s in answer.steps if s["tool"]] == ["compare_results"]
        assert [q for q, _ in second.turns()] == ["red circles", "why is #2 below #1?"]
        other = second.ask("red circles", thread="another")
        assert other.thread == "another" and len(second.turns("another")) == 1


def test_ask_works_inside_a_running_event_loop(assistant):
    async def in_a_notebook():
        asyncio.get_running_loop()
        return assistant.ask("blue squares")

    assert asyncio.run(in_a_notebook()).answer.startswith("I ranked 5 images")


def test_stream_yields_steps_tokens_and_the_answer(assistant):
    events = list(assistant.stream("green crosses", k=3))
    kinds = [k for k, _ in events]
    assert kinds[-1] == "answer" and "step" in kinds and "status" in kinds
    tokens = "".join(v for k, v in events if k == "token")
    assert tokens.strip() == events[-1][1].answer


def test_evident_ask_json(tiny_encoder, capsys, monkeypatch, tmp_path):
    db = build_collection(tmp_path, tiny_encoder, n=6)  # no captions: no caption embedder
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    argv = ["ask", "red circles", "--json", "--db", str(db), "--collection", COLLECTION,
            "--model", "random:evident-tiny-vit", "--k", "2"]  # fmt: skip
    assert main(argv) == 0
    out = json.loads(capsys.readouterr().out)
    assert len(out["results"]) == 2 and out["llm"] == "none" and out["answer"]
    overlays = [r["heatmap"]["overlay"] for r in out["results"]]
    # without --out, overlays go to a folder found with the database
    assert all(o.startswith(str(db / "overlays")) for o in overlays)


def test_a_missing_database_is_a_clear_error(tmp_path, tiny_encoder):
    a = Assistant(db=tmp_path / "nowhere", model=tiny_encoder, history=":memory:")
    with a, pytest.raises(StoreError, match="no evident database"):
        a.ask("anything")


def _tiny_llama():
    """A 1-layer random Llama with a byte-level tokenizer: a real local backend that
    writes garbage (no weights, no downloads)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import AutoModelForCausalLM, LlamaConfig, PreTrainedTokenizerFast

    from evident.agent.llm.transformers_chat import TransformersChatModel

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    backend = Tokenizer(models.BPE(vocab={c: i for i, c in enumerate(alphabet)}, merges=[]))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    tok = PreTrainedTokenizerFast(
        tokenizer_object=backend, bos_token="<|im_start|>", eos_token="<|im_end|>",
        pad_token="<|im_end|>",
    )  # fmt: skip
    tok.chat_template = (
        "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
        "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
    )
    cfg = LlamaConfig(
        hidden_size=32, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=2,
        intermediate_size=64, vocab_size=len(tok), max_position_embeddings=16384,
        bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )  # fmt: skip
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(cfg).eval()
    return TransformersChatModel(model=model, processor=tok, model_name="tiny", max_new_tokens=16)


def test_a_tiny_random_local_model_still_gets_a_grounded_answer(db, tiny_encoder, tmp_path):
    pytest.importorskip("transformers")
    with Assistant(db=db, model=tiny_encoder, llm=_tiny_llama(), collection=COLLECTION,
                   history=":memory:", text_embedder=HashTextEmbedder()) as a:  # fmt: skip
        answer = a.ask("red circles")
    assert answer.llm == "TransformersChatModel"
    assert [s["tool"] for s in answer.steps if s["tool"]][0] == "search_images"
    assert answer.answer.startswith("I ranked 5 images")  # the policy wrote it


def test_an_image_query_and_images_like_a_result(assistant, db):
    picture = db.parent / "images" / "scene_04.png"
    answer = assistant.ask("", image=picture)
    top = answer.results[0]
    assert top["uri"] == str(picture.resolve()) and answer.search["query"]["image"] == str(picture)
    like = assistant.ask("show me images like #1")
    assert [s["tool"] for s in like.steps if s["tool"]][0] == "similar_to"
    assert top["id"] not in [r["id"] for r in like.results] and len(like.results) == 5
