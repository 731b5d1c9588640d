"""`cronbus --help` and every command's: a description of its own (not a docstring meant for
developers), the defaults as they are, and every option and argument described."""

from __future__ import annotations

import argparse

from cronbus.agents.cli import main as cli
from cronbus.agents.worker.roles import DEFAULT_ROLES


def commands(parser: argparse.ArgumentParser, path: str = "cronbus"):
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                yield from commands(child, f"{path} {name}")


def test_every_command_says_what_it_does_and_describes_each_argument():
    undescribed = []
    for path, parser in commands(cli.parser()):
        if not parser.description:
            undescribed.append(f"{path}: no description")
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if not action.help:
                undescribed.append(f"{path}: {action.dest} has no help")
    assert undescribed == []


def test_the_program_description_is_for_users_and_the_default_roles_are_stated():
    root = cli.parser()
    assert cli.__doc__ not in (root.description or "")
    worker = dict(commands(root))["cronbus worker"]
    assert ", ".join(DEFAULT_ROLES[:-1]) + " and " + DEFAULT_ROLES[-1] in worker.description
