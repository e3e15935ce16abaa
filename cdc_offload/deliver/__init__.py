"""The cloud side: `deliver` sends the sidecar's SQS messages through SES, one SendEmail per
recipient; `events` records what SES later says about each copy (delivered, bounced, ...)."""
