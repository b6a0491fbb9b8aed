"""Registers the client-side command groups on the root ``loreg`` group."""

from __future__ import annotations

import click

from loreg.cli import account, adapters, audit, bases, jobs, serve, versions, webhooks


def register(group: click.Group) -> None:
    for module in (serve, account, bases, adapters, jobs):
        for command in module.COMMANDS:
            group.add_command(command)
    for module in (versions, webhooks, audit):
        for command in module.COMMANDS:
            group.add_command(command)
