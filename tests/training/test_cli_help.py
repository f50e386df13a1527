"""`--help` explains every option: of `python -m training` and each of its commands, and of
the server's `classifier-serve`."""

from __future__ import annotations

import argparse

import pytest

from app.serve import parser as serve_parser
from training.cli import make_parser


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    training = make_parser()
    found = [("python -m training", training), ("classifier-serve", serve_parser())]
    for action in training._actions:
        if isinstance(action, argparse._SubParsersAction):
            found += [(f"python -m training {name}", sub) for name, sub in action.choices.items()]
    return found


@pytest.mark.parametrize(("command", "parser"), _parsers(), ids=[name for name, _ in _parsers()])
def test_every_option_has_help(command: str, parser: argparse.ArgumentParser) -> None:
    silent = [
        "/".join(action.option_strings) or action.dest
        for action in parser._actions
        if not isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)) and not action.help
    ]
    assert not silent, f"{command}: options without help: {silent}"
