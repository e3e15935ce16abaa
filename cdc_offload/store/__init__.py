"""The primary: the consumer lock and its lease, the checkpoint, the ledger and the outbox
suppression, composed by `Store` in one transaction per write (`primary.py`); the loop sees it
through the Protocols in `protocols.py`. Our tables and GRANTs are in `schema.py`, the operator's
ledger query in `report.py`."""

from cdc_offload.store.ledger import address_hash, masked_address
from cdc_offload.store.primary import Store
from cdc_offload.store.protocols import ClaimStore, LeaderStore, SessionStore
from cdc_offload.store.report import LedgerEntry, ledger_query
from cdc_offload.store.schema import grant_statements, schema_statements
from cdc_offload.store.values import LeadershipLost, StoreError

__all__ = [
    "ClaimStore",
    "LeaderStore",
    "LeadershipLost",
    "LedgerEntry",
    "SessionStore",
    "Store",
    "StoreError",
    "address_hash",
    "grant_statements",
    "ledger_query",
    "masked_address",
    "schema_statements",
]
