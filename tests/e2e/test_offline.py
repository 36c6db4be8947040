"""A temple run opens no network connection, even without HF_HUB_OFFLINE in the environment.

A real run of the command line (select, generate, one DPO step of the tiny Qwen2-VL) in a
child process whose ``sitecustomize`` installs an audit hook (``sys.addaudithook``) that
records -- and refuses -- every name lookup (``socket.getaddrinfo``) and connection
(``socket.connect``) to anything but this machine. The environment has no HF_HUB_OFFLINE,
no TRANSFORMERS_OFFLINE, no telemetry switch and no ``CI`` (TRL skips its telemetry on CI).
With ``TEMPLE_ALLOW_NETWORK=1`` the same run does try the network (TRL's telemetry ping):
the hook sees it, so the first check can fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from testkit.training import easy_pairs, write_jsonl, write_videos

pytestmark = pytest.mark.slow

HOOK = textwrap.dedent(
    """
    import json, os, socket, sys

    LOG = os.environ["NETWORK_LOG"]
    LOCAL = ("localhost", "127.0.0.1", "::1", "0.0.0.0", "", None)

    def _local(host):
        return host in LOCAL or str(host).startswith("127.")

    def hook(event, args):
        if event == "socket.getaddrinfo" and not _local(args[0]):
            what = [event, str(args[0]), str(args[1])]
        elif event == "socket.connect":
            sock, address = args
            if sock.family == socket.AF_UNIX or (isinstance(address, tuple) and _local(address[0])):
                return
            what = [event, str(address), ""]
        else:
            return
        with open(LOG, "a") as handle:
            handle.write(json.dumps(what) + "\\n")
        raise OSError(f"network refused by the test: {what}")

    sys.addaudithook(hook)
    """
)

NETWORK_VARIABLES = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_DATASETS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY",
                     "DISABLE_TELEMETRY", "DO_NOT_TRACK", "CI", "TEMPLE_ALLOW_NETWORK")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("offline")
    (root / "hook").mkdir()
    (root / "hook" / "sitecustomize.py").write_text(HOOK)
    videos = write_videos(root / "videos", 2)
    pairs = write_jsonl(root / "pairs.jsonl", easy_pairs(videos, per_video=2))
    recipe = {
        "run_dir": "run",
        "seed": 0,
        "videos": {"samples": ["synthetic"]},
        "select": {"shot_detector": {"name": "pyscenedetect"}, "encoder": {"name": "colorhist"}},
        "generate": {"captioner": {"name": "heuristic"}, "difficulties": [16]},
        "train": {
            "backend": {"name": "qwen2_vl", "preset": "tiny-random", "fps": 1.0, "max_frames": 4, "max_pixels": 12544},
            "stages": [{"trainer": "dpo", "data": str(pairs), "batch_size": 2, "max_steps": 1,
                        "max_length": 1024, "gradient_checkpointing": False}],
        },
    }
    path = root / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe))
    return root, path


def run(root: Path, recipe: Path, name: str, **extra: str):
    log = root / f"{name}.network.jsonl"
    env = {k: v for k, v in os.environ.items() if k not in NETWORK_VARIABLES}
    env.update(NETWORK_LOG=str(log), OMP_NUM_THREADS="1", **extra)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "hook"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    result = subprocess.run(
        [sys.executable, "-m", "temple_core", "run", str(recipe), "--run-dir", str(root / name), "--no-progress"],
        cwd=root, env=env, capture_output=True, text=True, timeout=900,
    )
    attempts = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return result, attempts


def test_a_run_opens_no_network_connection(setup):
    root, recipe = setup
    result, attempts = run(root, recipe, "offline")
    assert result.returncode == 0, result.stderr[-3000:]
    assert attempts == [], f"the run tried the network: {attempts}"
    assert (root / "offline" / "train" / "0-dpo" / "merged" / "config.json").is_file()


def test_allowing_the_network_is_the_users_choice(setup):
    """TEMPLE_ALLOW_NETWORK=1 leaves the environment alone: TRL's telemetry then tries the hub
    (and the hook sees it, refused; the run still finishes)."""
    root, recipe = setup
    result, attempts = run(root, recipe, "online", TEMPLE_ALLOW_NETWORK="1")
    assert result.returncode == 0, result.stderr[-3000:]
    assert attempts, "with the network allowed, TRL's telemetry should have tried to reach the hub"
