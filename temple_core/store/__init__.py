"""The run store: durable JSONL manifests sharded by rank (:mod:`.jsonl`)."""

from temple_core.store.jsonl import ShardedJsonl, append_jsonl, iter_jsonl, read_jsonl, write_jsonl_atomic

__all__ = ["ShardedJsonl", "append_jsonl", "iter_jsonl", "read_jsonl", "write_jsonl_atomic"]
