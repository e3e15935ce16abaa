"""Who receives an outbox row and from whom, as IOMAD 4.3's email task decides it: the cron's
filters (local/email/lib.php, email_cron()) and EmailTemplate::send_to_user() / email_direct()
(local/email/lib/api.php), with the manager and supervisor look-ups of local/iomad/lib/company.php.
Pure: every table value comes in a `Replica` read beforehand."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from cdc_offload.model import Envelope, Job, Reason, Recipient, RecipientKind, Sender
from cdc_offload.recipients.addresses import UnreadableUserId, Verdict, user_address_verdict, user_ids, verdict
from cdc_offload.recipients.headers import FrozenHeaders
from cdc_offload.recipients.outcome import Deferred, Refused
from cdc_offload.recipients.site import SiteConfig
from cdc_offload.recipients.tables import Company, CompanyUser, Department, TemplateRow, UserRecord
from cdc_offload.recipients.template import BUILT_IN_DEFAULT, USER_TEMPLATES, Template
from cdc_offload.sinks.message import one_line

# core_user::get_dummy_user_record() (lib/classes/user.php): the support user's first name when the
# site has a support address but no support name, from the English language pack.
_NO_REPLY_NAME_EN = "Do not reply to this email"
_COMPANY_NAME = "{Company_Name}"

# One email IOMAD's task sends for a row: to whom, and the user it belongs to when it is one.
Copy = tuple[RecipientKind, str, int | None]


@dataclass(frozen=True, slots=True)
class Replica:
    """What the replica said in one consistent read."""

    site: SiteConfig
    users: Mapping[int, UserRecord] = field(default_factory=dict)
    # Each user's own company_users rows, lowest id first.
    memberships: Mapping[int, tuple[CompanyUser, ...]] = field(default_factory=dict)
    # Company managers (managertype 1) that may sit in a department chain, lowest id first.
    managers: tuple[CompanyUser, ...] = ()
    departments: Mapping[int, Department] = field(default_factory=dict)
    companies: Mapping[int, Company] = field(default_factory=dict)
    profile_data: Mapping[tuple[int, int], str] = field(default_factory=dict)
    templates: tuple[TemplateRow, ...] = ()


def _refuse(reason: Reason, problem: str) -> Refused:
    return Refused(reason, problem)


def _unknown(what: str) -> Refused:
    return _refuse(
        Reason.RECIPIENTS_UNKNOWN,
        f"{what}, so who IOMAD's task would send this row to is not certain; the row is left to Moodle",
    )


def _bad_address(who: str) -> Refused:
    return _refuse(
        Reason.BAD_ADDRESS,
        f"{who} has an address IOMAD's task would stop at (or one the sidecar cannot send exactly); "
        "the row is left to Moodle. Fix the address",
    )


# -- the task's own checks, before it sends ----------------------------------------------------------


def check_user(job: Job, replica: Replica) -> UserRecord:
    """email_cron() loads only rows whose user exists, is not deleted and not suspended, as the user
    is when the task runs: the current row decides, not the INSERT we read from the binlog."""
    user = replica.users.get(job.outbox.userid)
    if user is None or user.deleted:
        raise _refuse(Reason.USER_DELETED, "the user was deleted since the row was queued; IOMAD's task skips it")
    if user.suspended:
        raise _refuse(Reason.USER_SUSPENDED, "the user is suspended now; IOMAD's task skips the row until unsuspended")
    return user


def _manager_type(templatename: str) -> int:
    # email_cron(): strpos() is truthy only past position 0, so a name starting with it is type 0.
    kind = 0
    if templatename.find("manager") > 0:
        kind = 1
    if templatename.find("supervisor") > 0:
        kind = 2
    return kind


def check_template_enabled(job: Job, replica: Replica) -> None:
    """company::email_template_is_enabled() (local/iomad/lib/company.php): enabled when any of the
    company's rows for the name has all three flags off; otherwise disabled when any row has the
    flag of this template's kind on. The task deletes a disabled row without sending it."""
    rows = [t for t in replica.templates if t.companyid == job.outbox.companyid and t.name == job.outbox.templatename]
    if any(not (t.disabled or t.disabledmanager or t.disabledsupervisor) for t in rows):
        return
    flag = {0: "disabled", 1: "disabledmanager", 2: "disabledsupervisor"}[_manager_type(job.outbox.templatename or "")]
    if any(getattr(t, flag) == 1 for t in rows):
        raise _refuse(
            Reason.TEMPLATE_DISABLED,
            "the company has this template disabled: IOMAD's task deletes the row unsent; it is left to Moodle",
        )


def check_site(site: SiteConfig) -> None:
    if site.diverted:
        raise _refuse(
            Reason.DIVERTED,
            "divertallemailsto is set: Moodle sends every email to that one address; the row is left to Moodle",
        )
    if site.no_email_ever:
        raise _refuse(
            Reason.NO_EMAIL_EVER, "noemailever is set: Moodle sends nothing and marks the row sent; left to Moodle"
        )


# -- which template --------------------------------------------------------------------------------


def table_template(job: Job, user: UserRecord, replica: Replica) -> Template:
    """EmailTemplate::get_template(): with nothing frozen into the row, the company's template for
    the user's language, else its English one, else the built-in default (lowest id on ties, the
    order InnoDB returns them in through the table's (companyid, name, lang) index)."""
    rows = [t for t in replica.templates if t.companyid == job.outbox.companyid and t.name == job.outbox.templatename]
    for lang in (user.lang, "en"):
        chosen = next((t for t in rows if t.lang == lang), None)
        if chosen is not None:
            if chosen.template is None:
                raise _unknown("the company's template has a column of a type IOMAD never writes")
            if chosen.template.sets_sender:
                # send_to_user() then writes sender headers into the empty string it holds in place
                # of the missing array: PHP 8 stops the task there, on every run.
                raise _unknown("the row has no frozen template and the company's template sets a sender")
            return chosen.template
    return BUILT_IN_DEFAULT


# -- recipients ------------------------------------------------------------------------------------


def _listed_users(text: str, kind: RecipientKind, replica: Replica) -> list[Copy]:
    """emailto/emailcc: every listed id whose user exists, is not deleted nor suspended when the task
    sends; an entry listed twice gets two emails."""
    try:
        ids = user_ids(text)
    except UnreadableUserId:
        raise _unknown(f"the template's {kind.value} list has an entry that is not a user id") from None
    found: list[Copy] = []
    for userid in ids:
        listed = replica.users.get(userid)
        if listed is None or listed.deleted or listed.suspended:
            continue
        if user_address_verdict(listed.email) is not Verdict.SEND:
            raise _bad_address(f"a user in the template's {kind.value} list")
        found.append((kind, listed.email.strip(), userid))
    return found


def _listed_addresses(text: str, kind: RecipientKind) -> list[Copy]:
    """emailtoother/emailccother: each comma-separated entry Moodle's validate_email() accepts, as it
    stands (not trimmed); the others are skipped; repeats get repeated emails."""
    found: list[Copy] = []
    for entry in text.split(",") if text else ():
        result = verdict(entry)
        if result is Verdict.UNSURE:
            raise _bad_address(f"an entry of the template's {kind.value} list")
        if result is Verdict.SEND:
            found.append((kind, entry, None))
    return found


def cron_user(replica: Replica) -> int:
    """The account the task runs as: \\core\\cron::setup_user() uses get_admin(), the first id in
    $CFG->siteadmins whose user exists and is not deleted."""
    for userid in replica.site.siteadmins:
        admin = replica.users.get(userid)
        if admin is not None and not admin.deleted:
            return userid
    raise _unknown("no site administrator could be read (the account IOMAD's task runs as)")


def _department_chain(start: int, replica: Replica) -> list[int]:
    """company::get_parentdepartments() + get_parents_list(): the department and its parents up to
    the top (parent 0)."""
    chain: list[int] = []
    department = replica.departments.get(start)
    if department is None:
        raise _unknown("the user's department is not in the department table")
    while True:
        if department.id in chain:
            raise _unknown("the department tree has a loop")
        chain.append(department.id)
        if department.parent == 0:
            return chain
        parent = replica.departments.get(department.parent)
        if parent is None:
            raise _unknown("a parent department is outside the user's company or missing")
        department = parent


def _candidates(companyid: int, replica: Replica) -> list[CompanyUser]:
    company_departments = {d.id for d in replica.departments.values() if d.company == companyid}
    return [m for m in replica.managers if m.companyid == companyid or m.departmentid in company_departments]


def _managers(job: Job, replica: Replica) -> list[Copy] | Deferred:
    """company::get_my_managers($userid, 1): the user's (first) company_users row gives the
    department; every company manager in it or a parent department, except the account the task
    runs as, once each (the SQL result is keyed by user id), then only those whose user is active.
    Department managers (managertype 2) get nothing. The SQL has no ORDER BY: we send in row-id
    order, the order InnoDB returns them in."""
    memberships = replica.memberships.get(job.outbox.userid, ())
    if not memberships:
        # IOMAD inserts this row a few transactions after the outbox row: wait for it, unless no
        # manager exists who could be in the answer.
        candidates = _candidates(job.outbox.companyid, replica)
        if candidates and any(m.userid != cron_user(replica) for m in candidates):
            return Deferred("company_users")
        return []
    chain = set(_department_chain(memberships[0].departmentid, replica))
    in_chain = [row for row in replica.managers if row.departmentid in chain]
    excluded = cron_user(replica) if in_chain else None
    seen: set[int] = set()
    found: list[Copy] = []
    for row in in_chain:
        if row.userid == excluded or row.userid in seen:
            continue
        seen.add(row.userid)
        manager = replica.users.get(row.userid)
        if manager is None or manager.deleted or manager.suspended:
            continue
        if user_address_verdict(manager.email) is not Verdict.SEND:
            raise _bad_address("a company manager of the user")
        found.append((RecipientKind.MANAGER, manager.email.strip(), manager.id))
    return found


def _supervisors(job: Job, replica: Replica) -> list[Copy] | Deferred:
    """company::get_usersupervisor(): the profile field named by the company of the user's first
    company_users row (its emailprofileid), else the site's companyemailprofileid; each
    comma-separated entry Moodle's validate_email() accepts, once each."""
    memberships = replica.memberships.get(job.outbox.userid, ())
    company = next((replica.companies[m.companyid] for m in memberships if m.companyid in replica.companies), None)
    if not memberships:
        queued_for = replica.companies.get(job.outbox.companyid)
        if queued_for is not None and queued_for.emailprofileid:
            return Deferred("company_users")
    field_id = company.emailprofileid if company is not None and company.emailprofileid else 0
    field_id = field_id or replica.site.companyemailprofileid
    data = replica.profile_data.get((job.outbox.userid, field_id)) if field_id else None
    found: list[Copy] = []
    seen: set[str] = set()
    for entry in data.split(",") if data else ():
        result = verdict(entry)
        if result is Verdict.UNSURE:
            raise _bad_address("an entry of the user's supervisor field")
        if result is Verdict.SEND and entry not in seen:
            seen.add(entry)
            found.append((RecipientKind.SUPERVISOR, entry, None))
    return found


# -- the sender ------------------------------------------------------------------------------------


def _support_name(replica: Replica) -> str:
    """core_user::get_support_user(): the support user account if one is set, else a stand-in named
    after the support name (or "Do not reply to this email"), else the main administrator."""
    site = replica.site
    if site.supportuserid is not None:
        support = replica.users.get(site.supportuserid)
        if support is None:
            raise _unknown("the site's support user does not exist")
        return support.firstname
    if site.supportemail:
        if site.supportname and site.supportname != "0":
            return site.supportname
        if site.lang != "en":
            raise _unknown("the support name is empty and the site's language is not English")
        return _NO_REPLY_NAME_EN
    admin = replica.users.get(cron_user(replica))
    return admin.firstname if admin is not None else ""


def _user_address(userid_text: str, what: str, replica: Replica) -> UserRecord:
    try:
        ids = user_ids(userid_text)
    except UnreadableUserId:
        ids = []
    sender = replica.users.get(ids[0]) if len(ids) == 1 else None
    if sender is None:
        raise _unknown(f"the template's {what} is not an existing user")
    return sender


def sender_of(job: Job, template: Template, headers: FrozenHeaders, replica: Replica) -> Sender:
    """send_to_user() then email_direct(): From is the site's no-reply address unless the template
    names one (replyto, replytoother, emailfromother, emailfrom: the last that applies wins);
    FromName the sending account's first name, emailfromothername, or emailfrom's first name.
    Reply-To comes only from the stored `reply-to:` strings (a Reply-to set with From is dropped)."""
    senderid = job.outbox.senderid
    if senderid is not None and senderid > 0 and not replica.site.is_siteadmin(senderid):
        # get_user() does not look at deleted or suspended; a missing user leaves the name empty.
        account = replica.users.get(senderid)
        name = account.firstname if account is not None else ""
    else:
        # get_sender(): IOMAD's company record has no default contact, so the support user.
        name = _support_name(replica)
    address: str | None = None
    if template.replyto:
        address = _user_address(template.replyto, "replyto", replica).email
    if template.replytoother and verdict(template.replytoother) is not Verdict.SKIP:
        address = template.replytoother
    if template.emailfromother and verdict(template.emailfromother) is not Verdict.SKIP:
        address = template.emailfromother
    if template.emailfromothername:
        if template.emailfromothername == _COMPANY_NAME:
            company = replica.companies.get(job.outbox.companyid)
            if company is None:
                raise _unknown("the row's company does not exist (its name is the sender's)")
            name = company.name
        else:
            name = template.emailfromothername
    if template.emailfrom:
        account = _user_address(template.emailfrom, "emailfrom", replica)
        address, name = account.email, account.firstname
    if address is not None and verdict(address) is not Verdict.SEND:
        # PHPMailer checks From before sending: with a bad one no copy leaves.
        raise _bad_address("the template's sender")
    return Sender(address=address, name=one_line(name), reply_to=headers.reply_to)


# -- all together ----------------------------------------------------------------------------------


def envelope(job: Job, headers: FrozenHeaders, replica: Replica) -> Envelope | Deferred:
    """Raises Refused with the first reason IOMAD's task would not send the row as we would."""
    user = check_user(job, replica)
    check_template_enabled(job, replica)
    check_site(replica.site)
    template = headers.template if headers.template is not None else table_template(job, user, replica)
    if user_address_verdict(user.email) is not Verdict.SEND:
        raise _bad_address("the user")
    copies: list[Copy] = [(RecipientKind.USER, user.email.strip(), user.id)]
    copies += _listed_users(template.emailto, RecipientKind.EMAILTO, replica)
    copies += _listed_users(template.emailcc, RecipientKind.EMAILCC, replica)
    copies += _listed_addresses(template.emailtoother, RecipientKind.EMAILTOOTHER)
    copies += _listed_addresses(template.emailccother, RecipientKind.EMAILCCOTHER)
    waiting: Deferred | None = None
    if (job.outbox.templatename or "") in USER_TEMPLATES:
        for part in (
            _managers(job, replica) if template.managers else [],
            _supervisors(job, replica) if template.supervisors else [],
        ):
            if isinstance(part, Deferred):
                waiting = part
            else:
                copies += part
    sender = sender_of(job, template, headers, replica)
    if waiting is not None:
        return waiting
    return Envelope(recipients=_numbered(copies), sender=sender)


def _numbered(copies: Iterable[Copy]) -> tuple[Recipient, ...]:
    # IOMAD's email_direct() adds every recipient with an empty display name.
    return tuple(
        Recipient(index=i, kind=kind, address=address, user_id=userid)
        for i, (kind, address, userid) in enumerate(copies)
    )


def user_ids_named(template: Template) -> set[int]:
    """The user ids a template refers to (lists and sender), for the one users SELECT of a round;
    entries that are not ids are left for the rules to refuse."""
    wanted: set[int] = set()
    for text in (template.emailto, template.emailcc, template.emailfrom, template.replyto):
        try:
            wanted.update(user_ids(text))
        except UnreadableUserId:
            continue
    return wanted
