"""``command``: time on an external device through a user-supplied command.

The user gives a command template, e.g. a script that pushes the model to a phone with ``adb``
and runs its benchmark tool, or ``ssh board benchmark_model --graph={model}``. The backend
exports the model to ONNX, fills the placeholders, runs the command as an argument list (never
through a shell, so nothing in a file name or setting can inject shell syntax), enforces a
timeout (killing the whole process group, so a hung ``ssh`` child dies too) and parses every
latency the output reports with a configurable regular expression. Every match is a sample.

Placeholders (written ``{name}`` inside any argument): ``model`` (path of the exported ONNX file),
``input_shape`` (``1x3x224x224``), ``input_shape_csv`` (``1,3,224,224``), ``batch``, ``channels``,
``height``, ``width``, ``threads``, ``warmup``, ``repeats``. Other braces are left untouched.
"""

from __future__ import annotations

import contextlib
import os
import re
import shlex
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from ..errors import EdgeExploreError
from .base import Measurement, check_positive, check_threads, cpu_description, shape_str
from .torch_cpu import MODEL_FORM, deployable

#: "latency: 12.5 ms", "avg=12.5ms", "12.5 ms" ... the first number followed by a time unit
DEFAULT_PATTERN = r"(?P<value>[0-9]+(?:\.[0-9]+)?(?:[eE][-+]?[0-9]+)?)\s*(?P<unit>ms|us|µs|s)\b"
_UNITS = {"ms": 1.0, "us": 1e-3, "µs": 1e-3, "s": 1e3}
_PLACEHOLDER = re.compile(r"\{(\w+)\}")


class CommandBackend:
    """Runs ``command`` (a list of arguments with placeholders) and parses latencies from it."""

    name = "command"
    #: each timing is a round trip to another device: the learned predictor times no units here
    remote = True

    def __init__(
        self,
        command: list[str] | str | None = None,
        pattern: str = DEFAULT_PATTERN,
        unit: str = "ms",
        timeout_s: float = 300.0,
        runs: int = 1,
        threads: int | None = None,
        warmup: int = 10,
        repeats: int = 50,
        exporter: str = "auto",
        device_name: str | None = None,
    ) -> None:
        if isinstance(command, str):
            # A string from a CLI flag or a YAML file is split like a shell would split words,
            # but it is never given to a shell.
            command = shlex.split(command)
        self.command = [str(a) for a in command] if command else []
        try:
            self.regex = re.compile(pattern)
        except re.error as e:
            raise EdgeExploreError(
                f"pattern {pattern!r} is not a valid regular expression: {e}"
            ) from None
        if self.regex.groups == 0:
            raise EdgeExploreError(f"pattern {pattern!r} needs a group capturing the number")
        if unit not in _UNITS:
            raise EdgeExploreError(f"unit must be one of {', '.join(_UNITS)}, not {unit!r}")
        # imported here: the models package loads torch and timm, which --help should not
        from ..models.export import EXPORTERS

        if exporter not in EXPORTERS:
            raise EdgeExploreError(
                f"exporter must be one of {', '.join(EXPORTERS)}, not {exporter!r}"
            )
        self.pattern, self.unit, self.exporter = pattern, unit, exporter
        self.timeout_s = check_positive("timeout_s", timeout_s, integer=False)
        self.runs = check_positive("runs", runs)
        self.threads = check_threads(threads if threads is not None else 1, local=False)
        self.warmup, self.repeats = int(warmup), check_positive("repeats", repeats)
        self.device_name = device_name

    @property
    def settings(self) -> dict[str, Any]:
        return {
            "command": self.command, "pattern": self.pattern, "unit": self.unit,
            "runs": self.runs, "threads": self.threads, "warmup": self.warmup,
            "repeats": self.repeats, "exporter": self.exporter, "device_name": self.device_name,
            "model": MODEL_FORM,
        }

    def available(self) -> tuple[bool, str]:
        if not self.command:
            return False, ("no command template given (setting command=[...], "
                           "e.g. --set command='adb shell ...')")
        exe = self.command[0]
        if not (shutil.which(exe) or (os.sep in exe and Path(exe).is_file())):
            return False, f"the command's program {exe!r} was not found"
        where = self.device_name or "external device"
        return True, f"{where} via {Path(exe).name}"

    def describe_device(self) -> dict[str, Any]:
        return {"device_name": self.device_name or "external", "program": self.command[:1],
                "host": cpu_description()}

    def arguments(self, values: dict[str, Any]) -> list[str]:
        """The command with placeholders filled in (unknown ``{names}`` are kept verbatim)."""

        def fill(m: re.Match) -> str:
            return str(values[m.group(1)]) if m.group(1) in values else m.group(0)

        return [_PLACEHOLDER.sub(fill, a) for a in self.command]

    def parse(self, text: str) -> list[float]:
        """Every latency in ``text``, in milliseconds."""
        out = []
        for m in self.regex.finditer(text):
            groups = m.groupdict()
            raw = groups.get("value") or m.group(1)
            unit = groups.get("unit") or self.unit
            try:
                out.append(float(raw) * _UNITS.get(unit, 1.0))
            except (TypeError, ValueError):
                continue
        return out

    def run_once(self, args: list[str]) -> str:
        """Run the command, returning stdout; fail with its stderr, kill it on timeout."""
        try:
            proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True, start_new_session=True)
        except OSError as e:
            raise EdgeExploreError(f"cannot run {args[0]!r}: {e.strerror or e}") from None
        try:
            out, err = proc.communicate(timeout=self.timeout_s)
        except subprocess.TimeoutExpired:
            # The whole session: a wrapper script's children (adb, ssh, sleep) die with it.
            with contextlib.suppress(ProcessLookupError):  # it may have just exited
                os.killpg(proc.pid, signal.SIGKILL)
            out, err = proc.communicate()
            raise EdgeExploreError(
                f"command {shlex.join(args[:3])}... did not finish within {self.timeout_s:g} s "
                f"and was killed; stderr: {_tail(err)}"
            ) from None
        if proc.returncode != 0:
            raise EdgeExploreError(
                f"command {shlex.join(args[:3])}... failed with exit status {proc.returncode}; "
                f"stderr: {_tail(err)}"
            )
        return out

    def measure(self, model: Any, input_shape: tuple[int, ...]) -> Measurement:
        ok, why = self.available()
        if not ok:
            raise EdgeExploreError(f"backend 'command' is not available: {why}")
        shape = tuple(int(d) for d in input_shape)
        t0 = time.perf_counter()
        with tempfile.TemporaryDirectory(prefix="edgeexplore-cmd-") as tmp:
            from ..models.export import export_onnx

            path = Path(tmp) / "model.onnx"
            export_onnx(deployable(model), shape, path, exporter=self.exporter)
            values = {
                "model": str(path), "input_shape": shape_str(shape),
                "input_shape_csv": ",".join(map(str, shape)), "batch": shape[0],
                "channels": shape[1] if len(shape) > 1 else "", "height": shape[-2],
                "width": shape[-1], "threads": self.threads, "warmup": self.warmup,
                "repeats": self.repeats,
            }
            args = self.arguments(values)
            samples: list[float] = []
            for _ in range(self.runs):
                out = self.run_once(args)
                found = self.parse(out)
                if not found:
                    raise EdgeExploreError(
                        f"no latency matching {self.pattern!r} in the output of {args[0]!r} "
                        f"(stdout: {_tail(out)})"
                    )
                samples.extend(found)
        return Measurement.from_samples(
            self.name, samples, warmup=self.warmup, threads=self.threads, input_shape=shape,
            device=self.describe_device(), settings=self.settings, stop_reason="command",
            energy_note="not available here: the command backend reports latency only",
            wall_s=time.perf_counter() - t0,
        )


def _tail(text: str | None, limit: int = 500) -> str:
    text = (text or "").strip()
    if not text:
        return "(empty)"
    return text if len(text) <= limit else "..." + text[-limit:]

