"""Atomic file output: write to a temp file in the target folder, then rename over the target.

A reader (or a rerun after Ctrl-C) therefore sees either the old file, no file, or the complete new
file, never a partial one. Temp names start with ``.`` and end with ``.srtool-tmp`` so they are easy
to recognise and clean up.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

TEMP_SUFFIX = ".srtool-tmp"


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temp path beside ``path``; on success rename it to ``path``, on error delete it."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=TEMP_SUFFIX, dir=target.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs get the usual permissions
    try:
        yield tmp
        with open(tmp, "rb+") as f:  # data must be on disk before the rename makes it visible
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:  # KeyboardInterrupt too: never leave a partial file behind
        tmp.unlink(missing_ok=True)
        raise


def folder_problem(folder: str | os.PathLike) -> str | None:
    """Why ``folder`` cannot hold outputs, to follow "the folder ...": "cannot be created (...)" or
    "is not writable (...)"; None when it can. It is created and written into, as outputs will be:
    permission bits alone miss root and /proc."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"cannot be created ({existing} is a file)"
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder, prefix=".srtool-write-check-"):
            pass
    except OSError as err:
        return f"is not writable ({err.strerror or err})"
    return None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
