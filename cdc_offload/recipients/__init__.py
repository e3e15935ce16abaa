"""Who receives an outbox row and from whom, exactly as IOMAD's email task would send it."""

from cdc_offload.recipients.lookup import RecipientLookup
from cdc_offload.recipients.outcome import Deferred

__all__ = ["Deferred", "RecipientLookup"]
