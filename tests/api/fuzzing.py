"""Fuzzing the whole API with schemathesis: every operation `/v1/openapi.json` lists.

`fuzz(app, ...)` loads the app's own OpenAPI document, so a route added later is fuzzed without
any change here. For each operation it draws `examples` requests from the operation's schema
(valid ones, then as many invalid ones), each sent with one of the given tokens (one per scope,
all scopes, none, an unknown one) and, half of the time, with the ids of real objects of the
account in the path and in body references, so requests get past "not found" into the code that
stores and presents objects; a quarter ask for `format=xml`. Every response must be:

- no 5xx (`not_a_server_error`);
- a body matching the operation's documented response schema (`response_schema_conformance`);
- XML that parses, when XML was asked for.

Requests go through the ASGI app in-process (no server), so the run is bounded by CPU only.
"""

from __future__ import annotations

import random
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree

import schemathesis
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st
from hypothesis.errors import FlakyStrategyDefinition
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error, response_schema_conformance
from schemathesis.core.failures import FailureGroup

CHECKS = [not_a_server_error, response_schema_conformance]
CHUNK_EXAMPLES = 50
ID_KEYS = {"pipeline_id": "pipeline", "preset_id": "preset"}  # body keys naming another object
REFERENCE_KEYS = {"pipeline": "pipeline", "preset": "preset"}  # body keys holding {"id": ...}


@dataclass
class FuzzReport:
    """What one run sent and found."""

    seed: int
    examples: int
    requests: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    server_errors: int = 0
    schema_violations: int = 0
    xml_errors: int = 0
    generator_restarts: int = 0
    failures: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    @property
    def failed(self) -> bool:
        return bool(self.server_errors or self.schema_violations or self.xml_errors)

    def summary(self) -> str:
        return (
            f"fuzz: seed={self.seed} examples/operation/mode={self.examples} requests={self.requests} "
            f"server_errors={self.server_errors} schema_violations={self.schema_violations} "
            f"xml_errors={self.xml_errors} generator_restarts={self.generator_restarts} duration_s={self.duration_s:.1f} "
            f"statuses={dict(sorted(self.statuses.items()))}"
        )


def fuzz(app: Any, *, tokens: dict[str, str | None], ids: dict[str, list[str]], seed_value: int, examples: int) -> FuzzReport:
    """Fuzz every operation of `app`'s OpenAPI document; `ids` maps a kind (`job`, `pipeline`, …)
    to real ids of the fuzzing account."""
    schema = schemathesis.openapi.from_asgi("/v1/openapi.json", app)
    report = FuzzReport(seed=seed_value, examples=examples)
    started = time.monotonic()
    for result in schema.get_all_operations():
        operation = result.ok()
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _fuzz_operation(operation, mode, tokens=tokens, ids=ids, report=report)
    report.duration_s = time.monotonic() - started
    return report


def _fuzz_operation(operation: Any, mode: GenerationMode, *, tokens: dict[str, str | None], ids: dict[str, list[str]],
                    report: FuzzReport) -> None:  # fmt: skip
    """`report.examples` requests in runs of at most `CHUNK_EXAMPLES`, each run on its own seed."""
    for chunk, start in enumerate(range(0, report.examples, CHUNK_EXAMPLES)):
        count = min(CHUNK_EXAMPLES, report.examples - start)
        try:
            _fuzz_run(operation, mode, tokens=tokens, ids=ids, report=report, seed_value=report.seed + chunk, count=count)
        except FlakyStrategyDefinition:
            # schemathesis's invalid-data strategies now and then draw differently from the same
            # choices, which Hypothesis refuses; that run ends early, the next starts afresh.
            report.generator_restarts += 1


def _fuzz_run(operation: Any, mode: GenerationMode, *, tokens: dict[str, str | None], ids: dict[str, list[str]],
              report: FuzzReport, seed_value: int, count: int) -> None:  # fmt: skip
    @seed(seed_value)
    @settings(
        max_examples=count, deadline=None, database=None, phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
    )  # fmt: skip
    @given(case=operation.as_strategy(generation_mode=mode), token=st.sampled_from(sorted(tokens)),
           real_ids=st.booleans(), xml=st.integers(0, 3), pick=st.randoms(use_true_random=False))  # fmt: skip
    def run(case: Any, token: str, real_ids: bool, xml: int, pick: random.Random) -> None:
        if real_ids:
            _use_real_ids(case, ids, pick)
        headers = {"Authorization": f"Bearer {tokens[token]}"} if tokens[token] else {}
        params = {"format": "xml"} if xml == 0 else None
        response = case.call(headers=headers, params=params)
        report.requests += 1
        report.statuses[response.status_code] += 1
        label = f"{operation.label} [{mode.value}, token {token}] -> {response.status_code}"
        if params:
            if response.status_code >= 500:
                report.server_errors += 1
                report.failures.append(f"{label}: server error\n  {case.as_curl_command()}")
            elif _content_type(response).startswith("application/xml"):
                try:
                    ElementTree.fromstring(response.content)
                except ElementTree.ParseError as exc:
                    report.xml_errors += 1
                    report.failures.append(f"{label}: XML not well formed ({exc}): {case.as_curl_command()}")
            return
        try:
            case.validate_response(response, checks=CHECKS)
        except FailureGroup as group:
            for failure in group.exceptions:
                if response.status_code >= 500:
                    report.server_errors += 1
                else:
                    report.schema_violations += 1
                report.failures.append(f"{label}: {failure.title}: {failure.message[:500]}\n  {case.as_curl_command()}")

    run()


def _content_type(response: Any) -> str:
    for name, values in response.headers.items():
        if name.lower() == "content-type":
            return values[0] if isinstance(values, list) else values
    return ""


def _use_real_ids(case: Any, ids: dict[str, list[str]], pick: random.Random) -> None:
    """Put real ids where the case names objects: `{kind}_id` path parameters, body references."""
    for name in list(case.path_parameters or {}):
        kind = name.removesuffix("_id")
        if ids.get(kind):
            case.path_parameters[name] = pick.choice(ids[kind])
    if isinstance(case.body, dict):
        for envelope in case.body.values():
            if isinstance(envelope, dict):
                _replace_references(envelope, ids, pick)


def _replace_references(body: dict[str, Any], ids: dict[str, list[str]], pick: random.Random) -> None:
    for key, value in list(body.items()):
        if key in ID_KEYS and ids.get(ID_KEYS[key]):
            body[key] = pick.choice(ids[ID_KEYS[key]])
        elif key in REFERENCE_KEYS and isinstance(value, dict) and ids.get(REFERENCE_KEYS[key]):
            value["id"] = pick.choice(ids[REFERENCE_KEYS[key]])
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict):
                    _replace_references(item, ids, pick)
        elif isinstance(value, dict):
            _replace_references(value, ids, pick)
