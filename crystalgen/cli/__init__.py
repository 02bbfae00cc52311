"""The ``crystalgen`` command line.

Each command group lives in its own module here and is attached to :data:`cli` below. Errors
caused by the user's input (:class:`~crystalgen.errors.CrystalgenInputError`, click usage errors,
unreadable files) are printed as one line on stderr with exit code 2; anything else is a bug and
keeps its traceback.
"""

from __future__ import annotations

import sys
import warnings

import click

from crystalgen import __version__
from crystalgen.cli.benchmark import benchmark
from crystalgen.cli.convert import convert
from crystalgen.cli.data import data
from crystalgen.cli.design import design
from crystalgen.cli.filter import filter_command
from crystalgen.cli.leaderboard import leaderboard
from crystalgen.cli.sample import models, sample
from crystalgen.cli.train import train
from crystalgen.errors import CrystalgenInputError, one_line

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "--version", "-V", prog_name="crystalgen")
def cli() -> None:
    """crystalgen: generate, filter and benchmark crystal structures."""


for command in (sample, models, filter_command, design, train, benchmark, data, convert, leaderboard):
    cli.add_command(command)


def _fail(message: str, code: int = EXIT_USAGE) -> int:
    click.echo(f"crystalgen: error: {one_line(message)}", err=True)
    return code


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and turn user errors into one-line messages."""
    # pymatgen warns about every noble gas it looks up; users cannot act on it.
    warnings.filterwarnings("ignore", message="No Pauling electronegativity")
    try:
        result = cli.main(args=argv, prog_name="crystalgen", standalone_mode=False)
    except click.exceptions.Abort as exc:
        # click turns an EOFError that escaped a command into Abort too; that is not a Ctrl-C
        eof = isinstance(exc.__context__, EOFError)
        code = _fail("unexpected end of input (a truncated file?)" if eof else "interrupted",
                     EXIT_USAGE if eof else EXIT_INTERRUPTED)
    except KeyboardInterrupt:
        code = _fail("interrupted", EXIT_INTERRUPTED)
    except click.UsageError as exc:
        code = _fail(exc.format_message(), EXIT_USAGE)
    except click.ClickException as exc:
        code = _fail(exc.format_message(), exc.exit_code)
    except CrystalgenInputError as exc:
        code = _fail(str(exc), EXIT_USAGE)
    except OSError as exc:  # unreadable input, unwritable output, full disk
        code = _fail(f"{exc.strerror or exc}: {exc.filename}" if exc.filename else str(exc), EXIT_USAGE)
    else:
        code = result if isinstance(result, int) else 0
    sys.exit(code)
