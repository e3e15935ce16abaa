"""What we hand to AWS for one job: the SQS JSON document, or the parts of an SES email."""

from __future__ import annotations

import email.policy
import html
import re
from dataclasses import dataclass
from email.headerregistry import Address

import orjson

from cdc_offload.model import Job

SCHEMA_VERSION = 1

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


def recipient(job: Job) -> str:
    """`Name <address>` built by `email.headerregistry`: the name quoted where it has specials and
    RFC 2047-encoded where it is not ASCII (as SES requires), on one line, so nothing in a name can
    become a second address or a header of its own."""
    assert job.user is not None, "only paired jobs are sent"
    local, _, domain = job.user.email.strip().rpartition("@")
    address = Address(display_name=display_name(job), username=local, domain=domain)
    header = _ONE_LINE_HEADERS.header_factory("To", address)
    folded: str = header.fold(policy=_ONE_LINE_HEADERS)
    return folded.removeprefix("To: ").rstrip("\r\n")


def sqs_document(job: Job) -> bytes:
    assert job.user is not None, "only paired jobs are sent"
    row = job.outbox
    return orjson.dumps(
        {
            "schema_version": SCHEMA_VERSION,
            "outbox_id": row.id,
            "user_id": row.userid,
            "company_id": row.companyid,
            "recipient": {"address": job.user.email.strip(), "name": display_name(job)},
            "subject": one_line(row.subject),
            "html_body": row.body,
            "template": row.templatename,
            "event_time": job.event_time,
        }
    )


@dataclass(frozen=True, slots=True)
class EmailParts:
    to: str
    subject: str
    html_body: str
    text_body: str

    def __repr__(self) -> str:
        return "EmailParts(<content withheld>)"

    @property
    def size(self) -> int:
        return len(self.html_body.encode()) + len(self.text_body.encode()) + len(self.subject.encode())


def email_parts(job: Job) -> EmailParts:
    return EmailParts(
        to=recipient(job),
        subject=one_line(job.outbox.subject),
        html_body=job.outbox.body,
        text_body=plain_text(job.outbox.body),
    )
