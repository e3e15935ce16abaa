"""Readers for the column types that are not a plain `struct` number: `reader(data, pos) -> value`.

Each returns exactly what python-mysql-replication 1.0.17 returns for the same bytes (the values
must be equal item for item with `cdc_offload.source.library_reader`), including its choices for zero dates
(None) and for YEAR (stored byte + 1900).
"""

from __future__ import annotations

import datetime
import decimal
from collections.abc import Callable

Buffer = bytes | bytearray
ValueReader = Callable[[Buffer, int], object]

_EPOCH = datetime.datetime(1970, 1, 1)  # naive UTC, as the library returns
_DIG2BYTES = (0, 1, 1, 2, 2, 3, 3, 4, 4, 4)


def fsp_bytes(fsp: int) -> int:
    return (fsp + 1) // 2


def _fraction(data: Buffer, pos: int, fsp: int) -> int:
    """Microseconds from the big-endian fractional part that follows a TIME2/DATETIME2/TIMESTAMP2."""
    width = fsp_bytes(fsp)
    if not width:
        return 0
    value = int.from_bytes(data[pos : pos + width], "big")
    if fsp % 2:
        value //= 10
    return int(value * 10 ** (6 - fsp))


def int24(unsigned: bool) -> ValueReader:
    if unsigned:

        def read_unsigned(data: Buffer, pos: int) -> object:
            return data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16

        return read_unsigned

    def read_signed(data: Buffer, pos: int) -> object:
        value = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
        return value - 0x1000000 if value >= 0x800000 else value

    return read_signed


def read_year(data: Buffer, pos: int) -> object:
    return data[pos] + 1900


def read_date(data: Buffer, pos: int) -> object:
    packed = data[pos] | data[pos + 1] << 8 | data[pos + 2] << 16
    if packed == 0:
        return None
    year, month, day = packed >> 9, (packed >> 5) & 0x0F, packed & 0x1F
    if not (year and month and day):
        return None
    return datetime.date(year, month, day)


def read_datetime(data: Buffer, pos: int) -> object:
    # The pre-5.6 DATETIME: YYYYMMDDhhmmss as a decimal number in 8 bytes.
    value = int.from_bytes(data[pos : pos + 8], "little")
    if value == 0:
        return None
    date, time = divmod(value, 1_000_000)
    year, month, day = date // 10000, (date % 10000) // 100, date % 100
    if not (year and month and day):
        return None
    return datetime.datetime(year, month, day, time // 10000, (time % 10000) // 100, time % 100)


def read_timestamp(data: Buffer, pos: int) -> object:
    return _EPOCH + datetime.timedelta(seconds=int.from_bytes(data[pos : pos + 4], "little"))


def datetime2(fsp: int) -> ValueReader:
    def read(data: Buffer, pos: int) -> object:
        packed = int.from_bytes(data[pos : pos + 5], "big")
        year_month = (packed >> 22) & 0x1FFFF
        try:
            value = datetime.datetime(
                year_month // 13,
                year_month % 13,
                (packed >> 17) & 0x1F,
                (packed >> 12) & 0x1F,
                (packed >> 6) & 0x3F,
                packed & 0x3F,
            )
        except ValueError:
            # Zero or invalid dates ('0000-00-00 00:00:00'): the library returns None.
            return None
        micro = _fraction(data, pos + 5, fsp)
        return value.replace(microsecond=micro) if micro > 0 else value

    return read


def timestamp2(fsp: int) -> ValueReader:
    def read(data: Buffer, pos: int) -> object:
        value = _EPOCH + datetime.timedelta(seconds=int.from_bytes(data[pos : pos + 4], "big", signed=True))
        micro = _fraction(data, pos + 4, fsp)
        return value.replace(microsecond=micro) if micro > 0 else value

    return read


def decimal_size(precision: int, decimals: int) -> int:
    integral = precision - decimals
    return (integral // 9) * 4 + _DIG2BYTES[integral % 9] + (decimals // 9) * 4 + _DIG2BYTES[decimals % 9]


def new_decimal(precision: int, decimals: int) -> ValueReader:
    integral = precision - decimals
    whole_groups, lead_digits = divmod(integral, 9)
    frac_groups, tail_digits = divmod(decimals, 9)
    lead, tail = _DIG2BYTES[lead_digits], _DIG2BYTES[tail_digits]
    size = decimal_size(precision, decimals)

    def read(data: Buffer, pos: int) -> object:
        raw = bytearray(data[pos : pos + size])
        # The top bit is the sign (set = non-negative); a negative number is stored inverted.
        negative = not raw[0] & 0x80
        raw[0] ^= 0x80
        if negative:
            raw = bytearray(byte ^ 0xFF for byte in raw)
        # Built as the same text the library builds, so the Decimal is identical (exponent too).
        parts = ["-" if negative else ""]
        at = 0
        if lead:
            parts.append(str(int.from_bytes(raw[:lead], "big")))
            at = lead
        for _ in range(whole_groups):
            parts.append(f"{int.from_bytes(raw[at : at + 4], 'big'):09d}")
            at += 4
        parts.append(".")
        for _ in range(frac_groups):
            parts.append(f"{int.from_bytes(raw[at : at + 4], 'big'):09d}")
            at += 4
        if tail:
            parts.append(f"{int.from_bytes(raw[at : at + tail], 'big'):0{tail_digits}d}")
        return decimal.Decimal("".join(parts))

    return read


def bit(bits: int) -> ValueReader:
    width = (bits + 7) // 8
    first = bits if width == 1 else (bits % 8 or 8)

    def read(data: Buffer, pos: int) -> object:
        # The library's rendering: a string of '0'/'1', only the declared bits of the first byte.
        head = format(data[pos], "08b")[8 - first :]
        return head + "".join(format(byte, "08b") for byte in data[pos + 1 : pos + width])

    return read


def enum(size: int, labels: tuple[str, ...] | None) -> ValueReader:
    def read(data: Buffer, pos: int) -> object:
        if not labels:
            return None
        return labels[int.from_bytes(data[pos : pos + size], "little")]

    return read


def set_of(size: int, labels: tuple[str, ...] | None) -> ValueReader:
    def read(data: Buffer, pos: int) -> object:
        mask = int.from_bytes(data[pos : pos + size], "little")
        if not labels:
            return None
        chosen = {label for index, label in enumerate(labels) if mask & (1 << index)}
        return chosen or None

    return read
