"""`leaktrace autograph prepare|copy|trace`: the engine without the service."""

from __future__ import annotations

import typer

app = typer.Typer(help="Watermark engine: prepare A/B variants, assemble copies, trace leaks.", no_args_is_help=True)


# ---------------------------------------------------------------------------------------------
# prepare and copy

_STRENGTHS = ("light", "medium", "strong")


def _fail(message: str) -> None:
    from rich.console import Console

    Console(stderr=True, soft_wrap=True).print(f"[red]error:[/red] {message}", highlight=False)
    raise typer.Exit(code=2)


@app.command()
def prepare(
    input_path: str = typer.Argument(..., metavar="INPUT", help="Video file ffmpeg can decode."),
    outdir: str = typer.Argument(..., metavar="OUTDIR", help="Prepared-title folder to create."),
    strength: str = typer.Option("medium", help="Mark strength: light (48 dB), medium (44 dB) or strong (40 dB)."),
    position_seconds: float = typer.Option(2.0, help="Seconds per position (one closed GOP), 1 to 2."),
    height: int = typer.Option(None, help="Scale the rendition to this height (default: source size)."),
    crf: int = typer.Option(20, help="libx264 CRF of both variants."),
    preset: str = typer.Option("veryfast", help="libx264 preset of both variants."),
    duration: float = typer.Option(None, help="Prepare only the first SECONDS of the input."),
    force: bool = typer.Option(False, "--force", help="Replace an existing prepared title in OUTDIR."),
    workers: int = typer.Option(None, min=1, help="Processes preparing chunks side by side (default: one per core); "
                                                  "the output is the same whatever the number."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Write the A/B variants, the fragment index, the key and the detection reference of INPUT."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from leaktrace.autograph.embed import PrepareError
    from leaktrace.autograph.embed import prepare as prepare_title

    if strength not in _STRENGTHS:
        _fail(f"unknown strength {strength!r}; choose one of {', '.join(_STRENGTHS)}")
    columns = (TextColumn("preparing"), BarColumn(), MofNCompleteColumn(), TextColumn("frames"), TimeRemainingColumn())
    with Progress(*columns, disable=quiet, transient=True) as bar:
        task = bar.add_task("prepare", total=None)
        try:
            manifest = prepare_title(input_path, outdir, strength=strength, position_seconds=position_seconds,
                                     height=height, crf=crf, preset=preset, duration=duration, force=force, workers=workers,
                                     progress=lambda done, total: bar.update(task, completed=done, total=total))
        except PrepareError as exc:
            bar.stop()
            _fail(str(exc))
    rendition = manifest["rendition"]
    typer.echo(f"prepared {outdir}: {rendition['width']}x{rendition['height']} at "
               f"{rendition['fps'][0]}/{rendition['fps'][1]} fps, {manifest['n_frames']} frames, "
               f"{len(manifest['positions'])} positions of {manifest['position_duration_s']:.3f} s, "
               f"strength {manifest['strength']}, {manifest['prepare_seconds']:.1f} s")
    target, measured = manifest["target_psnr_db"], manifest["pattern"]["measured_psnr_db"]
    typer.echo(f"luma PSNR against the unmarked encode: A {measured['A']:.1f} dB, B {measured['B']:.1f} dB "
               f"(target {target:g} dB)")
    if not manifest["pattern"]["target_reached"] and min(measured.values()) > target:
        typer.echo("held above the target: the mark was kept weaker where more would show (the mask's limit, "
                   "pattern.mask_limit in the manifest) or step up where positions switch (fast action fades "
                   "it along each position)")


@app.command()
def copy(
    outdir: str = typer.Argument(..., metavar="OUTDIR", help="Prepared-title folder."),
    tag: str = typer.Option(..., "--tag", help="The viewer's tag."),
    out: str = typer.Option(..., "-o", "--out", help="Where to write the copy (MP4)."),
) -> None:
    """Write TAG's copy of the prepared title: fragments of A and B per the tag's codeword, no re-encode."""
    from leaktrace.autograph.assemble import write_copy
    from leaktrace.autograph.package import PackageError

    try:
        size = write_copy(outdir, tag, out)
    except (PackageError, OSError) as exc:
        _fail(str(exc))
    typer.echo(f"wrote {out}: {size} bytes")


# ---------------------------------------------------------------------------------------------
# trace


@app.command()
def trace(
    leak: str = typer.Argument(..., metavar="LEAK", help="The leaked video (any file ffmpeg can decode)."),
    master: str = typer.Option(..., "--master", help="Prepared-title folder (OUTDIR of prepare)."),
    tags: str = typer.Option(None, "--tags", help="Candidate tags, comma-separated."),
    tags_file: str = typer.Option(None, "--tags-file", help="File with one candidate tag per line."),
    simulate_tags: int = typer.Option(0, "--simulate-tags", help="Add N simulated innocent candidates."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object instead of tables."),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="No progress bar."),
) -> None:
    """Align LEAK to the prepared title, read its marks and accuse the tags the evidence proves."""
    import json
    from pathlib import Path

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeRemainingColumn
    from rich.table import Table

    from leaktrace.autograph.package import PackageError
    from leaktrace.autograph.reference import load_reference
    from leaktrace.autograph.trace import trace as trace_leak

    if (tags is None) == (tags_file is None):
        _fail("give the candidates with exactly one of --tags and --tags-file")
    try:
        raw = tags.split(",") if tags is not None else Path(tags_file).read_text().splitlines()
    except OSError as exc:
        _fail(str(exc))
    candidates = [t.strip() for t in raw if t.strip()]
    if not candidates and simulate_tags <= 0:
        _fail("no candidate tags")
    columns = (TextColumn("{task.description:<8}"), BarColumn(), TaskProgressColumn(), TimeRemainingColumn())
    with Progress(*columns, disable=quiet or as_json, transient=True, console=Console(stderr=True)) as bar:
        tasks: dict[str, int] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        try:
            report = trace_leak(leak, master, candidates, simulate_tags=simulate_tags, progress=progress)
        except (PackageError, OSError, ValueError) as exc:
            bar.stop()
            _fail(str(exc))
    summary = report.to_dict(load_reference(master))
    if as_json:
        typer.echo(json.dumps(summary))
        return
    console = Console()
    align = summary.get("alignment")
    if align is not None and align["matched"]:
        crop = align.get("master_crop") or {}
        console.print(f"aligned: offset {align['offset_seconds']:.3f} s, rate {align['rate']:.4f}, "
                      f"scale {crop.get('scale', float('nan')):.3f}, {align['frames_used']}/{summary['leak']['frames']} "
                      f"leak frames used, {summary['positions_observed']} positions observed", highlight=False)
    table = Table(title="accused" if summary["accused"] else "nobody accused")
    for column in ("tag", "score (nats)", "bound", "log10 bound", "agreement"):
        table.add_column(column)
    for row in summary["accused"]:
        table.add_row(row["tag"], f"{row['score']:.1f}", f"{row['bound']:.3g}", f"{row['log10_bound']:.1f}",
                      f"{row['agreement']}/{row['compared']}")
    if summary["runner_up"] is not None:
        row = summary["runner_up"]
        table.add_row(f"[dim]runner-up: {row['tag']}[/dim]", f"{row['score']:.1f}", f"{row['bound']:.3g}",
                      f"{row['log10_bound']:.1f}", f"{row['agreement']}/{row['compared']}")
    console.print(table)
    console.print(summary["reason"], highlight=False)
