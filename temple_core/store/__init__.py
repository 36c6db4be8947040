"""The run store: every path of a run directory (:mod:`.layout`), durable JSONL manifests
sharded by rank (:mod:`.jsonl`), the ledger of what is done (:mod:`.ledger`) and the lock
that keeps a second run off a directory in use (:mod:`.lock`)."""

from temple_core.store.jsonl import (
    ShardedJsonl,
    append_jsonl,
    iter_jsonl,
    iter_numbered,
    read_json,
    read_jsonl,
    read_records,
    write_json_atomic,
    write_jsonl_atomic,
)
from temple_core.store.layout import RunLayout, TrainStageLayout, safe_component
from temple_core.store.ledger import Entry, Ledger, fingerprint
from temple_core.store.lock import RunLock, RunLocked

__all__ = [
    "Entry",
    "Ledger",
    "RunLayout",
    "RunLock",
    "RunLocked",
    "ShardedJsonl",
    "TrainStageLayout",
    "append_jsonl",
    "fingerprint",
    "iter_jsonl",
    "iter_numbered",
    "read_json",
    "read_jsonl",
    "read_records",
    "safe_component",
    "write_json_atomic",
    "write_jsonl_atomic",
]
