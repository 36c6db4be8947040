"""``temple_core.distributed.barrier`` really waits under a CPU launch (torchrun, 2 processes).

accelerate's ``PartialState()`` without ``cpu=True`` sees no GPU under torchrun and sets up no
process group (``DistributedType.NO``), so its ``wait_for_everyone`` returns at once: rank 0
then merged the shards while rank 1 was still writing (the once-seen failure of
tests/generation/test_launch.py). Here rank 1 is slow on purpose and rank 0 must see its file.
"""

import os
import socket
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from temple_core.distributed import barrier, rank_world

    rank, world = rank_world()
    folder, mode = Path(sys.argv[1]), sys.argv[2]
    if mode == "accelerate_first":
        # Something else made accelerate's state first, the GPU way. Without a GPU that state is
        # DistributedType.NO for one process (its process group made but not used), and
        # barrier's PartialState(cpu=True) gets that same shared state back.
        from accelerate import PartialState
        assert PartialState().num_processes == 1
    barrier(world)  # the first one also sets the state up (which alone happens to wait)
    for round in range(2):
        marker = folder / f"rank1-round{round}"
        if rank == 1:
            time.sleep(2)
            marker.write_text("x")
        barrier(world)
        if rank == 0:
            assert marker.exists(), f"round {round}: rank 0 passed the barrier before rank 1 reached it"
        barrier(world)
    (folder / f"rank{rank}-ok").write_text("x")
    """
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch(tmp_path, mode: str) -> None:
    script = tmp_path / "barrier.py"
    script.write_text(SCRIPT)
    done = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", str(free_port()),
         str(script), str(tmp_path), mode],
        capture_output=True, text=True, timeout=180, env={**os.environ, "CUDA_VISIBLE_DEVICES": "", "OMP_NUM_THREADS": "1"},
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]


def test_barrier_waits_for_the_slow_process(tmp_path):
    launch(tmp_path, "fresh")
    assert (tmp_path / "rank0-ok").is_file() and (tmp_path / "rank1-ok").is_file()


def test_barrier_waits_when_accelerate_state_was_made_without_cpu(tmp_path):
    """accelerate's state already exists and does not span the launch; the process group under it still waits."""
    launch(tmp_path, "accelerate_first")
    assert (tmp_path / "rank0-ok").is_file() and (tmp_path / "rank1-ok").is_file()
