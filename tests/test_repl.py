"""`evident chat`: scripted through a pipe, typed into a real pseudo-terminal, and its
prompt driven in-process with prompt_toolkit's pipe input."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys

import pytest
from agent_helpers import COLLECTION, build_collection
from rich.console import Console

from evident.agent.repl import Session, handle, prompted_lines

PROMPT = "evident>"
LAUNCH = (
    "import sys; from evident.agent.cli import main; "
    "sys.exit(main(['chat', '--db', sys.argv[1], '--collection', sys.argv[2], "
    "'--model', 'random:evident-tiny-vit', '--history', sys.argv[3]]))"
)


@pytest.fixture(scope="module")
def db(tmp_path_factory, tiny_encoder):
    return build_collection(tmp_path_factory.mktemp("repl"), tiny_encoder)


def _env(tmp_path) -> dict:
    return os.environ | {
        "XDG_DATA_HOME": str(tmp_path), "COLUMNS": "200", "TERM": "xterm-256color",
        "PROMPT_TOOLKIT_NO_CPR": "1",  # pexpect does not answer cursor position requests
    }  # fmt: skip


def test_a_chat_scripted_through_a_pipe(db, tmp_path):
    lines = [
        "red circles", "/k 3", "/cam gradcam", "/compare 1 2", "/why 1", "/show 1",
        f"/save {tmp_path / 'a.json'}", f"/save {tmp_path / 'a.html'}", "/bogus", "/exit",
        "never asked",
    ]  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", LAUNCH, str(db), COLLECTION, str(tmp_path / "h.sqlite")],
        input="\n".join(lines) + "\n", capture_output=True, text=True, env=_env(tmp_path),
        timeout=120,
    )  # fmt: skip
    out, err = done.stdout, done.stderr
    assert done.returncode == 0, err
    assert "I ranked 5 images for 'red circles'" in out
    assert "searches return 3 results" in out and "heatmaps by gradcam" in out
    assert "#1 ranks above #2 by a margin of" in out and "gradcam heatmap" in out
    assert "#1: " in out and ".png" in out and "not understood: '/bogus'" in out
    assert out.count("grounding: ") == 3 and "never asked" not in err
    assert "· search_images(query='red circles', k=5)" in err and "evident> /why 1" in err
    assert json.loads((tmp_path / "a.json").read_text())["steps"]
    assert "evident-answer" in (tmp_path / "a.html").read_text()


def test_a_chat_in_a_pseudo_terminal(db, tmp_path):
    pexpect = pytest.importorskip("pexpect")
    child = pexpect.spawn(
        sys.executable, ["-c", LAUNCH, str(db), COLLECTION, str(tmp_path / "h.sqlite")],
        env=_env(tmp_path), encoding="utf-8", timeout=90, dimensions=(50, 200),
    )  # fmt: skip
    child.delaybeforesend = None
    try:
        child.expect(PROMPT)
        child.sendline("red circles")
        child.expect(r"search_images\(query='red circles', k=5\)")  # live step display
        child.expect("grounding: ")
        streamed = child.before
        assert streamed.count("I ranked 5 images") >= 2  # the draft streamed, then the answer
        child.expect(PROMPT)
        child.sendline("/show 2")
        child.expect(r"#2: \S+\.png")
        child.expect(PROMPT)
        child.sendline("/cam scorecam")  # slower heatmaps: time to press Ctrl-C
        child.expect(PROMPT)
        child.sendline("blue squares")
        child.expect(r"search_images\(query='blue squares'")
        child.sendintr()
        child.expect("cancelled")
        child.expect(PROMPT)
        child.sendline("/cam legrad")
        child.expect(PROMPT)
        child.sendline("why is #2 below #1?")  # the conversation survived the cancel
        child.expect(r"compare_results\(a=1, b=2\)")
        child.expect("grounding: ")
        child.expect(PROMPT)
        child.sendline("/exit")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    assert child.exitstatus == 0
    assert "red circles" in (tmp_path / "chat_history.txt").read_text()


def test_the_prompt_reads_lines_with_history_until_ctrl_d(tmp_path):
    from prompt_toolkit.input import create_pipe_input
    from prompt_toolkit.output import DummyOutput

    with create_pipe_input() as inp:
        inp.send_text("red circles\r/k 3\r")
        lines = prompted_lines(tmp_path / "hist.txt", input=inp, output=DummyOutput())
        assert [next(lines), next(lines)] == ["red circles", "/k 3"]
        inp.send_text("\x03")  # Ctrl-C at the prompt: a fresh prompt, not an exit
        inp.send_text("/exit\r")
        assert next(lines) == "/exit"
        inp.close()
        assert list(lines) == []  # Ctrl-D / end of input
    assert "red circles" in (tmp_path / "hist.txt").read_text()


def test_commands_in_process():
    buf = io.StringIO()
    console = Console(file=buf, width=120)
    session = Session(assistant=None, console=console, err=console)
    for line in [
        "/help",
        "/k 0",
        "/k 7",
        "/cam nope",
        "/cam hirescam",
        "/show 1",
        "/save x.json",
        "",
    ]:
        assert handle(session, line)
    assert not handle(session, "/quit")
    text = buf.getvalue()
    assert "/compare A B" in text and "not understood: '/k 0'" in text
    assert (session.k, session.cam) == (7, "hirescam")
    assert "no results to show yet; ask something first" in text and "nothing to save yet" in text
