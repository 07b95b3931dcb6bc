"""Helpers for the API tests: accounts, request bodies, result states, structure comparison."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

from fastapi.testclient import TestClient
from sqlalchemy import select

from leaktrace.config import Settings
from leaktrace.ids import new_id
from leaktrace.store import accounts
from leaktrace.store.db import Database
from leaktrace.store.models import AccessRecord, Backtrace, BacktraceTag, File, Job, Pipeline

PRESET_720P = "525ce63284aed52635e85e02"
ID_PATTERN = re.compile(r"[0-9a-f]{24}")
TIME_KEYS = {"created_at", "updated_at", "finished_at"}


@dataclass
class Account:
    user_id: str
    client_id: str
    client_secret: str
    application_id: str
    pipeline_id: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


def get_token(client: TestClient, client_id: str, secret: str, scope: str | None = None, **extra: str) -> str:
    data = {"grant_type": "client_credentials", "client_id": client_id, "client_secret": secret, **extra}
    if scope is not None:
        data["scope"] = scope
    response = client.post("/v1/oauth2/token/", data=data)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def new_account(client: TestClient, settings: Settings, *, scopes: list[str] | None = None) -> Account:
    db: Database = client.app.state.db  # type: ignore[attr-defined]
    user = accounts.create_user(db, name=f"user-{new_id()[-6:]}", email="someone@example.com")
    app, secret = accounts.create_application(
        db, settings.fernet(), user_id=user.id, name="tests", scopes=scopes or ["me", "mediahub", "autograph"]
    )
    with db.read() as session:
        pipeline_id = session.scalars(select(Pipeline.id).where(Pipeline.user_id == user.id)).one()
    return Account(
        user_id=user.id,
        client_id=app.client_id,
        client_secret=secret,
        application_id=app.id,
        pipeline_id=pipeline_id,
        token=get_token(client, app.client_id, secret),
    )


def job_body(account: Account, **overrides: Any) -> dict[str, Any]:
    job: dict[str, Any] = {
        "pipeline": {"id": account.pipeline_id},
        "input": {"input_name": "uploads/abc/movie.mp4"},
        "outputs": [{"preset": {"id": PRESET_720P}}],
    }
    job.update(overrides)
    return {"job": job}


def submit_job(client: TestClient, account: Account, **overrides: Any) -> dict[str, Any]:
    response = client.post("/v1/jobs/", json=job_body(account, **overrides), headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["job"]


def submit_backtrace(client: TestClient, account: Account, job_id: str, input_name: str = "uploads/leak/copy.mp4") -> dict[str, Any]:
    body = {"backtrace": {"pipeline": {"id": account.pipeline_id}, "input": {"input_name": input_name}}}
    response = client.post(f"/v1/backtraces/?job_id={job_id}", json=body, headers=account.headers)
    assert response.status_code == 201, response.text
    return response.json()["backtrace"]


# ---- result states the processing issues will produce; written directly until they exist ------


def _output_file(session: Any, job: Job, name: str) -> str:
    file = File(user_id=job.user_id, application_id=job.application_id, pipeline_id=job.pipeline_id, job_id=job.id, name=name)
    session.add(file)
    session.flush()
    return file.id


def finish_job(db: Database, job_id: str, *, status: str, percentage: int, error_msg: str | None = None,
               error_code: str | None = None, thumbnails: bool = False) -> None:
    """Put a job into a finished state with output file records, as a job processor would."""
    with db.write() as session:
        job = session.get(Job, job_id)
        assert job is not None
        outputs = []
        for output in job.outputs:
            output = dict(output)
            output["file_id"] = _output_file(session, job, output["output_name"] + ".mp4")
            output["percentage_completed"] = percentage
            if thumbnails:
                output["thumbnail_zip_file_id"] = _output_file(session, job, "thumbnails.zip")
                output["thumbnails"] = [{**t, "file_id": _output_file(session, job, "thumb.jpg")} for t in output["thumbnails"]]
            outputs.append(output)
        job.outputs = outputs
        job.status = status
        job.percentage_completed = percentage
        job.error_msg = error_msg
        job.error_code = error_code
        job.finished_at = job.created_at + 1000


def finish_backtrace(db: Database, backtrace_id: str, extracted_data: list[dict[str, Any]]) -> None:
    """Mark a backtrace SUCCESS with the given tags and record each access the example lists."""
    with db.write() as session:
        backtrace = session.get(Backtrace, backtrace_id)
        assert backtrace is not None
        for position, entry in enumerate(extracted_data):
            session.add(BacktraceTag(backtrace_id=backtrace.id, position=position, autograph_tag=entry["autograph_tag"]))
            for stats in entry["access_stats"]:
                already = session.scalars(
                    select(AccessRecord).where(AccessRecord.job_id == backtrace.job_id, AccessRecord.tag == entry["autograph_tag"])
                ).first()
                if already is not None:
                    continue
                session.add(
                    AccessRecord(
                        user_id=backtrace.user_id,
                        application_id=backtrace.application_id,
                        job_id=backtrace.job_id,
                        tag=entry["autograph_tag"],
                        ip_address=stats["ip_address"],
                        ip_country=stats["ip_country"],
                        ip_type=stats["ip_type"],
                        user_agent=None if stats["user_agent"] == "N/A" else stats["user_agent"],
                        accept_language=None if stats["accept_language"] == "N/A" else stats["accept_language"],
                        first_accessed_at=stats["first_accessed_at"],
                        last_accessed_at=stats["first_accessed_at"],
                        percentage_obtained=float(stats["percentage_obtained"].rstrip("%")),
                        highest_resolution=int(stats["highest_resolution"].rstrip("p")),
                        streaming_only=stats["streaming_only"] == "yes",
                    )
                )
        backtrace.status = "SUCCESS"
        backtrace.percentage_completed = 100
        backtrace.finished_at = backtrace.created_at + 1000


def insert_jobs(db: Database, account: Account, created_at: list[int]) -> None:
    """Bulk-insert plain QUEUED jobs (filler for paging), one per creation time."""
    with db.write() as session:
        session.add_all(
            Job(user_id=account.user_id, application_id=account.application_id, pipeline_id=account.pipeline_id,
                input_name="uploads/filler.mp4", input_file_name="filler.mp4", outputs=[], submitted_keys=[],
                input_options={}, created_at=t, updated_at=t)
            for t in created_at
        )  # fmt: skip


# ---- comparing bodies --------------------------------------------------------------------------


def shape(value: Any) -> Any:
    """Keys (in order) and nesting of a body, with scalars reduced to their JSON type."""
    if isinstance(value, dict):
        return [(key, shape(item)) for key, item in value.items()]
    if isinstance(value, list):
        return [shape(item) for item in value]
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    return "string"


def normalized(value: Any) -> Any:
    """A body with ids replaced by `<id>` and timestamps by `<time>`, for value comparison."""
    if isinstance(value, dict):
        return {k: "<time>" if k in TIME_KEYS and isinstance(v, int) else normalized(v) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(item) for item in value]
    if isinstance(value, str):
        return ID_PATTERN.sub("<id>", value)
    return value


def without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def xml_to_data(text: bytes | str) -> Any:
    """Read the service's XML back into JSON-like data (all scalars as strings)."""
    root = ElementTree.fromstring(text)
    assert root.tag == "response"
    return _element(root)


def _element(element: ElementTree.Element) -> Any:
    if element.get("nil") == "true":
        return None
    if element.get("type") == "array":
        return [_element(child) for child in element]
    if len(element):
        return {child.tag: _element(child) for child in element}
    return element.text or ""


def as_xml_scalars(value: Any) -> Any:
    """A JSON body with scalars written the way the XML carries them."""
    if isinstance(value, dict):
        return {k: as_xml_scalars(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_xml_scalars(item) for item in value]
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return None
    return str(value)


# ---- the reference examples --------------------------------------------------------------------


@dataclass
class Example:
    url: str  # path and query of the example request, e.g. /v1/titles/backtraces/?job_id=…
    body: dict[str, Any] | None  # request body, if any
    response: dict[str, Any]


def _json_after(text: str, start: int) -> tuple[Any, int]:
    index = text.index("{", start)
    value, end = json.JSONDecoder().raw_decode(text, index)
    return value, end


def examples(spec_file: Path) -> list[Example]:
    """Every example request with its documented success response, in document order."""
    text = spec_file.read_text()
    found = []
    for match in re.finditer(r'curl [^\n]*?"https://api\.xvid\.com(/v1/[^"]+)"', text):
        url = match.group(1)
        body = None
        cursor = match.end()
        data_at = text.find("-d '", cursor)
        success_at = text.index("Success (", cursor)
        if 0 <= data_at < success_at:
            body, cursor = _json_after(text, data_at)
        response, _ = _json_after(text, text.index("json", success_at))
        found.append(Example(url=url, body=body, response=response))
    return found
