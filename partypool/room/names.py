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
- two names clash when their *skeletons* (TR39 §4: ``ᴀlice``, ``Аlice``
  and ``Alice`` all become ``Alice``; ``rn`` and ``m`` both ``rn``; ``I``,
  ``l`` and ``1`` all ``l``) are equal ignoring case.  A name stands for all
  its spellings in other cases, so it is compared as typed, in lower case
  and in upper case (``ALICE`` has the skeleton ``ALlCE``, like ``ALlCE``),
  and a clash of any of these is a clash.  That refuses a few names that
  only look alike in another case (``ian`` beside ``lan``, since ``IAN``
  looks like ``lAN``): a cheap price for names nobody can fake.

ICU is a server requirement (``pip install 'partypool[server]'``); the
clients never import this module.
"""

from __future__ import annotations

import functools

try:
    import icu
except ImportError as e:  # pragma: no cover - depends on the installation
    raise ImportError(
        "the Party Pool server needs ICU (the icu module) for its name rules: "
        "pip install 'partypool[server]'"
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


@functools.lru_cache(maxsize=4096)  # names present and banned, checked per join
def skeletons(name: str) -> frozenset[str]:
    """The case-folded TR39 skeletons of ``name`` as typed, in lower case and
    in upper case: two names whose sets meet look alike."""
    return frozenset(
        _CHECKER.getSkeleton(0, spelling).casefold()
        for spelling in (name, name_key(name), name.upper())
    )
