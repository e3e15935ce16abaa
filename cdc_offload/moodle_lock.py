"""The lock Moodle's cron holds while IOMAD's email task runs, named the way Moodle names it.

Moodle runs a scheduled task only under a `cron` lock whose resource is the task's class name.
With the MySQL lock factory (the default on MySQL/MariaDB) that lock is
`GET_LOCK(SHA1(<dbname> ':' <prefix> '_cron_' <resource>), 0)` on Moodle's connection to the
primary (lib/classes/lock/mysql_lock_factory.php, get_unique_db_prefix and get_lock). Holding the
same lock while rows change hands means IOMAD's task is never between loading a row and marking it.
"""

from __future__ import annotations

import hashlib

EMAIL_TASK = "\\local_email\\task\\cron_task"


def task_lock_key(database: str, prefix: str, resource: str = EMAIL_TASK) -> str:
    """The GET_LOCK name Moodle computes for a scheduled task's `cron` lock."""
    return hashlib.sha1(f"{database}:{prefix}_cron_{resource}".encode()).hexdigest()  # noqa: S324 - Moodle's own key, not security
