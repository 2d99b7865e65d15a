"""evident: explainable multimodal retrieval, offline.

The folders of this package are its layers, and each imports only the ones below it:

    evident.agent    the public surface: `Assistant`, the `evident` CLI, the REPL, LLM backends
    evident.eval     scripted evaluation, benchmarks, the figure generator and model recipe
    evident.graphs   the LangGraph state machine
    evident.tools    every capability as a pure, typed function, with LangChain wrappers
    evident.prompts  prompt templates as data

`import evident` is light: nothing here imports torch.
"""

__version__ = "0.2.0"
