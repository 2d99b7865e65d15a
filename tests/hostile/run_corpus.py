"""Run the hostile corpus in one process: `python -m tests.hostile.run_corpus OUT.jsonl
[--chroma URL] [--only NAME,...] [--base DIR]`, from the repository root.

Each case calls `evident.agent.cli.main` in this process with its own stdin, stdout,
stderr and environment, under an alarm (a hang is a result, not a stuck suite), and
writes one JSON line: the verdict, the exit status, the seconds and the case's peak
memory (the process's resident high-water mark, reset before each case through
/proc/self/clear_refs, and the largest anonymous resident size seen, sampled every 5 ms).
Model loading is cached across cases (the same tiny encoder every time): it is the
inputs that are hostile, not the models. The process ends with `os._exit`, since a
case that hangs leaves a thread behind by design.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import re
import signal
import sys
import tempfile
import threading
import time
import traceback
import uuid
from pathlib import Path

from tests.hostile import corpus, servers
from tests.hostile.corpus import CASES, Kit, Outcome, Run, png

STARTED = time.monotonic()
ERROR_LINE = re.compile(r"^evident( [a-z]+)?: error: ")
ANON_LIMIT_MB = 1024  # the 1 GB, of memory the process itself allocated
GROWTH_LIMIT_MB = 256  # what any one command's inputs may cost on top of the loaded program


class Hang(BaseException):
    """Raised by the alarm in the main thread (again every 5 s until the case lets go)."""


def _alarm(signum, frame):
    signal.alarm(5)
    raise Hang()


def _status() -> dict[str, int]:
    with open("/proc/self/status") as f:
        text = f.read()
    keys = ("VmHWM", "VmRSS", "RssAnon")
    return {k: int(re.search(rf"{k}:\s+(\d+)", text)[1]) // 1024 for k in keys}


class Memory:
    """A command's peak resident memory (MiB): the high-water mark (`hwm`), the largest
    anonymous resident size seen (`anon`), and how far the high-water mark rose above the
    resident size when the command started (`growth`: what the inputs cost)."""

    def __enter__(self) -> Memory:

        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        start = _status()
        self.start, self.anon, self._stop = start["VmRSS"], start["RssAnon"], threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.005):
            self.anon = max(self.anon, _status()["RssAnon"])

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        now = _status()
        self.hwm, self.anon = now["VmHWM"], max(self.anon, now["RssAnon"])
        self.growth = self.hwm - self.start


def cli(run: Run) -> Outcome:
    from evident.agent.cli import main

    saved_env = {k: os.environ.get(k) for k in run.env}
    os.environ.update(run.env)
    out, err = io.StringIO(), io.StringIO()
    stdin, sys.stdin = sys.stdin, io.StringIO(run.stdin or "")
    logging.root.handlers.clear()  # main() configures logging to this case's stderr
    code, crash = None, None
    signal.signal(signal.SIGALRM, _alarm)
    signal.alarm(int(run.within) + 30)
    t0 = time.monotonic()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            code = main(run.argv)
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except Hang:
        crash = f"hang: no end after {time.monotonic() - t0:.0f} s"
    except BaseException:
        crash = traceback.format_exc()
    finally:
        signal.alarm(0)
        sys.stdin = stdin
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return Outcome(code, out.getvalue(), err.getvalue(), time.monotonic() - t0, crash)


def verdict(run: Run, o: Outcome) -> str | None:
    """What went wrong, or None."""
    if o.crash:
        return o.crash.strip().splitlines()[-1] if not o.crash.startswith("hang") else o.crash
    if "Traceback" in o.err or "Traceback" in o.out:
        return "a traceback was printed"
    if o.seconds > run.within:
        return f"took {o.seconds:.1f} s (limit {run.within:g} s)"
    if o.code != run.code:
        return f"exit status {o.code}, want {run.code}: {o.err.strip()[-300:]}"
    if run.code == 2:
        lines = [line for line in o.err.splitlines() if ERROR_LINE.match(line)]
        if len(lines) != 1:
            return f"{len(lines)} error lines, want one: {o.err.strip()[-300:]}"
        if run.says not in lines[0]:
            return f"the error does not say {run.says!r}: {lines[0]}"
    elif run.says and run.says not in o.out + o.err:
        return f"the output does not say {run.says!r}: {o.err.strip()[-300:]}"
    return run.check(o) if run.check else None


def _memory(m: Memory) -> str | None:
    if m.anon > ANON_LIMIT_MB:
        return f"peak anonymous memory {m.anon} MiB > {ANON_LIMIT_MB} MiB"
    if m.growth > GROWTH_LIMIT_MB:
        return f"the command raised resident memory by {m.growth} MiB > {GROWTH_LIMIT_MB} MiB"
    return None


def cache_models() -> None:
    """One tiny encoder and one caption embedder for the whole corpus."""
    import evident.agent.assistant
    import evident.agent.commands
    import evident.eval.run_eval
    import evident.tools.pipeline
    from evident.tools.encoders import load_encoder
    from evident.tools.text_embed import load_text_embedder

    loaded: dict = {}

    def cached(fn):
        def load(*args, **kw):
            key = (fn.__name__, args, tuple(sorted(kw.items())))
            if key not in loaded:
                loaded[key] = fn(*args, **kw)
            return loaded[key]

        return load

    loaders = {"load_encoder": load_encoder, "load_text_embedder": load_text_embedder}
    for module in (evident.agent.commands, evident.agent.assistant, evident.tools.pipeline,
                   evident.eval.run_eval):  # fmt: skip
        for name, fn in loaders.items():
            if hasattr(module, name):
                setattr(module, name, cached(fn))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out")
    parser.add_argument("--chroma", help="URL of a real `chroma run` server")
    parser.add_argument("--only", help="comma-separated case names")
    parser.add_argument("--base", help="an empty folder for the cases (default: a new temp one)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    base = args.base or tempfile.mkdtemp(prefix="evident-hostile-")
    os.environ["XDG_DATA_HOME"] = os.environ["XDG_CACHE_HOME"] = base
    cache_models()
    from chromadb.api.shared_system_client import SharedSystemClient

    frozen, closing = servers.FrozenServer(), servers.ClosingServer()
    garbage = servers.GarbageServer()
    urls = {"frozen": frozen.url, "closing": closing.url, "garbage": garbage.url,
            "dead": servers.dead_url(), "chroma": args.chroma or servers.dead_url()}  # fmt: skip
    images = Path(base) / "shared" / "imgs"
    for i in range(6):
        png(images / f"{i}.png", (40 * i, 200 - 30 * i, 90))
    kit = Kit(Path(base), Path(base) / "shared" / "db", images, urls, token=uuid.uuid4().hex[:8])
    kit.cli = lambda argv: cli(Run(argv))
    kit.chroma_port = int(args.chroma.rsplit(":", 1)[1]) if args.chroma else None
    kit.proxy = servers.CuttingProxy
    print(f"started in {time.monotonic() - STARTED:.1f} s", file=sys.stderr)
    made = kit.cli(corpus.index(images, kit.db))
    print(f"shared collection at {time.monotonic() - STARTED:.1f} s", file=sys.stderr)
    if made.code != 0:
        raise SystemExit(f"could not build the shared collection: {made.err[-2000:]}")
    names = args.only.split(",") if args.only else list(CASES)
    with open(args.out, "w") as out:
        for name in names:
            case = CASES[name]
            t0 = time.monotonic()
            try:
                run = case.build(kit)
                built = time.monotonic() - t0
                with Memory() as memory:
                    outcome = cli(run)
                problem = verdict(run, outcome) or _memory(memory)
            except Exception:
                outcome, memory, built = Outcome(None, "", "", 0.0), None, 0.0
                problem = traceback.format_exc()
            record = {
                "name": name, "cls": case.cls, "ok": problem is None, "problem": problem,
                "code": outcome.code, "seconds": round(outcome.seconds, 2),
                "build_s": round(built, 2), "total_s": round(time.monotonic() - t0, 2),
                "peak_rss_mb": memory and memory.hwm, "peak_anon_mb": memory and memory.anon,
                "growth_mb": memory and memory.growth, "stderr": outcome.err[-600:],
            }  # fmt: skip
            out.write(json.dumps(record) + "\n")
            out.flush()
            SharedSystemClient.clear_system_cache()
    print(f"done in {time.monotonic() - STARTED:.1f} s", file=sys.stderr)
    os._exit(0)


if __name__ == "__main__":
    main()
