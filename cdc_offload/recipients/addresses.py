"""Which addresses IOMAD's task sends to, and whether we can send to them the same way.

IOMAD filters its address lists with Moodle's `validate_email()` (lib/weblib.php): PHPMailer's
`validateAddress()` with its default validator, PHP's FILTER_VALIDATE_EMAIL, plus a refusal of `<`
and `>`. An address it rejects is skipped without a word; one it accepts gets an email. Our own
`is_single_address` is stricter (one plain address, nothing a header could be smuggled in). Where
the two could disagree we do not guess: the row is left to Moodle."""

from __future__ import annotations

import enum
import re

from cdc_offload.policy import is_single_address


class Verdict(enum.Enum):
    SEND = "send"
    # Moodle's validate_email() refuses it: IOMAD's task silently sends nothing to it.
    SKIP = "skip"
    # Moodle may accept it (a quoted local part, an address literal, an apostrophe) but we would not
    # send it exactly so: the whole row goes to Moodle.
    UNSURE = "unsure"


# An unquoted local part: dot-separated runs of the RFC 5322 "atext" characters, ASCII only.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LOCAL = re.compile(rf"{_ATOM}(?:\.{_ATOM})*")
# A host name: labels of letters and digits joined by hyphens, at least two labels, the last one
# starting with a letter (PHP's filter refuses `user@localhost` and numeric top-level labels).
_LABEL = r"[A-Za-z0-9]+(?:-+[A-Za-z0-9]+)*"
_DOMAIN = re.compile(rf"(?:{_LABEL}\.)+[A-Za-z][A-Za-z0-9]*(?:-+[A-Za-z0-9]+)*")
# PHP's filter: fewer than 255 characters in all, at most 64 before the @, 63 in one label.
_MAX_ADDRESS = 254
_MAX_LOCAL = 64
_MAX_LABEL = 63


def verdict(text: str) -> Verdict:
    """What IOMAD's task does with `text` as it stands (no trimming: its lists are split on commas
    and checked as they are, so " b@x.example" after a comma is refused)."""
    if not text:
        return Verdict.SKIP
    if any(ch in text for ch in '"\\['):
        # Quoted local parts and [address literals] are PHP's to accept; we never send them.
        return Verdict.UNSURE
    local, at, domain = text.rpartition("@")
    if not at or len(text) > _MAX_ADDRESS or len(local) > _MAX_LOCAL:
        return Verdict.SKIP
    if not _LOCAL.fullmatch(local) or not _DOMAIN.fullmatch(domain):
        return Verdict.SKIP
    if any(len(label) > _MAX_LABEL for label in domain.split(".")):
        return Verdict.SKIP
    return Verdict.SEND if is_single_address(text) else Verdict.UNSURE


def user_address_verdict(email: str) -> Verdict:
    """A user's `email` column as the task's mailer takes it: PHPMailer's addAddress() trims it
    (spaces, tabs, line ends, NUL) before the same check."""
    return verdict(email.strip(" \t\n\r\0\x0b"))


# PHP's explode(',') then `get_record('user', ['id' => $token])`: MySQL compares the text to the
# numeric id, so spaces around the digits do not matter; anything else would be MySQL's guess.
_USER_ID = re.compile(r" *([0-9]{1,18}) *")


class UnreadableUserId(ValueError):
    """A token in a list of user ids that MySQL would read in its own lenient way."""


def user_ids(text: str) -> list[int]:
    """The user ids of an `emailto`/`emailcc` value, in order, repeats kept (IOMAD sends once per
    entry). Empty entries match no user. Raises UnreadableUserId for anything else."""
    ids: list[int] = []
    for token in text.split(","):
        if not token.strip(" "):
            continue
        found = _USER_ID.fullmatch(token)
        if found is None:
            raise UnreadableUserId("a user list entry that is not a number")
        ids.append(int(found.group(1)))
    return ids
