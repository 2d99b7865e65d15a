"""The few exceptions evident raises on purpose.

Every message is written for the person who will read it: what went wrong, with
identifiers quoted (`!r`), and what to do next. The CLI prints `EvidentError`
as one line and exits non-zero; anything else is a bug and keeps its traceback.
"""


class EvidentError(Exception):
    """A problem the user can fix (bad input, missing model, locked database)."""


class InputError(EvidentError):
    """A file, query or argument that cannot be used as given."""


class ModelLoadError(EvidentError):
    """An encoder or LLM that cannot be built from its spec."""


class StoreError(EvidentError):
    """The database is missing, locked, or holds something unexpected."""


class EncoderMismatchError(StoreError):
    """A collection searched or extended with an encoder other than its own."""
