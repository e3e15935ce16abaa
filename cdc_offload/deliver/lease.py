"""How long a received message is still ours. SQS hands a message out again once its visibility
timeout runs out, whether or not its copies are still being sent; a second worker would then send
them too. So no SendEmail starts unless the message stays hidden until that call must have ended
(its wait for a token and its own timeouts), extending the timeout first when it would not."""

from __future__ import annotations

import math
import time

from cdc_offload.deliver.queue import MAX_VISIBILITY, Queue, Received

# Room for the gap between our clock's idea of the deadline and SQS's, and for the extension call.
SAFETY_SECONDS = 2.0


class Lease:
    def __init__(self, queue: Queue, received: Received, visibility_timeout: int) -> None:
        self._queue = queue
        self._received = received
        self._visibility_timeout = visibility_timeout
        # SQS's clock started no earlier than our call did: a deadline on the safe side.
        self._hidden_until = received.received_at + visibility_timeout

    def hold_for(self, seconds: float) -> bool:
        """True when the message stays hidden at least `seconds` more (extended if need be); False
        when it may be visible already or SQS refused the extension: another worker may have it."""
        now = time.monotonic()
        if now + SAFETY_SECONDS >= self._hidden_until:
            return False
        if self._hidden_until - now >= seconds + SAFETY_SECONDS:
            return True
        hide_for = math.ceil(max(self._visibility_timeout, seconds + SAFETY_SECONDS))
        if hide_for > MAX_VISIBILITY or not self._queue.extend(self._received, hide_for):
            return False
        self._hidden_until = now + hide_for
        return True
