"""Generated row decoders: one specialised Python function per table shape.

For a table-map we write the source of a function that walks one row image: fixed-width NOT NULL
columns in a run are read with one precompiled `struct` (pad bytes for the columns nobody needs),
a nullable column costs one constant bit test, and only the wanted columns are turned into
values. Everything else is stepped over by its width or length prefix.

Column names from the binlog never enter the generated source: they are bound as constants.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from cdc_offload.source.binlog import constants as c
from cdc_offload.source.binlog import values as v
from cdc_offload.source.binlog.charsets import python_encoding
from cdc_offload.source.binlog.tablemap import Column, TableMap, read_lenenc

Buffer = bytes | bytearray
RowReader = Callable[[Buffer, int], tuple[dict[str, object], int]]


class RowDecodeError(ValueError):
    """A rows event did not walk cleanly (its rows do not end where the event ends)."""


@dataclass(frozen=True, slots=True)
class Plan:
    """How one column is laid out in a row image, and whether we can produce its value."""

    width: int | None  # bytes, or None for a length-prefixed value
    code: str = ""  # struct code for a plain number
    reader: v.ValueReader | None = None  # for other fixed-width values
    prefix: int = 0  # length prefix bytes of a variable-width value
    text: bool = False  # decode as UTF-8 (else the value is bytes)
    empty_is_str: bool = False  # a binary-charset string: the library gives '' when empty
    decodable: bool = True  # False: we can walk past it but not give the library's value


_INT_CODES = {c.T_TINY: "b", c.T_SHORT: "h", c.T_LONG: "i", c.T_LONGLONG: "q"}


def _string_plan(column: Column, prefix: int, mariadb: bool) -> Plan:
    encoding = python_encoding(column.collation, mariadb)
    if encoding == "utf8":
        return Plan(None, prefix=prefix, text=True)
    if encoding == "binary":
        return Plan(None, prefix=prefix, empty_is_str=True)
    # Another charset (latin1, ...): only the library's decoder gives its exact value.
    return Plan(None, prefix=prefix, decodable=False)


def plan(column: Column, mariadb: bool) -> Plan:
    kind = column.type
    if kind in _INT_CODES:
        code = _INT_CODES[kind]
        return Plan(struct.calcsize(code), code.upper() if column.unsigned else code)
    if kind == c.T_INT24:
        return Plan(3, reader=v.int24(column.unsigned))
    if kind == c.T_FLOAT:
        return Plan(4, "f")
    if kind == c.T_DOUBLE:
        return Plan(8, "d")
    if kind == c.T_YEAR:
        return Plan(1, reader=v.read_year)
    if kind == c.T_DATE:
        return Plan(3, reader=v.read_date)
    if kind == c.T_DATETIME:
        return Plan(8, reader=v.read_datetime)
    if kind == c.T_TIMESTAMP:
        return Plan(4, reader=v.read_timestamp)
    if kind == c.T_DATETIME2:
        return Plan(5 + v.fsp_bytes(column.fsp), reader=v.datetime2(column.fsp))
    if kind == c.T_TIMESTAMP2:
        return Plan(4 + v.fsp_bytes(column.fsp), reader=v.timestamp2(column.fsp))
    if kind == c.T_TIME:
        return Plan(3, decodable=False)
    if kind == c.T_TIME2:
        return Plan(3 + v.fsp_bytes(column.fsp), decodable=False)
    if kind == c.T_NEWDECIMAL:
        return Plan(
            v.decimal_size(column.precision, column.decimals), reader=v.new_decimal(column.precision, column.decimals)
        )
    if kind == c.T_BIT:
        return Plan((column.bits + 7) // 8, reader=v.bit(column.bits))
    if kind == c.T_ENUM:
        return Plan(column.size, reader=v.enum(column.size, column.enum_values))
    if kind == c.T_SET:
        return Plan(column.size, reader=v.set_of(column.size, column.set_values))
    if kind in (c.T_VARCHAR, c.T_STRING):
        return _string_plan(column, 2 if column.max_length > 255 else 1, mariadb)
    if kind == c.T_VAR_STRING:
        # Not a type servers put in row events; the library has no decoder for it either.
        return Plan(None, prefix=2 if column.max_length > 255 else 1, decodable=False)
    if kind == c.T_BLOB:
        return _string_plan(column, column.length_size, mariadb)
    if kind == c.T_GEOMETRY:
        return Plan(None, prefix=column.length_size)
    if kind == c.T_JSON:
        # MySQL's binary JSON: walked by its length; its value is the library's parsed document.
        return Plan(None, prefix=column.length_size, decodable=False)
    if kind == c.T_NEWDATE:
        return Plan(3, decodable=False)
    if kind == c.T_NULL:
        return Plan(0, decodable=False)
    raise RowDecodeError(f"column {column.index} has type {kind}, which this reader cannot walk")


def fast_path_possible(table: TableMap, wanted: Sequence[str], mariadb: bool) -> bool:
    """True when every column can be walked and every wanted one decoded exactly."""
    wanted_set = set(wanted)
    try:
        plans = [plan(column, mariadb) for column in table.columns]
    except RowDecodeError:
        return False
    return all(p.decodable for p, column in zip(plans, table.columns, strict=True) if column.name in wanted_set)


class _Source:
    """Lines of generated code with indentation."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.depth = 1

    def add(self, line: str) -> None:
        self.lines.append("    " * self.depth + line)


def _length(src: _Source, prefix: int) -> None:
    if prefix == 1:
        src.add("n = b[p]")
    elif prefix == 2:
        src.add("n = b[p] | b[p + 1] << 8")
    elif prefix == 3:
        src.add("n = b[p] | b[p + 1] << 8 | b[p + 2] << 16")
    elif prefix == 4:
        src.add("n = _u32(b, p)[0]")
    else:
        raise RowDecodeError(f"a length prefix of {prefix} bytes")
    src.add(f"p += {prefix}")


def compile_row_reader(
    columns: Sequence[Column], present: Sequence[bool], wanted: Mapping[int, str], mariadb: bool
) -> RowReader:
    """`wanted`: column index -> key in the returned mapping. Returns `read(b, p) -> (values, p)`."""
    plans = [plan(column, mariadb) for column in columns]
    namespace: dict[str, object] = {"_u32": struct.Struct("<I").unpack_from, "_bad": RowDecodeError}
    src = _Source()
    null_bit: dict[int, int] = {}
    for index in range(len(columns)):
        if present[index]:
            null_bit[index] = len(null_bit)
    null_bytes = (len(null_bit) + 7) // 8
    not_null_mask = sum(1 << bit for index, bit in null_bit.items() if not columns[index].nullable)
    if not_null_mask:
        # A NOT NULL column flagged NULL would make us read bytes the library would not: refuse.
        namespace["_nn"] = not_null_mask
        src.add(f"if int.from_bytes(b[p:p + {null_bytes}], 'little') & _nn:")
        src.add("    raise _bad('a NOT NULL column is flagged NULL')")
    for byte in sorted({null_bit[i] >> 3 for i in null_bit if columns[i].nullable}):
        src.add(f"n{byte} = b[p + {byte}]")
    src.add(f"p += {null_bytes}")

    run: list[int] = []

    def flush() -> None:
        if not run:
            return
        fmt = "<"
        outputs: list[str] = []
        readers: list[tuple[int, int]] = []
        offset = 0
        for index in run:
            p = plans[index]
            assert p.width is not None
            if index in wanted and p.code:
                fmt += p.code
                outputs.append(f"v{index}")
            else:
                fmt += f"{p.width}x" if p.width else ""
                if index in wanted:
                    readers.append((index, offset))
            offset += p.width
        if outputs:
            namespace[f"_s{run[0]}"] = struct.Struct(fmt).unpack_from
            src.add(f"{', '.join(outputs)}, = _s{run[0]}(b, p)")
        for index, at in readers:
            namespace[f"_r{index}"] = plans[index].reader
            src.add(f"v{index} = _r{index}(b, p + {at})")
        if offset:
            src.add(f"p += {offset}")
        run.clear()

    for index, column in enumerate(columns):
        p = plans[index]
        if not present[index]:
            if index in wanted:
                flush()
                src.add(f"v{index} = None")
            continue
        if p.width is not None and not column.nullable:
            run.append(index)
            continue
        flush()
        bit = null_bit[index]
        if column.nullable:
            src.add(f"if n{bit >> 3} & {1 << (bit & 7)}:")
            src.add(f"    v{index} = None" if index in wanted else "    pass")
            src.add("else:")
            src.depth += 1
        if p.width is not None:
            if index in wanted:
                if p.code:
                    namespace[f"_s{index}"] = struct.Struct("<" + p.code).unpack_from
                    src.add(f"v{index} = _s{index}(b, p)[0]")
                else:
                    namespace[f"_r{index}"] = p.reader
                    src.add(f"v{index} = _r{index}(b, p)")
            src.add(f"p += {p.width}")
        else:
            _length(src, p.prefix)
            if index in wanted:
                if p.text:
                    src.add("s = b[p:p + n]")
                    src.add("try:")
                    src.add(f"    v{index} = s.decode()")
                    src.add("except UnicodeDecodeError:")
                    # Handed on as bytes: rows.py turns that into an Undecodable for this row.
                    src.add(f"    v{index} = bytes(s)")
                elif p.empty_is_str:
                    # The library returns '' for an empty binary string (Python decodes b'' with
                    # any codec name, even "binary"); rows.py treats both alike, but stay equal.
                    src.add(f"v{index} = bytes(b[p:p + n]) if n else ''")
                else:
                    src.add(f"v{index} = bytes(b[p:p + n])")
            src.add("p += n")
        if column.nullable:
            src.depth -= 1
    flush()
    items = []
    for index, key in wanted.items():
        namespace[f"_k{index}"] = key
        items.append(f"_k{index}: v{index}")
    src.add(f"return {{{', '.join(items)}}}, p")
    code = "def read(b, p):\n" + "\n".join(src.lines) + "\n"
    exec(compile(code, f"<binlog row decoder {len(columns)} columns>", "exec"), namespace)  # noqa: S102 - our own generated source
    reader: RowReader = namespace["read"]  # type: ignore[assignment]
    return reader


class FastRows:
    """Rows of one table shape, decoded by generated functions (one per columns-present bitmap)."""

    def __init__(self, table: TableMap, wanted: Sequence[str], mariadb: bool) -> None:
        self._columns = table.columns
        self._mariadb = mariadb
        by_name = {column.name: column.index for column in table.columns}
        self._wanted = {by_name[name]: name for name in wanted if name in by_name}
        self._readers: dict[bytes, RowReader] = {}

    def _reader(self, present: bytes) -> RowReader:
        reader = self._readers.get(present)
        if reader is None:
            count = len(self._columns)
            flags = [bool(present[i >> 3] & (1 << (i & 7))) for i in range(count)]
            reader = self._readers[present] = compile_row_reader(self._columns, flags, self._wanted, self._mariadb)
        return reader

    def _bitmaps(self, data: Buffer, payload: int, images: int) -> tuple[list[bytes], int]:
        count, pos = read_lenenc(data, payload)
        if count != len(self._columns):
            raise RowDecodeError("the rows event and its table-map disagree on the column count")
        width = (count + 7) // 8
        bitmaps = []
        for _ in range(images):
            bitmaps.append(bytes(data[pos : pos + width]))
            pos += width
        return bitmaps, pos

    def rows(self, data: Buffer, packet: int, packet_end: int, payload: int, end: int) -> list[dict[str, object]]:
        (present,), pos = self._bitmaps(data, payload, 1)
        reader = self._reader(present)
        out: list[dict[str, object]] = []
        while pos < end:
            row, pos = reader(data, pos)
            out.append(row)
        if pos != end:
            raise RowDecodeError("the rows do not end where the event ends")
        return out

    def update_rows(
        self, data: Buffer, packet: int, packet_end: int, payload: int, end: int
    ) -> list[tuple[dict[str, object], dict[str, object]]]:
        """An UPDATE's rows: each a before image and an after image, each with its own bitmap of
        the columns present (all of them with binlog_row_image=FULL)."""
        (before_present, after_present), pos = self._bitmaps(data, payload, 2)
        before_reader, after_reader = self._reader(before_present), self._reader(after_present)
        out: list[tuple[dict[str, object], dict[str, object]]] = []
        while pos < end:
            before, pos = before_reader(data, pos)
            after, pos = after_reader(data, pos)
            out.append((before, after))
        if pos != end:
            raise RowDecodeError("the rows do not end where the event ends")
        return out
