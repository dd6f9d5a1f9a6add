"""Pure parsing, scrubbing and name rules of the wire format."""

import pytest

from partypool.wire import Command, WireError, check_name, name_key, parse_line, scrub


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
