"""The site settings (mdl_config) that change who receives a row or from whom."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from cdc_offload.recipients.template import php_empty

NAMES = (
    "divertallemailsto",
    "noemailever",
    "siteadmins",
    "supportuserid",
    "supportemail",
    "supportname",
    "lang",
    "companyemailprofileid",
)

_ID = re.compile(r"[0-9]{1,18}")


@dataclass(frozen=True, slots=True)
class SiteConfig:
    diverted: bool = False
    no_email_ever: bool = False
    # $CFG->siteadmins in its own order: get_admin() (lib/datalib.php) takes the first that exists.
    siteadmins: tuple[int, ...] = ()
    supportuserid: int | None = None
    supportemail: bool = False
    supportname: str = ""
    lang: str = "en"
    companyemailprofileid: int = 0

    @classmethod
    def from_values(cls, values: Mapping[str, str]) -> SiteConfig:
        def value(name: str) -> str:
            return values.get(name, "")

        support = value("supportuserid").strip()
        profile = value("companyemailprofileid").strip()
        return cls(
            diverted=not php_empty(value("divertallemailsto")),
            no_email_ever=not php_empty(value("noemailever")),
            siteadmins=tuple(int(t.strip()) for t in value("siteadmins").split(",") if _ID.fullmatch(t.strip())),
            supportuserid=int(support) if _ID.fullmatch(support) and int(support) else None,
            supportemail=not php_empty(value("supportemail")),
            supportname=value("supportname"),
            lang=value("lang") or "en",
            companyemailprofileid=int(profile) if _ID.fullmatch(profile) else 0,
        )

    def is_siteadmin(self, userid: int) -> bool:
        # is_siteadmin() (lib/accesslib.php): membership of the comma-separated list.
        return userid in self.siteadmins
