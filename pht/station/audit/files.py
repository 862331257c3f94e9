"""Durable file operations: whole-line appends, atomic replacement, directory fsync.

POSIX semantics the log relies on: one ``write`` to an ``O_APPEND`` descriptor lands
at the end of the file as a unit or (on a crash) as a prefix; ``fsync`` makes it
durable; ``rename`` replaces a file atomically and an ``fsync`` of the directory makes
the rename durable.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["APPEND_FLAGS", "append_line", "atomic_write", "fsync_dir"]

APPEND_FLAGS = os.O_RDWR | os.O_APPEND | getattr(os, "O_CLOEXEC", 0)


def append_line(fd: int, line: bytes) -> None:
    """One ``write`` of ``line`` + newline, then ``fsync``: a crash tears at most it.

    Raises
    ------
    OSError
        If the write fails or is short (the file then ends in a torn tail).
    """
    data = line + b"\n"
    written = os.write(fd, data)
    if written != len(data):
        raise OSError(f"short write: {written} of {len(data)} bytes")
    os.fsync(fd)


def fsync_dir(directory: Path) -> None:
    """Make renames and new files in ``directory`` durable."""
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: Path, data: bytes) -> None:
    """Replace ``path`` by ``data`` atomically and durably (temp, fsync, rename).

    The temporary file sits beside ``path`` (same file system) as ``.<name>.tmp``;
    readers see the old or the new content, never a mix.
    """
    tmp = path.with_name(f".{path.name}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_CLOEXEC", 0)
    fd = os.open(tmp, flags, 0o600)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)
