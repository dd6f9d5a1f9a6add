"""A hostile SSH client for end-to-end tests: ``python -m tests.ssh_hostile PORT``.

It completes key exchange with the server on 127.0.0.1:PORT, then sends
user-auth requests crafted to reach the server's log (a newline, ESC and a
forged journal priority in a public key algorithm name and in a user name),
prints ``failures N`` once the server has refused them all, and exits 0.
"""

from __future__ import annotations

import sys

from cryptography.hazmat.primitives.asymmetric import ed25519
from twisted.conch.ssh import keys, transport, userauth
from twisted.conch.ssh.common import NS
from twisted.internet import defer, protocol, reactor

FORGED = b"\n<2>[partypool.admin#critical] root logged in\x1b[2J\r"


def requests() -> list[tuple[bytes, bytes, bytes]]:
    """A good key under a forged algorithm name, bad keys, a forged user."""
    blob = NS(keys.Key(ed25519.Ed25519PrivateKey.generate()).public().blob())
    bad_blob = NS(NS(b"ssh-ed25519") + NS(b"short"))
    unknown = NS(NS(b"x-unknown") + NS(b"a"))  # conch logged the name for this
    return [
        (b"root", b"publickey", b"\x00" + NS(b"ssh-ed25519" + FORGED) + blob),
        (b"root", b"publickey", b"\x00" + NS(b"\xff" + FORGED) + bad_blob),
        (b"root", b"publickey", b"\x00" + NS(b"ssh-ed25519" + FORGED) + unknown),
        (b"root" + FORGED, b"password", b"\x00" + NS(b"guess")),
    ]


class Auth(userauth.SSHUserAuthClient):
    def __init__(self, done: defer.Deferred) -> None:
        super().__init__(b"root", None)
        self.done, self.failures = done, 0

    def serviceStarted(self) -> None:  # noqa: N802
        for user, method, data in requests():
            self.transport.sendPacket(
                userauth.MSG_USERAUTH_REQUEST,
                NS(user) + NS(b"ssh-connection") + NS(method) + data,
            )

    def ssh_USERAUTH_FAILURE(self, packet: bytes) -> None:  # noqa: N802
        self.failures += 1
        if self.failures == len(requests()):
            self.done.callback(self.failures)


class Client(transport.SSHClientTransport):
    def verifyHostKey(self, host_key: bytes, fp: bytes) -> defer.Deferred:  # noqa: N802
        return defer.succeed(True)

    def connectionSecure(self) -> None:  # noqa: N802
        self.requestService(self.factory.auth)


def main() -> None:
    done: defer.Deferred = defer.Deferred()
    factory = protocol.ClientFactory.forProtocol(Client)
    factory.auth = Auth(done)
    reactor.connectTCP("127.0.0.1", int(sys.argv[1]), factory, timeout=10)
    done.addCallback(lambda n: print("failures", n, flush=True))
    done.addBoth(lambda _: reactor.stop())
    reactor.callLater(20, done.errback, TimeoutError("no answer"))
    reactor.run()


if __name__ == "__main__":
    main()
