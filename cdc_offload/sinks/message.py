"""What we hand to AWS for one job: the SQS JSON document, or the parts of an SES email."""

from __future__ import annotations

import email.policy
import html
import re
from dataclasses import dataclass, replace
from email.headerregistry import Address
from email.utils import parseaddr

import orjson

from cdc_offload.model import Envelope, Job, Recipient, RecipientKind, Sender

# 2: one message per outbox row carrying every recipient IOMAD's task would have mailed, the
# sender and both parts (README, "The SQS message"). 1 had a single `recipient`.
SCHEMA_VERSION = 2
# IOMAD's task cuts the subject here (local/email/lib/api.php, send_to_user).
SUBJECT_LIMIT = 900

_LINE_BREAK = re.compile(r"<\s*/?\s*(br|p|div|tr|li|h[1-6])\b[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")
# C0 and C1 controls, DEL, and the Unicode line and paragraph separators: anything a mail agent or
# a log viewer could take as a line break or a terminal command.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")
# Header folding off: one line, whatever its length (SES takes the address as one value).
_ONE_LINE_HEADERS = email.policy.SMTP.clone(max_line_length=None)
_BLANK_LINES = re.compile(r"\n\s*\n\s*\n+")


def one_line(text: str) -> str:
    """Header-safe text: CR, LF and other control characters become a single space."""
    return _CONTROL.sub(" ", text).strip()


def plain_text(body_html: str) -> str:
    """A readable text alternative of Moodle's HTML (it uses `</br>` and `<p>` for lines)."""
    text = _TAG.sub("", _LINE_BREAK.sub("\n", body_html))
    return _BLANK_LINES.sub("\n\n", html.unescape(text)).strip() + "\n"


def display_name(job: Job) -> str:
    if job.user is None:
        return ""
    return one_line(f"{job.user.firstname} {job.user.lastname}")


def envelope(job: Job) -> Envelope:
    """Who receives the row: the look-up's answer, or the user alone when there was none to make."""
    if job.envelope is not None:
        return job.envelope
    assert job.user is not None, "only paired jobs are sent"
    user = Recipient(0, RecipientKind.USER, job.user.email.strip(), display_name(job), job.user.id)
    return Envelope((user,))


def mailbox(address: str, name: str = "") -> str:
    """`Name <address>` built by `email.headerregistry`: the name quoted where it has specials and
    RFC 2047-encoded where it is not ASCII (as SES requires), on one line, so nothing in a name can
    become a second address or a header of its own."""
    local, _, domain = address.strip().rpartition("@")
    header = _ONE_LINE_HEADERS.header_factory("To", Address(display_name=one_line(name), username=local, domain=domain))
    folded: str = header.fold(policy=_ONE_LINE_HEADERS)
    return folded.removeprefix("To: ").rstrip("\r\n")


def subject_line(subject: str) -> str:
    return one_line(subject)[:SUBJECT_LIMIT]


def sqs_document(job: Job) -> bytes:
    """Schema 2 (README, "The SQS message"): everything a mailer needs to send each copy alone."""
    row = job.outbox
    sent_as = envelope(job)
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "outbox_id": row.id,
            "user_id": row.userid,
            "company_id": row.companyid,
            "template": row.templatename,
            "event_time": job.event_time,
            "subject": subject_line(row.subject),
            "html_body": row.body,
            "text_body": plain_text(row.body),
            "from": {"address": sent_as.sender.address, "name": one_line(sent_as.sender.name)},
            "reply_to": list(sent_as.sender.reply_to),
            "recipients": [
                {
                    "index": r.index,
                    "kind": r.kind.value,
                    "address": r.address,
                    "name": one_line(r.name),
                    "user_id": r.user_id,
                }
                for r in sent_as.recipients
            ],
        }
    )


@dataclass(frozen=True, slots=True)
class EmailParts:
    """One copy of a row as SES sends it: `to` and `sender` are ready-made mailbox headers; a
    `sender` of None means the sink's configured `--from`."""

    to: str
    subject: str
    html_body: str
    text_body: str
    sender: str | None = None
    reply_to: tuple[str, ...] = ()

    def __repr__(self) -> str:
        return "EmailParts(<content withheld>)"

    @property
    def size(self) -> int:
        return len(self.html_body.encode()) + len(self.text_body.encode()) + len(self.subject.encode())


def sender_mailbox(sender: Sender, default_sender: str) -> str:
    """From as IOMAD sets it: the template's own address, else the site's no-reply (`--from`, used
    as given when nothing names the sender), with the template's or sender's name either way."""
    if sender.address is None and not sender.name:
        return default_sender
    if sender.address is None:
        _, default_address = parseaddr(default_sender)
        return mailbox(default_address or default_sender, sender.name)
    return mailbox(sender.address, sender.name)


def email_copies(job: Job, default_sender: str) -> list[tuple[Recipient, EmailParts]]:
    """Every copy of the row, in IOMAD's order: the parts are the same for all but `To`, so they
    (the text alternative above all) are made once."""
    sent_as = envelope(job)
    shared = EmailParts(
        to="",
        subject=subject_line(job.outbox.subject),
        html_body=job.outbox.body,
        text_body=plain_text(job.outbox.body),
        sender=sender_mailbox(sent_as.sender, default_sender),
        reply_to=sent_as.sender.reply_to,
    )
    return [(to, replace(shared, to=mailbox(to.address, to.name))) for to in sent_as.recipients]
