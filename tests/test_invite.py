"""Invites: sealing, opening, and the two errors users may see (partypool.invite)."""

from __future__ import annotations

import base64
import json
import subprocess
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from partypool import identity
from partypool import invite as inv
from partypool.tls import ensure_self_signed

FAST = 1_000  # PBKDF2 iterations in tests; the default stays 390000


def sample(**changes: object) -> inv.Invite:
    fields: dict[str, object] = {
        "host": "chat.example.org",
        "chat_port": 12345,
        "admin_port": 12346,
        "tls": True,
        "tls_fingerprint": "AB:CD",
        "ssh_fingerprint": "SHA256:abc",
        "server_name": "Example",
        "protocol": "partypool/1",
        "version": "0.1.0",
    }
    fields.update(changes)
    return inv.Invite(**fields)  # type: ignore[arg-type]


def test_round_trip() -> None:
    """What is sealed with a passkey opens with it, field for field."""
    original = sample(admin_port=None, ssh_fingerprint=None)
    sealed = inv.seal_invite(original, "correct horse", iterations=FAST)
    assert inv.open_invite(sealed, "correct horse") == original


def test_sealed_file_hides_the_server() -> None:
    """The host name is not readable in the file, and the envelope is documented."""
    sealed = inv.seal_invite(sample(), "pk", iterations=FAST)
    assert b"chat.example.org" not in sealed
    envelope = json.loads(sealed)
    assert envelope["partypool-invite"] == 1
    assert envelope["kdf"] == "pbkdf2-sha256"
    assert envelope["iterations"] == FAST
    assert len(base64.b64decode(envelope["salt"])) == 16


def test_default_cost() -> None:
    """New invites use 390000 PBKDF2 iterations unless told otherwise."""
    assert inv.DEFAULT_ITERATIONS == 390_000
    envelope = json.loads(inv.seal_invite(sample(), "pk"))
    assert envelope["iterations"] == 390_000


def test_salt_is_fresh() -> None:
    """Two seals of one invite differ (random salt), both open."""
    a = inv.seal_invite(sample(), "pk", iterations=FAST)
    b = inv.seal_invite(sample(), "pk", iterations=FAST)
    assert a != b
    assert inv.open_invite(a, "pk") == inv.open_invite(b, "pk")


def test_wrong_passkey() -> None:
    """A wrong passkey is a plain InviteError, not a traceback."""
    sealed = inv.seal_invite(sample(), "right", iterations=FAST)
    with pytest.raises(inv.InviteError, match="^wrong passkey or damaged invite$"):
        inv.open_invite(sealed, "wrong")


@pytest.mark.parametrize(
    "damage",
    [
        lambda e: e.update(token=e["token"][:-4] + "AAAA"),
        lambda e: e.update(salt=base64.b64encode(b"x" * 16).decode()),
        lambda e: e.update(iterations=e["iterations"] + 1),
        lambda e: e.update(iterations=10**12),
        lambda e: e.update(iterations="1000"),
        lambda e: e.update(kdf="scrypt"),
        lambda e: e.update(salt="not base64!"),
        lambda e: e.pop("token"),
    ],
)
def test_tampered_envelope(damage) -> None:
    """Any change to the envelope or token is detected as damage."""
    envelope = json.loads(inv.seal_invite(sample(), "pk", iterations=FAST))
    damage(envelope)
    with pytest.raises(inv.InviteError, match="wrong passkey or damaged invite"):
        inv.open_invite(json.dumps(envelope).encode(), "pk")


@pytest.mark.parametrize(
    "data", [b"", b"\xff\xfe", b"[1, 2]", b"not json", b"{}", b"null"]
)
def test_garbage(data: bytes) -> None:
    """Files that are not invites at all are reported as damaged."""
    with pytest.raises(inv.InviteError, match="wrong passkey or damaged invite"):
        inv.open_invite(data, "pk")


def test_flipped_byte() -> None:
    """Flipping any one byte of the token breaks authentication."""
    sealed = inv.seal_invite(sample(), "pk", iterations=FAST)
    envelope = json.loads(sealed)
    token = bytearray(base64.urlsafe_b64decode(envelope["token"]))
    token[len(token) // 2] ^= 0x01
    envelope["token"] = base64.urlsafe_b64encode(bytes(token)).decode()
    with pytest.raises(inv.InviteError):
        inv.open_invite(json.dumps(envelope).encode(), "pk")


def test_unknown_version() -> None:
    """An invite from a newer format names its version instead of failing vaguely."""
    envelope = json.loads(inv.seal_invite(sample(), "pk", iterations=FAST))
    envelope["partypool-invite"] = 2
    with pytest.raises(inv.InviteError, match="^unsupported invite version 2$"):
        inv.open_invite(json.dumps(envelope).encode(), "pk")


def test_bad_body_is_damage() -> None:
    """A well-sealed body with wrong field types is refused, not half-trusted."""
    from cryptography.fernet import Fernet

    salt = b"s" * 16
    key = inv._derive_key("pk", salt, FAST)
    body = json.dumps({"host": 5}).encode()
    envelope = {
        "partypool-invite": 1,
        "kdf": "pbkdf2-sha256",
        "iterations": FAST,
        "salt": base64.b64encode(salt).decode(),
        "token": Fernet(key).encrypt(body).decode(),
    }
    with pytest.raises(inv.InviteError, match="damaged"):
        inv.open_invite(json.dumps(envelope).encode(), "pk")


def test_embedded_invite_unfrozen() -> None:
    """Outside a frozen build there is no embedded invite."""
    assert inv.embedded_invite() is None


def test_embedded_invite_frozen(tmp_path: Path, monkeypatch) -> None:
    """In a PyInstaller build the invite is read from sys._MEIPASS."""
    (tmp_path / inv.INVITE_FILENAME).write_bytes(b"sealed")
    monkeypatch.setattr(sys, "frozen", True, raising=False)
    monkeypatch.setattr(sys, "_MEIPASS", str(tmp_path), raising=False)
    assert inv.embedded_invite() == b"sealed"


def test_package_version_matches_setup_cfg() -> None:
    """The version comes from setup.cfg (installed or not)."""
    setup_cfg = Path(__file__).resolve().parent.parent / "setup.cfg"
    assert f"version = {inv.package_version()}" in setup_cfg.read_text()


def make_data_dir(root: Path, *, ssh: bool = True) -> tuple[bytes, bytes | None]:
    """A server data dir with a self-signed cert and (optionally) an SSH host key."""
    cert_path, _ = ensure_self_signed(root / "tls")  # as the server makes it
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    host_key = None
    if ssh:
        (root / "ssh").mkdir()
        host_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        )
        (root / "ssh" / "host_key").write_bytes(host_key)
    return cert.public_bytes(serialization.Encoding.DER), host_key


def test_fingerprints_from_data_dir(tmp_path: Path) -> None:
    """The invite pins the cert (openssl's format) and the host key (ssh's format)."""
    der, host_key = make_data_dir(tmp_path)
    invite = inv.invite_for_data_dir(tmp_path, "h.example", server_name="H")
    import hashlib

    assert invite.tls_fingerprint == ":".join(
        f"{b:02X}" for b in hashlib.sha256(der).digest()
    )
    assert invite.ssh_fingerprint is not None
    assert invite.ssh_fingerprint.startswith("SHA256:")
    assert not invite.ssh_fingerprint.endswith("=")
    # Cross-check with Twisted's own OpenSSH-style fingerprint.
    from twisted.conch.ssh.keys import FingerprintFormats, Key

    twisted_style = Key.fromString(host_key).fingerprint(
        FingerprintFormats.SHA256_BASE64
    )
    assert invite.ssh_fingerprint == "SHA256:" + twisted_style.rstrip("=")
    assert (invite.host, invite.chat_port, invite.admin_port) == (
        "h.example",
        12345,
        12346,
    )
    assert invite.server_name == "H"


def test_data_dir_without_ssh_or_tls(tmp_path: Path) -> None:
    """No host key: no SSH pin. --no-tls: no certificate needed."""
    make_data_dir(tmp_path, ssh=False)
    assert inv.invite_for_data_dir(tmp_path, "h").ssh_fingerprint is None
    plain = inv.invite_for_data_dir(tmp_path / "empty", "h", tls=False)
    assert (plain.tls, plain.tls_fingerprint) == (False, None)


def test_missing_certificate_is_explained(tmp_path: Path) -> None:
    """A TLS invite for a server never started says what to do."""
    with pytest.raises(inv.InviteError, match="start the server once"):
        inv.invite_for_data_dir(tmp_path, "h")


def test_invite_command(tmp_path: Path) -> None:
    """partypool-invite writes a file that opens with the passkey from the env."""
    make_data_dir(tmp_path / "data")
    out = tmp_path / "invite.json"
    result = subprocess.run(
        [sys.executable, "-m", "partypool.invite", "--data-dir", str(tmp_path / "data")]
        + ["--host", "h.example", "--port", "4000", "--output", str(out)],
        env={"PARTYPOOL_PASSKEY": "sekrit", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    invite = inv.open_invite(out.read_bytes(), "sekrit")
    assert (invite.host, invite.chat_port, invite.tls) == ("h.example", 4000, True)


def test_invite_command_error_is_one_line(tmp_path: Path) -> None:
    """A missing certificate is one error line and exit status 1, no traceback."""
    result = subprocess.run(
        [sys.executable, "-m", "partypool.invite", "--data-dir", str(tmp_path)]
        + ["--host", "h"],
        env={"PARTYPOOL_PASSKEY": "x", "PATH": "/usr/bin:/bin"},
        cwd=Path(__file__).resolve().parent.parent,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert result.stderr.startswith("partypool-invite: cannot read the TLS")


def test_fingerprints_agree_with_the_server(tmp_path: Path) -> None:
    """The invite pins exactly what the server itself reports for its keys."""
    make_data_dir(tmp_path)
    invite = inv.invite_for_data_dir(tmp_path, "h")
    tls = pytest.importorskip("partypool.tls")
    cert_pem = (tmp_path / "tls" / "cert.pem").read_bytes()
    assert invite.tls_fingerprint == tls.certificate_fingerprint(cert_pem)
    host_key = tmp_path / "ssh" / "host_key"
    assert invite.ssh_fingerprint == identity.host_key_fingerprint(host_key)


def test_shared_constants() -> None:
    """The protocol version and KDF cost come from the server's modules."""
    from partypool import wire
    from partypool.room import auth

    assert inv.PROTOCOL == wire.PROTOCOL_VERSION
    assert inv.Invite("h", 1, None, False, None, None, "n").protocol == inv.PROTOCOL
    assert inv.DEFAULT_ITERATIONS == auth.DEFAULT_ITERATIONS


@pytest.mark.parametrize("module", ["partypool.invite", "partypool.client.main"])
def test_import_leaves_reactor_alone(module: str) -> None:
    """The client installs its own reactor: importing its modules (the
    invite module included) must not install one."""
    code = f"import {module}, sys; print('twisted.internet.reactor' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(
    "host, port, tls, url",
    [
        ("192.168.1.20", 12347, True, "https://192.168.1.20:12347/"),
        ("chat.example.org", 443, True, "https://chat.example.org/"),
        ("chat.example.org", 80, False, "http://chat.example.org/"),
        ("fd00::5", 12347, False, "http://[fd00::5]:12347/"),
    ],
)
def test_web_url(host: str, port: int, tls: bool, url: str) -> None:
    assert inv.web_url(host, port, tls=tls) == url


def test_invite_web_and_qr_print_the_page_address(tmp_path: Path, capsys) -> None:
    """--web needs no passkey (the address is no secret); --qr draws it too."""
    empty = ["--data-dir", str(tmp_path)]  # no server record there
    assert inv.main([*empty, "--host", "party.lan", "--web"]) == 0
    assert capsys.readouterr().out == "https://party.lan:12347/\n"
    qr = [*empty, "--host", "party.lan", "--qr", "--web-port", "8443"]
    assert inv.main(qr) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "https://party.lan:8443/"
    code = out[1:]
    assert len(code) > 10 and all(len(line) == len(code[0]) for line in code)
    assert set("".join(code)) <= set("█▀▄\xa0")


def test_qr_code_decodes_to_the_address() -> None:
    """The drawing is the library's matrix for the URL, cell for cell."""
    import qrcode

    url = "https://192.168.1.20:12347/"
    matrix = qrcode.QRCode(border=2)
    matrix.add_data(url)
    cells = matrix.get_matrix()
    lines = inv.qr_text(url).splitlines()
    assert len(lines) == (len(cells) + 1) // 2
    top = lines[len(lines) // 2]
    row = cells[2 * (len(lines) // 2)]
    below = cells[2 * (len(lines) // 2) + 1]
    # inverted for a dark terminal: a light cell (False) is drawn as a block
    for x, (up, down) in enumerate(zip(row, below, strict=True)):
        assert (
            top[x]
            == {(0, 0): "█", (0, 1): "▀", (1, 0): "▄", (1, 1): "\xa0"}[
                (int(up), int(down))
            ]
        )


def test_invite_web_reads_the_servers_record(tmp_path: Path, capsys) -> None:
    """The web door's port, TLS and a sole listening host come from what the
    server recorded when it started; a flag still wins."""
    from partypool.datadir import ServerRecord, write_server_record

    record = ServerRecord(
        {"chat": 2000, "web": 8080}, "Pool", tls=False, host="10.1.2.3"
    )
    write_server_record(tmp_path, record)
    assert inv.main(["--data-dir", str(tmp_path), "--web"]) == 0
    assert capsys.readouterr().out == "http://10.1.2.3:8080/\n"
    assert inv.main(["--data-dir", str(tmp_path), "--web", "--web-port", "9"]) == 0
    assert capsys.readouterr().out == "http://10.1.2.3:9/\n"
