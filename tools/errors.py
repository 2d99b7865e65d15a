"""The few exceptions evident raises on purpose.

Every message is written for the person who will read it: what went wrong, with
identifiers quoted (`!r`), and what to do next. The CLI prints `EvidentError`
as one line and exits non-zero, and a notebook shows it as that one line too; anything
else is a bug and keeps its traceback.
"""


class EvidentError(Exception):
    """A problem the user can fix (bad input, missing model, locked database)."""

    def _render_traceback_(self) -> list[str]:
        """What IPython and Jupyter show instead of a traceback: the one line."""
        return [f"{type(self).__name__}: {' '.join(str(self).split())}"]


class InputError(EvidentError):
    """A file, query or argument that cannot be used as given."""


class ModelLoadError(EvidentError):
    """An encoder or LLM that cannot be built from its spec."""


class PromptTooLong(ModelLoadError):
    """A prompt and its reply budget that do not fit the LLM's context window. Inside an
    agent turn the deterministic policy (or the template writer) takes that step over."""


class StoreError(EvidentError):
    """The database is missing, locked, or holds something unexpected."""


class EncoderMismatchError(StoreError):
    """A collection searched or extended with an encoder other than its own."""
