"""Strong passkeys: a generated one to offer, and a check for weak ones.

Anyone holding a package can guess the passkey offline against the invite
inside it, as fast as their hardware allows, so the passkey must be strong
on its own.  `generate_passkey` draws words with `secrets` from the BIP-39
English list (2048 words chosen to be told apart by their first four
letters; from the maintained ``mnemonic`` package): six words are 66 bits,
beyond any offline guessing, and easy to read out to a friend.
`passkey_weakness` estimates a chosen passkey with ``zxcvbn`` (dictionary,
keyboard-pattern and common-password aware) and says why it is weak.
"""

from __future__ import annotations

import math
import secrets

#: Words in a generated passkey: 6 × 11 bits.
WORDS = 6
#: Shorter than this is weak whatever it is made of.
MIN_LENGTH = 12
#: Fewer estimated guesses than this is weak: 2^50, years at a GPU's rate
#: against the invite's 390,000 PBKDF2 iterations.
MIN_GUESSES = 2**50


def _wordlist() -> list[str]:
    from mnemonic import Mnemonic

    return Mnemonic("english").wordlist


def generate_passkey(words: int = WORDS) -> str:
    """``words`` random words joined by hyphens, e.g. ``wrist-oyster-…``."""
    wordlist = _wordlist()
    return "-".join(secrets.choice(wordlist) for _ in range(words))


def generated_bits(words: int = WORDS) -> float:
    """The strength of `generate_passkey` (it does not depend on luck)."""
    return words * math.log2(len(_wordlist()))


def passkey_weakness(text: str) -> str | None:
    """None for a strong passkey, else one sentence saying why it is weak."""
    if len(text) < MIN_LENGTH:
        return f"it is shorter than {MIN_LENGTH} characters"
    from zxcvbn import zxcvbn

    estimate = zxcvbn(text[:100])  # its cost grows with length; 100 is plenty
    if float(estimate["guesses"]) >= MIN_GUESSES:
        return None
    warning = (estimate.get("feedback") or {}).get("warning") or ""
    bits = math.log2(max(float(estimate["guesses"]), 1.0))
    reason = f"it would fall to about 2^{bits:.0f} guesses"
    return f"{reason} ({warning.rstrip('.')})" if warning else reason
