#!/bin/sh
# One-shot init of the compose stack (runs in the cdc-offload image, which has boto3):
# the SQS FIFO queue in moto, then `cdc-offload init` (the state schema on the primary).
set -eu
python - <<'PY'
import os

import boto3

sqs = boto3.client("sqs")
url = sqs.create_queue(
    QueueName=os.environ["QUEUE_NAME"],
    Attributes={"FifoQueue": "true", "ContentBasedDeduplication": "false"},
)["QueueUrl"]
print(f"queue ready: {url}", flush=True)
PY
exec cdc-offload init
