"""The IRC gateway's byte-level codec: framing, parsing, tags, formatting."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from partypool.doors.irc_wire import (
    LINE_MAX,
    MESSAGE_MAX,
    TAGS_MAX,
    IrcWireError,
    LineFramer,
    Message,
    cut_text,
    escape_tag_value,
    format_message,
    pack,
    parse_message,
    room_text,
    server_time,
    split_text,
    split_words,
    text_room,
    unescape_tag_value,
)


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"NICK alice", Message("NICK", ("alice",))),
        (b"nick alice", Message("NICK", ("alice",))),
        (b"USER a 0 * :Real Name", Message("USER", ("a", "0", "*", "Real Name"))),
        (b"PRIVMSG #party :hi  there ", Message("PRIVMSG", ("#party", "hi  there "))),
        (b"PRIVMSG #party ::)", Message("PRIVMSG", ("#party", ":)"))),
        (b"JOIN :", Message("JOIN", ("",))),  # irssi's probe before registration
        (b"CAP LS 302", Message("CAP", ("LS", "302"))),
        (b"PING   x   y", Message("PING", ("x", "y"))),
        (b":alice PRIVMSG bob :yo", Message("PRIVMSG", ("bob", "yo"), "alice")),
        (
            b"@+draft/reply=1;time=2020-01-01T00:00:00.000Z PRIVMSG #p :x",
            Message(
                "PRIVMSG",
                ("#p", "x"),
                tags={"+draft/reply": "1", "time": "2020-01-01T00:00:00.000Z"},
            ),
        ),
        (b"@a=b\\sc\\:d\\\\e;f PING", Message("PING", tags={"a": "b c;d\\e", "f": ""})),
        ("PRIVMSG Zoë :héllo ✓".encode(), Message("PRIVMSG", ("Zoë", "héllo ✓"))),
        # Commands are upper-cased in ASCII only: these stay unknown.
        ("privmſg #p :x".encode(), Message("privmſg", ("#p", "x"))),
        ("quıt".encode(), Message("quıt")),
        ("LIﬆ".encode(), Message("LIﬆ")),
        # Parameters are separated by spaces only.
        ("ISON a\u3000b".encode(), Message("ISON", ("a\u3000b",))),
    ],
)
def test_parses_what_clients_send(raw, message):
    assert parse_message(raw) == message


@pytest.mark.parametrize("raw", [b"", b"   "])
def test_empty_lines_are_ignored(raw):
    assert parse_message(raw) is None


@pytest.mark.parametrize(
    "raw, kind, command",
    [
        (b"PRIVMSG #p :\xc3\x28", "invalid-utf8", "PRIVMSG"),
        (b":src NOTICE x :\xff", "invalid-utf8", "NOTICE"),
        (b"@t=\xff PING", "invalid-utf8", "*"),
        (b"@a=b", "malformed", "*"),
        (b":onlysource", "malformed", "*"),
        (b"PRIVMSG #p :a\x00b", "malformed", "PRIVMSG"),
        (b"PRIVMSG #p :a\rb", "malformed", "PRIVMSG"),
        (b"PRIVMSG #p :" + b"x" * (MESSAGE_MAX - 13), "input-too-long", "*"),
        (b"@" + b"k" * TAGS_MAX + b" PING", "input-too-long", "*"),
    ],
)
def test_bad_lines_raise_one_kind(raw, kind, command):
    with pytest.raises(IrcWireError) as e:
        parse_message(raw)
    assert (e.value.kind, e.value.command) == (kind, command)


def test_limits_are_the_message_plus_the_tag_allowance():
    """512 bytes with CRLF for the message; the tags section may add 8191."""
    body = b"PRIVMSG #p :" + b"x" * (MESSAGE_MAX - 2 - 12)
    assert len(body) + 2 == MESSAGE_MAX
    tags = b"@k=" + b"v" * (TAGS_MAX - 4)
    assert len(tags) + 1 == TAGS_MAX
    message = parse_message(tags + b" " + body)
    assert len(message.params[1]) == MESSAGE_MAX - 14
    assert LINE_MAX == TAGS_MAX + MESSAGE_MAX


def test_a_split_utf8_character_survives_any_chunking():
    """Framing cuts bytes, not characters: é split across two reads is whole."""
    framer = LineFramer()
    data = "PRIVMSG #party :café\r\n".encode()
    cut = data.index(b"\xa9")  # between the two bytes of é
    assert list(framer.feed(data[:cut])) == []
    (line,) = framer.feed(data[cut:])
    assert parse_message(line).params[1] == "café"


_line = st.binary(max_size=40).map(lambda b: b.replace(b"\n", b""))


@given(st.lists(_line, max_size=8), st.data())
def test_framing_is_independent_of_chunking(lines, data):
    stream = b"".join(line + b"\r\n" for line in lines)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=6)))
    framer = LineFramer()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        got.extend(framer.feed(stream[start:end]))
    assert got == lines


def test_lf_alone_ends_a_line_too():
    assert list(LineFramer().feed(b"PING a\nPING b\r\n")) == [b"PING a", b"PING b"]


def test_an_overlong_line_is_discarded_alone():
    """One None for the long line, fed in pieces; the lines around it survive."""
    framer = LineFramer(max_line=16)
    got = list(framer.feed(b"PING a\r\n" + b"x" * 20))
    got += list(framer.feed(b"y" * 30))
    got += list(framer.feed(b"zz\r\nPING b\r\n"))
    assert got == [b"PING a", None, b"PING b"]


def test_an_overlong_complete_line_is_discarded():
    framer = LineFramer(max_line=16)
    assert list(framer.feed(b"x" * 15 + b"\r\nPING\r\n")) == [None, b"PING"]


def test_tag_escapes_round_trip():
    value = "a;b c\\d\re\nf"
    assert escape_tag_value(value) == "a\\:b\\sc\\\\d\\re\\nf"
    assert unescape_tag_value(escape_tag_value(value)) == value
    assert unescape_tag_value("x\\") == "x"  # a lone trailing backslash
    assert unescape_tag_value("\\q") == "q"  # an unknown escape is the character


def test_formats_a_server_message():
    line = format_message(
        "PRIVMSG",
        "#party",
        "hello world",
        source="bob!bob@partypool",
        tags={"time": "2026-01-02T03:04:05.006Z", "msgid": "7"},
    )
    assert line == (
        b"@time=2026-01-02T03:04:05.006Z;msgid=7 "
        b":bob!bob@partypool PRIVMSG #party :hello world\r\n"
    )
    assert format_message("PING", "x") == b"PING x\r\n"
    assert format_message("PRIVMSG", "a", "") == b"PRIVMSG a :\r\n"
    assert format_message("PRIVMSG", "a", ":)") == b"PRIVMSG a ::)\r\n"


def test_a_message_over_512_bytes_has_its_last_parameter_cut():
    """Between characters, tags aside; what fits is sent as it is."""
    wide = "\U00010400"
    line = format_message(
        "PRIVMSG", "#p", wide * 200, source="a!a@h", tags={"time": "t" * 900}
    )
    tags, _, message = line.partition(b" ")
    assert tags == b"@time=" + b"t" * 900
    assert message == f":a!a@h PRIVMSG #p :{wide * 122}\r\n".encode()
    assert len(message) == MESSAGE_MAX - 3  # 3 bytes left: less than a letter
    ping = format_message("PONG", "srv", "p" * 600)
    assert ping == b"PONG srv :" + b"p" * 500 + b"\r\n"
    assert format_message("X", "y" * 500) == b"X " + b"y" * 500 + b"\r\n"


def test_a_message_whose_first_parameters_pass_512_bytes_is_a_programming_error():
    with pytest.raises(ValueError):
        format_message("X", "y" * 508, "z")


@given(
    middle=st.lists(st.text("ab\U00010400é", min_size=1, max_size=40), max_size=5),
    last=st.text("x \U00010400é\u3300", max_size=700),
)
def test_every_formatted_message_fits_and_keeps_a_prefix_of_its_text(middle, last):
    line = format_message("PRIVMSG", *middle, last, source="s", trailing=True)
    assert len(line) <= MESSAGE_MAX
    message = parse_message(line.removesuffix(b"\r\n"))
    assert message.params[:-1] == tuple(middle)
    assert last.startswith(message.params[-1])


def test_text_room_is_what_the_last_parameter_may_take():
    room = text_room("PRIVMSG", "#p", source="a")
    assert room == MESSAGE_MAX - len(":a PRIVMSG #p :\r\n")
    line = format_message("PRIVMSG", "#p", "x" * room, source="a", trailing=True)
    assert len(line) == MESSAGE_MAX


def test_cut_text_cuts_between_characters():
    assert cut_text("aéb", 2) == "a"
    assert cut_text("aéb", 3) == "aé"
    assert cut_text("aéb", 9) == "aéb"
    assert cut_text("é", 0) == ""


def test_pack_fills_rows_within_room_and_count():
    words = ["aa", "bb", "cc", "dd", "é"]
    assert list(pack(words, 5)) == [["aa", "bb"], ["cc", "dd"], ["é"]]
    assert list(pack(words, 100, most=2)) == [["aa", "bb"], ["cc", "dd"], ["é"]]
    assert list(pack(["toolong"], 3)) == [["toolong"]]  # a word alone is a row
    assert list(pack([], 10)) == []


def test_split_words_splits_at_spaces_only():
    assert split_words("  a b\u3000c\x85d ") == ["a", "b\u3000c\x85d"]


@pytest.mark.parametrize("bad", ["", "a b", ":x"])
def test_a_bad_middle_parameter_is_a_programming_error(bad):
    with pytest.raises(ValueError):
        format_message("X", bad, "last")


_word = st.text(
    st.characters(blacklist_characters=" \0\r\n", blacklist_categories=("Cs",)),
    min_size=1,
).filter(lambda w: not w.startswith(":"))
_trailing = st.text(
    st.characters(blacklist_characters="\0\r\n", blacklist_categories=("Cs",))
)
_tag_key = st.from_regex(r"\+?[a-z][a-z0-9./-]{0,10}", fullmatch=True)
_tag_value = st.text(st.characters(blacklist_categories=("Cs",)), max_size=20)


@given(
    command=st.from_regex(r"[A-Z]{1,10}|[0-9]{3}", fullmatch=True),
    middle=st.lists(_word, max_size=5),
    last=st.none() | _trailing,
    source=st.none() | _word,
    tags=st.dictionaries(_tag_key, _tag_value, max_size=4),
)
def test_format_then_parse_round_trips(command, middle, last, source, tags):
    params = (*middle, last) if last is not None else tuple(middle)
    line = format_message(command, *params, source=source, tags=tags)
    assert line.endswith(b"\r\n")
    (raw,) = LineFramer(max_line=1 << 20).feed(line)
    tags_part, _, body = raw.partition(b" ") if tags else (b"", b"", raw)
    if len(body) + 2 > MESSAGE_MAX or len(tags_part) + 1 > TAGS_MAX:
        return  # the caller keeps within the limits; not what this test pins
    assert parse_message(raw) == Message(command, params, source, tags)


@given(st.text(st.characters(blacklist_categories=("Cs",))), st.integers(4, 60))
def test_split_text_fits_and_loses_only_cut_spaces(text, room):
    pieces = split_text(text, room)
    assert all(len(piece.encode()) <= room for piece in pieces)
    assert all(pieces) or pieces == [""]
    assert "".join(pieces).replace(" ", "") == text.replace(" ", "")


def test_split_text_prefers_spaces():
    assert split_text("aaa bbb ccc", 8) == ["aaa bbb", "ccc"]
    assert split_text("ééééé", 5) == ["éé", "éé", "é"]


def test_server_time_is_rfc3339_utc_milliseconds():
    assert server_time(1767323045.0067) == "2026-01-02T03:04:05.006Z"


@pytest.mark.parametrize(
    "text, carried",
    [
        ("plain", "plain"),
        ("\x02bold\x02 \x1ditalic\x1d \x1funder\x0f", "bold italic under"),
        ("\x0304red\x03 \x0312,01blue on black\x03", "red blue on black"),
        ("a\x03 99", "a 99"),  # a colour reset, then text
        ("\x04ff0000hex\x04", "hex"),
        ("\x01ACTION waves\x01", "* waves"),
        ("\x01VERSION\x01", None),
        ("\x01PING 12345\x01", None),
        ("\x01action waves\x01", "* waves"),
        ("\x01actıon waves\x01", None),  # dotless i: not ACTION
    ],
)
def test_room_text_drops_formatting_and_ctcp_but_keeps_actions(text, carried):
    assert room_text(text) == carried
