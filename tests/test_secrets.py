"""Secrets stay out of reprs, and a line limit too small to log in is refused
(issue 6, "Limits and behaviours").  Fast, in-process checks; the real-process
log checks are in test_hardening.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.internet.task import Clock
from twisted.python import usage

from partypool import tap
from partypool.room.auth import ChatVerifier, RootPassword
from partypool.room.pool import make_server

PASSKEY = "pk-unit-SECRET-3f9a"
ROOT = "root-unit-SECRET-b71c"


def parse(tmp_path: Path, *args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(
        [
            "--data-dir",
            str(tmp_path / "data"),
            "--kdf-iterations",
            "4096",
            "--no-admin",
            *args,
        ]
    )
    return options


def test_options_repr_hides_the_passkey_and_root_password(tmp_path, monkeypatch):
    """Options is a dict: its repr (in a traceback, a debugger, a log line)
    must not show the secrets it was given, from any source."""
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", ROOT)
    options = parse(tmp_path, "--passkey", PASSKEY)
    assert options["passkey"] == PASSKEY  # still there for makeService
    for text in (repr(options), str(options), f"{options!r}"):
        assert PASSKEY not in text and ROOT not in text
    assert "'passkey': '<hidden>'" in repr(options)
    assert "'max-line': 4096" in repr(options)


def test_secret_holders_have_no_secret_in_their_repr():
    verifier = ChatVerifier.from_passkey(PASSKEY, 4096)
    root = RootPassword.from_password(ROOT, 4096)
    pool = make_server(verifier=verifier, store=None, clock=Clock(), server_name="unit")
    for thing in (verifier, root, pool, verifier.exchange()):
        text = repr(thing)
        assert PASSKEY not in text and ROOT not in text
        for secret in (verifier.stored_key, verifier.server_key, root.digest):
            assert secret.hex() not in text and repr(secret) not in text


def test_max_line_too_small_to_log_in_is_refused(tmp_path, monkeypatch):
    """A SCRAM AUTH-RESPONSE line is about 270 bytes: --max-line below 512
    would lock everyone out, so it is refused with the minimum named."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    with pytest.raises(usage.UsageError, match="at least 512"):
        parse(tmp_path, "--max-line", "511")
    assert parse(tmp_path, "--max-line", "512")["max-line"] == 512


def test_where_each_secret_came_from_is_kept_for_the_log(tmp_path, monkeypatch):
    """The log says where the passkey and root password came from (a file,
    the environment, the data directory, the command line), never what."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", PASSKEY)
    (tmp_path / "data").mkdir(mode=0o700)
    kept = tmp_path / "data" / "root-password"
    kept.write_text(ROOT)
    kept.chmod(0o600)
    options = parse(tmp_path)
    assert options["secret-sources"] == {
        "passkey": "PARTYPOOL_PASSKEY",
        "root-password": f"{kept} (kept)",
    }
    given = tmp_path / "given"
    given.write_text(ROOT)
    given.chmod(0o600)
    options = parse(tmp_path, "--passkey", PASSKEY, "--root-password-file", str(given))
    assert options["secret-sources"] == {
        "passkey": "the command line",
        "root-password": f"--root-password-file {given}",
    }
    assert PASSKEY not in repr(options["secret-sources"])
