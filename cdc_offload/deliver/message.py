"""The sidecar's SQS message (README, "The SQS message"), read back into what SES needs per copy.

Schema 2 carries every recipient, the sender and both parts; schema 1 (older sidecars) carried
one `recipient` and the HTML alone. Anything else is not guessed at: `Unreadable` names the
problem without quoting the body (it holds a password).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from cdc_offload.model import RecipientKind, Sender
from cdc_offload.sinks.message import EmailParts, mailbox, one_line, plain_text, sender_mailbox, subject_line

SUPPORTED_SCHEMAS = (1, 2)
# SES's own limit on recipients is 50 a message; IOMAD's lists are far shorter. More than this in
# one row is not something the sidecar writes.
MAX_RECIPIENTS = 500


class Unreadable(ValueError):
    """A message the worker cannot send as the sidecar meant it. The text never quotes content."""


@dataclass(frozen=True, slots=True)
class Copy:
    """One recipient of an outbox row: one SendEmail."""

    index: int
    kind: str
    address: str
    name: str = ""
    user_id: int | None = None

    def __repr__(self) -> str:
        # Addresses stay out of logs and tracebacks.
        return f"Copy(index={self.index}, kind={self.kind})"


@dataclass(frozen=True, slots=True)
class OutboxMessage:
    schema_version: int
    outbox_id: int
    user_id: int
    subject: str
    html_body: str
    text_body: str
    sender: Sender
    copies: tuple[Copy, ...]

    def __repr__(self) -> str:
        return f"OutboxMessage(outbox_id={self.outbox_id}, copies={len(self.copies)})"

    def parts(self, copy: Copy, default_sender: str) -> EmailParts:
        return EmailParts(
            to=mailbox(copy.address, copy.name),
            subject=self.subject,
            html_body=self.html_body,
            text_body=self.text_body,
            sender=sender_mailbox(self.sender, default_sender),
            reply_to=self.sender.reply_to,
        )


def parse(body: str | bytes) -> OutboxMessage:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        raise Unreadable("the body is not JSON: it was not written by cdc-offload's SQS sink") from None
    if not isinstance(document, dict):
        raise Unreadable("the body is not a JSON object: it was not written by cdc-offload's SQS sink")
    version = document.get("schema_version", 1 if "recipient" in document else None)
    if version not in SUPPORTED_SCHEMAS:
        raise Unreadable(
            f"schema_version {_shown(version)} is not one this worker reads ({SUPPORTED_SCHEMAS}): "
            "upgrade the delivery worker to the sidecar's version"
        )
    html_body = _text(document, "html_body")
    outbox_id, user_id = _integer(document, "outbox_id"), _integer(document, "user_id")
    subject = subject_line(_text(document, "subject"))
    if version == 1:
        recipient = document.get("recipient")
        if not isinstance(recipient, dict):
            raise Unreadable("schema 1 message without its `recipient` object")
        user = Copy(0, RecipientKind.USER.value, _address(recipient), _name(recipient), user_id)
        return OutboxMessage(1, outbox_id, user_id, subject, html_body, plain_text(html_body), Sender(), (user,))
    text_body = document.get("text_body")
    return OutboxMessage(
        2,
        outbox_id,
        user_id,
        subject,
        html_body,
        text_body if isinstance(text_body, str) and text_body else plain_text(html_body),
        _sender(document),
        _copies(document),
    )


def _copies(document: dict[str, Any]) -> tuple[Copy, ...]:
    recipients = document.get("recipients")
    if not isinstance(recipients, list) or not recipients:
        raise Unreadable("schema 2 message without a `recipients` list")
    if len(recipients) > MAX_RECIPIENTS:
        raise Unreadable(f"{len(recipients)} recipients in one message (at most {MAX_RECIPIENTS})")
    copies: list[Copy] = []
    for position, entry in enumerate(recipients):
        if not isinstance(entry, dict):
            raise Unreadable(f"recipient {position} is not an object")
        user_id = entry.get("user_id")
        if user_id is not None and not isinstance(user_id, int):
            raise Unreadable(f"recipient {position}: `user_id` is not an integer")
        kind = entry.get("kind")
        if kind not in {k.value for k in RecipientKind}:
            raise Unreadable(f"recipient {position}: unknown kind {_shown(kind)}")
        copies.append(Copy(_integer(entry, "index"), str(kind), _address(entry), _name(entry), user_id))
    if len({c.index for c in copies}) != len(copies):
        raise Unreadable("two recipients share one index: the ledger could not tell their copies apart")
    return tuple(copies)


def _sender(document: dict[str, Any]) -> Sender:
    sent_from = document.get("from") or {}
    reply_to = document.get("reply_to") or []
    if not isinstance(sent_from, dict) or not isinstance(reply_to, list):
        raise Unreadable("`from` is not an object or `reply_to` is not a list")
    address = sent_from.get("address")
    if address is not None and (not isinstance(address, str) or "@" not in address):
        raise Unreadable("`from.address` is not an email address")
    if not all(isinstance(r, str) and "@" in r for r in reply_to):
        raise Unreadable("`reply_to` holds something that is not an email address")
    return Sender(
        address=one_line(address) if address else None,
        name=one_line(str(sent_from.get("name") or "")),
        reply_to=tuple(one_line(r) for r in reply_to),
    )


def _integer(document: dict[str, Any], key: str) -> int:
    value = document.get(key)
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise Unreadable(f"`{key}` is missing or not a non-negative integer")
    return value


def _text(document: dict[str, Any], key: str) -> str:
    value = document.get(key)
    if not isinstance(value, str) or not value:
        raise Unreadable(f"`{key}` is missing or empty")
    return value


def _address(entry: dict[str, Any]) -> str:
    address = entry.get("address")
    if not isinstance(address, str) or address.count("@") != 1 or one_line(address) != address.strip():
        raise Unreadable("a recipient's `address` is missing or not one email address")
    return address.strip()


def _name(entry: dict[str, Any]) -> str:
    return one_line(str(entry.get("name") or ""))


def _shown(value: object) -> str:
    # Only short scalars are echoed: never a body or an address.
    return repr(value) if isinstance(value, int | float | None) else f"<{type(value).__name__}>"
