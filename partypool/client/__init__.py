"""
The Party Pool chat client: ``partypool-client`` and the pieces it is made of.

``protocol`` speaks the wire contract (docs/protocol.md) and has no user
interface, so benchmarks and tests reuse it; ``session`` keeps a user in the
room across reconnects; ``tui`` and ``script`` are the two faces a person or
a program sees; ``main`` picks the reactor and wires them together.
"""
