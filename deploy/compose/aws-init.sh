#!/bin/sh
# One-shot init of the compose stack (runs in the cdc-offload image, which has boto3): in moto,
# the SQS FIFO queue with its dead-letter queue, and the SES events wiring of the SQS shape
# (identity, configuration set → SNS topic → events queue with its dead-letter queue); then
# `cdc-offload init` (the state schema on the primary).
set -eu
python - <<'PY'
import json
import os

import boto3

sqs, sns = boto3.client("sqs"), boto3.client("sns")
ses, sesv2 = boto3.client("ses"), boto3.client("sesv2")


def queue(name, fifo=False, max_receives=8):
    attributes = {"FifoQueue": "true", "ContentBasedDeduplication": "false"} if fifo else {}
    dead = sqs.create_queue(QueueName=name.replace(".fifo", "") + "-dlq" + (".fifo" if fifo else ""), Attributes=attributes)
    arn = sqs.get_queue_attributes(QueueUrl=dead["QueueUrl"], AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": max_receives})
    return sqs.create_queue(QueueName=name, Attributes={**attributes, "RedrivePolicy": policy})["QueueUrl"]


url = queue(os.environ["QUEUE_NAME"], fifo=True)
print(f"queue ready: {url}", flush=True)

events_url = queue(os.environ.get("EVENTS_QUEUE_NAME", "moodle-ses-events"))
events_arn = sqs.get_queue_attributes(QueueUrl=events_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
topic = sns.create_topic(Name="moodle-ses-events")["TopicArn"]
sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=events_arn, Attributes={"RawMessageDelivery": "true"})
sesv2.create_email_identity(EmailIdentity="academy.example")
ses.create_configuration_set(ConfigurationSet={"Name": "moodle-credentials"})
ses.create_configuration_set_event_destination(
    ConfigurationSetName="moodle-credentials",
    EventDestination={
        "Name": "ledger",
        "Enabled": True,
        "MatchingEventTypes": ["send", "reject", "bounce", "complaint", "delivery", "deliveryDelay"],
        "SNSDestination": {"TopicARN": topic},
    },
)
print(f"ses events ready: configuration set moodle-credentials -> {topic} -> {events_url}", flush=True)
PY
exec cdc-offload init
