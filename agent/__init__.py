"""The public surface of evident: the `Assistant`, the CLI and the REPL.

`import agent` stays light (no torch); heavy pieces load on first use.
"""
