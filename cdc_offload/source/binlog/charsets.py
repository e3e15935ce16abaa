"""Which Python codec the library would use for a column's collation id."""

from __future__ import annotations

from functools import lru_cache

from pymysql.charset import charset_by_name
from pymysqlreplication.constants import CHARSET


@lru_cache(maxsize=512)
def python_encoding(collation: int | None, mariadb: bool) -> str:
    """'utf8' for the UTF-8 family (and unknown ids, as the library assumes), 'binary' for
    binary strings and BLOBs, else the library's codec name for that charset."""
    if collation is None:
        return "utf8"
    charset = CHARSET.charset_by_id(str(collation), "mariadb" if mariadb else "mysql")
    name = charset.encoding if charset is not None else "utf8"
    known = charset_by_name(name)
    encoding = known.encoding if known is not None else name
    return "utf8" if encoding in ("utf8", "utf-8", "utf8mb4", "utf8mb3") else str(encoding)
