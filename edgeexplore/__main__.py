"""``python -m edgeexplore``: the CLI, also as a module so ``torchrun -m edgeexplore train`` works."""

from .cli import run

if __name__ == "__main__":
    run()
