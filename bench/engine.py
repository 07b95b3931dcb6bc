"""Drive our engine the way an operator does: the `leaktrace autograph prepare|copy|trace` commands.

Benchmarks go through the command-line contract of ../shared/design/architecture.md rather than
private functions, so they measure what users run. Each call returns its wall time.
"""

from __future__ import annotations

import json
import math
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parent.parent
LEAKTRACE = [sys.executable, "-m", "leaktrace.cli"]


class EngineError(RuntimeError):
    """A `leaktrace autograph` command failed."""


def _run(args: list[str]) -> tuple[str, float]:
    cmd = [*LEAKTRACE, "autograph", *args]
    began = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    elapsed = time.perf_counter() - began
    if proc.returncode != 0:
        tail = "\n".join((proc.stderr or proc.stdout).strip().splitlines()[-20:])
        raise EngineError(f"{shlex.join(cmd)} exited {proc.returncode}:\n{tail}")
    return proc.stdout, elapsed


def missing_commands() -> list[str]:
    """The `leaktrace autograph` commands that do not exist yet (empty when the engine is complete)."""
    proc = subprocess.run([*LEAKTRACE, "autograph", "--help"], capture_output=True, text=True, cwd=REPO_ROOT)
    listed = {line.strip("│ ").split(" ", 1)[0] for line in (proc.stdout + proc.stderr).splitlines()}
    return [name for name in ("prepare", "copy", "trace") if name not in listed]


def prepare(master: Path, outdir: Path, *, position_seconds: float = 2.0, strength: str = "medium",
            workers: int | None = None) -> float:
    """`leaktrace autograph prepare` (`workers`: its --workers, default one per core); return its wall time (s)."""
    _, elapsed = _run(["prepare", str(master), str(outdir), "--quiet", "--strength", strength,
                       "--position-seconds", f"{position_seconds:g}",
                       *(["--workers", str(workers)] if workers is not None else [])])
    return elapsed


def copy(outdir: Path, tag: str, out_path: Path) -> float:
    """`leaktrace autograph copy`; return its wall time (s)."""
    out_path.parent.mkdir(parents=True, exist_ok=True)
    _, elapsed = _run(["copy", str(outdir), "--tag", tag, "-o", str(out_path)])
    return elapsed


@dataclass
class Accusation:
    tag: str
    score: float
    log10_bound: float


@dataclass
class TraceResult:
    """The parts of `trace --json` the benchmarks report, plus the raw object."""

    accused: list[Accusation]
    positions_observed: int | None
    runner_up: Accusation | None
    seconds: float
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def accused_tags(self) -> list[str]:
        return [a.tag for a in self.accused]


def log10_of_bound(entry: dict[str, Any]) -> float:
    """The false-accusation bound of one accused/runner-up entry, as log10 (NaN when absent)."""
    for key in ("log10_bound", "log10_p", "log10_p_value", "log10_false_accusation_bound"):
        if entry.get(key) is not None:
            return float(entry[key])
    for key in ("bound", "p_value", "false_accusation_bound", "p"):
        value = entry.get(key)
        if isinstance(value, (int, float)):
            return math.log10(value) if value > 0 else float("-inf")
        if isinstance(value, dict):
            return log10_of_bound(value)
    return float("nan")


def _accusation(entry: dict[str, Any] | None) -> Accusation | None:
    if not entry:
        return None
    return Accusation(tag=str(entry.get("tag")), score=float(entry.get("score", float("nan"))),
                      log10_bound=log10_of_bound(entry))


def trace(leak: Path, outdir: Path, tags: list[str], *, simulate_tags: int = 0,
          tags_file: Path | None = None) -> TraceResult:
    """`leaktrace autograph trace --json` with the given real tags (and simulated innocents)."""
    args = ["trace", str(leak), "--master", str(outdir), "--json", "--quiet"]
    if tags_file is not None:
        tags_file.write_text("\n".join(tags) + "\n")
        args += ["--tags-file", str(tags_file)]
    else:
        args += ["--tags", ",".join(tags)]
    if simulate_tags:
        args += ["--simulate-tags", str(simulate_tags)]
    stdout, elapsed = _run(args)
    raw = json.loads(stdout[stdout.index("{"):])
    runner = raw.get("runner_up")
    if isinstance(runner, list):
        runner = runner[0] if runner else None
    return TraceResult(
        accused=[a for a in (_accusation(e) for e in raw.get("accused", [])) if a is not None],
        positions_observed=raw.get("positions_observed"),
        runner_up=_accusation(runner),
        seconds=elapsed,
        raw=raw,
    )
