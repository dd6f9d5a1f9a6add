"""twistd plugin: ``twistd -n partypool``; everything else lives in partypool.tap."""

from twisted.application.service import ServiceMaker

partypool = ServiceMaker(
    "Party Pool",
    "partypool.tap",
    "A multi-user chat server with an SSH admin port.",
    "partypool",
)
