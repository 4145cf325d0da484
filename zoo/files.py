"""Open files that users name, as regular files only, without ever blocking.

A path can name a FIFO (opening it blocks until a writer comes), a device such as
``/dev/zero`` (reads never end) or a directory. ``open_regular`` opens with
``O_NONBLOCK`` (so a FIFO cannot block the open) and decides on ``fstat`` of the
descriptor it actually holds, so nothing can be swapped in between check and read.
Callers turn the ``OSError`` subclasses below into their own ``ZooError`` messages.
"""

from __future__ import annotations

import errno
import os
import stat
from typing import BinaryIO

_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
          (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


class NotRegularFileError(OSError):
    """The path exists but is not a regular file; ``kind`` says what it is."""

    def __init__(self, path: str, kind: str):
        super().__init__(errno.EINVAL, f"{path} is {kind}, not a regular file", path)
        self.kind = kind


class FileTooLargeError(OSError):
    """The file is larger than the caller's limit."""

    def __init__(self, path: str, size: int, limit: int):
        super().__init__(errno.EFBIG, f"{path} is larger than {limit} bytes", path)
        self.size, self.limit = size, limit


def file_kind(mode: int) -> str:
    """'a directory', 'a FIFO (named pipe)', ... for a ``st_mode``; 'a regular file' for one."""
    return next((kind for test, kind in _KINDS if test(mode)), "a regular file" if stat.S_ISREG(mode)
                else "not a regular file")


def open_regular(path: str | os.PathLike) -> BinaryIO:
    """Open ``path`` (symlinks followed) for binary reading if it is a regular file.

    Raises ``FileNotFoundError``, ``NotRegularFileError`` or another ``OSError``.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(path, flags)
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise NotRegularFileError(os.fspath(path), file_kind(mode))
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_regular(path: str | os.PathLike, limit: int) -> bytes:
    """The whole of a regular file of at most ``limit`` bytes (read at most ``limit + 1``)."""
    with open_regular(path) as f:
        data = f.read(limit + 1)
    if len(data) > limit:
        raise FileTooLargeError(os.fspath(path), len(data), limit)
    return data


def check_regular(path: str | os.PathLike) -> None:
    """Raise ``FileNotFoundError`` or ``NotRegularFileError`` unless ``path`` is a regular file.

    ``os.stat`` (not ``open``), so a FIFO is reported without being opened.
    """
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        raise NotRegularFileError(os.fspath(path), file_kind(mode))
