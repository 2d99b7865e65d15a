"""The public surface of evident: the `Assistant`, the CLI and the REPL.

`import agent` stays light (no torch); heavy pieces load on first use.
"""

__all__ = ["Answer", "Assistant"]


def __getattr__(name: str):
    # Lazy, so `import agent` (and the CLI's --help) never loads torch.
    if name in __all__:
        from evident.agent import assistant  # noqa: PLC0415 - `import evident.agent` stays light

        return getattr(assistant, name)
    raise AttributeError(f"module 'agent' has no attribute {name!r}")
