"""The `passport` console script."""

from __future__ import annotations

import typer

from cli import audit, ca, datasheet, keys, registry, soh
from cli.append import append
from cli.challenge import challenge, respond
from cli.demo import demo
from cli.export import export
from cli.intake import grades, intake
from cli.issue import issue
from cli.label import label
from cli.show import show
from cli.verify import verify

app = typer.Typer(
    rich_markup_mode="markdown",  # docstring line breaks are reflowed to the terminal width
    name="passport",
    help="Signed, offline-verifiable battery cell passports in the cell's own memory.\n\n"
    "Exit codes: 0 ok, 1 verification failed, 2 bad usage or unreadable input.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.add_typer(keys.app, name="keys")
app.add_typer(ca.app, name="ca")
app.add_typer(registry.app, name="registry")
app.add_typer(audit.app, name="audit")
app.add_typer(soh.app, name="soh")
app.add_typer(datasheet.app, name="datasheet")
app.command("issue")(issue)
app.command("append")(append)
app.command("show")(show)
app.command("verify")(verify)
app.command("challenge")(challenge)
app.command("respond")(respond)
app.command("demo")(demo)
app.command("intake")(intake)
app.command("label")(label)
app.command("export")(export)
audit.app.command("grades")(grades)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
