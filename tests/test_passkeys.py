"""Strong passkeys by default (issue 13.4): the generator, the strength check,
and the warnings from the server, ``partypool-invite`` and ``partypool-passkey``."""

from __future__ import annotations

import io
import stat
from pathlib import Path

import pytest
from twisted.logger import LogLevel, globalLogPublisher

from partypool import invite, passkeys, tap


def test_generated_passkeys_are_random_words() -> None:
    """Five words from the EFF long list, different every time, and
    rated strong by the same check that warns about typed ones."""
    made = {passkeys.generate_passkey() for _ in range(50)}
    assert len(made) == 50
    for passkey in made:
        words = passkey.split("-")
        assert len(words) == 5
        assert all(word in passkeys._words() for word in words)
        assert passkeys.passkey_weakness(passkey) is None
    assert len(passkeys._words()) > 7700  # the EFF long list, 7,776 words
    assert all(word.isalpha() for word in passkeys._words())


@pytest.mark.parametrize(
    "weak",
    [
        "hunter2",
        "password123456",
        "aaaaaaaaaaaaaaaa",
        "qwertyuiopasdf",
        "12345678901234",
    ],
)
def test_weak_passkeys(weak: str) -> None:
    """Short ones by length, long but guessable ones by zxcvbn's estimate."""
    assert passkeys.passkey_weakness(weak) is not None
    warning = passkeys.weak_passkey_warning(weak)
    assert "partypool-passkey" in warning and weak not in warning


def test_strong_typed_passkey() -> None:
    assert passkeys.passkey_weakness("pillow-Quartz-fjord 1987 banter!") is None


def test_invite_warns_on_weak_passkey(tmp_path: Path, monkeypatch, capsys) -> None:
    """partypool-invite seals with the server's passkey, weak or not, and
    says on stderr that it is weak (without printing it)."""
    secret = tmp_path / "passkey"
    secret.write_text("hunter2\n")
    assert invite.read_passkey(str(secret)) == "hunter2"
    err = capsys.readouterr().err
    assert "weak" in err and "hunter2" not in err
    secret.write_text(passkeys.generate_passkey() + "\n")
    invite.read_passkey(str(secret))
    assert capsys.readouterr().err == ""


def test_server_warns_on_weak_secrets(tmp_path: Path, monkeypatch) -> None:
    """The server logs a warning for a weak passkey and a weak root
    password, never the secret itself."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "hunter2")
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", "letmein")
    options = tap.Options()
    options.parseOptions(
        ["--data-dir", str(tmp_path / "data"), "--kdf-iterations", "4096"]
    )
    events: list[dict] = []
    globalLogPublisher.addObserver(events.append)
    try:
        tap.warn_weak_secrets(options)
    finally:
        globalLogPublisher.removeObserver(events.append)
    warnings = [e for e in events if e["log_level"] == LogLevel.warn]
    texts = [e["warning"] for e in warnings]
    assert any(t.startswith("the passkey is weak") for t in texts)
    assert any(t.startswith("the root password is weak") for t in texts)
    assert not any("hunter2" in t or "letmein" in t for t in texts)


def test_partypool_passkey_writes_private_file(tmp_path: Path, capsys) -> None:
    """``partypool-passkey -o FILE`` writes a new 0600 file and never
    replaces one (it may be the passkey a server runs with)."""
    path = tmp_path / "passkey"
    assert passkeys.main(["-o", str(path)]) == 0
    made = path.read_text().rstrip("\n")
    assert len(made.split("-")) == 5
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert made not in capsys.readouterr().err
    assert passkeys.main(["-o", str(path)]) == 1
    assert path.read_text().rstrip("\n") == made


def test_partypool_passkey_check(tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("hunter2\n"))
    assert passkeys.main(["--check", "-"]) == 1
    assert capsys.readouterr().out.startswith("weak:")
    good = tmp_path / "good"
    good.write_text(passkeys.generate_passkey())
    assert passkeys.main(["--check", str(good)]) == 0


def test_offer_passkey_enter_takes_the_suggestion(monkeypatch, capsys) -> None:
    """Asked for a new passkey, Enter takes the generated one shown."""
    monkeypatch.setattr("getpass.getpass", lambda prompt="": "")
    chosen = passkeys.offer_passkey()
    assert f"Suggested passkey: {chosen}" in capsys.readouterr().err
    answers = iter(["hunter2", "hunter2"])
    monkeypatch.setattr("getpass.getpass", lambda prompt="": next(answers))
    assert passkeys.offer_passkey() == "hunter2"
    assert "weak" in capsys.readouterr().err
