"""``partypool``: the menu, the subcommands, and ``partypool serve``'s
questions, option errors and start-up announcement (issue 17, "One command").
In process and fast; tests/test_operator_journey.py drives the real thing
in a pty."""

from __future__ import annotations

import io
import signal
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from twisted.python import usage

from partypool import datadir, launcher, serve
from partypool.datadir import ServerRecord
from partypool.invite import INVITE_FILENAME, open_invite
from partypool.passkeys import passkey_weakness
from tests.conftest import TWISTD, server_env

REPO = Path(__file__).resolve().parent.parent


def answers(*replies: str):
    """An ``input``/``getpass`` stand-in that gives ``replies`` in order and
    records the prompts."""
    prompts: list[str] = []
    it = iter(replies)

    def ask(prompt: str) -> str:
        prompts.append(prompt)
        try:
            return next(it)
        except StopIteration:
            raise EOFError from None

    ask.prompts = prompts  # type: ignore[attr-defined]
    return ask


# --- the menu and the subcommands ----------------------------------------------


def test_menu_runs_each_choice_as_a_child_and_comes_back(
    tmp_path: Path, monkeypatch
) -> None:
    """Numbers and Enter choose; a stray answer asks again; Exit leaves."""
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    ran: list[list[str]] = []
    said: list[str] = []
    ask = answers("", "9", "2", "1", "4", "5")
    status = launcher.menu(ask=ask, say=said.append, run=lambda a: ran.append(a) or 0)
    assert status == 0
    assert ran == [["package"], ["serve"], ["client"]]
    assert "  [1] Start Server" in said and "  [5] Exit" in said
    assert "Please type a number from 1 to 5, then Enter." in said
    assert (
        said.count("Please type a number from 1 to 5, then Enter.") == 1
    )  # not for ""


def test_menu_clients_use_this_servers_invite(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    monkeypatch.delenv("STATE_DIRECTORY", raising=False)
    invite = tmp_path / "partypool" / INVITE_FILENAME
    invite.parent.mkdir()
    invite.write_text("{}")
    ran: list[list[str]] = []
    launcher.menu(ask=answers("3", "4"), say=lambda _: None, run=ran.append)
    assert ran == [
        ["root", "--invite", str(invite)],
        ["client", "--invite", str(invite)],
    ]


def test_menu_end_of_input_leaves() -> None:
    assert launcher.menu(ask=answers(), say=lambda _: None, run=lambda _: 0) == 0


@pytest.mark.parametrize("name", sorted(launcher.COMMANDS))
def test_each_subcommand_is_the_existing_program(name: str, monkeypatch) -> None:
    """`partypool <name>` calls that program's own main with the rest of the
    line (nothing copied)."""
    import importlib

    module, _, function = launcher.COMMANDS[name][0].partition(":")
    seen: list[list[str]] = []
    monkeypatch.setattr(
        importlib.import_module(module), function, lambda argv: seen.append(argv) or 3
    )
    assert launcher.main([name, "--x", "y"]) == 3
    assert seen == [["--x", "y"]]


def test_unknown_command_and_help(capsys) -> None:
    assert launcher.main(["serv"]) == 2
    assert "unknown command 'serv'" in capsys.readouterr().err
    assert launcher.main(["--help"]) == 0
    assert "package" in capsys.readouterr().out


def test_no_terminal_no_menu() -> None:
    run = subprocess.run(
        [sys.executable, "-m", "partypool"],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr.startswith("Usage: partypool [command [options]]")


# --- partypool serve: the command line -------------------------------------------


def test_twistd_arguments(tmp_path: Path, monkeypatch) -> None:
    """Foreground, no pid file, and the data directory's settings file."""
    data = tmp_path / "data"
    assert serve.twistd_arguments(["--data-dir", str(data)]) == [
        "--nodaemon",
        "--pidfile=",
        "partypool",
        "--data-dir",
        str(data),
    ]
    data.mkdir()
    (data / "partypool.toml").write_text("max-clients = 7\n")
    args = serve.twistd_arguments([f"--data-dir={data}"])
    assert args[2:5] == ["partypool", "--config", str(data / "partypool.toml")]
    mine = serve.twistd_arguments(["--data-dir", str(data), "--config", "x.toml"])
    assert mine.count("--config") == 1


def test_twistd_arguments_on_windows(tmp_path: Path, monkeypatch) -> None:
    """The Windows runner has no --pidfile option (and writes no pid file)."""
    monkeypatch.setattr(sys, "platform", "win32")
    assert serve.twistd_arguments(["--data-dir", str(tmp_path)]) == [
        "--nodaemon",
        "partypool",
        "--data-dir",
        str(tmp_path),
    ]


def run_cli(*argv: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        list(argv),
        input=stdin,
        stdin=None if stdin is not None else subprocess.DEVNULL,
        capture_output=True,
        text=True,
        env=server_env(),
        timeout=60,
    )


def test_option_error_is_one_line_and_a_hint(tmp_path: Path) -> None:
    """Not the 60-line option list that hid the error: the error, naming the
    option, then where the rest is."""
    data = str(tmp_path / "data")
    run = run_cli(
        sys.executable, "-m", "partypool", "serve", "--data-dir", data, "--rate", "x"
    )
    assert run.returncode == 2
    assert run.stderr.splitlines() == [
        "partypool serve: --rate: must be a number, not x",
        "`partypool serve --help` lists every option.",
    ]
    twistd = run_cli(TWISTD, "-n", "partypool", "--data-dir", data, "--maxclients", "3")
    # twistd's own runner prints its synopsis, our hint, then the error.
    lines = (twistd.stdout + twistd.stderr).strip().splitlines()
    assert len(lines) == 3, lines
    assert lines[1] == "twistd partypool --help lists every option."
    assert lines[2].endswith(
        "option --maxclients not recognized (did you mean --max-clients?)"
    )


def test_full_help_is_still_there(tmp_path: Path) -> None:
    run = run_cli(sys.executable, "-m", "partypool", "serve", "--help")
    assert run.returncode == 0
    assert run.stdout.startswith("Usage: partypool serve [options]")
    assert "--max-clients" in run.stdout


def test_no_terminal_missing_passkey_is_one_line(tmp_path: Path) -> None:
    run = run_cli(
        sys.executable, "-m", "partypool", "serve", "--data-dir", str(tmp_path / "d")
    )
    assert run.returncode == 2
    assert run.stderr.splitlines()[0].startswith("partypool serve: no passkey: give")
    assert len(run.stderr.splitlines()) == 2


def test_unknown_option_names_a_close_one(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options = serve.ServeOptions()
    with pytest.raises(usage.UsageError, match="did you mean --login-timeout"):
        options.parseOptions(["--login-timout", "3"])
    assert options.getUsage() == "`partypool serve --help` lists every option."


# --- partypool serve: asking for secrets -----------------------------------------


def test_enter_takes_the_generated_passkey() -> None:
    said: list[str] = []
    chosen = serve.ask_new_secret("passkey", answers(), answers(""), said.append)
    assert chosen is not None and passkey_weakness(chosen) is None
    assert any(chosen in line for line in said)


def test_typed_passkey_twice_and_a_weak_one_needs_a_yes() -> None:
    strong = "a passkey strong enough: vinyl-ozone-clerk"
    secret = answers("pass", "pass", "pass", strong, "typo", strong, strong)
    ask = answers("n", "y")
    said: list[str] = []
    assert serve.ask_new_secret("passkey", ask, secret, said.append) == "pass"
    assert "That passkey is weak" in ask.prompts[0]
    assert serve.ask_new_secret("passkey", answers(), secret, said.append) == strong
    assert "They do not match; again." in said


def test_root_password_may_be_left_out() -> None:
    said: list[str] = []
    assert (
        serve.ask_new_secret("root-password", answers(), answers("none"), said.append)
        is None
    )
    assert "No root password: the admin port stays closed." in said


def interactive(monkeypatch, ask, secret) -> serve.ServeOptions:
    monkeypatch.delenv("PARTYPOOL_PASSKEY", raising=False)
    monkeypatch.delenv("PARTYPOOL_ROOT_PASSWORD", raising=False)
    options = serve.ServeOptions(ask=ask, secret=secret)
    options.out = io.StringIO()
    monkeypatch.setattr(options, "interactive", lambda: True)
    return options


def test_a_person_is_asked_once_and_the_answer_kept(
    tmp_path: Path, monkeypatch
) -> None:
    """First start: both secrets asked, kept owner-only; the next start asks
    nothing."""
    data = tmp_path / "data"
    args = ["--data-dir", str(data), "--kdf-iterations", "4096"]
    options = interactive(monkeypatch, answers("", ""), answers("", ""))
    options.parseOptions(args)
    for name in ("passkey", "root-password"):
        kept = data / name
        assert stat.S_IMODE(kept.stat().st_mode) == 0o600
        assert kept.read_text().strip() == options[name]
    again = interactive(monkeypatch, answers(), answers())
    again.parseOptions(args)
    assert again["passkey"] == options["passkey"]


def test_declined_keep_and_key_only_root(tmp_path: Path, monkeypatch) -> None:
    """ "n" keeps nothing; with authorized_keys the root password is not asked."""
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    (data / "authorized_keys").write_text("")
    secret = answers("")
    options = interactive(monkeypatch, answers("n"), secret)
    options.parseOptions(["--data-dir", str(data), "--kdf-iterations", "4096"])
    assert options["passkey"] and options["root-password"] is None
    assert not (data / "passkey").exists()
    assert len(secret.prompts) == 1


# --- partypool serve: what it says once up ---------------------------------------


def started(tmp_path: Path, monkeypatch, *args: str) -> serve.ServeOptions:
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "announce passkey")
    options = serve.ServeOptions()
    options.out = io.StringIO()
    options.parseOptions(
        ["--data-dir", str(tmp_path / "data"), "--kdf-iterations", "4096", *args]
    )
    options["announce"].out = options.out
    return options


def test_announcement_and_invite(tmp_path: Path, monkeypatch) -> None:
    """Chat address, certificate, admin port, invite path, the package command;
    the invite written opens with the passkey and names the bound ports."""
    options = started(tmp_path, monkeypatch)
    record = ServerRecord(
        ports={"chat": 24345, "admin": 24346, "irc": 24347},
        server_name="p",
        tls=True,
        host="10.0.0.7",
    )
    options["announce"](record)
    text = options.out.getvalue()
    invite_path = tmp_path / "data" / INVITE_FILENAME
    fingerprint = options["tls"].fingerprint
    assert "Chat address:  10.0.0.7:24345\n" in text
    assert f"Certificate:   SHA-256 {fingerprint}" in text
    assert "Admin (SSH):   port 24346, host key SHA256:" in text
    assert "IRC gateway:   10.0.0.7:24347  (TLS, the same certificate)" in text
    assert f"Invite:        {invite_path}" in text
    assert f"partypool package --data-dir {tmp_path / 'data'}   (for users" in text
    invite = open_invite(invite_path.read_bytes(), "announce passkey")
    assert (invite.host, invite.chat_port, invite.admin_port) == (
        "10.0.0.7",
        24345,
        24346,
    )
    assert invite.tls_fingerprint == fingerprint
    assert options["announce"].passkey is None  # dropped once sealed
    assert "Web page" not in text


def test_announcement_web_door_and_plain(tmp_path: Path, monkeypatch) -> None:
    """The hook for the web door (a Listener labelled "web port"): its link
    and a QR code; and a --no-tls server says so."""
    options = started(tmp_path, monkeypatch, "--no-tls", "--no-admin")
    options.out = io.TextIOWrapper(io.BytesIO(), encoding="utf-8")
    options["announce"].out = options.out
    record = ServerRecord(
        ports={"chat": 5000, "web": 5001, "irc": 5002},
        server_name="p",
        tls=False,
        host="::1",
    )
    options["announce"](record)
    options.out.seek(0)
    text = options.out.read()
    assert "Chat address:  [::1]:5000  (no TLS)" in text
    assert "Web page:      http://[::1]:5001/" in text
    assert "IRC gateway:   [::1]:5002  (no TLS)" in text
    assert "█" in text  # the QR code
    assert "Admin" not in text and "Certificate" not in text


def test_qr_code_only_where_the_terminal_can_draw_it() -> None:
    ascii_out = io.TextIOWrapper(io.BytesIO(), encoding="cp1252")
    lines = serve.web_lines("h", 1, True, ascii_out)
    assert lines == ["  Web page:      https://h:1/"]


def test_stored_passkey_file_is_checked(tmp_path: Path, monkeypatch) -> None:
    """A kept passkey that others can read is refused like any secret file."""
    monkeypatch.delenv("PARTYPOOL_PASSKEY", raising=False)
    data = tmp_path / "data"
    data.mkdir(mode=0o700)
    datadir.store_secret(data, "passkey", "kept").chmod(0o644)
    with pytest.raises(usage.UsageError, match="chmod 600"):
        serve.ServeOptions().parseOptions(["--data-dir", str(data), "--no-admin"])


@pytest.mark.parametrize("argv0", ["partypool", "-m"])  # or python -m partypool
def test_commands_are_shown_as_they_can_be_typed(
    tmp_path: Path, monkeypatch, argv0: str
) -> None:
    """A venv that is not activated: the announcement names the path of the
    scripts beside its interpreter, however the server was started."""
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for name in ("python", "partypool", "partypool-client"):
        (bin_dir / name).write_text("")
        (bin_dir / name).chmod(0o755)
    monkeypatch.setattr(sys, "executable", str(bin_dir / "python"))
    monkeypatch.setattr(sys, "argv", [argv0, "serve"])
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    assert serve.command("partypool-client") == str(bin_dir / "partypool-client")
    assert serve.command("partypool") == str(bin_dir / "partypool")
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    assert serve.command("partypool-client") == "partypool-client"
    assert serve.command("partypool-invite") == "partypool-invite"  # not here


def test_an_invite_that_cannot_be_made_is_said_not_raised(
    tmp_path: Path, monkeypatch
) -> None:
    options = started(tmp_path, monkeypatch, "--no-tls", "--no-admin")
    record = ServerRecord(ports={"chat": 5000}, server_name="p", tls=True)
    options["announce"](record)  # TLS said, but no certificate to pin
    text = options.out.getvalue()
    assert "No invite written: cannot read the TLS certificate" in text
    assert "Chat address:" in text and "Invite:" not in text


def test_port_in_use_is_one_line(tmp_path: Path) -> None:
    """The most common start-up failure says what to do, no traceback."""
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        run = subprocess.run(
            [sys.executable, "-m", "partypool", "serve", "--data-dir"]
            + [str(tmp_path / "d"), "--chat", f"tcp:{port}:interface=127.0.0.1"]
            + ["--no-admin", "--no-web", "--kdf-iterations", "4096"],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=server_env(PARTYPOOL_PASSKEY="a passkey for this test only"),
            timeout=60,
        )
    assert run.returncode == 1
    assert run.stderr.strip() == (
        f"partypool serve: cannot listen on 127.0.0.1:{port}: Address already in "
        "use. Is another server using it? Choose another with --chat tcp:PORT "
        "(or --admin)."
    )
    assert "Traceback" not in run.stdout + run.stderr


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP")
def test_menu_told_to_end_while_its_child_starts_stops_the_child(monkeypatch) -> None:
    """The handler that stops the child is in place before the child exists:
    a hangup arriving while it starts stops it as soon as it does, and only
    then does the menu end by that signal."""
    before = signal.getsignal(signal.SIGHUP)
    events: list = []

    class Child:
        def __init__(self, command: list[str]) -> None:
            handler = signal.getsignal(signal.SIGHUP)
            events.append(("spawn", command[1:], handler is not signal.SIG_DFL))
            handler(signal.SIGHUP, None)  # the hangup, while it starts

        def terminate(self) -> None:
            events.append("terminate")

        def wait(self) -> int:
            events.append("wait")
            return -signal.SIGTERM

    monkeypatch.setattr(launcher.subprocess, "Popen", Child)
    monkeypatch.setattr(launcher.os, "kill", lambda pid, sig: events.append(sig))
    assert launcher.run_child(["serve"]) == -signal.SIGTERM
    assert events == [
        ("spawn", ["-m", "partypool", "serve"], True),
        "terminate",
        "wait",
        signal.SIGHUP,
    ]
    assert signal.getsignal(signal.SIGHUP) == before
