"""Who am I among the processes of a launch (``accelerate launch``, ``torchrun``), and how to split work.

Both launchers export ``RANK`` and ``WORLD_SIZE``; a plain ``python``/``temple`` process is
rank 0 of 1. Splitting is round-robin over the input order, so it is deterministic and a
re-run with the same world size gives every process the same items again.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def rank_world() -> tuple[int, int]:
    """``(rank, world_size)`` of this process, from the launcher's environment."""
    try:
        rank = int(os.environ.get("RANK", "0"))
        world = int(os.environ.get("WORLD_SIZE", "1"))
    except ValueError as exc:
        raise RuntimeError(f"RANK/WORLD_SIZE are not integers: {exc}") from None
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"bad launcher environment: RANK={rank} WORLD_SIZE={world}")
    return rank, world


def shard(items: Sequence[T], rank: int, world_size: int) -> list[T]:
    """This rank's share of ``items``: every ``world_size``-th item starting at ``rank``."""
    return list(items[rank::world_size])


def barrier(world_size: int) -> None:
    """Wait for every process of the launch (no-op for one process).

    accelerate's ``PartialState()`` sets up a process group for GPUs only: under torchrun on a
    machine without one it is ``DistributedType.NO`` and its ``wait_for_everyone`` returns at
    once. Without a GPU it is asked for CPU processes (gloo), as the trainers do through
    transformers' ``use_cpu``. accelerate's state is one per process: when something made it
    first the GPU way, this call gets that one-process state back, and the process group it
    made under it (accelerate 1.16 does make one) is waited on directly. A launch that neither
    spans is an error, not a barrier that does not wait.
    """
    if world_size <= 1:
        return
    import torch
    from accelerate import PartialState  # imported late: it is slow and only needed here

    state = PartialState(cpu=not torch.cuda.is_available())
    if state.num_processes != world_size:
        if torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() == world_size:
            torch.distributed.barrier()
            return
        raise RuntimeError(
            f"cannot synchronise the {world_size} processes of this launch: accelerate's state has "
            f"{state.num_processes} ({state.distributed_type}) and no process group spans them"
        )
    state.wait_for_everyone()
