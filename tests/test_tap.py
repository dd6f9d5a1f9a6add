"""The twistd plugin's options and the service tree it builds (not started)."""

from pathlib import Path

import pytest
from twisted.python import usage

from partypool import identity, tap
from partypool.doors.web import WebSite
from partypool.room.history import HistoryService
from partypool.service import Farewell, Listener, StopOnSigterm, StoreService


def parse(tmp_path: Path, *args: str) -> tap.Options:
    options = tap.Options()
    options.parseOptions(
        ["--data-dir", str(tmp_path / "data"), "--kdf-iterations", "4096", *args]
    )
    return options


def test_no_passkey_is_a_clear_error(tmp_path, monkeypatch):
    monkeypatch.delenv("PARTYPOOL_PASSKEY", raising=False)
    with pytest.raises(usage.UsageError, match="no passkey"):
        parse(tmp_path)


def test_passkey_from_file_env_or_argument(tmp_path, monkeypatch):
    secret = tmp_path / "passkey"
    secret.write_text("from a file\n")
    secret.chmod(0o600)
    assert parse(tmp_path, "--passkey-file", str(secret))["passkey"] == "from a file"
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "from the environment")
    assert parse(tmp_path)["passkey"] == "from the environment"
    assert parse(tmp_path, "--passkey", "argv")["passkey"] == "argv"


def test_missing_passkey_file_is_named(tmp_path):
    with pytest.raises(usage.UsageError, match="passkey-file"):
        parse(tmp_path, "--passkey-file", str(tmp_path / "nope"))


@pytest.mark.parametrize(
    "args, message",
    [
        (["--chat", "ssl:12345"], "Party Pool adds TLS itself"),
        (["--admin", "tls:host:1"], "Party Pool adds TLS itself"),
        (["--web", "ssl:12347"], "Party Pool adds TLS itself"),
        (["--web-origin", "chat.example.org"], "--web-origin: 'chat.example.org'"),
        (["--irc", "ssl:6697"], "Party Pool adds TLS itself"),
        (["--irc-channel", "party"], "must be # and up to"),
        (["--irc-channel", "#a b"], "must be # and up to"),
        (["--tls-cert", "c.pem"], "go together"),
        (["--kdf-iterations", "10"], "at least 4096"),
        (["--max-clients", "0"], "greater than zero"),
    ],
)
def test_bad_options(tmp_path, monkeypatch, args, message):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    with pytest.raises(usage.UsageError, match=message):
        parse(tmp_path, *args)


def test_help_states_each_minimum_that_is_enforced():
    """--help says the rule the option is checked against, not a looser one."""
    text = " ".join(str(tap.Options()).split())
    assert "[default: 390000]. Must be at least 4096." in text
    assert "[default: 4096]. Must be at least 512." in text
    assert "[default: 25]. Must be greater than zero." in text


def test_open_data_directory_is_refused(tmp_path, monkeypatch):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    (tmp_path / "data").mkdir(mode=0o755)
    (tmp_path / "data").chmod(0o755)
    with pytest.raises(usage.UsageError, match="chmod 700"):
        parse(tmp_path)


def test_default_data_dir_follows_systemd_then_xdg(monkeypatch, tmp_path):
    monkeypatch.setenv("STATE_DIRECTORY", "/var/lib/partypool")
    assert identity.default_data_dir() == Path("/var/lib/partypool")
    monkeypatch.delenv("STATE_DIRECTORY")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert identity.default_data_dir() == tmp_path / "partypool"


def test_service_tree(tmp_path, monkeypatch):
    """SIGTERM handling first (before any port opens), then the store, the
    listeners, and the farewell last (so it stops first)."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options = parse(tmp_path, "--no-admin", "--max-clients", "3", "--rate", "2.5")
    service = tap.makeService(options)
    children = list(service)
    assert isinstance(children[0], StopOnSigterm)
    assert isinstance(children[1], StoreService)
    assert isinstance(children[-1], Farewell)
    [chat, web] = [c for c in children if isinstance(c, Listener)]
    assert chat.label == "chat port" and web.label == "web door"
    # HTTPS with the chat port's certificate
    assert web.factory.wrappedFactory.pool is chat.factory.wrappedFactory.pool
    pool = children[-1].pool
    assert pool.room.max_members == 3 and pool.limits.rate == 2.5
    assert (tmp_path / "data" / "tls" / "key.pem").exists()
    assert not service.running
    children[1].store.close()


def test_irc_gateway_is_off_by_default_and_a_tls_listener_when_asked(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    service = tap.makeService(parse(tmp_path, "--no-admin"))
    labels = [c.label for c in service if isinstance(c, Listener)]
    assert labels == ["chat port", "web door"]
    list(service)[1].store.close()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")  # the first parse took it
    options = parse(
        tmp_path, "--no-admin", "--irc", "tcp:6697", "--irc-channel", "#lobby"
    )
    service = tap.makeService(options)
    [irc] = [c for c in service if isinstance(c, Listener) and "IRC" in c.label]
    assert irc.factory.wrappedFactory.gateway.channel == "#lobby"  # inside TLS
    list(service)[1].store.close()


def test_server_name_is_scrubbed(tmp_path, monkeypatch):
    """The name goes into every HELLO line: no line breaks or escapes."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    options = parse(tmp_path, "--server-name", "pool\r\nBYE x\x1b[2J")
    assert options["server-name"] == "poolBYE x[2J"


def test_web_door_follows_no_tls_and_no_web(tmp_path, monkeypatch):
    """Plain HTTP with --no-tls; no web listener at all with --no-web."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    children = list(tap.makeService(parse(tmp_path, "--no-admin", "--no-tls")))
    [web] = [c for c in children if isinstance(c, Listener) and c.label == "web door"]
    assert isinstance(web.factory, WebSite)
    children[1].store.close()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")  # the first parse took it
    children = list(tap.makeService(parse(tmp_path, "--no-admin", "--no-web")))
    assert [c.label for c in children if isinstance(c, Listener)] == ["chat port"]
    children[1].store.close()


def test_history_options_and_service(tmp_path, monkeypatch):
    """--history 0 turns the history off (no pruning service); the history
    service sits right after the store, so it stops (and writes) first."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    for bad, message in (
        (["--history", "-1"], "0 or more"),
        (["--history-days", "0"], "greater than zero"),
    ):
        with pytest.raises(usage.UsageError, match=message):
            parse(tmp_path, *bad)
        monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")  # each parse takes it
    service = tap.makeService(parse(tmp_path, "--no-admin", "--history", "5"))
    children = list(service)
    assert isinstance(children[2], HistoryService)
    assert children[2].history.keep == 5 and children[2].history.days == 7
    children[1].store.close()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    service = tap.makeService(parse(tmp_path, "--no-admin", "--history", "0"))
    assert not [c for c in service if isinstance(c, HistoryService)]
    assert children[-1].pool.history is not None
    assert list(service)[-1].pool.history is None
    list(service)[1].store.close()


def test_root_verifier_on_the_chat_port_only_with_a_root_password(
    tmp_path, monkeypatch
):
    """The chat port takes root logins when a root password is set, admin
    port or not; the password itself is dropped after start-up."""
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")
    monkeypatch.setenv("PARTYPOOL_ROOT_PASSWORD", "root secret")
    options = parse(tmp_path, "--no-admin")
    service = tap.makeService(options)
    pool = list(service)[-1].pool
    assert pool.root_verifier is not None and pool.root_commands is not None
    commands = pool.root_commands("127.0.0.9:1", "IRC gateway")
    assert commands.operator.method == "password (IRC gateway)"  # in its log
    assert options["root-password"] is None
    list(service)[1].store.close()
    monkeypatch.setenv("PARTYPOOL_PASSKEY", "x")  # the first parse took both
    service = tap.makeService(parse(tmp_path, "--no-admin"))
    assert list(service)[-1].pool.root_verifier is None
    list(service)[1].store.close()
