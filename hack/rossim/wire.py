"""RouterOS API framing: word length encoding and sentences (written independently of any client)."""

from __future__ import annotations

import asyncio

ENCODING = "utf-8"


class FramingError(Exception):
    pass


def encode_length(n: int) -> bytes:
    if n < 0:
        raise ValueError("negative length")
    if n < 0x80:
        return bytes([n])
    if n < 0x4000:
        return (n | 0x8000).to_bytes(2, "big")
    if n < 0x200000:
        return (n | 0xC00000).to_bytes(3, "big")
    if n < 0x10000000:
        return (n | 0xE0000000).to_bytes(4, "big")
    if n < 0x100000000:
        return b"\xf0" + n.to_bytes(4, "big")
    raise ValueError("word too long")


def decode_length(data: bytes) -> tuple[int, int]:
    """(length, bytes consumed) from the start of `data`."""
    first = data[0]
    if first < 0x80:
        return first, 1
    if first < 0xC0:
        return int.from_bytes(data[:2], "big") & 0x3FFF, 2
    if first < 0xE0:
        return int.from_bytes(data[:3], "big") & 0x1FFFFF, 3
    if first < 0xF0:
        return int.from_bytes(data[:4], "big") & 0x0FFFFFFF, 4
    if first == 0xF0:
        return int.from_bytes(data[1:5], "big"), 5
    raise FramingError(f"reserved control byte 0x{first:02X}")


def length_size(first: int) -> int:
    if first < 0x80:
        return 1
    if first < 0xC0:
        return 2
    if first < 0xE0:
        return 3
    if first < 0xF0:
        return 4
    if first == 0xF0:
        return 5
    raise FramingError(f"reserved control byte 0x{first:02X}")


def encode_word(word: str) -> bytes:
    raw = word.encode(ENCODING, errors="surrogateescape")
    return encode_length(len(raw)) + raw


def encode_sentence(words: list[str]) -> bytes:
    return b"".join(encode_word(w) for w in words) + b"\x00"


async def read_sentence(reader: asyncio.StreamReader) -> list[str]:
    words: list[str] = []
    while True:
        first = await reader.readexactly(1)
        if first == b"\x00":
            return words
        size = length_size(first[0])
        head = first + (await reader.readexactly(size - 1) if size > 1 else b"")
        length, _ = decode_length(head)
        raw = await reader.readexactly(length) if length else b""
        words.append(raw.decode(ENCODING, errors="surrogateescape"))
