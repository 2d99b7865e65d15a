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
import os
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from evident.agent.answer_html import Answer, render_html
from evident.agent.assistant import Assistant, default_history
from evident.tools.errors import EvidentError

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


def run_chat(args) -> int:
    """`evident chat [--db --collection --model --llm SPEC --k N --cam METHOD --thread ID]`."""
    console = Console(highlight=False)
    assistant = Assistant(
        db=args.db, model=args.model, llm=getattr(args, "llm", None) or "none",
        collection=args.collection, thread=getattr(args, "thread", None),
        history=getattr(args, "history", None), k=getattr(args, "k", 5),
        method=getattr(args, "cam", None), lock_timeout=getattr(args, "lock_timeout", 10.0),
    )  # fmt: skip
    err = Console(stderr=True, highlight=False)
    session = Session(assistant, console, err, assistant.k, assistant.method)
    interactive = sys.stdin.isatty()
    if interactive:
        hello = ("evident chat on ", (assistant.collection, "bold"), " — /help for commands")
        console.print(Text.assemble(*hello))
    with assistant:
        for line in prompted_lines() if interactive else _plain_lines():
            if not handle(session, line):
                break
    return 0


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
        events.close()  # leaves the database (and its lock) at once
        console.print("[yellow]cancelled[/] — the conversation is kept.")
        return
    except EvidentError as exc:
        console.print(Text.assemble(("error: ", "red"), str(exc)))
        return
    session.last = answer
    render_answer(console, answer)


def command(session: Session, line: str) -> bool:
    from evident.graphs.policy import METHODS

    name, *rest = line.split()
    c = session.console
    match name, rest:
        case (("/exit" | "/quit"), _):
            return False
        case "/help", _:
            c.print(
                HELP.format(k=session.k, cam=session.cam or "default", methods=", ".join(METHODS)),
                markup=False,
            )
        case "/k", [n] if n.isdigit() and 1 <= int(n) <= 50:
            session.k = int(n)
            c.print(f"searches return {n} results")
        case "/cam", [m] if m in METHODS:
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
    if session.last is None or not 1 <= n <= len(session.last.results):
        c.print(f"no result #{n} to show; ask something first")
        return
    r = session.last.results[n - 1]
    path = (r.get("heatmap") or {}).get("overlay") or r["uri"]
    if not _inline_image(c, path):
        c.print(f"#{n}: {path}", markup=False)


def save(session: Session, path: str) -> None:
    if session.last is None:
        session.console.print("nothing to save yet")
        return
    out = Path(path).expanduser()
    if out.suffix.lower() in (".html", ".htm"):
        out.write_text(render_html(session.last), encoding="utf-8")
    else:
        out.write_text(
            json.dumps(session.last.to_dict(), indent=2, ensure_ascii=False), encoding="utf-8"
        )
    session.console.print(f"saved {out}", markup=False)


def render_answer(console: Console, answer: Answer) -> None:
    """The results, the answer with citations highlighted, grounding and any note."""
    if answer.results:
        table = Table(box=None, pad_edge=False)
        for col in ("#", "score", "image", "evidence"):
            table.add_column(col)
        for r in answer.results:
            regions = " ".join(
                g["id"] + ("" if (g.get("counterfactual") or {}).get("supported") else "?")
                for g in r.get("regions", [])
            )
            name = Text(Path(r["uri"]).name)  # a file name is data, never markup
            table.add_row(str(r["rank"]), f"{r['score']:.3f}", name, regions)
        console.print(table)
    text = Text(answer.answer)
    text.highlight_regex(r"\[R\d+\.\d+(?:,\s*R\d+\.\d+)*\]", "bold cyan")
    console.print(text)
    g = answer.grounding
    console.print(
        f"[dim]grounding: {g.get('sentences', 0)} sentences, {g.get('cited', 0)} cited, "
        f"{g.get('supported', 0)} supported, {len(g.get('removed', []))} removed[/]"
    )


# --- input and live output ----------------------------------------------------------------


def prompted_lines(history: str | Path | None = None, **prompt_options) -> Iterator[str]:
    """Lines typed at a prompt_toolkit prompt with a persistent history; ends on Ctrl-D.
    `prompt_options` go to `PromptSession` (tests pass `input=` and `output=`)."""
    from prompt_toolkit import PromptSession
    from prompt_toolkit.history import FileHistory

    path = Path(history or Path(default_history()).with_name("chat_history.txt"))
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
    from evident.tools.agent_tools import tool_summary

    what = tool_summary(step["tool"], step["arguments"] or {}) if step.get("tool") else step["node"]
    extra = "".join(f" {k}={step[k]}" for k in ("intent", "problems", "stopped") if step.get(k))
    failed = " (failed)" if step.get("error") else ""
    return f"  · {what}{extra}{failed} {step.get('ms') or 0:.0f} ms"


def _inline_image(console: Console, path: str) -> bool:
    """Draw `path` inline on terminals that can (iTerm2, WezTerm, kitty); False otherwise."""
    if not console.is_terminal or not Path(path).is_file():
        return False
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    if os.environ.get("TERM_PROGRAM") in ("iTerm.app", "WezTerm"):
        console.file.write(f"\033]1337;File=inline=1;width=32;preserveAspectRatio=1:{data}\a\n")
    elif os.environ.get("KITTY_WINDOW_ID") or os.environ.get("TERM") == "xterm-kitty":
        chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
        for i, chunk in enumerate(chunks):
            head = "a=T,f=100," if i == 0 else ""
            console.file.write(f"\033_G{head}m={int(i < len(chunks) - 1)};{chunk}\033\\")
        console.file.write("\n")
    else:
        return False
    console.file.flush()
    return True
