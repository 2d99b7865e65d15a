"""`evident search`: the ranked results first, then their evidence.

Ranking a query of words needs only its vectors, which `tools.retrieve.quick_search`
computes without torch for the bundled model (and any folder model with its MiniLM text
tower); so the results print within seconds of the command starting, and only then do
the models that draw the evidence load (`agent.commands.explain_search`), the ~10 s of
importing torch, open_clip and transformers no longer in front of the answer. An image
query, a reranker, a query that names a place ("a legend in the upper left", read from
the images' patches) or another model takes the full path and prints when it is done.
`--json` prints one document at the end either way.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from evident.agent import render
from evident.agent.config import Settings
from evident.tools.errors import InputError
from evident.tools.lexical import word_index
from evident.tools.records import Explanation, Query, QueryResult
from evident.tools.retrieve import quick_search
from evident.tools.store import Store

out = Console(highlight=False)


def cmd_search(args) -> int:
    query = Query(text=args.query or None, image=args.image)
    if not query.text and not query.image:
        raise InputError("give words to search for, an image with --image PATH, or both")
    settings = Settings()
    out_dir = Path(args.out) if args.out else settings.overlay_dir(args.db)
    title = f"{args.collection}: {query.text or ''} {query.image or ''}".strip()
    with Store.open(
        args.db, lock_timeout=args.lock_timeout, timeout=settings.chroma_timeout
    ) as store:
        model = args.model or store.model_of(args.collection)
        words = word_index(store, args.collection)  # built once for both stages
        first = None
        if args.rerank in (None, "", "none"):  # a reranker reorders: nothing to show early
            first = quick_search(
                query, args.k, args.where, store=store, collection=args.collection, model=model,
                words=words,
            )  # fmt: skip
        if first is not None and not args.json:
            out.print(render.ranked_table(title, [h.to_dict() for h in first.hits], first.fusion))
        if first is not None and args.cam == "none":
            result = QueryResult(first, Explanation(None))
        else:
            # the evidence's models: torch, open_clip and transformers load from here on
            import evident.agent.commands as commands  # noqa: PLC0415 - results print first

            result = commands.explain_search(args, store, query, model, first, out_dir, words)
    data = result.to_dict()
    if args.json:
        render.emit_json(data)
        return 0
    if first is None:
        out.print(render.ranked_table(title, data["results"], data.get("fusion")))
    evidence = render.evidence_table(data)
    if evidence is not None:
        out.print(evidence)
    return 0
