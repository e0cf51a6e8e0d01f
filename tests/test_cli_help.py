"""Every command's --help shows all of its text. Help is rendered as Markdown (so that the
docstrings' line breaks reflow to the terminal): a bare `<id>` or a pair of `*` would silently
vanish or turn into emphasis, so such text goes in backticks, and this test finds what doesn't."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
import typer.rich_utils
from typer.main import get_command
from typer.testing import CliRunner

from cli.app import app

RUNNER = CliRunner()


def _commands(cmd: Any, path: tuple[str, ...] = ()) -> Iterator[tuple[tuple[str, ...], Any]]:
    yield path, cmd
    for name, sub in (getattr(cmd, "commands", None) or {}).items():
        yield from _commands(sub, (*path, name))


COMMANDS = list(_commands(get_command(app)))


def _plain(text: str) -> str:
    """Text as a reader sees it: no panel borders, no code backticks, one space between words."""
    text = re.sub(r"[│╭╮╰╯─]", " ", text).replace("`", "")
    return " ".join(text.split())


def test_every_command_is_checked() -> None:
    names = {" ".join(p) for p, _ in COMMANDS}
    assert {"", "intake", "soh calibrate", "registry ingest", "ca init"} <= names


@pytest.mark.parametrize(
    ("path", "cmd"), COMMANDS, ids=[" ".join(p) or "passport" for p, _ in COMMANDS]
)
def test_help_shows_every_word_of_the_command_and_its_options(
    path: tuple[str, ...], cmd: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 1000)  # one line per paragraph
    result = RUNNER.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    shown = _plain(result.output)
    texts = [cmd.help or ""] + [getattr(p, "help", None) or "" for p in cmd.params]
    for text in texts:
        for paragraph in text.split("\n\n"):
            assert _plain(paragraph) in shown


def test_help_reflows_the_docstring_to_the_terminal(monkeypatch: pytest.MonkeyPatch) -> None:
    """The docstring's own line breaks (at 96 columns in the source) do not show."""
    monkeypatch.setattr(typer.rich_utils, "MAX_WIDTH", 200)
    out = RUNNER.invoke(app, ["soh", "calibrate", "--help"]).output
    assert "whichever cross-validates better on these cells is kept." in out
