"""Secrets passed in the environment are read once, then wiped.

``PARTYPOOL_PASSKEY`` and ``PARTYPOOL_ROOT_PASSWORD`` are convenient, but a
process's environment stays readable for its whole life: on Linux in
``/proc/<pid>/environ`` (by the same user and root, ``ps e`` shows it), and
every child process inherits it.  Removing the variable from ``os.environ``
(``unsetenv``) is not enough on Linux: the kernel shows the block of strings
the process was started with, between ``env_start`` and ``env_end`` of
``/proc/self/stat``, and ``unsetenv`` only drops the pointer to its string.
So `take_secret` also overwrites the ``NAME=value`` string in that block with
zero bytes, in the process's own memory.

On other systems the variable is removed from the environment (children do
not get it); the original block is not rewritten there.  macOS lets only the
same user or an administrator read another process's environment, and
Windows only the same user.
"""

from __future__ import annotations

import ctypes
import os
import sys
from pathlib import Path

# Fields 50 and 51 of /proc/<pid>/stat, counted from 1 (proc(5), Linux 3.5+).
_ENV_START, _ENV_END = 50, 51


def take_secret(name: str) -> str | None:
    """Return ``$name`` (None if unset or empty) and leave no copy of it in
    the environment, nor in ``/proc/self/environ`` on Linux."""
    value = os.environ.pop(name, None)
    if sys.platform.startswith("linux"):
        wipe_initial_environment(name)
    return value or None


def _initial_block(stat_path: Path = Path("/proc/self/stat")) -> tuple[int, int]:
    """Start and end address of the environment the kernel shows for us."""
    fields = stat_path.read_text().rsplit(")", 1)[1].split()
    # fields[0] is field 3 (the state): field n is fields[n - 3]
    return int(fields[_ENV_START - 3]), int(fields[_ENV_END - 3])


def wipe_initial_environment(name: str) -> int:
    """Zero every ``name=…`` string in the initial environment block; return
    how many were wiped.  Linux only; does nothing if /proc is not there."""
    try:
        start, end = _initial_block()
    except (OSError, IndexError, ValueError):
        return 0
    if not 0 < start < end:
        return 0
    block = ctypes.string_at(start, end - start)
    prefix = name.encode() + b"="
    wiped, offset = 0, 0
    for entry in block.split(b"\0"):
        if entry.startswith(prefix):
            ctypes.memset(start + offset, 0, len(entry))
            wiped += 1
        offset += len(entry) + 1
    return wiped
