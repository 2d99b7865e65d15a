"""`evident chat`: a conversation with the assistant in the terminal.

On a terminal: prompt_toolkit with a persistent history, the steps and the draft shown
live while the answer is worked out, then the verified answer. With stdin not a terminal
(a pipe, a script) lines are read plainly and the steps are printed as lines, so a chat
can be scripted. Ctrl-C cancels the running answer and keeps the conversation; Ctrl-C at
the prompt clears the line; Ctrl-D or `/exit` leaves.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from prompt_toolkit import PromptSession
from prompt_toolkit.history import FileHistory
from rich.console import Console, Group
from rich.live import Live
from rich.text import Text

from evident.agent.answer_html import Answer, render_html
from evident.agent.assistant import Assistant
from evident.agent.config import terminal_images
from evident.agent.render import render_answer
from evident.tools.agent_tools import tool_summary
from evident.tools.errors import EvidentError
from evident.tools.evidence.methods import HEATMAP_METHODS
from evident.tools.ingest.files import read_bounded
from evident.tools.limits import MAX_IMAGE_BYTES, MAX_K

log = logging.getLogger(__name__)

HELP = """\
Ask for images in words, then follow up: "why is #2 below #1?", "only the ones with a
legend", "explain #3 with another method", "show me images like #1".
  /help            this text
  /k N             how many results a search returns (now {k})
  /cam METHOD      heatmap method: {methods} (now {cam})
  /show N          result N with its evidence overlay
  /why N           the evidence for result N
  /compare A B     why A and B rank as they do: margin and evidence on both sides
  /save PATH       save the last answer (.html for the notebook view, else JSON)
  /exit            leave (Ctrl-D too); Ctrl-C cancels a running answer"""


@dataclass
class Session:
    assistant: Assistant
    console: Console
    err: Console  # steps and echoed questions when not on a terminal
    k: int = 5
    cam: str | None = None
    last: Answer | None = None


def run_chat(assistant: Assistant) -> int:
    """`evident chat`: the REPL around `assistant` until /exit or Ctrl-D."""
    console = Console(highlight=False)
    err = Console(stderr=True, highlight=False)
    session = Session(assistant, console, err, assistant.k, assistant.method)
    interactive = sys.stdin.isatty()
    if interactive:
        hello = ("evident chat on ", (assistant.collection, "bold"), " — /help for commands")
        console.print(Text.assemble(*hello))
    with assistant:
        lines = prompted_lines(_prompt_history(assistant)) if interactive else _plain_lines()
        for line in lines:
            if not handle(session, line):
                break
    return 0


def _prompt_history(assistant: Assistant) -> Path:
    """Typed lines are kept beside the conversations they belong to."""
    if assistant.history == ":memory:":
        return assistant.settings.prompt_history
    return Path(assistant.history).expanduser().with_name("chat_history.txt")


def handle(session: Session, line: str) -> bool:
    """Run one line (a question or a slash command); False means: leave."""
    line = line.strip()
    if not line:
        return True
    if not session.console.is_terminal:
        session.err.print(f"evident> {line}", markup=False)
    if line.startswith("/"):
        return command(session, line)
    ask(session, line)
    return True


def ask(session: Session, question: str) -> None:
    console = session.console
    events = session.assistant.stream(question, k=session.k, method=session.cam)
    try:
        answer = _live(console, events) if console.is_terminal else _plain(session.err, events)
    except KeyboardInterrupt:
        events.close()  # leaves the database (and its lock) at once; the turn is undone
        console.print("[yellow]cancelled[/] — the conversation is as it was before it.")
        return
    except EvidentError as exc:
        console.print(Text.assemble(("error: ", "red"), " ".join(str(exc).split())))
        return
    except Exception as exc:  # a bug, or a part failing in a way not foreseen: keep the session
        log.info("the answer failed", exc_info=True)
        console.print(
            Text.assemble(
                ("error: ", "red"),
                f"unexpected {type(exc).__name__}: {' '.join(str(exc).split())[:300]} (a bug: "
                "please report it; -v shows the traceback). The conversation is kept.",
            )
        )
        return
    session.last = answer
    render_answer(console, answer)


def command(session: Session, line: str) -> bool:

    name, *rest = line.split()
    c = session.console
    match name, rest:
        case (("/exit" | "/quit"), _):
            return False
        case "/help", _:
            c.print(
                HELP.format(
                    k=session.k, cam=session.cam or "default", methods=", ".join(HEATMAP_METHODS)
                ),
                markup=False,
            )
        case "/k", [n] if n.isdigit() and 1 <= int(n) <= MAX_K:
            session.k = int(n)
            c.print(f"searches return {n} results")
        case "/cam", [m] if m in HEATMAP_METHODS:
            session.cam = m
            c.print(f"heatmaps by {m}")
        case "/why", [n] if n.isdigit():
            ask(session, f"why #{n}?")
        case "/compare", [a, b] if a.isdigit() and b.isdigit():
            ask(session, f"compare #{a} and #{b}")
        case "/show", [n] if n.isdigit():
            show(session, int(n))
        case "/save", [path]:
            save(session, path)
        case _:
            c.print(f"not understood: {line!r}; /help lists the commands", markup=False)
    return True


def show(session: Session, n: int) -> None:
    c = session.console
    if session.last is None or not session.last.results:
        c.print("no results to show yet; ask something first")
        return
    if not 1 <= n <= len(session.last.results):
        c.print(f"there is no result #{n}; the last answer has {len(session.last.results)}")
        return
    r = session.last.results[n - 1]
    path = (r.get("heatmap") or {}).get("overlay") or r["uri"]
    if not _inline_image(c, path):
        c.print(f"#{n}: {path}", markup=False)


def save(session: Session, path: str) -> None:
    """Write the last answer shown (.html: the notebook view; else JSON), whole or not at
    all: a missing folder or a full disk is a message, and the REPL goes on."""
    c = session.console
    if session.last is None:
        c.print("nothing to save yet")
        return
    out = Path(path).expanduser()
    if out.suffix.lower() in (".html", ".htm"):
        text = render_html(session.last)
    else:
        text = json.dumps(session.last.to_dict(), indent=2, ensure_ascii=False)
    if not out.parent.is_dir():
        c.print(f"not saved: there is no folder {str(out.parent)!r}", markup=False)
        return
    tmp = out.with_name(f".{out.name}.part")
    try:
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(out)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        c.print(f"not saved: {out}: {exc.strerror or exc}", markup=False)
        return
    c.print(f"saved {out}", markup=False)


# --- input and live output ----------------------------------------------------------------


def prompted_lines(history: str | Path, **prompt_options) -> Iterator[str]:
    """Lines typed at a prompt_toolkit prompt with a persistent history; ends on Ctrl-D.
    `prompt_options` go to `PromptSession` (tests pass `input=` and `output=`)."""

    path = Path(history)
    path.parent.mkdir(parents=True, exist_ok=True)
    prompt = PromptSession(history=FileHistory(str(path)), **prompt_options)
    while True:
        try:
            yield prompt.prompt("evident> ")
        except KeyboardInterrupt:
            continue
        except EOFError:
            return


def _plain_lines() -> Iterator[str]:
    yield from sys.stdin


def _live(console: Console, events) -> Answer:
    draft, status = Text(), Text(style="dim")
    with Live(Group(status, draft), console=console, transient=True, refresh_per_second=12) as live:
        for kind, value in events:
            if kind == "step":
                live.console.print(_step_line(value), style="dim", markup=False)
            elif kind == "status":
                status.plain = f"… {value}"
            elif kind == "token":
                draft.append(value)
            elif kind == "answer":
                return value
            live.refresh()  # show each token as it comes
    raise RuntimeError("the answer stream ended without an answer")


def _plain(err: Console, events) -> Answer:
    for kind, value in events:
        if kind == "step":
            err.print(_step_line(value), markup=False)
        elif kind == "answer":
            return value
    raise RuntimeError("the answer stream ended without an answer")


def _step_line(step: dict) -> str:
    """One line of the live step display.

    >>> _step_line({"node": "tools", "tool": "search_images", "arguments": {"k": 5}, "ms": 12.0})
    '  · search_images(k=5) 12 ms'
    """

    what = tool_summary(step["tool"], step["arguments"] or {}) if step.get("tool") else step["node"]
    extra = "".join(f" {k}={step[k]}" for k in ("intent", "problems", "stopped") if step.get(k))
    failed = " (failed)" if step.get("error") else ""
    calls = "".join(_llm_call(c) for c in step.get("llm") or [])
    why = f" — policy took over: {step['takeover']}" if step.get("takeover") else ""
    if step.get("writer") == "template":
        why += f" — template writer: {step.get('why')}"
    return f"  · {what}{extra}{failed} {step.get('ms') or 0:.0f} ms{calls}{why}"


def _llm_call(call: dict) -> str:
    """One LLM call in a step line.

    >>> _llm_call({"prompt_tokens": 540, "tokens": 23, "seconds": 3.2, "constrained": True})
    ' [llm 540→23 tokens, 3.2 s, constrained]'
    """
    how = "constrained" if call.get("constrained") else "free"
    return (
        f" [llm {call.get('prompt_tokens')}→{call.get('tokens')} tokens, "
        f"{call.get('seconds') or 0:.1f} s, {how}]"
    )


def _inline_image(console: Console, path: str) -> bool:
    """Draw `path` inline on terminals that can (iTerm2, WezTerm, kitty); False otherwise."""
    protocol = terminal_images()
    if not console.is_terminal or protocol is None:
        return False
    try:
        data = base64.b64encode(read_bounded(path, MAX_IMAGE_BYTES)).decode("ascii")
    except EvidentError:  # gone, a FIFO, too large: the path is shown instead
        return False
    if protocol == "iterm":
        console.file.write(f"\033]1337;File=inline=1;width=32;preserveAspectRatio=1:{data}\a\n")
    elif protocol == "kitty":
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        for i, chunk in enumerate(chunks):
            head = "a=T,f=100," if i == 0 else ""
            console.file.write(f"\033_G{head}m={int(i < len(chunks) - 1)};{chunk}\033\\")
        console.file.write("\n")
    else:
        return False
    console.file.flush()
    return True
