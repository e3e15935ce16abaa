"""What an AWS failure is counted as decides whether a row Moodle sends again is counted as a
possible duplicate: only a request AWS may have taken is 'no answer' (uncertain)."""

from __future__ import annotations

import botocore.exceptions
import pytest

from cdc_offload.sinks import NO_ANSWER, NOT_ATTEMPTED, UNREACHABLE
from cdc_offload.sinks.aws import NeverStarted, error_code


@pytest.mark.parametrize(
    ("error", "code"),
    [
        # The request went out and no answer came back: AWS may have the message.
        (botocore.exceptions.ReadTimeoutError(endpoint_url="https://sqs"), NO_ANSWER),
        # Nothing reached AWS: Moodle's copy is the only one.
        (botocore.exceptions.ConnectTimeoutError(endpoint_url="https://sqs"), UNREACHABLE),
        (botocore.exceptions.EndpointConnectionError(endpoint_url="https://sqs"), UNREACHABLE),
        (NeverStarted(), NOT_ATTEMPTED),
        (
            botocore.exceptions.ClientError({"Error": {"Code": "AccessDenied"}}, "SendMessageBatch"),
            "AccessDenied",
        ),
        (ValueError("x"), "ValueError"),
    ],
)
def test_each_failure_is_named_by_whether_aws_may_have_the_message(error: Exception, code: str) -> None:
    assert error_code(error) == code
