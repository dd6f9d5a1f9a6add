"""Front doors: one module per way in, each a thin adapter over `partypool.room`.

`chat` (the v1 chat port over TCP/TLS), `web` (the page and v1 over
WebSocket) and `irc` (the IRC gateway, its own dialect) share `v1` (the v1
dialect), `framing` (line framing) and `outlet` (held output, slow readers);
none of them holds a session rule."""

from twisted.logger import Logger

# Each door's name for the operator, by its log namespace: the log lines and
# root's command log name the door a root login came by.
NAMES = {
    "partypool.doors.chat": "chat port",
    "partypool.doors.web": "web door",
    "partypool.doors.irc": "IRC gateway",
}


def door_name(log: Logger) -> str:
    """The name of the door whose logger ``log`` is (its namespace if none)."""
    return NAMES.get(log.namespace, log.namespace)
