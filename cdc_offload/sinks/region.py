"""Which AWS region the clients talk to.

botocore (1.44 here) reads AWS_DEFAULT_REGION and the profile's region, not AWS_REGION, which
the other AWS SDKs, our deploy files and most platforms set; without one of them a client cannot
even be created. An AWS queue URL names its region, and the queue can only be reached there."""

from __future__ import annotations

import os
import re
import urllib.parse

import boto3

from cdc_offload.errors import StartupError

# sqs.eu-west-1.amazonaws.com, and the legacy eu-west-1.queue.amazonaws.com (also .com.cn).
_REGION = r"[a-z]{2}(?:-[a-z]+)+-\d+"
_QUEUE_HOST = re.compile(rf"^(?:sqs[.-](?P<new>{_REGION})|(?P<legacy>{_REGION})\.queue)\.amazonaws\.com(?:\.cn)?$")


def queue_region(queue_url: str | None) -> str | None:
    """The region an AWS SQS queue URL names; None for any other URL (moto, LocalStack, a VPC endpoint)."""
    if not queue_url:
        return None
    match = _QUEUE_HOST.match((urllib.parse.urlsplit(queue_url).hostname or "").lower())
    return (match.group("new") or match.group("legacy")) if match else None


def region_name(queue_url: str | None) -> str:
    """The queue URL's region, else AWS_REGION, else boto3's own chain (AWS_DEFAULT_REGION, profile)."""
    region = queue_region(queue_url) or os.environ.get("AWS_REGION", "").strip() or boto3.session.Session().region_name
    if not region:
        raise StartupError(
            "no AWS region is set: set AWS_REGION (or AWS_DEFAULT_REGION), or give --queue-url the queue's "
            "AWS URL (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME), which names it"
        )
    return str(region)
