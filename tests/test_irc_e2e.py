"""End to end: the real ``twistd -n partypool --irc``, real IRC clients (irssi
and WeeChat, driven in tmux, over TLS with the certificate pinned) and raw
sockets, chatting with a v1 client written from the protocol alone."""

from __future__ import annotations

import base64
import shutil
import socket
import ssl
import subprocess
import time
import uuid
from pathlib import Path

import pytest
import scramp

from tests.conftest import start_server

pytestmark = pytest.mark.slow
SCREEN_TIMEOUT = 20.0


@pytest.fixture
def irc_server(tmp_path: Path):
    server = start_server(tmp_path / "data", "--irc", "tcp:0:interface=127.0.0.1")
    server.irc_port = int(server.wait_for(r"IRC gateway listening on \S+:(\d+)")[1])
    yield server
    if server.process.poll() is None:
        server.stop()


class RawIrc:
    """A TLS socket speaking IRC by hand, every wait bounded."""

    def __init__(self, server) -> None:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        context.check_hostname, context.verify_mode = False, ssl.CERT_NONE
        raw = socket.create_connection((server.host, server.irc_port), timeout=10)
        self.sock = context.wrap_socket(raw)
        self.buffer = b""

    def send(self, *lines: str) -> None:
        self.sock.sendall("".join(line + "\r\n" for line in lines).encode())

    def expect(self, word: str) -> str:
        """The next line whose command (or numeric) is ``word``."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            while b"\r\n" in self.buffer:
                line, self.buffer = self.buffer.split(b"\r\n", 1)
                text = line.decode()
                words = [w for w in text.split(" ") if not w.startswith(("@", ":"))]
                if words and words[0] == word:
                    return text
            data = self.sock.recv(65536)
            if not data:
                break
            self.buffer += data
        raise AssertionError(f"no {word} line; left: {self.buffer!r}")

    def close(self) -> None:
        self.sock.close()


def test_raw_sasl_scram_over_tls_chats_with_a_v1_client(irc_server):
    """The whole SCRAM exchange over the real gateway, then messages both ways."""
    irc = RawIrc(irc_server)
    # Ten lines in all, the default burst: no more, or the rate limit drops some.
    irc.send("CAP REQ :sasl", "NICK alice", "USER a 0 * :A")
    assert irc.expect("CAP").endswith(" ACK :sasl")
    scram = scramp.ScramClient(["SCRAM-SHA-256"], "chat", irc_server.passkey)
    irc.send("AUTHENTICATE SCRAM-SHA-256")
    irc.expect("AUTHENTICATE")
    irc.send("AUTHENTICATE " + _b64(scram.get_client_first()))
    scram.set_server_first(_unb64(irc.expect("AUTHENTICATE").split(" ")[1]))
    irc.send("AUTHENTICATE " + _b64(scram.get_client_final()))
    scram.set_server_final(_unb64(irc.expect("AUTHENTICATE").split(" ")[1]))
    irc.send("AUTHENTICATE +")
    irc.expect("903")
    irc.send("CAP END")
    irc.expect("001")
    irc.expect("366")
    bob = irc_server.joined("bob", source="127.0.0.5")
    assert irc.expect("JOIN").endswith(":bob!bob@partypool JOIN #party")
    bob.send("SAY hello alice")
    assert irc.expect("PRIVMSG").endswith("PRIVMSG #party :hello alice")
    irc.send("PRIVMSG #party :hello bob")
    assert bob.expect("CHAT") == "CHAT alice hello bob"
    irc.send("QUIT :done")
    irc.expect("ERROR")
    assert bob.expect("LEFT") == "LEFT alice quit: done"
    irc.close()
    bob.close()


# -- real clients in tmux -------------------------------------------------------


def _tmux(*args: str) -> str:
    return subprocess.run(
        ["tmux", *args], check=True, capture_output=True, text=True, timeout=10
    ).stdout


class Terminal:
    """A terminal program in a detached tmux session: type, read the screen."""

    def __init__(self, command: str, env: dict[str, str]) -> None:
        self.name = f"pp-{uuid.uuid4().hex[:8]}"
        prefix = " ".join(f"{k}={v}" for k, v in env.items())
        _tmux(
            "new-session", "-d", "-s", self.name, "-x", "160", "-y", "50",
            f"env {prefix} {command}",
        )  # fmt: skip

    def type(self, text: str) -> None:
        _tmux("send-keys", "-t", self.name, text, "Enter")

    def screen(self) -> str:
        return _tmux("capture-pane", "-p", "-t", self.name, "-S", "-200")

    def wait_for(self, text: str, timeout: float = SCREEN_TIMEOUT) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.2)
        raise AssertionError(f"{text!r} never appeared; screen:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], timeout=10)


def _needs(program: str) -> None:
    if shutil.which(program) is None or shutil.which("tmux") is None:
        pytest.skip(f"{program} and tmux are needed (.ci/run installs them)")


def test_irssi_over_tls_with_the_certificate_pinned(irc_server, tmp_path):
    """irssi (SASL PLAIN, as it speaks) joins #party and chats with v1."""
    _needs("irssi")
    home = tmp_path / "irssi"
    home.mkdir()
    term = Terminal(f"irssi --home={home} -n alice", {"TERM": "tmux-256color"})
    try:
        term.wait_for("Irssi v")
        term.type(
            "/network add -sasl_username chat "
            f"-sasl_password '{irc_server.passkey}' -sasl_mechanism PLAIN party"
        )
        term.type(
            f"/server add -tls -notls_verify -tls_pinned_cert {irc_server.fingerprint}"
            f" -network party 127.0.0.1 {irc_server.irc_port}"
        )
        term.type("/connect party")
        term.wait_for("SASL authentication succeeded")
        term.type("/window 2")
        term.wait_for("alice [alice@partypool] has joined #party")
        bob = irc_server.joined("bob.smith", source="127.0.0.5")
        term.wait_for("bob.smith [bob.smith@partypool] has joined #party")
        bob.send("SAY hello from the terminal client ✓")
        term.wait_for("< bob.smith> hello from the terminal client ✓")
        term.type("hi bob, this is irssi é")
        assert bob.expect("CHAT") == "CHAT alice hi bob, this is irssi é"
        term.type("/window 1")
        assert "rate-limited" not in term.wait_for("SASL authentication succeeded")
        term.type("/quit see you")
        assert bob.expect("LEFT") == "LEFT alice quit: see you"
        bob.close()
    finally:
        term.close()


def test_irssi_with_pass_as_documented(tmp_path):
    """docs/irc.md's irssi line without SASL: /connect with the TLS options
    and the passkey after the port (a generated one: words and dashes)."""
    _needs("irssi")
    server = start_server(
        tmp_path / "data",
        "--irc",
        "tcp:0:interface=127.0.0.1",
        passkey="tea-party-passkey-words",
    )
    port = int(server.wait_for(r"IRC gateway listening on \S+:(\d+)")[1])
    home = tmp_path / "irssi"
    home.mkdir()
    term = Terminal(f"irssi --home={home} -n carol", {"TERM": "tmux-256color"})
    try:
        term.wait_for("Irssi v")
        term.type(
            f"/connect -tls -notls_verify -tls_pinned_cert {server.fingerprint}"
            f" 127.0.0.1 {port} tea-party-passkey-words"
        )
        term.wait_for("Welcome to")
        term.type("/window 2")
        term.wait_for("carol [carol@partypool] has joined #party")
        term.type("/quit")
        server.wait_for(r"carol left: quit")
    finally:
        term.close()
        server.stop()


def test_weechat_scram_over_tls_with_the_certificate_pinned(irc_server, tmp_path):
    """WeeChat (SASL SCRAM-SHA-256) joins #party and chats with v1."""
    _needs("weechat")
    home = tmp_path / "weechat"
    home.mkdir()
    fingerprint = irc_server.fingerprint.replace(":", "").lower()
    # Typed lines arrive fast: not a paste to ask about.
    paste = "'/set weechat.look.paste_max_lines -1'"
    term = Terminal(f"weechat -d {home} -r {paste}", {"TERM": "tmux-256color"})
    try:
        term.wait_for("Plugins loaded")
        version = subprocess.run(
            ["weechat", "--version"], capture_output=True, text=True, timeout=10
        ).stdout
        tls = "tls" if int(version.split(".")[0]) >= 4 else "ssl"  # renamed in 4.0
        term.type(
            f"/server add party 127.0.0.1/{irc_server.irc_port} -{tls}"
            f" -{tls}_fingerprint={fingerprint} -sasl_mechanism=scram-sha-256"
            " -sasl_username=chat -nicks=wendy -autojoin=#party"
        )
        term.type(f'/set irc.server.party.sasl_password "{irc_server.passkey}"')
        term.type("/connect party")
        term.wait_for("wendy (wendy@partypool) has joined #party")
        bob = irc_server.joined("bob", source="127.0.0.5")
        screen = term.wait_for("bob (bob@partypool) has joined #party")
        # -autojoin's JOIN after the one at registration is ignored: once.
        assert screen.count("wendy (wendy@partypool) has joined #party") == 1
        bob.send("SAY hello WeeChat")
        term.wait_for("hello WeeChat")
        term.type("hi bob from WeeChat")
        assert bob.expect("CHAT") == "CHAT wendy hi bob from WeeChat"
        term.type("/buffer party")
        screen = term.wait_for("SASL authentication successful")
        assert "rate-limited" not in screen
        term.type("/quit")
        assert bob.expect("LEFT").startswith("LEFT wendy quit")
        bob.close()
    finally:
        term.close()


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _unb64(text: str) -> str:
    return base64.b64decode(text).decode()
