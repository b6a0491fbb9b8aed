"""Entry point of the ``loreg`` command: the root group and its exit-code contract.

Exit codes (docs/design.md §10): 0 success, 1 error, 2 usage error, 3 incompatible/invalid.
"""

from __future__ import annotations

import warnings

import click

from loreg.cli import commands as client_commands
from loreg.cli import db as db_commands
from loreg.cli import gc as gc_command
from loreg.cli import merge as merge_command
from loreg.cli import validate as validate_command
from loreg.cli import worker as worker_command
from loreg.cli.common import run


@click.group()
@click.version_option(package_name="loreg")
def cli() -> None:
    """loreg: a registry for LoRA adapters."""


cli.add_command(db_commands.db)
client_commands.register(cli)
cli.add_command(validate_command.validate)
cli.add_command(worker_command.worker)
cli.add_command(gc_command.gc)
cli.add_command(merge_command.merge)


def main() -> None:
    # numpy is optional (torch's CPU wheel does not install it); torch warns about its absence
    # on import, which would be noise on every command.
    warnings.filterwarnings("ignore", message="Failed to initialize NumPy", category=UserWarning)
    run(cli)
