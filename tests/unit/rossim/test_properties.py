"""Property tests: CLI quoting/escaping rules and the API word length encoding."""

from __future__ import annotations

from pathlib import Path

import librouteros.protocol as client_protocol
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rossim.cli.interp import Session
from rossim.device import Device
from rossim.schema import quote
from rossim.wire import decode_length, encode_length, encode_sentence, length_size

TEXT = st.text(alphabet=st.characters(min_codepoint=1, max_codepoint=0x2FF), max_size=60)
PROFILE = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def routeros_quote(value: str) -> str:
    """Quoting as a careful client must do it (written from the RouterOS scripting manual)."""
    out = []
    for ch in value:
        if ch in '"\\$':
            out.append("\\" + ch)
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\{ord(ch):02X}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


@PROFILE
@given(value=TEXT)
def test_quoted_string_reads_back_verbatim(tmp_path: Path, value: str) -> None:
    device = Device(tmp_path / "d")
    out, failed = Session(device, "admin").run(f":put {routeros_quote(value)}")
    assert not failed
    assert "\n".join(out) == value


@PROFILE
@given(value=TEXT)
def test_quoted_value_is_stored_verbatim_with_exactly_one_write(tmp_path: Path, value: str) -> None:
    device = Device(tmp_path / "d")
    session = Session(device, "admin")
    out, failed = session.run(f"/ip dns static add name=x address=10.0.0.1 comment={routeros_quote(value)}")
    assert (out, failed) == ([], False)
    assert [e["verb"] for e in device.log.entries() if e["write"]] == ["add"]
    (item,) = device.table("ip/dns/static").items.values()
    assert item["comment"] == value


@PROFILE
@given(value=TEXT)
def test_simulator_quoting_round_trips(tmp_path: Path, value: str) -> None:
    """What print shows in quotes parses back to the same value."""
    device = Device(tmp_path / "d")
    out, failed = Session(device, "admin").run(f":put {quote(value)}")
    assert not failed
    assert "\n".join(out) == value


@PROFILE
@given(prefix=st.text(alphabet="abc", min_size=1, max_size=5))
def test_unquoted_semicolon_always_starts_a_new_command(tmp_path: Path, prefix: str) -> None:
    device = Device(tmp_path / "d")
    Session(device, "admin").run(
        f"/ip dns static add name=x address=10.0.0.1 comment={prefix};/ip pool add name=p ranges=10.0.0.1"
    )
    assert [e["menu"] for e in device.log.entries() if e["write"]] == ["/ip/dns/static", "/ip/pool"]


@settings(max_examples=2000, deadline=None)
@given(n=st.integers(min_value=0, max_value=0xFFFFFFFF))
def test_length_encoding_round_trips(n: int) -> None:
    encoded = encode_length(n)
    assert length_size(encoded[0]) == len(encoded)
    assert decode_length(encoded) == (n, len(encoded))
    expected = 1 if n < 0x80 else 2 if n < 0x4000 else 3 if n < 0x200000 else 4 if n < 0x10000000 else 5
    assert len(encoded) == expected


@settings(max_examples=2000, deadline=None)
@given(n=st.integers(min_value=0, max_value=0x0FFFFFFF))
def test_length_encoding_agrees_with_librouteros(n: int) -> None:
    assert encode_length(n) == client_protocol.encode_length(n)
    assert client_protocol.decode_length(encode_length(n)) == n


@settings(max_examples=300, deadline=None)
@given(words=st.lists(st.text(max_size=300), min_size=1, max_size=5))
def test_sentence_encoding_matches_the_client(words: list[str]) -> None:
    assert encode_sentence(words) == client_protocol.encode_sentence(*words, encoding="utf-8")


def test_length_boundaries() -> None:
    for n, raw in [
        (0x7F, b"\x7f"),
        (0x80, b"\x80\x80"),
        (0x3FFF, b"\xbf\xff"),
        (0x4000, b"\xc0\x40\x00"),
        (0x1FFFFF, b"\xdf\xff\xff"),
        (0x200000, b"\xe0\x20\x00\x00"),
        (0xFFFFFFF, b"\xef\xff\xff\xff"),
        (0x10000000, b"\xf0\x10\x00\x00\x00"),
    ]:
        assert encode_length(n) == raw
