"""`mdl_email.headers`: the PHP-serialized array IOMAD's queue_for_cron() (local/email/lib/api.php)
writes when it queues a row. Integer keys hold `To:<address>`, `Cc:<address>` and
`reply-to:<address>` strings, `template` the template as a stdClass, `attachment` a file to attach.

Parsed with phpserialize (plain dicts, never a PHP object instantiated) behind limits of our own:
the value comes from the database and is treated as hostile. Any problem is a `HeadersProblem`,
and the row is left to Moodle."""

from __future__ import annotations

import functools
import io
from dataclasses import dataclass

import phpserialize

from cdc_offload.model import Reason
from cdc_offload.policy import is_single_address
from cdc_offload.recipients.outcome import Refused
from cdc_offload.recipients.template import Template, TemplateValueError, php_empty

# Real values are 2-3 KB (the template's subject and body are in there); a company's body with
# inline images can reach a few hundred. Beyond this it is not a template.
MAX_BYTES = 512 * 1024
# IOMAD's shape is two levels deep (the array, the template object or the attachment object).
MAX_DEPTH = 4
MAX_VALUES = 4096


class HeadersProblem(Refused):
    """The headers cannot be read as IOMAD writes them."""

    def __init__(self, problem: str, reason: Reason = Reason.BAD_HEADERS) -> None:
        super().__init__(reason, problem)


_FIX = "; the row is left to Moodle. Fix the template or the code that queued it"


def _bad(what: str) -> HeadersProblem:
    return HeadersProblem(f"the outbox row's headers {what}{_FIX}")


@dataclass(frozen=True, slots=True)
class FrozenHeaders:
    """What the task reads from `headers`. `template` None: the row carries none, so the task reads
    the company's current template from the tables (send_to_user())."""

    template: Template | None
    reply_to: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return f"FrozenHeaders(template={self.template!r}, reply_to={len(self.reply_to)})"


def _digits(data: bytes, start: int, end_byte: bytes) -> tuple[int, int]:
    """A decimal length at `start` ending at `end_byte`: (value, index of the end byte)."""
    end = data.find(end_byte, start, start + 11)
    if end <= start or not data[start:end].isdigit():
        raise _bad("are not PHP-serialized data (a broken length)")
    return int(data[start:end]), end


def _check_shape(data: bytes) -> None:
    """Walk the serialized tokens once, skipping string payloads by their declared length, and
    refuse deep nesting, too many values and any opcode besides scalars, arrays and objects
    (references and custom serializations included) before the recursive parser sees them."""
    depth = values = 0
    at = 0
    while at < len(data):
        opcode = data[at : at + 1].lower()
        if opcode == b"}":
            depth -= 1
            at += 1
            continue
        values += 1
        if values > MAX_VALUES:
            raise _bad(f"hold more than {MAX_VALUES} values")
        if opcode in (b"a", b"o"):
            at = _after_container_opening(data, at, opcode)
            depth += 1
            if depth > MAX_DEPTH:
                raise _bad(f"are nested more than {MAX_DEPTH} levels deep")
        else:
            at = _after_scalar(data, at, opcode)


def _after_scalar(data: bytes, at: int, opcode: bytes) -> int:
    """Where the next token starts after the scalar at `at`."""
    if opcode == b"n":
        return at + 2
    if opcode in (b"i", b"d", b"b"):
        end = data.find(b";", at)
        if end < 0:
            raise _bad("are truncated")
        return end + 1
    if opcode == b"s":
        length, colon = _digits(data, at + 2, b":")
        return colon + 2 + length + 2
    raise _bad("hold something other than strings, numbers, arrays and objects")


def _after_container_opening(data: bytes, at: int, opcode: bytes) -> int:
    """Where the first member starts in the array or object opening at `at`."""
    if opcode == b"o":
        length, colon = _digits(data, at + 2, b":")
        at = colon + 2 + length
    brace = data.find(b"{", at)
    if brace < 0:
        raise _bad("are truncated")
    return brace + 1


def _unserialize(text: str) -> object:
    try:
        data = text.encode("utf-8")
    except UnicodeEncodeError:
        raise _bad("are not valid UTF-8") from None
    if len(data) > MAX_BYTES:
        raise _bad(f"are larger than {MAX_BYTES} bytes")
    _check_shape(data)
    stream = io.BytesIO(data)
    try:
        value = phpserialize.load(stream, decode_strings=True, object_hook=phpserialize.phpobject)
    except (ValueError, TypeError, OverflowError, RecursionError, IndexError, AttributeError):
        # ValueError covers truncation, bad lengths and invalid UTF-8; TypeError an array used as
        # a key. Never the text: it may quote the template body.
        raise _bad("are not valid PHP-serialized data (truncated or malformed)") from None
    if stream.tell() != len(data):
        raise _bad("carry data after the serialized value")
    return value


def _reply_to(line: str) -> str | None:
    """One of the strings queue_for_cron() stores; the task adds each as a raw header line
    (PHPMailer's addCustomHeader(): split at the first colon, both sides trimmed)."""
    name, colon, value = line.partition(":")
    if not colon or any(ord(ch) < 32 for ch in line):
        raise _bad("hold a header string that is not one `Name:value` line")
    kind = name.strip().lower()
    if kind in ("to", "cc"):
        # Added to every copy as display-only header lines; they name no recipient of their own.
        return None
    if kind == "reply-to":
        address = value.strip()
        if not is_single_address(address):
            raise _bad("hold a reply-to that is not one plain address")
        return address
    raise _bad("hold a header string other than To:, Cc: and reply-to:")


# A round's rows mostly carry the same frozen template (one per company and template): parsing it
# once instead of per row took a 500-row round's look-up from 345 to 33 ms here. Only values of a
# usual size are kept, so the cache stays small whatever the rows hold.
_CACHED_MAX_BYTES = 16 * 1024


def parse_headers(text: str) -> FrozenHeaders:
    """`headers` as the task reads it. Raises HeadersProblem (BAD_HEADERS, or ATTACHMENT for a row
    with a file to attach, which we do not send)."""
    if len(text) <= _CACHED_MAX_BYTES:
        return _parse_cached(text)
    return _parse(text)


@functools.lru_cache(maxsize=256)
def _parse_cached(text: str) -> FrozenHeaders:
    return _parse(text)


def _parse(text: str) -> FrozenHeaders:
    if not text:
        return FrozenHeaders(template=None)
    value = _unserialize(text)
    if not isinstance(value, dict):
        raise _bad("are not a serialized array")
    template: Template | None = None
    reply_to: list[str] = []
    for key, item in value.items():
        if isinstance(key, int) and not isinstance(key, bool):
            if not isinstance(item, str):
                raise _bad("hold a header line that is not a string")
            address = _reply_to(item)
            if address is not None:
                reply_to.append(address)
        elif key == "template":
            template = _template(item)
        elif key == "attachment":
            if not php_empty(item):
                raise HeadersProblem(
                    "the outbox row has an attachment, which the sidecar does not send; "
                    "the row is left to Moodle, which attaches it",
                    Reason.ATTACHMENT,
                )
        else:
            raise _bad("hold a key IOMAD never writes")
    return FrozenHeaders(template=template, reply_to=tuple(reply_to))


def _template(item: object) -> Template | None:
    if php_empty(item):
        # send_to_user() tests the entry with empty(): an empty one means "read it from the tables".
        return None
    if not isinstance(item, phpserialize.phpobject) or str(item.__name__).lower() != "stdclass":
        raise _bad("hold a template that is not a plain object")
    properties = item.__php_vars__
    if not all(isinstance(name, str) for name in properties):
        raise _bad("hold a template with a property name that is not text")
    try:
        return Template.from_properties(properties)
    except TemplateValueError:
        raise _bad("hold a template property of a type IOMAD never writes") from None
