"""SIGHUP never ends the server, however early it comes.

SIGHUP's default action ends the process, and the server's own handler
(`partypool.service.CertificateReload`) can only be installed once the
service tree exists, a second or more after twistd starts on a busy machine.
twistd imports `partypool.tap` while it parses the command line, before
anything else of ours runs; tap imports this module first, and importing it
replaces the default action with a handler that only remembers the signal.
`CertificateReload` takes SIGHUP over as the server starts and acts on a
remembered one (it reloads the certificate once the reactor runs).

Before twistd has imported Party Pool (Python and Twisted loading, about half
a second) no code of ours runs, so nothing can catch SIGHUP then.  systemd
sends no reload to a service that is still starting (``Type=notify``); when
starting by hand where a hangup may come, use ``nohup``.
"""

from __future__ import annotations

import signal

_pending = False


def _remember(signum: int, frame: object) -> None:
    global _pending
    _pending = True


def take_pending() -> bool:
    """Whether a SIGHUP came since this module was imported; forgets it."""
    global _pending
    pending, _pending = _pending, False
    return pending


if hasattr(signal, "SIGHUP"):  # not on Windows
    signal.signal(signal.SIGHUP, _remember)
