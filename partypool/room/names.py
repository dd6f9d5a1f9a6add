"""Look-alike names: Unicode TR39 skeletons and the single-script rule.

`partypool.wire.check_name` decides what characters a name may hold; this
module decides which names are too alike to be told apart on a screen.
Both rules come from ICU's spoof checker (PyICU), the reference
implementation of Unicode Technical Standard #39 and its confusables data,
rather than from a table of our own:

- a name must be *single-script* (TR39 §5.2, "Single Script"): every
  character shares one script, Common and Inherited characters (digits,
  ``_-.``) aside, and Han with Hiragana/Katakana, Bopomofo or Hangul counts
  as one writing system; digits come from one numbering system;
- two names clash when their *skeletons* (TR39 §4, ``ᴀlice``, ``Аlice``
  and ``Alice`` all become ``Alice``) are equal.  Names are compared
  ignoring case, so each name has two skeletons, of its own spelling and of
  its case-folded key (``I`` and ``l`` share a skeleton, ``I`` and ``i``
  do not), and a clash of either is a clash.

ICU is a server requirement (``pip install 'partypool[server]'``); the
clients never import this module.
"""

from __future__ import annotations

try:
    import icu
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Party Pool server needs PyICU for its name rules: "
        "pip install 'partypool[server]' (PyICU builds against the system's "
        "ICU: on Debian apt-get install libicu-dev pkg-config g++)"
    ) from e

from partypool.wire import WireError, name_key

_CHECKER = icu.SpoofChecker()
_CHECKER.setRestrictionLevel(icu.URestrictionLevel.SINGLE_SCRIPT_RESTRICTIVE)
_CHECKER.setChecks(
    icu.USpoofChecks.RESTRICTION_LEVEL
    | icu.USpoofChecks.MIXED_NUMBERS
    | icu.USpoofChecks.INVISIBLE
)

#: The Unicode version of ICU's data, for the operator's information.
UNICODE_VERSION = icu.UNICODE_VERSION


def check_script(name: str) -> None:
    """Refuse (``nick-invalid``) a name that mixes scripts or numbering systems."""
    if _CHECKER.check(name):
        raise WireError(
            "nick-invalid",
            "a name may not mix scripts (such as Latin and Cyrillic letters) "
            "or kinds of digits",
        )


def skeletons(name: str) -> frozenset[str]:
    """The TR39 skeletons two names are compared by (see the module docstring)."""
    return frozenset(
        (_CHECKER.getSkeleton(0, name), _CHECKER.getSkeleton(0, name_key(name)))
    )
