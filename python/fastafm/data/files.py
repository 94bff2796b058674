"""Opening input files by one policy (docs/reliability.md, "Files fastafm reads"):

* libFM/libSVM text may be a regular file or a pipe (a FIFO, `<(zcat f.gz)`, /dev/stdin in a pipeline); a pipe
  is read once, front to back, so whatever inspects its first bytes does so on the same buffered stream;
* model files and caches must be regular files (they are read at offsets, more than once);
* anything else (a character device such as /dev/zero, a block device, a socket) is refused with a ValueError
  naming the path, before it is opened -- opening a FIFO that nobody writes to would block forever.

A path is classified with os.stat first (which never blocks) and the opened descriptor is checked again with
os.fstat, so a path swapped between the two is refused too.
"""
from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

REGULAR = "file"
PIPE = "pipe"


def describe_mode(mode: int) -> str:
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISFIFO(mode):
        return "a pipe (FIFO)"
    if stat.S_ISDIR(mode):
        return "a directory"
    return "not a regular file"


def display(path: str) -> str:
    """The path as printable text (odd bytes of POSIX names escaped)."""
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(mode: int, path: str, what: str, pipes: bool) -> str:
    if stat.S_ISREG(mode):
        return REGULAR
    if stat.S_ISFIFO(mode) and pipes:
        return PIPE
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR), path)
    allowed = "a regular file or a pipe" if pipes else "a regular file"
    raise ValueError(f"{display(path)}: cannot read {what}: it is {describe_mode(mode)}, not {allowed}")


def input_kind(path: str, what: str, *, pipes: bool) -> str:
    """REGULAR or PIPE for a path that may be read as `what`; FileNotFoundError etc. (OSError) when it cannot be
    stat'ed, IsADirectoryError for a folder, ValueError for any other kind of file. Never blocks."""
    return _kind(os.stat(path).st_mode, path, what, pipes)


def open_input(path: str, what: str, *, pipes: bool) -> tuple[BinaryIO, str]:
    """(binary file object, kind) of `path` opened for reading, after input_kind's checks on the path and again
    on the open descriptor."""
    kind = input_kind(path, what, pipes=pipes)
    fh = open(path, "rb")
    try:
        again = _kind(os.fstat(fh.fileno()).st_mode, path, what, pipes)
        if again != kind:
            raise ValueError(f"{display(path)}: cannot read {what}: the file changed while it was opened")
    except BaseException:
        fh.close()
        raise
    return fh, kind


def read_exactly(fh: BinaryIO, n: int) -> bytes:
    """Up to n bytes from fh: fewer only at end of file (a pipe may return short reads)."""
    parts, got = [], 0
    while got < n:
        piece = fh.read(n - got)
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    return b"".join(parts)


def same_file(a: str, b: str) -> bool:
    """Whether paths a and b name the same file (same device and inode); False when either does not exist."""
    try:
        return os.path.samefile(a, b)
    except (OSError, ValueError):
        return False
