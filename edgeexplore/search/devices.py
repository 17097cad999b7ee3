"""Which device each worker of a search runs on (``--devices``), and pinning a worker to it.

A worker is pinned by narrowing ``CUDA_VISIBLE_DEVICES`` to its one GPU (or to none for
``cpu``) before CUDA starts in that process: inside the worker its GPU is then ``cuda:0``, so
the proxy training (which takes the current CUDA device) and a ``cuda`` latency backend (device
0 by default) both land on it without being told, and a ``cpu`` worker never touches a GPU.
"""

from __future__ import annotations

import os
import re

from ..errors import ConfigError

_CUDA = re.compile(r"cuda:(\d+)")


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(text: str) -> tuple[list[str], str | None]:
    """``auto``, or a comma-separated list of ``cpu`` / ``cuda:N`` → one device per worker, and a
    note to show when ``auto`` found no GPU and falls back to one CPU worker."""
    value = text.strip().lower()
    if value == "auto":
        n = visible_gpus()
        if n == 0:
            return ["cpu"], "--devices auto: no CUDA GPU is visible here, so one worker runs on the CPU"
        return [f"cuda:{i}" for i in range(n)], None
    devices = [d.strip() for d in value.split(",")]
    n = None
    for d in devices:
        if d == "cpu":
            continue
        m = _CUDA.fullmatch(d)
        if m is None:
            raise ConfigError(f"--devices {text!r}: {d!r} is not a device; give auto, or a list "
                              "of cpu and cuda:N such as cuda:0,cuda:1")
        n = visible_gpus() if n is None else n
        if int(m.group(1)) >= n:
            seen = f"only {n} GPU(s) are visible" if n else "no CUDA GPU is visible here"
            raise ConfigError(f"--devices {text!r}: {d} does not exist ({seen})")
    return devices, None


def pin(device: str) -> None:
    """Make ``device`` the only one this process sees; call before anything starts CUDA."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if device == "cpu":
        os.environ["CUDA_VISIBLE_DEVICES"] = ""
        return
    index = int(device.split(":")[1])
    # cuda:N counts among the GPUs this host's process was already allowed to see
    parent = [v for v in visible.split(",") if v.strip()] if visible else None
    os.environ["CUDA_VISIBLE_DEVICES"] = parent[index] if parent else str(index)
    import torch

    torch.cuda.set_device(0)
