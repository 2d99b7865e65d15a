"""Opening files that someone else may have made: regular files only, bounded, never blocking.

A path may name a FIFO that no one writes to (an `open` that waits forever), a character
device that never ends (`/dev/zero`), a 2 GB file named `.png`, or a link to anywhere on the
disk. Every file evident reads (images, pages, PDFs, sidecars) goes through `open_regular`:
the kind and size are checked with `stat` before opening, the file is opened with
`O_NONBLOCK` (a FIFO swapped in after the check returns at once instead of blocking) and
checked again on the open descriptor, and at most `max_bytes + 1` bytes are ever read.

`inside` is the confinement test: every path read during indexing must resolve (links
followed) to a place under the folders the person named.

Not handled: files that change while being read (the content hash is of what was read).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

from evident.tools.errors import InputError

KINDS = {
    stat.S_IFDIR: "a folder",
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFSOCK: "a socket",
}
FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def size_text(n: int) -> str:
    """A byte count for people.

    >>> size_text(134217728), size_text(1536), size_text(12)
    ('128 MiB', '1.5 KiB', '12 bytes')
    """
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n} bytes"


def _check(st: os.stat_result, max_bytes: int, what: str) -> None:
    kind = stat.S_IFMT(st.st_mode)
    if kind != stat.S_IFREG:
        raise InputError(f"not a regular file: it is {KINDS.get(kind, 'a special file')}")
    if st.st_size > max_bytes:
        raise InputError(
            f"too large: {size_text(st.st_size)}, over the {size_text(max_bytes)} limit for "
            f"{what} (raise it with {_setting(what)}); not read"
        )


def _setting(what: str) -> str:
    return "EVIDENT_MAX_IMAGE_BYTES" if what == "images" else "EVIDENT_MAX_DOCUMENT_BYTES"


def check_file(path: str | Path, max_bytes: int, what: str = "images") -> None:
    """`InputError` unless `path` is a regular file (links followed) of at most `max_bytes`;
    nothing is opened."""
    try:
        st = os.stat(path)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from exc
    _check(st, max_bytes, what)


def open_regular(path: str | Path, max_bytes: int, what: str = "images") -> BinaryIO:
    """`path` opened for reading in binary, or `InputError` when it is not a regular file
    (after following links) or is larger than `max_bytes`; `what` names the limit."""
    try:
        _check(os.stat(path), max_bytes, what)
        fd = os.open(path, FLAGS)
    except OSError as exc:
        raise InputError(f"cannot read: {exc.strerror or exc}") from exc
    try:
        _check(os.fstat(fd), max_bytes, what)  # the file opened is the file checked
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb")


def read_bounded(path: str | Path, max_bytes: int, what: str = "images") -> bytes:
    """The bytes of the regular file at `path`, refused past `max_bytes` (even if it grows)."""
    with open_regular(path, max_bytes, what) as f:
        try:
            data = f.read(max_bytes + 1)
        except OSError as exc:
            raise InputError(f"cannot read: {exc.strerror or exc}") from exc
    if len(data) > max_bytes:
        raise InputError(f"too large: grew past the {size_text(max_bytes)} limit while read")
    return data


def read_text(path: str | Path, max_bytes: int) -> str:
    """A document or sidecar as text (UTF-8, a leading byte-order mark dropped, undecodable
    bytes replaced), through `read_bounded`."""
    return read_bounded(path, max_bytes, "documents").decode("utf-8-sig", errors="replace")


def inside(path: Path, roots: Iterable[Path]) -> bool:
    """Whether the resolved `path` is one of `roots` or under one (all resolved).

    >>> inside(Path("/a/b/c.png"), [Path("/a")]), inside(Path("/ab/c.png"), [Path("/a")])
    (True, False)
    """
    return any(path == r or path.is_relative_to(r) for r in roots)
