"""Front doors: one module per way in, each a thin adapter over `partypool.room`.

`chat` (the v1 chat port over TCP/TLS), `web` (the page and v1 over
WebSocket) and `irc` (the IRC gateway, its own dialect) share `v1` (the v1
dialect), `framing` (line framing) and `outlet` (held output, slow readers);
none of them holds a session rule."""
