"""The ``edgeexplore`` command line: a click group whose commands live in ``edgeexplore.commands``.

Every command is a thin wrapper over a library function. Errors that are the user's to fix
(:class:`~edgeexplore.errors.EdgeExploreError`) and database failures print as one sentence and
exit with status 1; ``--debug`` shows the traceback of anything.
"""

from __future__ import annotations

import importlib
import re
import sys

import click
from sqlalchemy.exc import DatabaseError

from . import interrupts
from .errors import EdgeExploreError
from .store.db import error_reason

#: command modules; each defines ``COMMANDS``, a list of click commands
COMMAND_MODULES = [
    "edgeexplore.commands.models",
    "edgeexplore.commands.latency",
    "edgeexplore.commands.query",
    "edgeexplore.commands.fidelity",
    "edgeexplore.commands.ablate",
    "edgeexplore.commands.search",
    "edgeexplore.commands.store",
    "edgeexplore.commands.train",
    "edgeexplore.commands.cluster",
    "edgeexplore.commands.export",
    "edgeexplore.commands.predictor",
]


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.version_option(package_name="edgeexplore")
@click.pass_context
def cli(ctx: click.Context, debug: bool) -> None:
    """Architecture search and ablation for efficient vision backbones on edge devices.

    Build EdgeViT / EdgeNeXt / EdgeFormer-style backbones from presets or JSON configs, measure
    their cost and latency, search architectures with Optuna into a SQLite store, run the
    EdgeViT paper's ablations, and query the results (Pareto fronts, tables, plots).
    """
    ctx.obj = {"debug": debug}


for _name in COMMAND_MODULES:
    for _command in importlib.import_module(_name).COMMANDS:
        cli.add_command(_command)


#: the longest run of non-blank characters an error message prints whole
MAX_WORD = 200
_LONG_WORD = re.compile(rf"\S{{{MAX_WORD + 1},}}")


def sentence(message: str) -> str:
    """``message`` as one printable line: control characters (a name or path given with an escape
    sequence, a carriage return) shown escaped, and a word longer than :data:`MAX_WORD` (a
    100,000-character argument echoed back) shortened to its ends and its length."""
    message = "".join(c if c.isprintable() else ascii(c)[1:-1] for c in message)
    return _LONG_WORD.sub(lambda m: f"{m[0][:100]}...{m[0][-40:]} ({len(m[0])} characters)",
                          message)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line on stderr and exit status 1."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        with interrupts.guard():
            cli.main(args=args, prog_name="edgeexplore", standalone_mode=False)
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.Abort:
        click.echo("Interrupted.", err=True)
        return 130
    except click.ClickException as e:
        if debug:
            raise
        e.message = sentence(e.message)
        e.show()
        return e.exit_code
    except EdgeExploreError as e:
        if debug:
            raise
        click.echo(f"Error: {sentence(str(e))}", err=True)
        return 1
    except OSError as e:
        # a file the user named that the system refuses: a name too long, no permission, a
        # read-only file system (a bug is an OSError without a file name, kept as a traceback)
        if debug or e.filename is None:
            raise
        click.echo(f"Error: {sentence(f'cannot use {e.filename} ({e.strerror})')}", err=True)
        return 1
    except DatabaseError as e:  # e.g. a disk that filled up mid-write: the transaction rolled back
        if debug:
            raise
        click.echo(f"Error: the database refused an operation: {sentence(error_reason(e))}",
                   err=True)
        return 1
    except KeyboardInterrupt:
        click.echo("Interrupted.", err=True)
        return 130
    except Exception as e:
        # Optuna wraps a database failure (a read-only file, a full disk) in its own
        # StorageInternalError, which is no DatabaseError: print the database's sentence.
        if debug or type(e).__name__ != "StorageInternalError" or not isinstance(
                e.__cause__, DatabaseError):
            raise
        click.echo("Error: the database refused an operation: "
                   f"{sentence(error_reason(e.__cause__))}", err=True)
        return 1
    return 0


def run() -> None:
    sys.exit(main())
