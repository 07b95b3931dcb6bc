"""`leaktrace autograph prepare|copy|trace`: the engine without the service."""

from __future__ import annotations

import typer

app = typer.Typer(help="Watermark engine: prepare A/B variants, assemble copies, trace leaks.", no_args_is_help=True)
