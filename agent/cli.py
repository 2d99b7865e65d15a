"""The `evident` command: a thin client of the library's public functions.

User errors (`EvidentError`) become one line on stderr and exit status 2; a
traceback means a bug. `--json` output goes to stdout alone, with no progress bars.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from collections.abc import Sequence

from evident.agent.config import Settings

log = logging.getLogger("evident")


def _common(p: argparse.ArgumentParser, defaults: Settings) -> None:
    p.add_argument("--db", default=defaults.db, help="folder, or http://HOST:PORT (chroma run)")
    p.add_argument("--collection", default=defaults.collection)
    p.add_argument("--model", default=defaults.model, help="encoder spec (see README)")
    p.add_argument("--json", action="store_true", help="machine-readable output on stdout")
    p.add_argument("--lock-timeout", type=float, default=defaults.lock_timeout, metavar="S")
    p.add_argument("-v", "--verbose", action="store_true")


def _llm_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--llm", default=os.environ.get("EVIDENT_LLM", "none"), metavar="SPEC",
                   help="none | transformers:MODEL | openai:URL#MODEL")  # fmt: skip
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--cam", metavar="METHOD", help="heatmap method (default: the model's)")
    p.add_argument("--thread", metavar="ID", help="continue a saved conversation")
    p.add_argument("--history", metavar="PATH", help="conversation store (SQLite)")


def build_parser() -> argparse.ArgumentParser:
    d = Settings()
    parser = argparse.ArgumentParser(
        prog="evident", description="Explainable search over your image collections."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("index", help="add images (files or folders) to a collection")
    p.add_argument("paths", nargs="+", metavar="PATH")
    p.add_argument("--prune", action="store_true", help="drop entries whose files are gone")
    p.add_argument(
        "--no-documents", action="store_true", help="ignore images inside HTML pages and PDFs"
    )
    _common(p, d)

    p = sub.add_parser("search", help="rank a collection's images for words and/or an image")
    p.add_argument("query", nargs="?", default=None, metavar="QUERY")
    p.add_argument("--image", metavar="PATH", help="query image (alone or with QUERY)")
    p.add_argument("--k", type=int, default=5)
    p.add_argument("--where", metavar="JSON", help='metadata filter, e.g. \'{"kind": "bar"}\'')
    p.add_argument("--cam", metavar="METHOD", help="heatmap method (default: the model's; none)")
    p.add_argument(
        "--rerank",
        default="none",
        metavar="NAME",
        help="reranker: multiscale, learned:FILE (fitted by evident.eval.ltr_data) or none",
    )
    p.add_argument("--out", metavar="DIR", help="write heatmap and overlay PNGs here")
    _common(p, d)

    p = sub.add_parser("ask", help="one question, answered with cited evidence")
    p.add_argument("question", metavar="QUESTION")
    p.add_argument("--image", metavar="PATH")
    _llm_options(p)
    p.add_argument("--out", metavar="DIR", help="heatmap/overlay PNGs (default: a new temp dir)")
    _common(p, d)

    p = sub.add_parser("chat", help="a conversation about a collection (REPL)")
    _llm_options(p)
    p.add_argument("--out", metavar="DIR", help="heatmap/overlay PNGs (default: a new temp dir)")
    _common(p, d)

    p = sub.add_parser("collections", help="list the collections in a database")
    _common(p, d)

    p = sub.add_parser("bench", help="measure speed (figures and ratios from one run)")
    p.add_argument("--json", action="store_true")
    p.add_argument("--vectors", type=int, default=100_000, help="stored vectors for query latency")
    p.add_argument("--images", type=int, default=64, help="images for indexing throughput")
    p.add_argument("--model", default="random:ViT-B-32")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("figures", help="generate the scientific-figure benchmark")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--n", type=int, default=1200, help="number of figures")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workers", type=int, default=None, help="processes (default: CPUs)")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("eval", help="scripted evaluation of a query suite (report.json/md)")
    _common(p, d)
    from evident.eval.run_eval import add_arguments

    add_arguments(p)

    p = sub.add_parser("train", help="train or fine-tune an encoder on image-caption pairs")
    p.add_argument("pairs", metavar="PAIRS.jsonl")
    p.add_argument("--model", metavar="ARCH", help="architecture to train from scratch")
    p.add_argument("--init", metavar="SPEC", help="encoder to fine-tune instead (local-dir:…)")
    p.add_argument("--out", required=True, metavar="DIR")
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="cuda, cuda:1, cpu (default: cuda if any)")
    p.add_argument("--fp16", action="store_true", help="save float16 safetensors")
    p.add_argument("--checkpoint-every", type=int, default=200, metavar="N")
    p.add_argument("--json", action="store_true")
    p.add_argument("-v", "--verbose", action="store_true")

    p = sub.add_parser("demo", help="the offline demo: build, index and search a collection")
    p.add_argument("--out", default="demo-out")
    p.add_argument("-v", "--verbose", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    # Before torch loads: spinning OpenMP waits slow every op when decode threads run.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    os.environ.setdefault("ANONYMIZED_TELEMETRY", "False")
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="evident: %(levelname)s: %(message)s",
    )
    from evident.agent import commands
    from evident.tools.errors import EvidentError

    try:
        return getattr(commands, f"cmd_{args.command}")(args)
    except EvidentError as exc:
        print(f"evident: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evident: interrupted", file=sys.stderr)
        return 130


def emit_json(obj) -> None:
    json.dump(obj, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    sys.exit(main())
