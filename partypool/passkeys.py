"""
Strong passkeys by default: a generator and a strength check.

Anyone who holds an invite (or captured one login) can test passkey guesses
offline, at the cost of one PBKDF2 derivation each (390,000 iterations: about
40 ms per guess per CPU core, far less on a GPU). Only the passkey's own
entropy limits that attack, so Party Pool offers generated passkeys — several
words drawn with C{secrets} from the EFF long word list that the maintained
C{xkcdpass} package ships — and warns about weak ones, judged by length and by
the C{zxcvbn} estimate of the guesses an attacker needs.

``partypool-passkey`` (L{main}) prints a new passkey or writes it to a file
readable only by its owner, and ``--check`` rates one read from standard input
or a file. Both libraries are imported only when used, so the (frozen) chat
client, which never makes a passkey, does not need them.
"""

from __future__ import annotations

import argparse
import getpass
import os
import secrets
import sys
from functools import cache
from pathlib import Path

#: Words in a generated passkey: 5 × log2(7,772) ≈ 64.6 bits.
GENERATED_WORDS = 5
#: Shorter than this is weak whatever it is made of.
MIN_LENGTH = 12
#: zxcvbn's estimate below which a passkey is weak: 10^12 guesses (≈ 40 bits),
#: over a year of one GPU at the default 390,000 PBKDF2 iterations.
MIN_GUESSES_LOG10 = 12.0
#: zxcvbn reads at most this many characters (it slows down on long input).
_ZXCVBN_MAX = 100


@cache
def _words() -> tuple[str, ...]:
    """The EFF long list as xkcdpass ships it, less its few hyphenated words
    (``t-shirt``), so the ``-`` between words is never ambiguous."""
    from xkcdpass import xkcd_password

    path = xkcd_password.locate_wordfile("eff-long")
    words = xkcd_password.generate_wordlist(path, min_length=1, max_length=20)
    return tuple(sorted({word for word in words if word.isalpha()}))


def generate_passkey(words: int = GENERATED_WORDS) -> str:
    """A new passkey: C{words} random words joined by ``-`` (easy to type,
    safe in a shell variable, no character a keyboard layout hides)."""
    vocabulary = _words()
    return "-".join(secrets.choice(vocabulary) for _ in range(words))


def passkey_weakness(passkey: str) -> str | None:
    """Why C{passkey} is weak, for a warning; C{None} if it is strong enough."""
    if len(passkey) < MIN_LENGTH:
        return f"it has {len(passkey)} characters; use at least {MIN_LENGTH}"
    from zxcvbn import zxcvbn

    estimate = zxcvbn(passkey[:_ZXCVBN_MAX])
    if estimate["guesses_log10"] < MIN_GUESSES_LOG10:
        feedback = estimate["feedback"]
        detail = feedback.get("warning") or " ".join(feedback.get("suggestions", []))
        guesses = f"about 10^{estimate['guesses_log10']:.0f} guesses would find it"
        return f"{guesses}{': ' + detail if detail else ''}"
    return None


def weak_passkey_warning(passkey: str, what: str = "passkey") -> str | None:
    """One line for a user or a log about a weak C{passkey}, or C{None}."""
    why = passkey_weakness(passkey)
    if why is None:
        return None
    return (
        f"the {what} is weak ({why}); anyone with an invite or one captured "
        f"login can guess it offline. Make a strong one with: partypool-passkey"
    )


def offer_passkey(prompt: str = "New passkey") -> str:
    """Ask for a new passkey on a terminal, offering a generated one: Enter
    takes the offer; a typed passkey is asked twice and warned about if weak."""
    offer = generate_passkey()
    print(f"Suggested passkey: {offer}", file=sys.stderr)
    typed = getpass.getpass(f"{prompt} (Enter to use the suggestion): ")
    if not typed:
        return offer
    if getpass.getpass("Again: ") != typed:
        raise ValueError("the passkeys do not match")
    if warning := weak_passkey_warning(typed):
        print(f"warning: {warning}", file=sys.stderr)
    return typed


def write_secret(path: Path, secret: str) -> None:
    """Write C{secret} to a new file only its owner can read (refuses to
    replace an existing one: it may be the passkey a server runs with)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(secret + "\n")


def main(argv: list[str] | None = None) -> int:
    """``partypool-passkey``: make a strong passkey, or rate one."""
    parser = argparse.ArgumentParser(
        prog="partypool-passkey",
        description="Print a new random passkey (several words from a word "
        "list), or write it to a file only you can read.",
    )
    parser.add_argument(
        "--output", "-o", type=Path, help="write it to this new file (mode 0600)"
    )
    parser.add_argument(
        "--words", type=int, default=GENERATED_WORDS, help="words (default: 5)"
    )
    parser.add_argument(
        "--check",
        metavar="FILE",
        help="rate the passkey in FILE ('-': standard input) instead",
    )
    args = parser.parse_args(argv)
    if args.check is not None:
        if args.check == "-":
            text = sys.stdin.readline()
        else:
            try:
                text = Path(args.check).read_text(encoding="utf-8")
            except OSError as e:
                parser.exit(1, f"partypool-passkey: cannot read {args.check}: {e}\n")
        warning = weak_passkey_warning(text.rstrip("\r\n"))
        print(f"weak: {warning}" if warning else "strong enough")
        return 1 if warning else 0
    if not 4 <= args.words <= 20:
        parser.error("--words must be between 4 and 20")
    passkey = generate_passkey(args.words)
    if args.output is None:
        print(passkey)
        return 0
    try:
        write_secret(args.output, passkey)
    except OSError as e:
        print(f"partypool-passkey: cannot write {args.output}: {e}", file=sys.stderr)
        return 1
    print(f"new passkey written to {args.output}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
