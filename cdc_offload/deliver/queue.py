"""The SQS side both consumers share: long polls, deletes, a later retry, and the dead-letter
queue's depth. The only module of `deliver/` that talks to SQS."""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import boto3
import botocore.config
import botocore.exceptions
import orjson

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

# SQS's most: ten messages a receive, twenty seconds of long poll, twelve hours invisible.
MAX_MESSAGES = 10
LONG_POLL_SECONDS = 20
MAX_VISIBILITY = 12 * 3600


@dataclass(frozen=True, slots=True)
class Received:
    message_id: str
    receipt: str
    body: str
    # How often SQS has handed this message out, this time included (>1: a redelivery).
    receive_count: int
    # time.monotonic() when the ReceiveMessage call began: its visibility timeout runs from no earlier.
    received_at: float

    def __repr__(self) -> str:
        return f"Received({self.message_id}, receive_count={self.receive_count})"


class Queue:
    def __init__(self, url: str, client: SQSClient | None = None) -> None:
        self.url = url
        # Standard mode: throttling and 5xx retried with backoff. Every call here is safe to repeat.
        config = botocore.config.Config(
            retries={"mode": "standard", "total_max_attempts": 3}, read_timeout=LONG_POLL_SECONDS + 10
        )
        self._client: SQSClient = client or boto3.client("sqs", config=config)

    def receive(self, visibility: int, wait: int = LONG_POLL_SECONDS, limit: int = MAX_MESSAGES) -> list[Received]:
        asked_at = time.monotonic()
        response = self._client.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=max(1, min(MAX_MESSAGES, limit)),
            WaitTimeSeconds=wait,
            VisibilityTimeout=visibility,
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        )
        return [
            Received(
                message_id=m["MessageId"],
                receipt=m["ReceiptHandle"],
                body=m["Body"],
                receive_count=int(m.get("Attributes", {}).get("ApproximateReceiveCount", "1")),
                received_at=asked_at,
            )
            for m in response.get("Messages", [])
        ]

    def delete(self, message: Received) -> None:
        self._client.delete_message(QueueUrl=self.url, ReceiptHandle=message.receipt)

    def retry_later(self, message: Received, seconds: int) -> None:
        """Hand the message out again in `seconds` (it counts towards the redrive policy)."""
        with contextlib.suppress(botocore.exceptions.ClientError):  # gone or expired: SQS retries it anyway
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=min(MAX_VISIBILITY, seconds)
            )

    def extend(self, message: Received, seconds: int) -> bool:
        """Keep the message hidden `seconds` more; False when SQS could not be told (then it may be
        handed out again when its current timeout ends)."""
        try:
            self._client.change_message_visibility(
                QueueUrl=self.url, ReceiptHandle=message.receipt, VisibilityTimeout=min(MAX_VISIBILITY, seconds)
            )
        except (botocore.exceptions.ClientError, botocore.exceptions.BotoCoreError):
            return False
        return True

    def redrive_policy(self) -> tuple[str, int] | None:
        """(dead-letter queue ARN, max receives), or None when the queue has no redrive policy."""
        attributes = self._client.get_queue_attributes(QueueUrl=self.url, AttributeNames=["RedrivePolicy"])
        policy = attributes.get("Attributes", {}).get("RedrivePolicy")
        if not policy:
            return None
        parsed = orjson.loads(policy)
        return str(parsed["deadLetterTargetArn"]), int(parsed["maxReceiveCount"])

    def dead_letter_depth(self, dead_letter_arn: str) -> int:
        """Messages waiting in the dead-letter queue (visible and in flight)."""
        account, name = dead_letter_arn.split(":")[4:6]
        url = self._client.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        attributes = self._client.get_queue_attributes(
            QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
        ).get("Attributes", {})
        return int(attributes.get("ApproximateNumberOfMessages", 0)) + int(
            attributes.get("ApproximateNumberOfMessagesNotVisible", 0)
        )
