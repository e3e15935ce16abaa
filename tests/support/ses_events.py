"""SES notifications exactly as AWS documents them (event publishing through a configuration
set, "Examples of event data that Amazon SES publishes to Amazon SNS"), for the tests to publish."""

from __future__ import annotations

import datetime as dt
from typing import Any

ACCOUNT = "123456789012"


def iso(moment: dt.datetime) -> str:
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def ses_event(
    kind: str,
    message_id: str,
    address: str,
    *,
    at: dt.datetime,
    sent_at: dt.datetime | None = None,
    tags: dict[str, str] | None = None,
    configuration_set: str = "cdc-offload",
) -> dict[str, Any]:
    """One record of `kind` (Send, Delivery, Bounce, Complaint, Reject, DeliveryDelay, Open)."""
    sent_at = sent_at or at
    record: dict[str, Any] = {
        "eventType": kind,
        "mail": {
            "timestamp": iso(sent_at),
            "source": "Demo Academy <no-reply@academy.example>",
            "sourceArn": f"arn:aws:ses:us-east-1:{ACCOUNT}:identity/academy.example",
            "sendingAccountId": ACCOUNT,
            "messageId": message_id,
            "destination": [address],
            "headersTruncated": False,
            "headers": [{"name": "To", "value": address}, {"name": "Subject", "value": "(not read)"}],
            "commonHeaders": {"from": ["no-reply@academy.example"], "to": [address], "subject": "(not read)"},
            "tags": {
                "ses:configuration-set": [configuration_set],
                "ses:source-ip": ["192.0.2.0"],
                "ses:from-domain": ["academy.example"],
                "ses:caller-identity": ["cdc-offload"],
                **{name: [value] for name, value in (tags or {}).items()},
            },
        },
    }
    if kind == "Send":
        record["send"] = {}
    elif kind == "Delivery":
        record["delivery"] = {
            "timestamp": iso(at),
            "processingTimeMillis": int((at - sent_at).total_seconds() * 1000),
            "recipients": [address],
            "smtpResponse": "250 2.6.0 Message received",
            "reportingMTA": "mta.example.com",
        }
    elif kind == "Bounce":
        record["bounce"] = {
            "bounceType": "Permanent",
            "bounceSubType": "General",
            "bouncedRecipients": [
                {
                    "emailAddress": address,
                    "action": "failed",
                    "status": "5.1.1",
                    "diagnosticCode": "smtp; 550 5.1.1 user unknown",
                }
            ],
            "timestamp": iso(at),
            "feedbackId": "0100017b-bounce-example-000000",
            "reportingMTA": "dsn; mta.example.com",
        }
    elif kind == "Complaint":
        record["complaint"] = {
            "complainedRecipients": [{"emailAddress": address}],
            "timestamp": iso(at),
            "feedbackId": "0100017b-complaint-example-000000",
            "userAgent": "ExampleCorp Feedback Loop (V0.01)",
            "complaintFeedbackType": "abuse",
            "arrivalDate": iso(at),
        }
    elif kind == "Reject":
        record["reject"] = {"reason": "Bad content"}
    elif kind == "DeliveryDelay":
        record["deliveryDelay"] = {
            "timestamp": iso(at),
            "delayType": "TransientCommunicationFailure",
            "expirationTime": iso(at + dt.timedelta(hours=12)),
            "delayedRecipients": [
                {
                    "emailAddress": address,
                    "status": "4.4.1",
                    "diagnosticCode": "smtp; 421 4.4.1 Unable to connect to remote host",
                }
            ],
        }
    elif kind == "Open":
        record["open"] = {"timestamp": iso(at), "userAgent": "Mozilla/5.0", "ipAddress": "192.0.2.1"}
    return record


def sns_envelope(record: dict[str, Any], topic_arn: str) -> dict[str, Any]:
    """What an SQS queue subscribed to the topic receives without raw message delivery."""
    import json

    return {
        "Type": "Notification",
        "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
        "TopicArn": topic_arn,
        "Subject": "Amazon SES Email Event Notification",
        "Message": json.dumps(record),
        "Timestamp": iso(dt.datetime.now(dt.UTC)),
        "SignatureVersion": "1",
        "Signature": "EXAMPLE",
        "SigningCertURL": "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-example.pem",
        "UnsubscribeURL": "https://sns.us-east-1.amazonaws.com/?Action=Unsubscribe&SubscriptionArn=example",
    }
