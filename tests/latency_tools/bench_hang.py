"""Stand-in for a benchmark tool that hangs (and leaves a child process holding its pipes)."""

import subprocess
import sys
import time

print("waiting for the device...", file=sys.stderr, flush=True)
subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
time.sleep(120)
