"""The `openai:` backend against servers on 127.0.0.1: a fake OpenAI-compatible server that
records what it is sent (constrained steps, budgets, images), a closed port, and a socket
that accepts and never answers. The last two are one line and exit 2 in `ask`, a message
and a live session in `chat`."""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from agent_helpers import COLLECTION, build_collection
from conftest import free_port
from langchain_core.messages import HumanMessage, SystemMessage
from rich.console import Console

from evident.agent.assistant import Assistant
from evident.agent.cli import main
from evident.agent.llm import load_llm
from evident.agent.llm.openai_chat import LLMUnavailable
from evident.agent.repl import Session, handle
from evident.graphs.context import Budgets
from evident.tools.agent_tools import tool_specs

TINY = "random:evident-tiny-vit"


class FakeServer:
    """An OpenAI-compatible chat endpoint that replays `replies` and records requests."""

    def __init__(self, replies: list[str]):
        self.replies, self.requests = list(replies), []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                outer.requests.append(body)
                text = outer.replies.pop(0)
                usage = {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18}
                if body.get("stream"):
                    self.send_response(200)
                    self.send_header("Content-Type", "text/event-stream")
                    self.end_headers()
                    for word in text.split(" "):
                        delta = {"choices": [{"index": 0, "delta": {"content": word + " "}}]}
                        self.wfile.write(f"data: {json.dumps(delta)}\n\n".encode())
                    last = {"choices": [], "usage": usage}
                    self.wfile.write(f"data: {json.dumps(last)}\n\ndata: [DONE]\n\n".encode())
                    return
                reply = {
                    "id": "x", "object": "chat.completion", "created": 0, "model": "m",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": text}}],
                    "usage": usage,
                }  # fmt: skip
                data = json.dumps(reply).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen(8)
    yield sock.getsockname()[1]
    sock.close()


def test_a_tool_step_is_constrained_by_json_schema_with_a_token_budget():
    server = FakeServer(['{"name": "similar_to", "arguments": {"rank": 2}}'])
    try:
        llm = load_llm(f"openai:{server.url}#m").bind_tools(
            tool_specs(results=3, fields={}, k_max=20), tool_choice="required"
        )
        reply = llm.invoke([HumanMessage("like #2")], max_tokens=100, timeout=10)
    finally:
        server.close()
    assert [(c["name"], c["args"]) for c in reply.tool_calls] == [("similar_to", {"rank": 2})]
    sent = server.requests[0]
    assert sent["max_tokens"] == 100
    schema = sent["response_format"]["json_schema"]["schema"]
    names = [o["properties"]["name"]["const"] for o in schema["anyOf"]]
    assert "answer" not in names and "similar_to" in names  # required: a call, not an answer
    assert "Tools:\n- search_images(" in sent["messages"][0]["content"]
    assert reply.response_metadata["constrained"] and reply.usage_metadata["input_tokens"] == 11


def test_the_writer_streams_and_images_go_as_image_url_parts(tmp_path):
    from PIL import Image

    Image.new("RGB", (40, 30), "red").save(tmp_path / "o.png")
    server = FakeServer(["#1 is red [R1.1]."])
    content = [{"type": "text", "text": "overlay:"},
               {"type": "image", "path": str(tmp_path / "o.png")}]  # fmt: skip
    try:
        llm = load_llm(f"openai:{server.url}#m", multimodal=True)
        chunks = list(llm.stream([SystemMessage("s"), HumanMessage(content)], max_tokens=300))
    finally:
        server.close()
    assert "".join(c.content for c in chunks).strip() == "#1 is red [R1.1]."
    parts = server.requests[0]["messages"][1]["content"]
    assert parts[1]["type"] == "image_url"
    assert parts[1]["image_url"]["url"].startswith("data:image/png;base64,")
    assert server.requests[0]["stream"] is True


def test_unreachable_and_silent_servers_are_llm_unavailable(silent_port):
    closed = free_port()
    messages = [HumanMessage("hi")]
    with pytest.raises(LLMUnavailable, match="cannot be reached"):
        load_llm(f"openai:http://127.0.0.1:{closed}/v1#m").invoke(messages, timeout=5)
    start = time.perf_counter()
    with pytest.raises(LLMUnavailable, match="did not answer in time"):
        load_llm(f"openai:http://127.0.0.1:{silent_port}/v1#m").invoke(messages, timeout=1)
    assert time.perf_counter() - start < 8  # one retry at most


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder):
    return build_collection(tmp_path_factory.mktemp("server"), tiny_encoder, n=6)


@pytest.mark.parametrize("kind", ["closed", "silent"])
def test_ask_says_one_line_and_exits_2(kind, db, silent_port, capsys, monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    port = free_port() if kind == "closed" else silent_port
    argv = ["ask", "red circles", "--db", str(db), "--collection", COLLECTION, "--model", TINY,
            "--llm", f"openai:http://127.0.0.1:{port}/v1#m", "--llm-timeout", "1"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("evident: error: the LLM server at") and "\n" not in err


def test_chat_says_so_and_the_session_lives(db, silent_port, tiny_encoder, tmp_path):
    llm = f"openai:http://127.0.0.1:{silent_port}/v1#m"
    assistant = Assistant(db=db, model=tiny_encoder, collection=COLLECTION, llm=llm,
                          history=":memory:", budgets=Budgets(call_seconds=1))  # fmt: skip
    console = Console(record=True, width=200)
    session = Session(assistant, console, console)
    with assistant:
        assert handle(session, "red circles") is True
        assert handle(session, "/k 3") is True
    text = console.export_text()
    assert "error: the LLM server at" in text and "did not answer in time" in text
    assert "searches return 3 results" in text and session.k == 3
