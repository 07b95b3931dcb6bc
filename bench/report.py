"""Write one named section of BENCHMARKS.md from what a bench script measured.

Each section holds the table the script printed, the exact command that produced it, the machine
(CPU, cores, RAM, OS, Python, ffmpeg and PyAV/FFmpeg versions) and the UTC date. Sections are
delimited by HTML comment markers, so re-running one script replaces only its own section:

    <!-- bench:robustness:start -->
    ## Robustness ...
    <!-- bench:robustness:end -->

Numbers are never typed into BENCHMARKS.md by hand: only this module writes it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Sequence

REPO_ROOT = Path(__file__).resolve().parent.parent
BENCHMARKS = REPO_ROOT / "BENCHMARKS.md"

HEADER = """# Benchmarks

Every section below is written by a script in `bench/` (via `bench/report.py`): the numbers are
copied from the script's own output, never typed by hand. Each section names the exact command,
the machine and the date, so it can be re-run and compared. The machine is shared by several
engineers' encodes while the benchmarks run, so timings are noisy.
"""


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """Render rows as a GitHub-flavoured Markdown table (cells are str()-ed, pipes escaped)."""

    def cell(value: object) -> str:
        return str(value).replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(cell(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _first_line(cmd: list[str]) -> str:
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return "n/a"
    return out.splitlines()[0].strip() if out else "n/a"


def machine_description() -> dict[str, str]:
    """CPU model, cores, RAM, OS, Python, ffmpeg CLI and PyAV (with its bundled FFmpeg) versions."""
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    ram = "unknown"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                ram = f"{int(line.split()[1]) / 1024 / 1024:.1f} GiB"
                break
    except OSError:
        pass
    os_name = platform.platform()
    try:
        release = Path("/etc/os-release").read_text()
        match = re.search(r'^PRETTY_NAME="?([^"\n]+)"?', release, re.M)
        if match:
            os_name = f"{match.group(1)} (kernel {platform.release()})"
    except OSError:
        pass
    try:
        import av

        pyav = f"PyAV {av.__version__} (FFmpeg {getattr(av, 'ffmpeg_version_info', 'unknown')})"
    except ImportError:
        pyav = "PyAV not installed"
    return {
        "CPU": cpu,
        "cores": str(os.cpu_count()),
        "RAM": ram,
        "OS": os_name,
        "Python": platform.python_version(),
        "ffmpeg": _first_line(["ffmpeg", "-hide_banner", "-version"]),
        "PyAV": pyav,
    }


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """The command that re-runs this benchmark from the repository root."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join([".venv/bin/python", "-m", module, *args])


def render_section(name: str, *, title: str, body: str, command: str,
                   machine: dict[str, str] | None = None, date: str | None = None) -> str:
    """The Markdown of one section, markers included."""
    machine = machine or machine_description()
    date = date or dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    machine_lines = "\n".join(f"- {key}: {value}" for key, value in machine.items())
    return (
        f"<!-- bench:{name}:start -->\n"
        f"## {title}\n\n"
        f"Command (from the repository root): `{command}`\n\n"
        f"Run {date} on:\n\n{machine_lines}\n\n"
        f"{body.strip()}\n"
        f"<!-- bench:{name}:end -->\n"
    )


def replace_section(document: str, name: str, section: str) -> str:
    """Return `document` with section `name` replaced by `section` (appended when absent)."""
    pattern = re.compile(
        rf"<!-- bench:{re.escape(name)}:start -->.*?<!-- bench:{re.escape(name)}:end -->\n?", re.S)
    if pattern.search(document):
        return pattern.sub(lambda _: section, document, count=1)
    if not document.strip():
        document = HEADER
    return document.rstrip("\n") + "\n\n" + section


def write_section(name: str, *, title: str, body: str, command: str,
                  path: Path = BENCHMARKS) -> Path:
    """Write (or replace) section `name` of BENCHMARKS.md; return the file's path."""
    section = render_section(name, title=title, body=body, command=command)
    document = path.read_text() if path.exists() else ""
    path.write_text(replace_section(document, name, section))
    return path


def parse_run_options(argv: list[str] | None, *, description: str, quick_help: str) -> argparse.Namespace:
    """The options every benchmark script takes: --quick, --no-write, --write, --json-out."""


    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--quick", action="store_true", help=quick_help)
    parser.add_argument("--no-write", action="store_true", help="print only, do not touch BENCHMARKS.md")
    parser.add_argument("--write", action="store_true", help="write BENCHMARKS.md even with --quick (labelled quick)")
    parser.add_argument("--json-out", type=Path, help="also write the results as JSON here")
    return parser.parse_args(argv)
