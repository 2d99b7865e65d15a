"""The `evident` command: a thin client of the library's public functions.

Parsing is light (no torch, no Chroma: `evident --help` answers in a fraction of a second)
and strict: a bad `--k`, `--cam`, `--llm`, `--rerank`, `--where` or a missing `--image`
file is refused before any model loads. User errors (`EvidentError`) become one line on
stderr and exit status 2; a traceback means a bug. `--json` output goes to stdout alone,
with no progress bars.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence
from importlib import import_module
from pathlib import Path

from evident import __version__
from evident.agent.config import Settings
from evident.agent.llm import parse_spec
from evident.tools.errors import EvidentError
from evident.tools.evidence.methods import HEATMAP_METHODS
from evident.tools.ingest.files import check_file
from evident.tools.limits import MAX_K

COMMANDS = {  # command -> the module of `evident.agent` that holds `cmd_<command>`
    "index": "commands", "search": "searching", "collections": "commands",
    "ask": "conversation", "chat": "conversation",
    "bench": "lab", "figures": "lab", "eval": "lab", "train": "lab", "demo": "lab",
}  # fmt: skip


# --- argument types: each refuses a bad value with argparse's own one-line error -----------


def k_value(text: str) -> int:
    try:
        k = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if not 1 <= k <= MAX_K:
        raise argparse.ArgumentTypeError(f"must be from 1 to {MAX_K}, not {k}")
    return k


def positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {n}")
    return n


def llm_spec(text: str) -> str:
    try:
        parse_spec(text)
    except EvidentError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    return text


def rerank_spec(text: str) -> str:
    if text in ("none", "multiscale"):
        return text
    if text.startswith("learned:") and text.partition(":")[2]:
        path = Path(text.partition(":")[2]).expanduser()
        if not path.is_file():
            raise argparse.ArgumentTypeError(f"no fusion weights file at {str(path)!r}")
        return text
    raise argparse.ArgumentTypeError(f"{text!r}: use none, multiscale or learned:FILE")


def where_filter(text: str) -> dict:
    try:
        where = json.loads(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON ({exc.msg}): {text!r}") from None
    if not isinstance(where, dict) or not where:
        example = '{"kind": "bar"}'
        raise argparse.ArgumentTypeError(f"must be a JSON object such as {example}: {text!r}")
    return where


def image_file(max_bytes: int):
    """The type of `--image`: a regular file (never a FIFO or a device, which could block
    or never end) of at most `max_bytes`, checked without opening it."""

    def check(text: str) -> str:
        path = Path(text).expanduser()
        if not path.exists():
            raise argparse.ArgumentTypeError(f"no such file: {text!r}")
        try:
            check_file(path, max_bytes)
        except EvidentError as exc:
            raise argparse.ArgumentTypeError(f"{text!r}: {exc}") from None
        return str(path)

    return check


# --- the parser -----------------------------------------------------------------------------


class _Parser(argparse.ArgumentParser):
    """Argument errors are one line, like every other error, and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Each option's default after its help (unless the help says it, or there is none);
    descriptions keep their line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        quiet = action.default in (None, False, argparse.SUPPRESS) or "default" in text
        if quiet or not action.option_strings:
            return text
        return f"{text} (default: %(default)s)"


def _common(p: argparse.ArgumentParser, s: Settings, *, model_help: str) -> None:
    p.add_argument("--db", default=s.db, help="a folder, or http://HOST:PORT for `chroma run`")
    p.add_argument("--collection", default=s.collection, help="collection name")
    p.add_argument("--model", default=s.model, metavar="SPEC", help=model_help)
    _output(p)
    p.add_argument("--lock-timeout", type=float, default=s.lock_timeout, metavar="S",
                   help="seconds to wait for another process holding the database")  # fmt: skip


def _output(p: argparse.ArgumentParser) -> None:
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")


def _cam(p: argparse.ArgumentParser, *, none: bool = False) -> None:
    choices = (*HEATMAP_METHODS, "none") if none else HEATMAP_METHODS
    p.add_argument("--cam", choices=choices, default=None,
                   help="heatmap method (default: the model's own)")  # fmt: skip


def _agent(p: argparse.ArgumentParser, s: Settings) -> None:
    p.add_argument("--llm", type=llm_spec, default=s.llm, metavar="SPEC",
                   help="none | gguf:FILE | transformers:MODEL | openai:URL#MODEL")  # fmt: skip
    p.add_argument("--llm-timeout", type=float, default=120.0, metavar="S",
                   help="seconds one LLM call may take (within the answer's 300 s)")  # fmt: skip
    p.add_argument("--k", type=k_value, default=s.k, help="results per search")
    _cam(p)
    p.add_argument("--rerank", type=rerank_spec, default="none", metavar="NAME",
                   help="reranker: none, multiscale or learned:FILE")  # fmt: skip
    p.add_argument("--thread", metavar="ID", help="continue a saved conversation")
    p.add_argument("--history", default=None, metavar="PATH",
                   help=f"conversation store, SQLite (default: {s.history})")  # fmt: skip
    p.add_argument("--out", metavar="DIR", default=None,
                   help="overlay PNGs (default: overlays/ in the database's folder)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    s = Settings()
    searched = "encoder spec (default: the collection's own)"
    parser = _Parser(
        prog="evident", formatter_class=_Help,
        description="Explainable search over your image collections: ranked images, "
        "evidence heatmaps and answers that cite checked regions.",
    )  # fmt: skip
    parser.add_argument("--version", action="version", version=f"evident {__version__}")
    sub = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )

    def command(name: str, helptext: str) -> argparse.ArgumentParser:
        return sub.add_parser(name, help=helptext, description=helptext, formatter_class=_Help)

    p = command("index", "add images (files or folders) to a collection")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--prune", action="store_true", help="drop entries whose files are gone")
    p.add_argument("--no-documents", action="store_true",
                   help="ignore images inside HTML pages and PDFs")  # fmt: skip
    p.add_argument("--ocr", choices=("auto", "on", "off"), default="auto",
                   help="read the words in images: auto reads figures, charts, documents and "
                   "screenshots, not photos")  # fmt: skip
    _common(p, s, model_help="encoder spec (default: the collection's own, else the bundled "
            "figure model)")  # fmt: skip

    p = command("search", "rank a collection's images for words and/or an image")
    p.add_argument("query", nargs="?", default=None, metavar="QUERY")
    p.add_argument(
        "--image", type=image_file(s.max_image_bytes), metavar="PATH", help="query image"
    )
    p.add_argument("--k", type=k_value, default=s.k, help="results")
    p.add_argument("--where", type=where_filter, metavar="JSON",
                   help='metadata filter, e.g. \'{"kind": "bar"}\'')  # fmt: skip
    _cam(p, none=True)
    p.add_argument("--rerank", type=rerank_spec, default="none", metavar="NAME",
                   help="reranker: none, multiscale or learned:FILE")  # fmt: skip
    overlays = "heatmap and overlay PNGs (default: overlays/ in the db folder)"
    p.add_argument("--out", metavar="DIR", help=overlays)
    _common(p, s, model_help=searched)

    p = command("ask", "one question, answered with cited evidence")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument(
        "--image", type=image_file(s.max_image_bytes), metavar="PATH", help="query image"
    )
    _agent(p, s)
    _common(p, s, model_help=searched)

    p = command("chat", "a conversation about a collection (REPL)")
    _agent(p, s)
    _common(p, s, model_help=searched)

    p = command("collections", "list the collections in a database")
    _common(p, s, model_help="unused")

    p = command("bench", "measure speed (figures and ratios from one run)")
    p.add_argument("--vectors", type=positive, default=100_000, help="stored vectors (latency)")
    p.add_argument("--images", type=positive, default=64, help="images, for indexing throughput")
    p.add_argument("--model", default="random:ViT-B-32", metavar="SPEC", help="encoder to time")
    p.add_argument("--figures", type=positive, default=200, help="rendered figures (product)")
    p.add_argument(
        "--no-product", action="store_true",
        help="skip the product figures (bundled model, OCR, ask, CLI cold start)",
    )  # fmt: skip
    _output(p)

    p = command("figures", "generate the scientific-figure benchmark")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--n", type=positive, default=1200, help="number of figures")
    p.add_argument("--seed", type=int, default=0, help="generator seed")
    p.add_argument("--workers", type=positive, default=None, help="processes (default: CPUs)")
    _output(p)

    p = command("eval", "scripted evaluation of a query suite (report.json/md)")
    p.add_argument("suite", metavar="SUITE.jsonl", help="queries with relevant images")
    p.add_argument("--out", default="eval-out", help="folder for the report")
    p.add_argument("--methods", help="heatmap methods and baselines, comma-separated (all)")
    p.add_argument("--images", metavar="DIR", help="index this folder into the collection first")
    p.add_argument("--mode", choices=("search", "ask"), default="search", help="what is scored")
    p.add_argument("--llm", type=llm_spec, default=s.llm, metavar="SPEC", help="for --mode ask")
    p.add_argument("--k", type=k_value, default=10, help="results per query (at least 10)")
    p.add_argument("--explain-top", type=int, default=5, help="results explained per query")
    p.add_argument("--rerank", type=rerank_spec, default="none", metavar="NAME", help="reranker")
    p.add_argument("--limit", type=positive, help="evaluate a seeded sample of N queries")
    p.add_argument("--per-query", type=int, default=5, help="images localized per query (0: all)")
    p.add_argument("--seed", type=int, default=0, help="sampling and baseline seed")
    p.add_argument("--no-resume", action="store_true", help="start over in --out")
    _common(p, s, model_help=searched)

    p = command("train", "train or fine-tune an encoder on image-caption pairs")
    p.add_argument("pairs", metavar="PAIRS.jsonl")
    p.add_argument("--model", metavar="ARCH", help="architecture to train from scratch")
    p.add_argument("--init", metavar="SPEC", help="encoder to fine-tune instead (local-dir:…)")
    p.add_argument("--out", required=True, metavar="DIR", help="where the model goes")
    p.add_argument("--steps", type=positive, default=2000, help="optimizer steps")
    p.add_argument("--batch-size", type=positive, default=128, help="pairs per step")
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--seed", type=int, default=0, help="sampling seed")
    p.add_argument("--device", default=s.device, help="cuda, cuda:1, cpu (default: cuda if any)")
    p.add_argument("--fp16", action="store_true", help="save float16 safetensors")
    p.add_argument("--checkpoint-every", type=positive, default=200, metavar="N", help="steps")
    _output(p)

    p = command("demo", "the offline demo: build, index and ask about a figure collection")
    p.add_argument("--out", default="demo-out", help="folder for everything the demo makes")
    p.add_argument("-v", "--verbose", action="store_true", help="log what happens")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # The program, not the library, sets the process up; before torch loads, since
    # spinning OpenMP waits slow every op when decode threads run beside the model.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    try:
        args = build_parser().parse_args(argv)
    except EvidentError as exc:  # a setting in the environment that cannot be used
        return fail(exc)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="evident: %(levelname)s: %(message)s",
    )
    # The handlers import torch and Chroma: loaded only once the arguments are good.
    handlers = import_module(f"evident.agent.{COMMANDS[args.command]}")
    try:
        return getattr(handlers, f"cmd_{args.command}")(args)
    except EvidentError as exc:
        return fail(exc)
    except OSError as exc:  # a file or folder the system refused (full disk, a file as --out)
        where = f"{exc.filename!r}: " if exc.filename else ""
        return fail(f"{where}{exc.strerror or exc}")
    except KeyboardInterrupt:
        print("evident: interrupted", file=sys.stderr)
        return 130


def fail(message: object) -> int:
    """Print `message` as the one error line (whatever newlines it held) and return 2."""
    print(f"evident: error: {' '.join(str(message).split())}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
