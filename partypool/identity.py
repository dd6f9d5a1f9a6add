"""How a Party Pool server is found and recognised: where its data lives, and
the fingerprint of its SSH host key as ``ssh`` shows it.

The server, the invite tool and the frozen root client all use this, so it
imports nothing that would install a reactor.  (The TLS certificate's
fingerprint is `partypool.tls.certificate_fingerprint`.)
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
from pathlib import Path

from twisted.conch.ssh import keys


def default_data_dir() -> Path:
    """systemd's ``StateDirectory=`` when run as a service, else the XDG data
    home (``~/.local/share/partypool``); on Windows ``%LOCALAPPDATA%\\partypool``,
    a folder Windows lets only its user into."""
    state = os.environ.get("STATE_DIRECTORY")
    if state:
        # systemd may pass several colon-separated directories; the first is ours.
        return Path(state.split(":")[0])
    if sys.platform == "win32" and os.environ.get("LOCALAPPDATA"):
        return Path(os.environ["LOCALAPPDATA"]) / "partypool"
    xdg = os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share"
    return Path(xdg) / "partypool"


def public_host_guess() -> str:
    """The address other machines on the LAN most likely reach this one by.

    The first IPv4 address this host's name resolves to that is neither
    loopback nor link-local; else the host name itself (``name.local`` on
    macOS, a name the LAN's router often knows elsewhere).  A guess to show
    as a default, never something to rely on: the operator can always type
    another.  No packet is sent.
    """
    name = socket.gethostname()
    try:
        found = socket.getaddrinfo(name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError:
        found = []
    for *_, (address, _port) in found:
        ip = ipaddress.ip_address(address)
        if not (ip.is_loopback or ip.is_link_local or ip.is_unspecified):
            return address
    return name


def ssh_fingerprint(key: keys.Key) -> str:
    """OpenSSH's ``SHA256:<base64 without padding>`` of the public key."""
    digest = key.fingerprint(keys.FingerprintFormats.SHA256_BASE64)
    return "SHA256:" + digest.rstrip("=")


def host_key_fingerprint(path: Path) -> str:
    """The fingerprint ``ssh`` shows for the host key stored at ``path``."""
    return ssh_fingerprint(keys.Key.fromFile(str(path)))
