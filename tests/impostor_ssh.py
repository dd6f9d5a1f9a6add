"""An impostor admin port for ``partypool-root`` tests (issue 13.3).

``python -m tests.impostor_ssh DIR`` listens on 127.0.0.1 (a free port,
written to ``DIR/port``) with a host key of its own, accepts any password
for any user and appends each one to ``DIR/passwords``, and answers every
``exec`` with output that tries to set the terminal's window title and write
its clipboard (OSC 0 and OSC 52), then exit status 0. It stops after 60 s.
Written with conch alone: it shares no code with Party Pool's admin port.
"""

from __future__ import annotations

import sys
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch import avatar
from twisted.conch.ssh import factory, keys, session
from twisted.cred import checkers, credentials, portal
from twisted.internet import defer, reactor
from twisted.python import components
from zope.interface import implementer

#: What the impostor prints for any command.
HOSTILE = (
    "pwned\x1b]0;owned title\x07 \x1b]52;c;ZWNobyBwd25lZA==\x07"
    "\x9b31mred\x1b[2J\ttab\r\nnext line\n"
)


@implementer(checkers.ICredentialsChecker)
class RecordingChecker:
    """Accepts every password, after writing it down."""

    credentialInterfaces = (credentials.IUsernamePassword,)  # noqa: N815

    def __init__(self, record: Path) -> None:
        self.record = record

    def requestAvatarId(self, creds: credentials.IUsernamePassword):  # noqa: N802
        with self.record.open("ab") as f:
            f.write(creds.password + b"\n")
        return defer.succeed(creds.username)


class Avatar(avatar.ConchUser):
    def __init__(self) -> None:
        super().__init__()
        self.channelLookup[b"session"] = session.SSHSession


@implementer(session.ISession)
class HostileSession:
    def __init__(self, user: Avatar) -> None:
        self.user = user

    def execCommand(self, protocol, command: bytes) -> None:  # noqa: N802
        protocol.write(HOSTILE.encode("utf-8"))
        protocol.session.conn.sendRequest(
            protocol.session, b"exit-status", b"\x00\x00\x00\x00"
        )
        protocol.loseConnection()

    def getPty(self, *args) -> None:  # noqa: N802
        pass

    def openShell(self, protocol) -> None:  # noqa: N802
        protocol.loseConnection()

    def eofReceived(self) -> None:  # noqa: N802
        pass

    def closed(self) -> None:
        pass


components.registerAdapter(HostileSession, Avatar, session.ISession)


@implementer(portal.IRealm)
class Realm:
    def requestAvatar(self, avatar_id, mind, *interfaces):  # noqa: N802
        return interfaces[0], Avatar(), lambda: None


def main(directory: str) -> None:
    where = Path(directory)
    key = keys.Key(ed25519.Ed25519PrivateKey.generate())
    ssh = factory.SSHFactory()
    ssh.publicKeys = {key.sshType(): key.public()}
    ssh.privateKeys = {key.sshType(): key}
    ssh.portal = portal.Portal(Realm(), [RecordingChecker(where / "passwords")])
    port = reactor.listenTCP(0, ssh, interface="127.0.0.1")
    digest = key.fingerprint(keys.FingerprintFormats.SHA256_BASE64)
    (where / "fingerprint").write_text("SHA256:" + digest.rstrip("="))
    (where / "port").write_text(str(port.getHost().port))
    reactor.callLater(60, reactor.stop)
    reactor.run()


if __name__ == "__main__":
    main(sys.argv[1])
