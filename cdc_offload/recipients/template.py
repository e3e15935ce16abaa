"""The parts of an IOMAD email template that decide who receives a row and from whom.

Read with PHP's own truthiness, because IOMAD tests every field with `empty()`: "", "0", 0, NULL
and false all mean "not set" (local/email/lib/api.php, send_to_user())."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

# local/email/lib/api.php, is_user_template(): the templates whose rows also go to the user's
# company managers and supervisors. (The three microlearning names sit in that list without a key,
# so IOMAD's look-up by name never finds them: they are not user templates in practice.)
USER_TEMPLATES = frozenset(
    {
        "completion_course_user",
        "course_not_started_warning",
        "completion_warn_user",
        "expiry_warn_user",
        "license_allocated",
        "license_removed",
        "password_update",
        "user_added_to_course",
        "user_create",
        "user_deleted",
        "user_programcompleted",
        "user_promoted",
        "user_removed_from_event",
        "user_reset",
        "user_signed_up_for_event",
        "user_suspended",
        "user_unsuspended",
    }
)


class TemplateValueError(ValueError):
    """A template property holds a type IOMAD's task would not handle as text."""


def php_empty(value: object) -> bool:
    """PHP's empty() for what a serialized template or a table column can hold."""
    if value is None or value is False:
        return True
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    if isinstance(value, str):
        return value in ("", "0")
    if isinstance(value, dict | list):
        return not value
    return False


def _text(name: str, value: object) -> str:
    """The property as PHP would use it in a string context (explode, comparisons, headers)."""
    if php_empty(value):
        return ""
    if isinstance(value, bool):
        return "1"
    if isinstance(value, int | str):
        return str(value)
    raise TemplateValueError(f"template property {name} is not text or a number")


@dataclass(frozen=True, slots=True)
class Template:
    """The template as the task reads it; "" for a property that is not set. Every field holds
    addresses or user ids, so none of it is ever printed."""

    emailto: str = ""
    emailcc: str = ""
    emailtoother: str = ""
    emailccother: str = ""
    emailfrom: str = ""
    emailfromother: str = ""
    emailfromothername: str = ""
    # Never present in what IOMAD stores (its columns are emailreplyto/emailreplytoother), but the
    # task honours them when they are there, so a template that has them is read the same way.
    replyto: str = ""
    replytoother: str = ""
    managers: bool = True
    supervisors: bool = True

    def __repr__(self) -> str:
        return f"Template(managers={self.managers}, supervisors={self.supervisors})"

    @property
    def sets_sender(self) -> bool:
        return any((self.replyto, self.replytoother, self.emailfromother, self.emailfrom))

    @classmethod
    def from_properties(cls, properties: Mapping[str, object]) -> Template:
        """From the properties of the stdClass IOMAD froze into the row, or from a table row."""
        values = {name: _text(name, properties.get(name)) for name in _TEXT_FIELDS}
        return cls(
            **values,
            managers=php_empty(properties.get("disabledmanager")),
            supervisors=php_empty(properties.get("disabledsupervisor")),
        )


_TEXT_FIELDS = (
    "emailto",
    "emailcc",
    "emailtoother",
    "emailccother",
    "emailfrom",
    "emailfromother",
    "emailfromothername",
    "replyto",
    "replytoother",
)

# local/email/lib/api.php, get_template(): with no row in mdl_email_template the task falls back to
# the plugin's built-in default, which has no address lists and leaves managers and supervisors on.
BUILT_IN_DEFAULT = Template()
