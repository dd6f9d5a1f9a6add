"""Party Pool: a self-hosted multi-user chat server and its clients, on Twisted."""

from __future__ import annotations


def __getattr__(name: str) -> str:
    """``partypool.__version__``, looked up when first asked for.

    Not at import: `partypool.sighup` is imported while Python starts (see
    there), and reading the installed metadata would slow that down.
    """
    if name != "__version__":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    from importlib import metadata

    try:
        return metadata.version("partypool")
    except metadata.PackageNotFoundError:  # running from a source tree
        return "0+unknown"
