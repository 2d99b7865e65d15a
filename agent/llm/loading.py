"""Load a local Hugging Face model and its tokenizer or processor, offline, as a chat model.

Sources: a folder with `config.json` and weights, a model id already in the Hugging Face
cache, or a `.gguf` file (transformers de-quantises GGUF with the `gguf` package; only
text models). Nothing is downloaded unless `local_files_only=False`. Every failure is a
`ModelLoadError` that says what to do.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
import transformers
from transformers.models.auto.modeling_auto import MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES

from evident.agent.llm.transformers_chat import TransformersChatModel
from evident.tools.errors import ModelLoadError

if TYPE_CHECKING:
    from evident.agent.llm.transformers_chat import TransformersChatModel

log = logging.getLogger(__name__)

LLM_EXTRA = "pip install 'evident[llm]'"


def load_transformers_chat(
    source: str,
    *,
    device: str | None = None,
    device_map: str | dict | None = None,
    dtype: Any = None,
    local_files_only: bool = True,
    trust_remote_code: bool = False,
    **settings: Any,
) -> TransformersChatModel:
    """Load a local model: a folder, a model id already in the Hugging Face cache, or a
    `.gguf` file. Vision-language models (by their config) load with their processor.

    `device_map` (e.g. "auto") spreads a model over several devices with accelerate; it is
    the default when more than one GPU is visible. `settings` are `TransformersChatModel`
    fields (`max_new_tokens`, `temperature`, `tool_protocol`, ...)."""

    unknown = sorted(set(settings) - set(TransformersChatModel.model_fields))
    if unknown:  # checked before the slow load
        raise ModelLoadError(f"unknown option(s) for the transformers backend: {unknown}")
    model, processor = load_pretrained(
        source,
        device=device,
        device_map=device_map,
        dtype=dtype,
        local_files_only=local_files_only,
        trust_remote_code=trust_remote_code,
    )
    return TransformersChatModel(model=model, processor=processor, model_name=source, **settings)


def load_pretrained(
    source: str,
    *,
    device: str | None = None,
    device_map: str | dict | None = None,
    dtype: Any = None,
    local_files_only: bool = True,
    trust_remote_code: bool = False,
) -> tuple[Any, Any]:
    """`(model, tokenizer_or_processor)`, the model in eval mode on its device(s)."""

    if device_map is None and device is None and torch.cuda.device_count() > 1:
        device_map = "auto"
    if device_map is not None and importlib.util.find_spec("accelerate") is None:
        raise ModelLoadError(f"device_map={device_map!r} needs accelerate: pip install accelerate")
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    if dtype is None:  # half precision is slow or unsupported for generate() on CPU
        dtype = torch.float32 if device == "cpu" and device_map is None else "auto"
    if not sys.stderr.isatty():  # transformers' loading bars would litter logs and notebooks
        transformers.utils.logging.disable_progress_bar()
    common = {"local_files_only": local_files_only, "trust_remote_code": trust_remote_code}
    placement = {"device_map": device_map} if device_map is not None else {}
    try:
        if source.endswith(".gguf"):
            model, processor = _load_gguf(source, transformers, dtype, placement, common)
        else:
            model, processor = _load_folder_or_id(source, transformers, dtype, placement, common)
    except ImportError as e:
        raise ModelLoadError(f"loading {source!r} needs {e.name!r}: {LLM_EXTRA}") from None
    except (OSError, ValueError, KeyError) as e:
        raise ModelLoadError(
            f"cannot load {source!r} with transformers: {e}\n"
            "Give a folder with config.json and weights, a .gguf file, or the id of a model "
            "already in the Hugging Face cache (downloads are off: fetch it first with "
            "`hf download <id>`)."
        ) from None
    if device_map is None:
        model = model.to(device)
    log.info("loaded %s (%s) on %s", source, type(model).__name__, model.device)
    return model.eval(), processor


def _load_gguf(source: str, transformers: Any, dtype: Any, placement: dict, common: dict):
    path = Path(source).expanduser()
    if not path.is_file():
        raise ModelLoadError(f"no GGUF file at {str(path)!r}")
    for package in ("gguf", "accelerate"):  # transformers needs both to read GGUF
        if importlib.util.find_spec(package) is None:
            raise ModelLoadError(f"reading {path.name!r} needs {package!r}: {LLM_EXTRA}")
    where = {"pretrained_model_name_or_path": str(path.parent), "gguf_file": path.name}
    tokenizer = transformers.AutoTokenizer.from_pretrained(**where, **common)
    model = transformers.AutoModelForCausalLM.from_pretrained(
        **where, dtype=dtype, **placement, **common
    )
    return model, tokenizer


def _load_folder_or_id(source: str, transformers: Any, dtype: Any, placement: dict, common: dict):
    config = transformers.AutoConfig.from_pretrained(source, **common)
    if config.model_type in MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES:
        model_cls, proc_cls = transformers.AutoModelForImageTextToText, transformers.AutoProcessor
    else:
        model_cls, proc_cls = transformers.AutoModelForCausalLM, transformers.AutoTokenizer
    processor = proc_cls.from_pretrained(source, **common)
    model = model_cls.from_pretrained(source, config=config, dtype=dtype, **placement, **common)
    return model, processor
