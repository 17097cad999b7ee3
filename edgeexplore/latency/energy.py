"""Energy counters: Linux RAPL (powercap) on CPUs and NVML total energy on NVIDIA GPUs.

Both expose a monotonically increasing energy counter; a meter reads it before and after each
timed inference, so energy per inference gets the same statistics as latency. RAPL counters wrap
around at ``max_energy_range_uj``; :meth:`RaplMeter.read_j` accumulates deltas so a wrap between
two reads is handled. Where neither exists (most VMs and containers, including the machine this
was written on) meters say "not available here" with the reason.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Protocol

POWERCAP = Path(os.environ.get("EDGEEXPLORE_POWERCAP", "/sys/class/powercap"))
#: top-level RAPL package domains only: sub-domains (core, uncore, dram) are counted inside them
_PACKAGE = re.compile(r"^intel-rapl:\d+$")


class EnergyMeter(Protocol):
    source: str

    def available(self) -> tuple[bool, str]: ...

    def read_j(self) -> float:
        """Joules consumed since the meter was created (monotonic)."""
        ...


class RaplMeter:
    """Sum of the RAPL package counters under ``root`` (``/sys/class/powercap``)."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root) if root is not None else POWERCAP
        self.domains: list[Path] = []
        self._why = ""
        if not self.root.is_dir():
            self._why = f"no RAPL powercap interface ({self.root} does not exist)"
            return
        for d in sorted(self.root.iterdir()):
            if _PACKAGE.match(d.name) and (d / "energy_uj").exists():
                self.domains.append(d)
        if not self.domains:
            self._why = f"no intel-rapl:* package domains with energy_uj under {self.root}"
            return
        try:
            self._max = [int((d / "max_energy_range_uj").read_text()) for d in self.domains]
            self._last = [self._raw(d) for d in self.domains]
        except (OSError, ValueError) as e:
            # Since Linux 5.10 energy_uj is readable by root only (CVE-2020-8694).
            self._why = f"cannot read RAPL counters ({e}); they are root-only on recent kernels"
            self.domains = []
            return
        self._total_uj = 0
        self.source = "rapl:" + ",".join(d.name for d in self.domains)

    source = "rapl"

    @staticmethod
    def _raw(d: Path) -> int:
        return int((d / "energy_uj").read_text())

    def available(self) -> tuple[bool, str]:
        if not self.domains:
            return False, f"not available here: {self._why}"
        return True, self.source

    def read_j(self) -> float:
        for i, d in enumerate(self.domains):
            now = self._raw(d)
            delta = now - self._last[i]
            if delta < 0:  # the counter wrapped around at max_energy_range_uj
                delta += self._max[i] + 1
            self._total_uj += delta
            self._last[i] = now
        return self._total_uj / 1e6


class NvmlMeter:
    """NVML's total-energy counter (millijoules since driver load) of one GPU."""

    def __init__(self, index: int = 0) -> None:
        self._why = ""
        self.handle = None
        self.source = "nvml"
        try:
            import pynvml  # from nvidia-ml-py
        except ImportError:
            self._why = "nvidia-ml-py is not installed (uv sync --extra gpu)"
            return
        try:
            pynvml.nvmlInit()
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            pynvml.nvmlDeviceGetTotalEnergyConsumption(handle)
            name = pynvml.nvmlDeviceGetName(handle)
        except Exception as e:  # noqa: BLE001  (NVMLError kinds differ per driver; all mean no)
            self._why = f"NVML has no energy counter here ({e})"
            return
        self._nvml = pynvml
        self.handle = handle
        self.source = f"nvml:{name if isinstance(name, str) else name.decode()}"

    def available(self) -> tuple[bool, str]:
        if self.handle is None:
            return False, f"not available here: {self._why}"
        return True, self.source

    def read_j(self) -> float:
        return self._nvml.nvmlDeviceGetTotalEnergyConsumption(self.handle) / 1e3


def cpu_meter() -> tuple[EnergyMeter | None, str]:
    """A RAPL meter, or None and why energy is not available."""
    meter = RaplMeter()
    ok, why = meter.available()
    return (meter, why) if ok else (None, why)


def gpu_meter(index: int = 0) -> tuple[EnergyMeter | None, str]:
    meter = NvmlMeter(index)
    ok, why = meter.available()
    return (meter, why) if ok else (None, why)
