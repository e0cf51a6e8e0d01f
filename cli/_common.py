"""What every command shares: error -> exit code mapping, stderr console, JSON on stdout."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from passport.errors import InputError, PassportError, VerificationError

EXIT_OK = 0
EXIT_FAILED = 1  # a verification failed
EXIT_USAGE = 2  # bad usage or unreadable input
EXIT_INTERNAL = 3  # a bug: please report it

err = Console(stderr=True, highlight=False, soft_wrap=True)

P = ParamSpec("P")
R = TypeVar("R")


def exit_code_for(exc: PassportError) -> int:
    return EXIT_FAILED if isinstance(exc, VerificationError) else EXIT_USAGE


def handle_errors(func: Callable[P, R]) -> Callable[P, R]:
    """Turn library errors into one clear line on stderr and the documented exit code."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return func(*args, **kwargs)
        except PassportError as exc:
            err.print(f"[bold red]error:[/] {_escape(str(exc))}")
            raise typer.Exit(exit_code_for(exc)) from None
        except KeyboardInterrupt:
            err.print("[yellow]interrupted[/]")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, typer.BadParameter):
            raise
        except Exception as exc:
            if os.environ.get("PASSPORT_DEBUG"):
                raise
            err.print(
                f"[bold red]internal error:[/] {type(exc).__name__}: {_escape(str(exc))} "
                "(set PASSPORT_DEBUG=1 for a traceback and please report it)"
            )
            raise typer.Exit(EXIT_INTERNAL) from None

    return wrapper


def _escape(text: str) -> str:
    return text.replace("[", "\\[")


def emit_json(data: Any) -> None:
    """Data goes to stdout, one JSON document."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def require(condition: bool, message: str) -> None:
    if not condition:
        raise InputError(message)


def _progress(*extra: TextColumn) -> Progress:
    """The bar every long command shows on a terminal's stderr (gone when done)."""
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        *extra,
        console=err,
        transient=True,
    )


@contextmanager
def progress_bar(
    description: str, total: int, *, enabled: bool = True
) -> Iterator[Callable[[int], None]]:
    """A progress bar on a terminal's stderr; silent in pipes and when disabled."""
    if not enabled or not err.is_terminal or total < 2:
        yield lambda _n: None
        return
    with _progress() as progress:
        task = progress.add_task(description, total=total)
        yield lambda n: progress.advance(task, n)


@contextmanager
def progress_steps(description: str) -> Iterator[Callable[[int, int, str], None]]:
    """A progress bar for work that learns its total as it starts: the callback takes (done,
    total, what was just finished). On a terminal's stderr only."""
    if not err.is_terminal:
        yield lambda _done, _total, _what: None
        return
    with _progress(TextColumn("{task.fields[what]}")) as progress:
        task = progress.add_task(description, total=None, what="")

        def update(done: int, total: int, what: str) -> None:
            progress.update(task, completed=done, total=total, what=what)

        yield update
