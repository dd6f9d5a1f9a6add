"""The configuration file (``--config FILE``): the long options as TOML keys.

A system install keeps its settings in ``/etc/partypool/partypool.toml``
rather than in the unit's ``ExecStart=``.  Keys are the long option names
(``max-clients = 25``, ``no-tls = true``).  The file is turned into
command-line arguments placed *before* the real ones, so every value goes
through the same converters and checks, and the command line wins (for
options with a value; a flag set to true in the file cannot be switched off
from the command line).  Mistakes are one line naming the file and the key.
"""

from __future__ import annotations

import difflib
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path

from partypool.tls import ConfigError

# Secrets stay out of the file: under DynamicUser= the service must be able to
# read it, so it is usually world-readable.  Credentials files are not.
SECRETS = {"passkey": "passkey-file", "root-password": "root-password-file"}


def config_path(argv: Sequence[str], option: str = "--config") -> str | None:
    """The last ``--config`` (or other ``option``) in ``argv``, found before
    the options are parsed."""
    path = None
    for i, arg in enumerate(argv):
        if arg == "--":
            break
        if arg == option and i + 1 < len(argv):
            path = argv[i + 1]
        elif arg.startswith(option + "="):
            path = arg.partition("=")[2]
    return path


def config_arguments(
    path: Path,
    flags: Iterable[str],
    parameters: Mapping[str, Callable[[str], object] | None],
) -> list[str]:
    """Read ``path`` and return the options it sets as command-line arguments.

    ``flags`` are the option names that take no value; ``parameters`` maps
    the others to their converter (or None), used here only to reject a bad
    value with the file and key named.  Raises `ConfigError`.
    """
    try:
        with path.open("rb") as f:
            table = tomllib.load(f)
    except OSError as e:
        raise ConfigError(f"--config {path}: {e.strerror}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    flags = set(flags)
    known = (flags | set(parameters)) - {"config"}
    arguments: list[str] = []
    for key, value in table.items():
        where = f"{path}: {key}"
        if key in SECRETS:
            raise ConfigError(
                f"{where}: keep secrets out of the configuration file; "
                f"put it in a file only the service can read and set "
                f"{SECRETS[key]} (or use systemd credentials)"
            )
        if key not in known:
            close = difflib.get_close_matches(key, sorted(known), n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            raise ConfigError(f"{path}: unknown key {key!r}{hint}")
        if key in flags:
            if not isinstance(value, bool):
                raise ConfigError(f"{where} = {value!r}: must be true or false")
            arguments += [f"--{key}"] if value else []
            continue
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            raise ConfigError(f"{where}: must be a string or a number")
        text = str(value)
        convert = parameters[key]
        if convert is not None:
            try:
                convert(text)
            except (ValueError, TypeError) as e:
                raise ConfigError(f"{where}: {e}") from None
        arguments += [f"--{key}", text]
    return arguments
