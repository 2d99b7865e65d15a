"""Loading a GGUF file with llama.cpp (llama-cpp-python, the optional `gguf` extra) into a
`GGUFChatModel`: the file and its multimodal projector found or refused with one line,
threads set for this machine, llama.cpp's extra CPU buffer types off unless asked for.

- **Threads** default to the CPUs this process may run on (`os.sched_getaffinity`), for
  both prompt evaluation and generation.
- **Images**: with a multimodal projector (`mmproj`, or the one `mmproj*.gguf` beside the
  model) the model gets llama.cpp's MTMD chat handler.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from evident.agent.llm.gguf_chat import GGUFChatModel
from evident.tools.errors import ModelLoadError

log = logging.getLogger(__name__)

GGUF_EXTRA = (
    "pip install 'evident[gguf]' (llama-cpp-python compiles from source: about 10 minutes "
    "on 2 cores; `pip wheel llama-cpp-python -w wheels/` once, then install the wheel)"
)


def cpu_threads() -> int:
    """The CPUs this process may run on (affinity and cgroup-pinned sets included)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not on Linux
        return max(1, os.cpu_count() or 1)


def load_gguf_chat(
    path: str,
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    n_gpu_layers: int = 0,
    mmproj: str | None = None,
    seed: int = 0,
    extra_buffers: bool = False,
    **settings: Any,
) -> GGUFChatModel:
    """Load a GGUF file with llama.cpp; `settings` are `GGUFChatModel` fields
    (`max_new_tokens`, `temperature`, `constrain`).

    `extra_buffers` turns on llama.cpp's extra CPU buffer types (weight repacking, AMX).
    Off by default: on the reference machine (a VM whose CPU reports AMX) they crash the
    first decode with a segmentation fault; without them SmolLM2 runs normally."""
    unknown = sorted(set(settings) - set(GGUFChatModel.model_fields))
    if unknown:
        raise ModelLoadError(f"unknown option(s) for the gguf backend: {unknown}")
    file = Path(path).expanduser()
    if not file.is_file():
        raise ModelLoadError(f"no GGUF file at {str(file)!r}")
    try:
        import llama_cpp  # noqa: PLC0415 - the optional `gguf` extra, compiled on install
    except ImportError:
        raise ModelLoadError(f"the gguf backend needs llama-cpp-python: {GGUF_EXTRA}") from None
    projector = _projector(file, mmproj)
    threads = n_threads or cpu_threads()
    handler = None
    if projector is not None:
        handler = llama_cpp.llama_chat_format.MTMDChatHandler(
            clip_model_path=str(projector), verbose=False
        )
    try:
        with _extra_buffers(llama_cpp, extra_buffers):
            llama = llama_cpp.Llama(
                model_path=str(file), n_ctx=n_ctx, n_threads=threads, n_threads_batch=threads,
                n_gpu_layers=n_gpu_layers, seed=seed, chat_handler=handler, verbose=False,
            )  # fmt: skip
    except (ValueError, RuntimeError) as e:
        raise ModelLoadError(f"llama.cpp cannot load {str(file)!r}: {e}") from None
    log.info("loaded %s with llama.cpp, %d threads, context %d", file.name, threads, n_ctx)
    return GGUFChatModel(llama=llama, model_name=file.name, multimodal=handler is not None,
                         **settings)  # fmt: skip


@contextlib.contextmanager
def _extra_buffers(llama_cpp: Any, enabled: bool) -> Iterator[None]:
    """llama-cpp-python has no argument for `use_extra_bufts`: set it in the defaults
    `Llama` starts from, for the time of the load."""
    lib = llama_cpp.llama.llama_cpp
    original = lib.llama_model_default_params

    def defaults() -> Any:
        params = original()
        params.use_extra_bufts = enabled
        return params

    lib.llama_model_default_params = defaults
    try:
        yield
    finally:
        lib.llama_model_default_params = original


def _projector(model: Path, mmproj: str | None) -> Path | None:
    if mmproj:
        found = Path(mmproj).expanduser()
        if not found.is_file():
            raise ModelLoadError(f"no multimodal projector at {str(found)!r}")
        return found
    beside = sorted(model.parent.glob("mmproj*.gguf"))
    return beside[0] if len(beside) == 1 else None
