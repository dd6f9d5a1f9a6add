"""SIGHUP never ends the server, however early it comes.

SIGHUP's default action ends the process, and the server's own handler
(`partypool.service.CertificateReload`) can only be installed once the
service tree exists, a second or more after twistd starts on a busy machine.
So this module is imported twice as early as it can be:

- by ``partypool-sighup.pth``, which setup.py installs beside the packages:
  Python runs its line while it starts (the `site` module), before the
  program's first import, so before twistd imports Twisted;
- by `partypool.tap`, first of all (the hook is missing from an editable
  install or under ``python -S``), when twistd loads the plugin.

In a process that serves (`serving`), importing it replaces the default
action with a handler that only remembers the signal; in any other process
(the clients, the tools, tests) importing it changes nothing.
`CertificateReload` takes SIGHUP over as the server starts and acts on a
remembered one (it reloads the certificate once the reactor runs).

What is left is the interpreter's own start before `site` runs, some 20 ms
on an idle machine: no Python code runs yet, so nothing can catch SIGHUP.
systemd sends no reload to a service that is still starting
(``Type=notify``).  The hook's line imports this module only when an
argument mentions "partypool", so other Python programs in the same
environment pay nothing; it imports nothing slow (not even `signal`) unless
the process serves.
"""

from __future__ import annotations

import os
import sys

_pending = False


def serving(argv: list[str], orig_argv: list[str]) -> bool:
    """Whether this command line runs the Party Pool server.

    Servers are ``twistd … partypool …`` (``twist``, ``python -m twisted`` too) and
    ``partypool serve`` (or ``python -m partypool serve``).  *argv* and
    *orig_argv* are `sys.argv` and `sys.orig_argv`: while Python starts,
    ``-m MODULE`` leaves ``argv[0] == "-m"`` and MODULE only in *orig_argv*,
    just before the arguments that *argv* holds.
    """
    if not argv:
        return False
    program = os.path.basename(argv[0])
    if program == "-m" and len(orig_argv) > len(argv):
        program = orig_argv[len(orig_argv) - len(argv)]
    if program in ("twistd", "twist", "twisted"):  # -m twisted is twist
        return "partypool" in argv[1:]
    return program == "partypool" and argv[1:2] == ["serve"]


def _remember(signum: int, frame: object) -> None:
    global _pending
    _pending = True


def take_pending() -> bool:
    """Whether a SIGHUP came since it was caught here; forgets it."""
    global _pending
    pending, _pending = _pending, False
    return pending


def catch() -> None:
    """Remember SIGHUP instead of ending the process (no SIGHUP on Windows)."""
    import signal  # not at the top: it imports enum, slow for every other process

    if hasattr(signal, "SIGHUP"):
        signal.signal(signal.SIGHUP, _remember)


if serving(sys.argv, sys.orig_argv):
    catch()
