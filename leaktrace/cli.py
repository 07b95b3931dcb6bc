"""The `leaktrace` command."""

from __future__ import annotations

import typer

from leaktrace.autograph.cli import app as autograph_app

app = typer.Typer(help="Leaktrace: forensic video watermarking and leak tracing.", no_args_is_help=True)
app.add_typer(autograph_app, name="autograph")

if __name__ == "__main__":
    app()
