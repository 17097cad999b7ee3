"""Stand-in for a benchmark tool whose device is missing: complains on stderr, exits 3."""

import sys

print("connecting...")
print("error: device 'board0' not found (is it plugged in?)", file=sys.stderr)
sys.exit(3)
