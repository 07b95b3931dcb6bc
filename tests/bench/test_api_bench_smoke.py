"""Smoke test of `bench/api.py`: its `--quick` run builds a small database, starts `leaktrace serve`
and computes both ratios.

The ratio itself is not asserted here (a 2,000-row database on a shared machine says little about
the 100,000-row target); the full run in BENCHMARKS.md does that.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def test_quick_run_computes_both_ratios(tmp_path: Path) -> None:
    out = tmp_path / "api.json"
    cmd = [sys.executable, "-m", "bench.api", "--quick", "--rounds", "3", "--cache-dir", str(tmp_path / "cache"),
           "--json-out", str(out)]  # fmt: skip
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode in (0, 1), proc.stderr[-3000:]
    result = json.loads(out.read_text())
    assert (result["rows"], result["rounds"], result["target"]) == (2000, 3, 3.0)
    by_list = {r["list"]: r for r in result["results"]}
    assert set(by_list) == {"jobs", "backtraces (tag filter)"}
    assert (by_list["jobs"]["rows"], by_list["jobs"]["total"]) == (1000, 2000)
    assert by_list["backtraces (tag filter)"]["rows"] == by_list["backtraces (tag filter)"]["total"] > 0
    for r in result["results"]:
        assert r["api_s"] > 0 and r["query_s"] > 0 and r["orm_query_s"] > 0
        assert math.isclose(r["ratio"], r["api_s"] / r["query_s"])
        assert math.isclose(r["orm_ratio"], r["api_s"] / r["orm_query_s"])
        assert r["api_cpu_s"] >= 0 and r["query_cpu_s"] >= 0
        assert f"| {r['ratio']:.2f} |" in proc.stdout
    # The exit status is the verdict on the ratios.
    assert proc.returncode == (1 if any(r["ratio"] > 3.0 for r in result["results"]) else 0)
    # The database was built in the given cache folder, not under bench/out.
    assert (tmp_path / "cache" / "rows-2000" / "leaktrace.db").exists()
