"""Party Pool: a self-hosted multi-user chat server and its clients, on Twisted."""

from importlib import metadata

try:
    __version__ = metadata.version("partypool")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"
