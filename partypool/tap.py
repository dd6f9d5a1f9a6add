"""``twistd partypool``: the command-line options and the service tree.

Only this module reads the options dict; everything it builds takes explicit
arguments.  Secrets come from a file or the environment; on the command line
they work but are visible in the process list, so that logs a warning.
"""

from __future__ import annotations

# First, before the slow imports: from here on SIGHUP cannot end the server
# (if partypool-sighup.pth has not already seen to it; see partypool.sighup).
import partypool.sighup  # noqa: F401

# isort: split

import difflib
import re
import socket
import sys
from collections.abc import Sequence
from pathlib import Path

import attrs
from twisted.application.service import MultiService
from twisted.internet import endpoints
from twisted.logger import Logger
from twisted.python import usage

from partypool import logs
from partypool.admin.commands import AdminCommands, Operator
from partypool.admin.ssh import (
    AuthorizedKeys,
    ensure_host_key,
    load_authorized_keys,
    make_admin_factory,
)
from partypool.config import config_arguments, config_path
from partypool.datadir import STORED_SECRETS, prepare_data_dir, read_stored_secret
from partypool.doors.chat import ChatFactory
from partypool.doors.irc import IrcFactory
from partypool.doors.irc_wire import CHANNEL_MAX, check_channel
from partypool.doors.web import WebSite, parse_origins
from partypool.environ import take_secret
from partypool.identity import default_data_dir, ssh_fingerprint
from partypool.passkeys import weak_passkey_warning
from partypool.room.auth import DEFAULT_ITERATIONS, ChatVerifier, RootPassword
from partypool.room.clock import steady_reactor
from partypool.room.history import DAY, HistoryService
from partypool.room.pool import Limits, make_server
from partypool.room.store import Store, load_bans, load_history
from partypool.sd_notify import Readiness
from partypool.service import (
    CertificateReload,
    Farewell,
    Listener,
    PublishAddress,
    StopInOrder,
    StopOnSigterm,
    StoreService,
)
from partypool.tls import ConfigError, ServerTLS, check_private, ensure_self_signed
from partypool.wire import PROTOCOL_VERSION, format_line, scrub

log = Logger(namespace="partypool.tap")


# --log-format → twistd --logger factory
LOG_OBSERVERS = {
    "text": "partypool.logs.text_observer",
    "journal": "partypool.logs.journal_observer",
    "json": "partypool.logs.json_observer",
}


def _positive(kind: type, minimum: float | None = None) -> object:
    """A converter for a number above zero, or of at least ``minimum``; its
    rule is shown by --help and named in the error."""
    rule = "greater than zero" if minimum is None else f"at least {minimum}"

    def convert(text: str) -> object:
        try:
            value = kind(text)
        except ValueError:
            noun = "a whole number" if kind is int else "a number"
            raise ValueError(f"must be {noun}, not {text}") from None
        if value <= 0 or (minimum is not None and value < minimum):
            raise ValueError(f"must be {rule}, not {text}")
        return value

    convert.coerceDoc = f"Must be {rule}."  # shown by --help
    return convert


def _not_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"must be a whole number, not {text}") from None
    if value < 0:
        raise ValueError(f"must be 0 or more, not {text}")
    return value


_not_negative.coerceDoc = "0 or more."


def _log_format(text: str) -> str:
    if text not in LOG_OBSERVERS:
        raise ValueError(f"must be one of {', '.join(LOG_OBSERVERS)}, not {text}")
    return text


_log_format.coerceDoc = "text (twistd's), journal (for journald) or json."


def _channel(text: str) -> str:
    if not check_channel(text):
        raise ValueError(
            f"must be # and up to {CHANNEL_MAX} letters, digits, '_', '-' or '.', "
            f"not {text}"
        )
    return text


_channel.coerceDoc = "Like #party."


_SECRETS = frozenset({"passkey", "root-password"})
_UNKNOWN_OPTION = re.compile(r"option (-{1,2}\S+) not recognized")


class _NamedCoerce(usage.CoerceParameter):
    """A converted option whose error names the option (``--rate: must be…``):
    twistd's own says only "Parameter type enforcement failed"."""

    def dispatch(self, parameterName: str, value: str | None) -> None:  # noqa: N803
        if value is None:
            raise usage.UsageError(f"--{parameterName} needs a value")
        try:
            self.options.opts[parameterName] = self.coerce(value)
        except ValueError as e:
            raise usage.UsageError(f"--{parameterName}: {e}") from None


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Serve Party Pool chat on --chat (TLS unless --no-tls) and the root "
        "SSH shell on --admin.  Give the passkey in a file or in "
        "PARTYPOOL_PASSKEY rather than on the command line."
    )
    optFlags = [
        ["no-tls", None, "Serve plain TCP (loopback, tests, or behind a TLS proxy)."],
        ["no-admin", None, "Do not open the SSH admin port."],
        ["no-web", None, "Do not open the web door (the page and its WebSocket)."],
        ["allow-same-ip", None, "Allow more than one session per IP address."],
        [
            "log-messages",
            None,
            "Log the text of chat and private messages (off by default).",
        ],
        ["manhole", None, "Offer root a Python shell in the server (`manhole`)."],
    ]
    optParameters = [
        ["config", None, None, "TOML file of options; the command line wins."],
        ["log-format", None, "text", "Log line format.", _log_format],
        ["passkey", None, None, "Chat passkey (visible in ps: prefer the file)."],
        ["passkey-file", None, None, "File holding the chat passkey."],
        ["root-password", None, None, "Root password (visible in ps)."],
        ["root-password-file", None, None, "File holding the root password."],
        ["chat", None, "tcp:12345", "Endpoint for the chat port."],
        ["admin", None, "tcp:12346", "Endpoint for the SSH admin port."],
        [
            "web",
            None,
            "tcp:12347",
            "Endpoint for the web door (HTTPS unless --no-tls).",
        ],
        [
            "web-origin",
            None,
            None,
            "Other origins whose pages may use the web door, comma-separated.",
        ],
        ["irc", None, None, "Endpoint for the IRC gateway (off unless given)."],
        ["irc-channel", None, "#party", "The room's IRC channel.", _channel],
        ["tls-cert", None, None, "PEM certificate (chain) for the chat port."],
        ["tls-key", None, None, "PEM private key for --tls-cert."],
        ["data-dir", None, None, "Data directory (default: see README)."],
        ["server-name", None, socket.gethostname(), "Name in the HELLO greeting."],
        ["max-clients", None, 25, "Most users logged in at once.", _positive(int)],
        [
            "max-line",
            None,
            4096,
            "Longest line in bytes (below 512 no one could log in).",
            _positive(int, 512),
        ],
        ["max-text", None, 2000, "Longest message in characters.", _positive(int)],
        ["max-request", None, 1000, "Longest request in characters.", _positive(int)],
        [
            "max-requests-per-day",
            None,
            20,
            "Requests a user (by name or address) may store in 24 hours.",
            _positive(int),
        ],
        ["login-timeout", None, 30.0, "Seconds to log in.", _positive(float)],
        ["idle-ping", None, 60.0, "Seconds of silence before PING.", _positive(float)],
        ["rate", None, 5.0, "Lines per second per client.", _positive(float)],
        ["burst", None, 10, "Lines a client may send at once.", _positive(int)],
        ["flood-drops", None, 50, "Dropped lines that end a session.", _positive(int)],
        [
            "flood-window",
            None,
            10.0,
            "Seconds --flood-drops count over.",
            _positive(float),
        ],
        ["max-pending", None, 1 << 20, "Output backlog in bytes.", _positive(int)],
        ["max-pending-logins", None, 10, "Logins per address.", _positive(int)],
        [
            "max-unauthenticated",
            None,
            100,
            "Connections not logged in yet, per port.",
            _positive(int),
        ],
        ["login-failures", None, 5, "Failed logins before refusal.", _positive(int)],
        ["login-window", None, 60.0, "Seconds failures count over.", _positive(float)],
        [
            "login-penalty",
            None,
            60.0,
            "Seconds an address is refused.",
            _positive(float),
        ],
        [
            "login-budget",
            None,
            20,
            "Failed logins from all addresses per --login-window, per port.",
            _positive(int),
        ],
        [
            "write-rate",
            None,
            10_000.0,
            "Room-event writes a second before rounds wait.",
            _positive(float),
        ],
        [
            "max-hold",
            None,
            0.1,
            "Longest a room event is held, in seconds.",
            _positive(float),
        ],
        ["history", None, 200, "Room messages kept for late joiners.", _not_negative],
        [
            "history-days",
            None,
            7.0,
            "Days a kept message is kept at most.",
            _positive(float),
        ],
        [
            "kdf-iterations",
            None,
            DEFAULT_ITERATIONS,
            "PBKDF2 iterations.",
            _positive(int, 4096),
        ],
    ]

    #: The line shown after an option error instead of the whole option list.
    help_hint = "twistd partypool --help lists every option."

    def __init__(self) -> None:
        super().__init__()
        self.failed = False
        for name, handler in self._dispatch.items():
            if isinstance(handler, usage.CoerceParameter):
                self._dispatch[name] = _NamedCoerce(self, handler.coerce)

    def getUsage(self, width: int | None = None) -> str:  # noqa: N802
        """After an option error, twistd prints this and then the error: one
        hint rather than the whole option list, in which the error is lost."""
        if self.failed:
            return self.help_hint
        return super().getUsage(width)

    def parseOptions(self, options: Sequence[str] | None = None) -> None:  # noqa: N802
        """Parse; an error is one line (with a close match for a mistyped
        option) and marks these options failed (see `getUsage`)."""
        try:
            self._parse(options)
        except usage.UsageError as e:
            self.failed = True
            raise usage.UsageError(self._suggest(str(e))) from None

    def _suggest(self, message: str) -> str:
        """``option --max-client not recognized`` gains ``did you mean…``."""
        unknown = _UNKNOWN_OPTION.fullmatch(message)
        if unknown is None:
            return message
        known = [f"--{name}" for name in self.synonyms if len(name) > 1]
        close = difflib.get_close_matches(unknown[1], known, n=1)
        return f"{message} (did you mean {close[0]}?)" if close else message

    def _parse(self, options: Sequence[str] | None) -> None:
        """Read --config first and put its options before the command line's."""
        argv = list(sys.argv[1:] if options is None else options)
        path = config_path(argv)
        if path is not None:
            flags = [flag[0] for flag in self.optFlags]
            parameters = {
                p[0]: (p[4] if len(p) > 4 else None) for p in self.optParameters
            }
            try:
                argv = [*config_arguments(Path(path), flags, parameters), *argv]
            except ConfigError as e:
                raise usage.UsageError(str(e)) from None
        super().parseOptions(argv)

    def __repr__(self) -> str:
        """Like a dict's, with the secrets hidden (Options is a dict)."""
        shown = {k: "<hidden>" if k in _SECRETS and v else v for k, v in self.items()}
        return f"<{type(self).__name__} {shown!r}>"

    def postOptions(self) -> None:  # noqa: N802
        self._choose_log_observer()
        self["server-name"] = scrub(self["server-name"]).strip() or socket.gethostname()
        for name in ("chat", "admin", "irc", "web"):
            if self[name] and self[name].split(":", 1)[0].lower() in ("ssl", "tls"):
                raise usage.UsageError(
                    f"--{name} {self[name]}: give a plain endpoint such as "
                    "tcp:12345; Party Pool adds TLS itself (--tls-cert/--tls-key)"
                )
        try:
            self["web-origin"] = parse_origins(self["web-origin"])
        except ValueError as e:
            raise usage.UsageError(f"--web-origin: {e}") from None
        if bool(self["tls-cert"]) != bool(self["tls-key"]):
            raise usage.UsageError("--tls-cert and --tls-key go together")
        hello = format_line("HELLO", PROTOCOL_VERSION, self["server-name"])
        if len(hello) > self["max-line"]:  # no server line passes --max-line
            raise usage.UsageError("--server-name is too long for --max-line")
        try:
            self["data-dir"] = prepare_data_dir(
                Path(self["data-dir"] or default_data_dir())
            )
            self["secret-sources"] = {}
            for name in sorted(_SECRETS):
                self[name], source = self._secret(name)
                if self[name] is None:
                    self[name], source = self.missing_secret(name), "the terminal"
                if self[name]:
                    self["secret-sources"][name] = source
            self["tls"] = _chat_tls(self, self["data-dir"])
            if not self["no-admin"]:
                self["host-key"] = ensure_host_key(
                    self["data-dir"] / "ssh" / "host_key"
                )
                self["authorized-keys"] = load_authorized_keys(
                    self["data-dir"] / "authorized_keys"
                )
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None

    def _choose_log_observer(self) -> None:
        """Hand twistd (our parent options) the observer for --log-format.

        twistd starts logging after the plugin's options are parsed, from
        its own ``--logger``; setting that is how a plugin picks the format.
        """
        observer, twistd = LOG_OBSERVERS[self["log-format"]], self.parent
        if twistd is None:
            return
        if self["log-format"] == "text":
            if not twistd.get("logger"):  # an operator's own --logger wins
                logs.write_like_twistd(twistd)
                twistd["logger"] = observer
            return
        if twistd.get("logger") or twistd.get("logfile") or twistd.get("syslog"):
            raise usage.UsageError(
                f"--log-format {self['log-format']} writes to standard output; "
                "drop twistd's --logger, --logfile or --syslog"
            )
        if not twistd.get("nodaemon"):
            raise usage.UsageError(
                f"--log-format {self['log-format']} writes to standard output, "
                "which a daemon closes: run twistd -n"
            )
        twistd["logger"] = observer

    def _secret(self, name: str) -> tuple[str | None, str]:
        """A secret from --NAME-file, --NAME (warned), the environment, or the
        file the operator kept in the data directory, in that order, and
        where it came from (for the log; never the secret itself).

        The environment variable is taken out of the environment in any case
        (`partypool.environ`), so it cannot be read from the running server.
        A --NAME-file that others can read is refused.
        """
        variable = "PARTYPOOL_" + name.upper().replace("-", "_")
        from_environment = take_secret(variable)
        if self[f"{name}-file"]:
            path = Path(self[f"{name}-file"])
            try:
                check_private(path)
                text = path.read_text("utf-8")
            except OSError as e:
                raise usage.UsageError(f"--{name}-file: {e}") from None
            return text.rstrip("\r\n"), f"--{name}-file {path}"
        if self[name]:
            log.warn(
                "--{name} on the command line is visible to other users in the "
                "process list; use --{name}-file or {variable}",
                name=name,
                variable=variable,
            )
            return self[name], "the command line"
        if from_environment:
            return from_environment, variable
        kept = read_stored_secret(self["data-dir"], name)
        return kept, f"{self['data-dir'] / STORED_SECRETS[name]} (kept)"

    def missing_secret(self, name: str) -> str | None:
        """No passkey or root password was given: refuse to start without a
        passkey (the root password is optional).  `partypool.launcher` asks
        the person at the terminal instead."""
        if name == "passkey":
            raise usage.UsageError(
                "no passkey: give --passkey-file FILE or set PARTYPOOL_PASSKEY "
                "(or run `partypool serve` in a terminal to choose one)"
            )
        return None


def limits_from(options: Options) -> Limits:
    """Each `Limits` field comes from its option (``max_line`` from ``--max-line``)."""
    return Limits(
        **{f.name: options[f.name.replace("_", "-")] for f in attrs.fields(Limits)}
    )


def warn_weak_secrets(options: Options) -> None:
    """Warn about a weak passkey or root password: both can be guessed
    offline (from an invite, or a captured login), so strength matters."""
    for name, what in (("passkey", "passkey"), ("root-password", "root password")):
        if options[name] and (warning := weak_passkey_warning(options[name], what)):
            log.warn("{warning}", warning=warning)


def makeService(options: Options) -> MultiService:  # noqa: N802
    from twisted.internet import reactor

    steady_reactor(reactor)  # timers and limits immune to clock steps
    data_dir, tls = options["data-dir"], options["tls"]
    log.info("data directory {path}", path=data_dir)
    if options["config"]:
        log.info("options from {path} (the command line wins)", path=options["config"])
    for name, source in sorted(options["secret-sources"].items()):
        log.info("{secret} from {source}", secret=name.replace("-", " "), source=source)
    warn_weak_secrets(options)
    store = Store(data_dir / "partypool.sqlite3")
    root_verifier = None  # root logins on the chat port, with the root password
    if options["root-password"]:
        root_verifier = ChatVerifier.from_passkey(
            options["root-password"], options["kdf-iterations"]
        )
    pool = make_server(
        verifier=ChatVerifier.from_passkey(
            options["passkey"], options["kdf-iterations"]
        ),
        store=store,
        clock=reactor,
        server_name=options["server-name"],
        max_clients=options["max-clients"],
        allow_same_ip=options["allow-same-ip"],
        limits=limits_from(options),
        log_messages=options["log-messages"],
        stop_server=reactor.stop,
        bans=load_bans(store.path),
        root_verifier=root_verifier,
        history=options["history"],
        history_days=options["history-days"],
        history_kept=load_history(
            store.path,
            options["history"],
            reactor.seconds() - options["history-days"] * DAY,
        ),
    )
    factory = ChatFactory(pool)
    if tls is None:
        log.warn("TLS is off (--no-tls): chat traffic is plain text")
    else:
        log.info("TLS certificate SHA-256 fingerprint {fp}", fp=tls.fingerprint)
        factory = tls.wrap(factory)
    certificates = CertificateReload(tls, reactor)  # SIGHUP, admin reload-tls
    pool.root_commands = lambda peer, door: AdminCommands(
        pool,
        Operator(f"password ({door})", peer),
        manhole=bool(options["manhole"]),
        reload_tls=certificates.reload,
    )
    top = StopInOrder()
    StopOnSigterm(reactor).setServiceParent(top)
    StoreService(store).setServiceParent(top)
    if pool.history is None:
        log.info("room history off (--history 0)")
    else:  # stops before the store closes: the last write finishes first
        HistoryService(pool.history, reactor).setServiceParent(top)
    certificates.setServiceParent(top)
    chat = endpoints.serverFromString(reactor, options["chat"])
    Listener("chat port", chat, factory).setServiceParent(top)
    if options["irc"]:
        irc_factory = IrcFactory(pool, channel=options["irc-channel"])
        if tls is not None:
            irc_factory = tls.wrap(irc_factory)
        irc = endpoints.serverFromString(reactor, options["irc"])
        Listener("IRC gateway", irc, irc_factory).setServiceParent(top)
    if options["no-admin"]:
        log.info("admin port off (--no-admin)")
    else:
        root_password = None
        if options["root-password"]:
            root_password = RootPassword.from_password(
                options["root-password"], options["kdf-iterations"]
            )
        admin = make_admin_factory(
            pool,
            host_key=options["host-key"],
            root_password=root_password,
            # Read at each login; with neither a key nor a password at
            # start-up, the port stays off.
            authorized_keys=AuthorizedKeys(data_dir / "authorized_keys")
            if options["authorized-keys"] or root_password
            else None,
            manhole=bool(options["manhole"]),
            reload_tls=certificates.reload,
        )
        if admin is None:
            log.warn(
                "admin port off: no root password (--root-password-file or "
                "PARTYPOOL_ROOT_PASSWORD) and no keys in {path}",
                path=data_dir / "authorized_keys",
            )
        else:
            log.info(
                "SSH host key fingerprint {fp}",
                fp=ssh_fingerprint(options["host-key"]),
            )
            endpoint = endpoints.serverFromString(reactor, options["admin"])
            Listener("admin port", endpoint, admin).setServiceParent(top)
    if options["no-web"]:
        log.info("web door off (--no-web)")
    else:
        site = WebSite(pool, options["web-origin"])
        web = endpoints.serverFromString(reactor, options["web"])
        Listener(
            "web door", web, site if tls is None else tls.wrap(site)
        ).setServiceParent(top)
    listeners = [child for child in top if isinstance(child, Listener)]
    PublishAddress(
        listeners,
        data_dir,
        server_name=options["server-name"],
        tls=tls is not None,
        reactor=reactor,
        announce=options.get("announce"),  # set by partypool.serve
    ).setServiceParent(top)
    Readiness([x.listening for x in listeners], reactor, reactor).setServiceParent(top)
    Farewell(pool).setServiceParent(top)
    # Only the verifiers and the hash are needed from here on.
    options["passkey"] = options["root-password"] = None
    return top


def _chat_tls(options: Options, data_dir: Path) -> ServerTLS | None:
    if options["no-tls"]:
        return None
    if options["tls-cert"]:
        tls = ServerTLS(Path(options["tls-cert"]), Path(options["tls-key"]))
    else:
        tls = ServerTLS(*ensure_self_signed(data_dir / "tls"))
    return tls
