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


def _int_plan(column: Column, mariadb: bool) -> Plan:
    code = _INT_CODES[column.type]
    return Plan(struct.calcsize(code), code.upper() if column.unsigned else code)


def _char_prefix(column: Column) -> int:
    return 2 if column.max_length > 255 else 1


# One entry per column type a row image can hold: how to build its Plan. Consulted once per
# table shape (FastRows caches the generated reader), never per row.
_PLANS: dict[int, Callable[[Column, bool], Plan]] = {
    **dict.fromkeys(_INT_CODES, _int_plan),
    c.T_INT24: lambda column, mariadb: Plan(3, reader=v.int24(column.unsigned)),
    c.T_FLOAT: lambda column, mariadb: Plan(4, "f"),
    c.T_DOUBLE: lambda column, mariadb: Plan(8, "d"),
    c.T_YEAR: lambda column, mariadb: Plan(1, reader=v.read_year),
    c.T_DATE: lambda column, mariadb: Plan(3, reader=v.read_date),
    c.T_DATETIME: lambda column, mariadb: Plan(8, reader=v.read_datetime),
    c.T_TIMESTAMP: lambda column, mariadb: Plan(4, reader=v.read_timestamp),
    c.T_DATETIME2: lambda column, mariadb: Plan(5 + v.fsp_bytes(column.fsp), reader=v.datetime2(column.fsp)),
    c.T_TIMESTAMP2: lambda column, mariadb: Plan(4 + v.fsp_bytes(column.fsp), reader=v.timestamp2(column.fsp)),
    c.T_TIME: lambda column, mariadb: Plan(3, decodable=False),
    c.T_TIME2: lambda column, mariadb: Plan(3 + v.fsp_bytes(column.fsp), decodable=False),
    c.T_NEWDECIMAL: lambda column, mariadb: Plan(
        v.decimal_size(column.precision, column.decimals), reader=v.new_decimal(column.precision, column.decimals)
    ),
    c.T_BIT: lambda column, mariadb: Plan((column.bits + 7) // 8, reader=v.bit(column.bits)),
    c.T_ENUM: lambda column, mariadb: Plan(column.size, reader=v.enum(column.size, column.enum_values)),
    c.T_SET: lambda column, mariadb: Plan(column.size, reader=v.set_of(column.size, column.set_values)),
    c.T_VARCHAR: lambda column, mariadb: _string_plan(column, _char_prefix(column), mariadb),
    c.T_STRING: lambda column, mariadb: _string_plan(column, _char_prefix(column), mariadb),
    # Not a type servers put in row events; the library has no decoder for it either.
    c.T_VAR_STRING: lambda column, mariadb: Plan(None, prefix=_char_prefix(column), decodable=False),
    c.T_BLOB: lambda column, mariadb: _string_plan(column, column.length_size, mariadb),
    c.T_GEOMETRY: lambda column, mariadb: Plan(None, prefix=column.length_size),
    # MySQL's binary JSON: walked by its length; its value is the library's parsed document.
    c.T_JSON: lambda column, mariadb: Plan(None, prefix=column.length_size, decodable=False),
    c.T_NEWDATE: lambda column, mariadb: Plan(3, decodable=False),
    c.T_NULL: lambda column, mariadb: Plan(0, decodable=False),
}


def plan(column: Column, mariadb: bool) -> Plan:
    make = _PLANS.get(column.type)
    if make is None:
        raise RowDecodeError(f"column {column.index} has type {column.type}, which this reader cannot walk")
    return make(column, mariadb)


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


class _ReaderSource:
    """Writes the source of one row reader: the null bitmap, then each column in turn, with runs
    of fixed-width NOT NULL columns batched into one struct read, then the returned mapping."""

    def __init__(
        self, columns: Sequence[Column], present: Sequence[bool], wanted: Mapping[int, str], mariadb: bool
    ) -> None:
        self.columns = columns
        self.present = present
        self.wanted = wanted
        self.plans = [plan(column, mariadb) for column in columns]
        self.namespace: dict[str, object] = {"_u32": struct.Struct("<I").unpack_from, "_bad": RowDecodeError}
        self.src = _Source()
        self.null_bit: dict[int, int] = {}
        self.run: list[int] = []  # fixed-width NOT NULL columns not yet read

    def null_bitmap(self) -> None:
        columns, src, null_bit = self.columns, self.src, self.null_bit
        for index in range(len(columns)):
            if self.present[index]:
                null_bit[index] = len(null_bit)
        null_bytes = (len(null_bit) + 7) // 8
        not_null_mask = sum(1 << bit for index, bit in null_bit.items() if not columns[index].nullable)
        if not_null_mask:
            # A NOT NULL column flagged NULL would make us read bytes the library would not: refuse.
            self.namespace["_nn"] = not_null_mask
            src.add(f"if int.from_bytes(b[p:p + {null_bytes}], 'little') & _nn:")
            src.add("    raise _bad('a NOT NULL column is flagged NULL')")
        for byte in sorted({null_bit[i] >> 3 for i in null_bit if columns[i].nullable}):
            src.add(f"n{byte} = b[p + {byte}]")
        src.add(f"p += {null_bytes}")

    def _run_layout(self) -> tuple[str, list[str], list[tuple[int, int]], int]:
        """The run's struct format, its unpacked outputs, the other wanted values' readers with
        their offsets, and the run's total width."""
        fmt = "<"
        outputs: list[str] = []
        readers: list[tuple[int, int]] = []
        offset = 0
        for index in self.run:
            p = self.plans[index]
            assert p.width is not None
            if index in self.wanted and p.code:
                fmt += p.code
                outputs.append(f"v{index}")
            else:
                fmt += f"{p.width}x" if p.width else ""
                if index in self.wanted:
                    readers.append((index, offset))
            offset += p.width
        return fmt, outputs, readers, offset

    def flush(self) -> None:
        run, src = self.run, self.src
        if not run:
            return
        fmt, outputs, readers, offset = self._run_layout()
        if outputs:
            self.namespace[f"_s{run[0]}"] = struct.Struct(fmt).unpack_from
            src.add(f"{', '.join(outputs)}, = _s{run[0]}(b, p)")
        for index, at in readers:
            self.namespace[f"_r{index}"] = self.plans[index].reader
            src.add(f"v{index} = _r{index}(b, p + {at})")
        if offset:
            src.add(f"p += {offset}")
        run.clear()

    def _fixed(self, index: int, p: Plan) -> None:
        if index in self.wanted:
            if p.code:
                self.namespace[f"_s{index}"] = struct.Struct("<" + p.code).unpack_from
                self.src.add(f"v{index} = _s{index}(b, p)[0]")
            else:
                self.namespace[f"_r{index}"] = p.reader
                self.src.add(f"v{index} = _r{index}(b, p)")
        self.src.add(f"p += {p.width}")

    def _variable(self, index: int, p: Plan) -> None:
        src = self.src
        _length(src, p.prefix)
        if index in self.wanted:
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

    def column(self, index: int, column: Column) -> None:
        p = self.plans[index]
        if not self.present[index]:
            if index in self.wanted:
                self.flush()
                self.src.add(f"v{index} = None")
            return
        if p.width is not None and not column.nullable:
            self.run.append(index)
            return
        self.flush()
        src = self.src
        if column.nullable:
            bit = self.null_bit[index]
            src.add(f"if n{bit >> 3} & {1 << (bit & 7)}:")
            src.add(f"    v{index} = None" if index in self.wanted else "    pass")
            src.add("else:")
            src.depth += 1
        if p.width is not None:
            self._fixed(index, p)
        else:
            self._variable(index, p)
        if column.nullable:
            src.depth -= 1

    def code(self) -> str:
        self.null_bitmap()
        for index, column in enumerate(self.columns):
            self.column(index, column)
        self.flush()
        items = []
        for index, key in self.wanted.items():
            self.namespace[f"_k{index}"] = key
            items.append(f"_k{index}: v{index}")
        self.src.add(f"return {{{', '.join(items)}}}, p")
        return "def read(b, p):\n" + "\n".join(self.src.lines) + "\n"


def compile_row_reader(
    columns: Sequence[Column], present: Sequence[bool], wanted: Mapping[int, str], mariadb: bool
) -> RowReader:
    """`wanted`: column index -> key in the returned mapping. Returns `read(b, p) -> (values, p)`."""
    source = _ReaderSource(columns, present, wanted, mariadb)
    code = source.code()
    namespace = source.namespace
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
