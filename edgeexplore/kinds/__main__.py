"""``python -m edgeexplore.kinds`` prints the block-kind table; ``--write docs/architectures.md``
updates it (the page that holds it)."""

import sys
from pathlib import Path

from ._table import markdown_table, write_readme

if len(sys.argv) == 3 and sys.argv[1] == "--write":
    write_readme(Path(sys.argv[2]))
elif len(sys.argv) == 1:
    print(markdown_table())
else:
    raise SystemExit("usage: python -m edgeexplore.kinds [--write docs/architectures.md]")
