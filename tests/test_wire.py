"""Pure parsing, scrubbing and name rules of the wire format."""

import pytest

from partypool import wire
from partypool.wire import (
    HISTORY_HEAD,
    Command,
    WireError,
    ascii_upper,
    check_fits,
    check_name,
    clean_text,
    format_line,
    name_key,
    online_lines,
    parse_line,
    scrub,
    visible_text,
)


@pytest.mark.parametrize(
    "raw, command",
    [
        (b"say hello  world ", Command("SAY", "hello  world ")),
        (b"Nick bob", Command("NICK", "bob")),
        (b"PING", Command("PING", "")),
        (b"QUIT", Command("QUIT", "")),
        (b"auth-response abc", Command("AUTH-RESPONSE", "abc")),
    ],
)
def test_verbs_are_case_insensitive_and_text_kept(raw, command):
    assert parse_line(raw) == command


@pytest.mark.parametrize(
    "raw, code",
    [
        (b"", "bad-syntax"),
        (b"SAY", "bad-syntax"),
        (b"SAY ", "bad-syntax"),
        (b"IP 1", "bad-syntax"),
        (b"HELLO there", "unknown-command"),
        (b"\xc3\x28", "bad-encoding"),
    ],
)
def test_bad_lines_raise_one_code(raw, code):
    with pytest.raises(WireError) as e:
        parse_line(raw)
    assert e.value.code == code


def test_unknown_verb_is_scrubbed_in_the_error():
    with pytest.raises(WireError) as e:
        parse_line(b"\x1b[2J")
    assert "\x1b" not in e.value.text


def test_scrub_removes_controls_and_bidi_keeps_text():
    assert scrub("a\x00b\x1b[31mc\x7f\x85d\u202ee\u2066f\tg é ✓") == "ab[31mcdef g é ✓"
    assert scrub("one\u2028two\u2029three") == "onetwothree"


@pytest.mark.parametrize("name", ["alice", "Bob_2", "x.y-z", "Zoë", "名前", "a" * 24])
def test_valid_names(name):
    assert check_name(name) == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "a" * 25,
        "two words",
        "semi;colon",
        "r\u200boot",
        "root",
        "ADMIN",
        "ｒｏｏｔ",
        "PartyPool",
        "tab\tname",
        "emoji😀",
    ],
)
def test_invalid_or_reserved_names(name):
    with pytest.raises(WireError) as e:
        check_name(name)
    assert e.value.code == "nick-invalid"


def test_full_width_name_is_shown_and_compared_in_nfkc():
    assert check_name("ＢＯＢ") == "BOB"
    assert name_key("ＢＯＢ") == name_key("bob") == "bob"


# -- issue 12: verbs in ASCII only ---------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        "ſay hello",  # LATIN SMALL LETTER LONG S upper-cases to S
        "ſAY hello",
        "quıt",  # dotless i upper-cases to I
        "pıng",
        "auth-reſponse abc",
        "ＳＡＹ hello",  # full width
        "\u212aick bob",  # KELVIN SIGN lower-cases to k; not a verb either way
    ],
)
def test_verbs_match_in_ascii_only(raw):
    """Unicode case mapping never turns a non-ASCII word into a verb."""
    with pytest.raises(WireError) as e:
        parse_line(raw.encode())
    assert e.value.code == "unknown-command"


def test_ascii_upper_leaves_non_ascii_alone():
    assert ascii_upper("scram-sha-256") == "SCRAM-SHA-256"
    assert ascii_upper("ſcram-sha-256") == "ſcram-sha-256"


# -- issue 12: invisible text, bidi controls, tags ---------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "\u3164",  # HANGUL FILLER
        "\u3164\u3164 \u3164",
        "\u200b",  # ZERO WIDTH SPACE
        "\u200b\u200c\u200d\u2060\ufeff",
        "\u115f\u1160\uffa0",  # the other Hangul fillers
        "\u2800\u2800",  # BRAILLE PATTERN BLANK
        "\u3000 \u00a0\u2003",  # ideographic, no-break and em spaces
        "\u00ad\u034f\ufe0f",  # soft hyphen, grapheme joiner, variation selector
        "\u202e\u2066\u200e",  # bidi controls only
        "\U000e0041\U000e0042",  # tag characters only
        "\U0001d173\U0001bca0",  # musical and shorthand format controls
    ],
)
def test_text_that_renders_as_nothing_is_empty(text):
    assert visible_text(text) == ""
    with pytest.raises(WireError) as e:
        clean_text(text, 2000)
    assert e.value.code == "bad-syntax"


@pytest.mark.parametrize(
    "text",
    ["a", "\u3164a", "\u200bx\u200b", "👍", "👨\u200d👩\u200d👧", "\u2800\u2801", "ㅤ."],
)
def test_text_with_something_visible_is_kept(text):
    assert visible_text(text) == text


def test_bidi_controls_and_stray_tags_are_removed_emoji_tag_sequences_kept():
    scotland = "\U0001f3f4\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f"
    assert scrub("a\u061cb\u200ec\u200fd\u202ae\u2067f") == "abcdef"
    assert scrub(f"flag {scotland}!") == f"flag {scotland}!"
    assert scrub("hidden\U000e0069\U000e0067\U000e006e\U000e007f text") == (
        "hidden text"
    )
    assert scrub("\U000e0067\U000e0062\U000e007f\U0001f3f4") == "\U0001f3f4"


def test_the_ignorable_list_is_unicode_s():
    """wire.py's Default_Ignorable_Code_Point list agrees with ICU's, code
    point by code point, so it is Unicode's property and not our guess."""
    icu = pytest.importorskip("icu")
    prop = icu.UProperty.DEFAULT_IGNORABLE_CODE_POINT
    ours = {c for c in range(0x110000) if wire._IGNORABLE_CHAR.match(chr(c))}
    theirs = {c for c in range(0x110000) if icu.Char.hasBinaryProperty(c, prop)}
    assert ours == theirs


# -- issue 12: blank and letterless names ------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "-",
        "...",
        "_",
        "-_.",
        "Alice\u3164",  # HANGUL FILLER is a letter (Lo) that renders blank
        "\u3164",
        "\u3164\u3164",
        "Bob\u115f",
        "Bob\u1160",
        "Bob\uffa0",
        "\u2800",
        "Carol\u200d",
    ],
)
def test_blank_or_letterless_names_are_refused(name):
    with pytest.raises(WireError) as e:
        check_name(name)
    assert e.value.code == "nick-invalid"


@pytest.mark.parametrize("name", ["a", "7", "-x-", "...1", "_bob_", "ß"])
def test_a_letter_or_digit_is_enough(name):
    assert check_name(name) == name


# -- issue 12: no server line longer than the limit --------------------------------


def test_check_fits_counts_the_whole_relayed_line_in_bytes():
    name = "\U0001d400" * 24  # 24 four-byte letters
    head = (*HISTORY_HEAD, "CHAT", name)
    budget = 4096 - len(format_line(*head, ""))
    check_fits("a" * budget, 4096, *head)
    with pytest.raises(WireError) as e:
        check_fits("a" * (budget + 1), 4096, *head)
    assert e.value.code == "text-too-long"
    assert f"at most {budget}" in e.value.text
    with pytest.raises(WireError):
        check_fits("é" * (budget // 2 + 1), 4096, *head)  # two bytes each


@pytest.mark.parametrize("count", [1, 2, 47, 200, 1000])
@pytest.mark.parametrize("max_line", [512, 4096])
def test_online_is_split_into_lines_within_the_limit(count, max_line):
    """ONLINE-PART lines, then ONLINE <total> <rest>: every name, in order."""
    names = [f"{chr(0x1D400 + i % 26) * 23}{i % 10}" for i in range(count)]
    lines = online_lines(names, max_line)
    assert all(len(line) <= max_line for line in lines)
    *parts, last = [line.decode().removesuffix("\r\n").split(" ") for line in lines]
    assert all(part[0] == "ONLINE-PART" and len(part) > 1 for part in parts)
    assert last[:2] == ["ONLINE", str(count)]
    assert [n for part in parts for n in part[1:]] + last[2:] == names


def test_a_small_online_is_one_line_as_before():
    assert online_lines(["alice", "bob"], 4096) == [b"ONLINE 2 alice bob\r\n"]
