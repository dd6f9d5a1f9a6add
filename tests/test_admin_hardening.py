"""The admin port against hostile and careless clients, in memory.

What is offered before login (algorithms, no compression), requests crafted
to reach the log, the log of a normal session, and ``authorized_keys`` edited
while the server runs.  Same in-memory conch client as tests/test_admin_ssh.py.
"""

from __future__ import annotations

import struct

import pytest
from twisted.conch.ssh import keys, transport, userauth
from twisted.conch.ssh.common import NS, getNS
from twisted.internet.address import IPv4Address
from twisted.internet.testing import StringTransport
from twisted.logger import LogLevel, formatEvent, globalLogPublisher

from partypool import logs
from partypool.admin.ssh import USER_KEY_ALGORITHMS, AdminServerTransport
from tests.test_admin_ssh import (
    PASSWORD,
    AdminSSHTestCase,
    ClientAuth,
    ClientConnection,
    ClientTransport,
    Session,
    new_key,
)

# What OpenSSH and older clients may ask for that the port must not give.
UNWANTED = {
    "key exchange": [
        b"diffie-hellman-group1-sha1",
        b"diffie-hellman-group14-sha1",
        b"diffie-hellman-group-exchange-sha1",
        b"diffie-hellman-group-exchange-sha256",
    ],
    "cipher": [b"3des-cbc", b"aes128-cbc", b"aes192-cbc", b"aes256-cbc", b"3des-ctr"],
    "MAC": [b"hmac-sha1", b"hmac-md5", b"none"],
    "compression": [b"zlib", b"zlib@openssh.com"],
}
CONTROLS = ("\n", "\r", "\x1b", "\x00", "\x85", "\u2028", "\x1c")


def server_offer(factory) -> dict[str, list[bytes]]:
    """The server's KEXINIT, read off the wire before the client says a word."""
    server = factory.buildProtocol(IPv4Address("TCP", "127.0.6.7", 40000))
    wire = StringTransport(peerAddress=IPv4Address("TCP", "127.0.6.7", 40000))
    server.makeConnection(wire)
    packet = wire.value().split(b"\r\n", 1)[1]
    length, padding = struct.unpack(">IB", packet[:5])
    payload = packet[5 : 4 + length - padding]
    assert payload[0] == transport.MSG_KEXINIT
    names = [field.split(b",") for field in getNS(payload[17:], 10)[:10]]
    server.connectionLost(None)
    return {
        "key exchange": names[0],
        "host key": names[1],
        "cipher": names[2] + names[3],
        "MAC": names[4] + names[5],
        "compression": names[6] + names[7],
    }


class Insisting(ClientTransport):
    """A conch client that offers only what a test puts in its lists."""


class HostileAuth(userauth.SSHUserAuthClient):
    """Sends the USERAUTH_REQUESTs a test crafts, byte for byte, then waits
    (with no method, ``data`` is the whole request)."""

    def __init__(self, requests: list[tuple[bytes, bytes, bytes]]) -> None:
        super().__init__(b"root", ClientConnection(Session(b"stats")))
        self.requests = requests
        self.failures = self.accepted = 0

    def serviceStarted(self) -> None:  # noqa: N802
        for user, method, data in self.requests:
            header = NS(user) + NS(b"ssh-connection") + NS(method) if method else b""
            self.transport.sendPacket(userauth.MSG_USERAUTH_REQUEST, header + data)

    def ssh_USERAUTH_FAILURE(self, packet: bytes) -> None:  # noqa: N802
        self.failures += 1

    def ssh_USERAUTH_PK_OK(self, packet: bytes) -> None:  # noqa: N802
        self.accepted += 1


class AlgorithmTests(AdminSSHTestCase):
    def test_only_modern_algorithms_are_offered_and_no_compression(self) -> None:
        offer = server_offer(self.factory)
        self.assertEqual(offer["compression"], [b"none", b"none"])
        for kind, names in UNWANTED.items():
            with self.subTest(kind):
                self.assertFalse(set(names) & set(offer[kind]), offer[kind])
        self.assertIn(b"curve25519-sha256", offer["key exchange"])
        self.assertEqual(offer["host key"], [b"ssh-ed25519"])

    def test_a_client_insisting_on_an_old_algorithm_gets_no_session(self) -> None:
        """zlib before login (the compression bomb), CBC, SHA-1: each one alone
        ends the connection at key exchange, before any packet is inflated."""
        lists = {
            "key exchange": "supportedKeyExchanges",
            "cipher": "supportedCiphers",
            "MAC": "supportedMACs",
            "compression": "supportedCompressions",
        }
        for kind, names in UNWANTED.items():
            for name in names:
                with self.subTest(name.decode()):
                    client_class = type(
                        "Insisting", (Insisting,), {lists[kind]: [name]}
                    )
                    chan = Session(b"stats")
                    auth = ClientAuth(
                        b"root", ClientConnection(chan), key=self.root_key
                    )
                    pump = self.wire(client_class(auth))
                    self.assertFalse(chan.opened.called)
                    self.assertIsNone(pump.server.incomingCompression)
                    self.assertTrue(pump.server.transport.disconnecting)
        self.assertEqual(len(self.factory.unauthenticated), 0)

    def test_a_client_preferring_zlib_gets_none(self) -> None:
        """``ssh -C`` offers zlib first and none after it: it works, uncompressed."""
        client_class = type(
            "Compressing", (Insisting,), {"supportedCompressions": [b"zlib", b"none"]}
        )
        chan = Session(b"list-conn -u")
        auth = ClientAuth(b"root", ClientConnection(chan), key=self.root_key)
        pump = self.wire(client_class(auth))
        self.assertEqual((chan.output, chan.status), (b"alice\n", 0))
        self.assertIsNone(pump.server.incomingCompression)
        self.assertIsNone(pump.server.outgoingCompression)

    def test_server_sig_algs_names_the_user_key_signatures_accepted(self) -> None:
        """conch names its host key types there; an RSA key then falls back to
        SHA-1 signatures, which OpenSSH refuses to make."""
        chan, client, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(
            client.peerExtensions[b"server-sig-algs"].split(b","),
            list(USER_KEY_ALGORITHMS),
        )

    def test_an_rsa_key_signing_with_sha1_is_refused(self) -> None:
        """``ssh-rsa`` signatures use SHA-1 (OpenSSH stopped making them in
        8.8); rsa-sha2-256/512 with the same key work (tests/test_admin_e2e.py
        logs in with OpenSSH)."""
        from cryptography.hazmat.primitives.asymmetric import rsa

        rsa_key = keys.Key(rsa.generate_private_key(65537, 2048))
        self.keys_file.write_bytes(rsa_key.public().toString("openssh") + b"\n")
        self.assertNotIn(b"ssh-rsa", USER_KEY_ALGORITHMS)
        sha1 = HostileAuth(
            [(b"root", b"publickey", b"\x00" + NS(b"ssh-rsa") + NS(rsa_key.blob()))]
        )
        self.wire(ClientTransport(sha1))
        self.assertEqual(sha1.failures, 1)
        self.assertTrue(self.logged("key algorithm not accepted"))
        sha2 = HostileAuth(
            [
                (
                    b"root",
                    b"publickey",
                    b"\x00" + NS(b"rsa-sha2-512") + NS(rsa_key.blob()),
                )
            ]
        )
        self.wire(ClientTransport(sha2))
        self.assertEqual((sha2.failures, sha2.accepted), (0, 1))  # "it would do"


class HostileRequestTests(AdminSSHTestCase):
    """Requests shaped to reach the log: refused, counted, logged harmlessly."""

    FORGED = b"\n<2>[partypool.admin#critical] root logged in\x1b[2J\r"

    def requests(self) -> list[tuple[bytes, bytes, bytes]]:
        blob = new_key().public().blob()
        bad_blob = NS(b"ssh-ed25519") + NS(b"short")
        utf8 = "\x85\u2028".encode()
        unknown_blob = NS(b"x-unknown") + NS(b"a")  # conch logged the name then
        publickey = [
            b"\x00" + NS(b"ssh-ed25519" + self.FORGED) + NS(unknown_blob),
            b"\x00" + NS(b"ssh-ed25519" + self.FORGED) + NS(bad_blob),
            b"\x00" + NS(b"ssh-ed25519" + self.FORGED) + NS(blob),
            b"\x00" + NS(b"{evil}" + utf8) + NS(bad_blob),
            b"\x00" + NS(b"\xff\xfe" + self.FORGED) + NS(b"\x00garbage"),
            b"\x01" + NS(b"ssh-ed25519") + NS(blob) + NS(b"\x00" * 3),
        ]
        return [(b"root", b"publickey", data) for data in publickey] + [
            (b"root" + self.FORGED, b"password", b"\x00" + NS(b"guess")),
            (b"root", b"keyboard" + self.FORGED, b""),
        ]

    def test_hostile_requests_are_refused_before_any_raw_text_is_logged(self) -> None:
        """A newline, ESC, CR, C1 or U+2028 in a key algorithm or user name
        (conch logged the algorithm as sent, at error level) reaches no event:
        every event formats to one clean line, and each attempt counts."""
        throttle = self.throttle
        throttle.max_failures = 100  # count them all; refusal is tested elsewhere
        hostile = HostileAuth(self.requests())
        client = ClientTransport(hostile)
        self.wire(client)
        self.assertEqual(hostile.failures, len(hostile.requests))
        self.assertIsNone(client.disconnected)
        self.assertGreaterEqual(throttle.recent_failures("127.0.6.7"), 6)
        for event in self.events:
            text = formatEvent(event)
            self.assertFalse([c for c in CONTROLS if c in text], text)
            self.assertNotIn("Unable to format", text)
        self.assertFalse(
            [e for e in self.events if e["log_level"] is LogLevel.critical]
        )
        # Every format writes each of these events as one line of its own.
        for event in self.events:
            self.assertEqual(logs.journal_line(event).count("\n"), 1)
            self.assertEqual(logs.json_line(event).count("\n"), 1)

    def test_a_garbled_request_fails_and_ends_the_connection_quietly(self) -> None:
        """Cut short in its header, its password or its key: a failed attempt,
        a disconnect, and no traceback (conch let the parse error escape)."""
        garbled = [
            (b"", b"", NS(b"root") + b"\x00\x00"),  # the header itself
            *[
                (b"root", m, d)
                for m in (b"password", b"publickey")
                for d in (b"", b"\0")
            ],
        ]
        for user, method, data in garbled:
            with self.subTest(method=method, data=data):
                hostile = HostileAuth([(user, method, data)])
                client = ClientTransport(hostile)
                self.wire(client)
                self.assertEqual(
                    client.disconnected, b"malformed request", (method, data)
                )
        self.assertEqual(self.throttle.recent_failures("127.0.6.7"), 0)
        self.assertTrue(self.throttle.is_refused("127.0.6.7"))
        self.assertFalse(
            [e for e in self.events if e["log_level"] is LogLevel.critical]
        )
        self.assertTrue(self.logged("user b'root', malformed request"))


class QuietLogTests(AdminSSHTestCase):
    """A normal login and logout is news, not a warning; conch's chatter goes."""

    def session(self, **credentials) -> list[str]:
        chan, client, pump = self.connect(command=b"stats", **credentials)
        self.assertEqual(chan.status, 0)
        client.sendDisconnect(
            transport.DISCONNECT_BY_APPLICATION, b"disconnected by user"
        )
        self.settle(pump)
        server = [e for e in self.events if not e["log_namespace"].startswith("tests.")]
        loud = [
            formatEvent(e)
            for e in server
            if e["log_level"] in (LogLevel.warn, LogLevel.error, LogLevel.critical)
        ]
        self.assertEqual(loud, [])
        shown: list[dict] = []
        quiet = logs.quiet(shown.append)
        for event in server:
            quiet(event)
        return [formatEvent(e) for e in shown]

    def test_key_login_and_logout(self) -> None:
        lines = self.session(key=self.root_key)
        self.assertEqual(len(lines), 3, lines)
        self.assertTrue(lines[0].startswith("root logged in (key SHA256:"))
        self.assertIn("ran 'stats': status 0", lines[1])
        self.assertEqual(lines[2], "root (127.0.6.7:40000) logged out")

    def test_password_login_and_logout(self) -> None:
        lines = self.session(password=PASSWORD)
        self.assertEqual(
            lines,
            [
                "root logged in (password) from 127.0.6.7:40000",
                "root (password from 127.0.6.7:40000) ran 'stats': status 0",
                "root (127.0.6.7:40000) logged out",
            ],
        )


class AuthorizedKeysTests(AdminSSHTestCase):
    """``authorized_keys`` is read at each key login: edits count at once."""

    def test_a_key_added_while_running_logs_in_and_a_removed_one_does_not(
        self,
    ) -> None:
        laptop = new_key()
        chan, _, _ = self.connect(command=b"stats", key=laptop)
        self.assertFalse(chan.opened.called)
        with self.keys_file.open("ab") as f:
            f.write(laptop.public().toString("openssh") + b" added later\n")
        chan, _, _ = self.connect(command=b"stats", key=laptop)
        self.assertEqual(chan.status, 0)
        self.keys_file.write_bytes(laptop.public().toString("openssh") + b"\n")
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertFalse(chan.opened.called)

    def test_a_bad_line_is_skipped_and_named_only_by_its_number(self) -> None:
        """A typo must not lock root out, and a pasted private key must not be
        copied into the log."""
        secret = b"b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMw"
        with self.keys_file.open("ab") as f:
            f.write(secret + b"\n")
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertEqual(chan.status, 0)
        self.assertTrue(self.logged("line 2: not a public key in OpenSSH format"))
        self.assertFalse(self.logged(secret.decode()[:20]))

    def test_a_missing_file_means_no_keys_and_the_password_still_works(self) -> None:
        self.keys_file.unlink()
        chan, _, _ = self.connect(command=b"stats", key=self.root_key)
        self.assertFalse(chan.opened.called)
        chan, _, _ = self.connect(command=b"stats", password=PASSWORD)
        self.assertEqual(chan.status, 0)


@pytest.mark.parametrize(
    "description",
    [
        "bye \u202etoor rof nigol dab",  # RIGHT-TO-LEFT OVERRIDE
        "bye \u2067bad login for root\u2069",  # RIGHT-TO-LEFT ISOLATE
        "bye \u061c\u200f\u202bbad login",  # ARABIC LETTER MARK, RLM, RLE
        "bye \u200bro\u2060ot",  # zero-width space and word joiner
    ],
)
def test_ssh_disconnect_description_cannot_reorder_the_log_line(description, capsys):
    """A client's SSH_MSG_DISCONNECT text is logged before any login; a bidi
    control in it would reorder the rest of the operator's line, an
    invisible character hide what it says: in no format is one raw."""
    server = AdminServerTransport.__new__(AdminServerTransport)
    server.peer = "192.0.2.1:5000"
    seen: list[dict] = []
    globalLogPublisher.addObserver(seen.append)
    try:
        server.receiveError(2, description.encode())
    finally:
        globalLogPublisher.removeObserver(seen.append)
    [event] = [e for e in seen if "closed by the client" in formatEvent(e)]
    logs.write_like_twistd({"nodaemon": True})
    logs.text_observer()(event)
    lines = [capsys.readouterr().out, logs.journal_line(event), logs.json_line(event)]
    hidden = set(description) - set(description.encode("ascii", "ignore").decode())
    for line in lines:
        assert not hidden & set(line), ascii(line)
        assert "\\u20" in line or "\\u06" in line, line
