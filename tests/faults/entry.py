"""`cdc-offload` as the tests run it in a subprocess: the real CLI, plus settings the CLI does not
expose yet (the lock lease, the breaker's timing, the standby poll, `resume`).

The overrides come as JSON in CDC_OFFLOAD_TEST_OVERRIDES and are applied to the `Settings` that
`cli.build_settings` made from the real options, so option parsing, validation, signal handling and
the exit code are the CLI's own. Without the variable this is exactly `cdc-offload`.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any

OVERRIDES_ENV = "CDC_OFFLOAD_TEST_OVERRIDES"


def main() -> None:
    from cdc_offload import cli

    raw = os.environ.get(OVERRIDES_ENV)
    if raw:
        overrides: dict[str, Any] = json.loads(raw)
        sink_overrides: dict[str, Any] = overrides.pop("sink", {})
        build = cli.build_settings

        def build_with_overrides(params: dict[str, Any], **kwargs: Any) -> Any:
            settings = build(params, **kwargs)
            sink = dataclasses.replace(settings.sink, **sink_overrides)
            return dataclasses.replace(settings, sink=sink, **overrides)

        cli.build_settings = build_with_overrides  # type: ignore[assignment]
    cli.main(prog_name="cdc-offload")


if __name__ == "__main__":
    main()
