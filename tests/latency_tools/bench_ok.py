"""Stand-in for a device benchmark tool: checks its arguments, prints one latency per run."""

import sys
from pathlib import Path

model, shape, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
if not Path(model).is_file() or Path(model).stat().st_size == 0:
    print(f"model file {model} is missing", file=sys.stderr)
    sys.exit(2)
print(f"loaded {Path(model).name} with input {shape}")
for i in range(repeats):
    # 10.0, 10.5, 11.0, ... so the statistics are known exactly
    print(f"run {i}: latency {10.0 + 0.5 * i:.1f} ms")
print("done")
