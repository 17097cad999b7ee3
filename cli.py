"""Thin launcher: ``python cli.py ...`` is the same as ``edgeexplore ...``."""

from edgeexplore.cli import run

if __name__ == "__main__":
    run()
