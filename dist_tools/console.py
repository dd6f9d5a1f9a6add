"""Keep a double-clicked program's console window open when it fails.

A Windows user who double-clicks ``PartyPoolClient-v….exe`` gets a console
window that belongs to that program alone and vanishes the instant it exits:
"wrong passkey or damaged invite" or "removed by admin" would flash by
unread.  So the frozen entry scripts run their ``main`` through
`run_keeping_console`, which asks for Enter before a failing program's own
window closes.  Started from a terminal (the window is the shell's) or with
standard input not a console, nothing changes.
"""

from __future__ import annotations

import contextlib
import sys
import traceback
from collections.abc import Callable

#: Processes on a console of our own when frozen: PyInstaller's one-file
#: bootloader and the Python process it starts.  A shell makes it three.
_OWN_CONSOLE_PROCESSES = 2


def console_process_count() -> int:
    """How many processes share this console (Windows; 0 if unknown)."""
    import ctypes

    buffer = (ctypes.c_uint32 * 16)()
    return int(ctypes.windll.kernel32.GetConsoleProcessList(buffer, 16))


def window_closes_on_exit(count: Callable[[], int] = console_process_count) -> bool:
    """Whether our console window goes away when we exit (double-clicked)."""
    if sys.platform != "win32" or not sys.stdin or not sys.stdin.isatty():
        return False
    try:
        return 0 < count() <= _OWN_CONSOLE_PROCESSES
    except (OSError, AttributeError):
        return False


def run_keeping_console(
    main: Callable[[], int | None],
    closes: Callable[[], bool] = window_closes_on_exit,
) -> int:
    """Run ``main``; if it fails in a window of its own, wait for Enter."""
    try:
        status = main() or 0
    except KeyboardInterrupt:
        return 130  # the user chose to leave: no pause
    except SystemExit as e:  # argparse's usage errors
        status = e.code if isinstance(e.code, int) else 1
    except Exception:
        traceback.print_exc()
        status = 1
    if status != 0 and closes():
        with contextlib.suppress(EOFError, KeyboardInterrupt):
            input("\nPress Enter to close this window.")
    return status
