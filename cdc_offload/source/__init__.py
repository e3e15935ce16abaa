"""The source stage: the binlog of the source server as a stream of frozen `SourceItem`s, and the
facts about that server which decide whether it can be read at all.

What the rest of the sidecar uses is exported here; the modules inside are the package's own:

- `binlog/`: the fast, header-only reader (`FastBinlogReader`), what the sidecar runs;
- `library_reader`: python-mysql-replication's reader (`BinlogSource`), the tests' oracle;
- `framer`, `gtid`: transaction boundaries, GTID state and error mapping, shared by both readers;
- `batching`: how items are grouped on their way to the loop (thread or child process);
- `handover`: the reader thread and what it hands the loop; `process`: the reader in a child;
- `server_facts`, `rules`: what the source server is, and whether it can be read.

Nothing here imports the loop (session, pipeline), correlation, dispatch or the store.
"""

# Order matters only for readability: every module inside imports its siblings by their full
# module path, never through this package, so there is no import cycle.
from cdc_offload.source.binlog import FastBinlogReader
from cdc_offload.source.handover import (
    ROUND_ANSWERED,
    Handover,
    ReaderEnded,
    ReaderThread,
    RoundAnswered,
    Source,
    SourceFactory,
)
from cdc_offload.source.library_reader import BinlogSource, open_source
from cdc_offload.source.process import ProcessSource, process_supported, start_fork_server
from cdc_offload.source.server_facts import (
    ServerFacts,
    SourceRefused,
    binlog_status,
    current_end,
    server_facts,
)

__all__ = [
    "ROUND_ANSWERED",
    "BinlogSource",
    "FastBinlogReader",
    "Handover",
    "ProcessSource",
    "ReaderEnded",
    "ReaderThread",
    "RoundAnswered",
    "ServerFacts",
    "Source",
    "SourceFactory",
    "SourceRefused",
    "binlog_status",
    "current_end",
    "open_source",
    "process_supported",
    "server_facts",
    "start_fork_server",
]
