"""Sizes and numbers the way RouterOS reads and prints them."""

from __future__ import annotations

import re

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40, "P": 1 << 50}
_SIZE_RE = re.compile(r"(\d+)(?:\.(\d+))?([KMGTP]?)(i?B)?", re.IGNORECASE)
_LEADING_DIGITS = re.compile(r"\d+")


class SizeSyntaxError(ValueError):
    """`trailing` is True when a number was read but junk followed it."""

    def __init__(self, trailing: bool) -> None:
        super().__init__("trailing characters" if trailing else "not a size")
        self.trailing = trailing


def parse_size(text: str) -> int:
    """`10G`, `1T`, `512M`, `4096`, `1.5G` -> bytes.

    UNCONFIRMED: suffixes are binary (G = GiB). The rds-csi lab notes show a `1G` disk reporting
    1073741824 bytes; RouterOS documents decimal units for tmpfs only.
    """
    m = _SIZE_RE.fullmatch(text)
    if not m:
        raise SizeSyntaxError(trailing=bool(_LEADING_DIGITS.match(text)))
    whole, frac, unit, _ = m.groups()
    mult = _SIZE_UNITS[unit.upper()]
    value = int(whole) * mult
    if frac:
        value += int(frac) * mult // (10 ** len(frac))
    return value


def group_thousands(value: int) -> str:
    """53687091200 -> '53 687 091 200' (print detail style)."""
    return f"{value:,}".replace(",", " ")


_HUMAN_UNITS = ("KiB", "MiB", "GiB", "TiB", "PiB")


def humanize(value: int) -> str:
    """Bytes -> '50.0GiB', '1924.1KiB', '0'.

    UNCONFIRMED rule, chosen because it reproduces every captured sample (`1924.1KiB`, `10.0GiB`,
    `50.0GiB`, `size=0`): plain bytes below 10000, otherwise the smallest binary unit in which the
    value is below 10000, with one decimal.
    """
    if value < 10000:
        return str(value)
    scaled = float(value)
    for unit in _HUMAN_UNITS:
        scaled /= 1024
        if scaled < 10000 or unit == _HUMAN_UNITS[-1]:
            return f"{scaled:.1f}{unit}"
    raise AssertionError("unreachable")
