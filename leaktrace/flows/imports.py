"""Import jobs, start to end: claim, bring the input in, probe, make every output, record, notify.

    claim (lease) ─► input: internal store, or a guarded fetch of a URI ─► probe
      per outputs[] entry:
        plan the rendition from its preset and settings
        AutoGraph off: encode (logo burnt in)              ─► probe ─► store the file
        AutoGraph on:  [encode logo/trim first] ─► prepare A/B with the job's one title key
                       and position grid                    ─► probe a copy ─► store the title
        thumbnails per thumbnails[] ─► store each, a folder per entry, one zip per output
      ─► one transaction: file records + SUCCESS (only while the lease is still ours)

A failure anywhere ends the job FAILURE with a code from `flows.failures` and removes every blob
the attempt stored; a deleted job (or a lost lease) stops the encoders through the heartbeat and
leaves nothing behind either. `recover()` gives jobs whose worker died back to the queue, or fails
them after `max_attempts`, and fails queued jobs past their pipeline's `cancel_timeout`.
"""

from __future__ import annotations

import errno
import logging
import posixpath
import secrets
import shutil
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from leaktrace.autograph import embed
from leaktrace.autograph.package import INIT_FILE, VARIANT_FILES
from leaktrace.flows import failures
from leaktrace.flows.failures import JobFailed
from leaktrace.flows.files import remove_blobs
from leaktrace.flows.lease import Heartbeat, worker_name
from leaktrace.ids import new_id, now_ms
from leaktrace.media import plan as planning
from leaktrace.media import thumbnails, transcode
from leaktrace.media.errors import MediaError
from leaktrace.media.fetch import FetchError, FetchPolicy, fetch, resolve, resolve_logo
from leaktrace.media.logos import LogoOverlay
from leaktrace.media.plan import EncodePlan
from leaktrace.media.probe import MediaInfo, md5_of, probe
from leaktrace.storage import Storage
from leaktrace.storage.scratch import remove_leftovers, workspace
from leaktrace.store import job_runs
from leaktrace.store.db import Database
from leaktrace.store.errors import InvalidInput
from leaktrace.store.job_runs import JobRun, OutputResult, ProducedFile
from leaktrace.store.pipelines import relative_input_path

log = logging.getLogger(__name__)

# Every rendition of a title shares one position grid: positions of this length at the source's
# frame rate, so a viewer's codeword is the same whichever rendition they fetch.
AUTOGRAPH_POSITION_S = 2.0
TITLES_PREFIX = "titles/"  # storage prefix of prepared AutoGraph titles, one folder per output file

# Shares of a job's progress: bringing the input in, then the outputs, then recording.
INPUT_SHARE = 5
RECORD_SHARE = 2
# Within one output: the encode (or prepare), then its thumbnails; of an AutoGraph rendition that
# needs an intermediate encode (logo, excerpt), that encode's share of the prepare's.
ENCODE_SHARE = 0.9
INTERMEDIATE_SHARE = 0.3
THUMBNAIL_ZIP_SUFFIX = "_thumbnails.zip"
COPY_CHUNK_BYTES = 1 << 20

Notify = Callable[[str, str], None]
"""Sends a ping for (job id, event): started, finished, warning, error. Never raises, never blocks."""


@dataclass(frozen=True)
class ImportEnv:
    """What import flows need besides the database: storage, fetch rules, lease, pings."""

    storage: Storage
    data_dir: Path
    fetch_policy: FetchPolicy
    lease_s: float
    max_attempts: int
    notify: Notify
    prepare_workers: int | None = None


# ---- the job, start to end ---------------------------------------------------------------------


def run(db: Database, env: ImportEnv, job_id: str) -> None:
    """Run job `job_id` if it is queued (or its last worker died); return when it has ended."""
    claimed = job_runs.claim(db, job_id=job_id, worker=worker_name(), lease_s=env.lease_s)
    if claimed is None:
        log.info("job %s: nothing to run (deleted, ended, or running elsewhere)", job_id)
        return
    log.info("job %s: attempt %d by %s", job_id, claimed.attempt, claimed.worker)
    env.notify(job_id, "started")

    def renew(percentage: int | None, outputs: list[int] | None) -> bool:
        return job_runs.renew(db, job_id=job_id, worker=claimed.worker, lease_s=env.lease_s,
                              percentage=percentage, output_percentages=outputs)  # fmt: skip

    stored: list[str] = []  # keys (and "…/" prefixes) this attempt wrote, removed unless it succeeds
    with Heartbeat(renew, lease_s=env.lease_s) as beat, workspace(env.data_dir, f"job-{job_id}-{claimed.attempt}") as work:
        try:
            job = _Import(claimed, env, beat, work, stored)
            source, info = job.bring_input()
            results = [job.make_output(index, source, info) for index in range(len(claimed.outputs))]
            if beat.lost or not job_runs.succeed(db, run=claimed, input_media=info.file_columns(), results=results):
                raise _Stop()
        except BaseException as exc:
            remove_blobs(env.storage, stored)
            if isinstance(exc, _Stop) or beat.lost:
                log.info("job %s: stopped (deleted, or its lease moved to another worker)", job_id)
                return
            failed = _as_failure(exc)
            if failed is None:
                raise
            log.warning("job %s failed: %s", job_id, failed.message)
            if job_runs.fail(db, job_id=job_id, worker=claimed.worker, code=failed.failure.code, message=failed.message):
                env.notify(job_id, "error")
            return
    log.info("job %s: SUCCESS", job_id)
    if job.held_titles:
        # The content held the mark under the asked strength (docs/autograph-format.md, Mask):
        # the title is still traced, but the customer may want to know.
        log.info("job %s: AutoGraph renditions held above their PSNR target: %s", job_id, job.held_titles)
        env.notify(job_id, "warning")
    env.notify(job_id, "finished")


class _Stop(Exception):
    """The job is no longer this worker's: stop without recording anything."""


# The job failure each fetch and media error code stands for (others: fetch or transcode failed).
FETCH_FAILURES = {
    "refused_address": failures.REFUSED_ADDRESS, "not_found": failures.INPUT_NOT_FOUND,
    "path_escape": failures.INVALID_SETTINGS, "invalid_uri": failures.INVALID_SETTINGS, "cancelled": failures.CANCELLED,
}  # fmt: skip
MEDIA_FAILURES = {
    "unreadable_input": failures.UNREADABLE_INPUT, "unsupported_codec": failures.UNSUPPORTED_CODEC,
    "out_of_space": failures.OUT_OF_SPACE, "cancelled": failures.CANCELLED,
}  # fmt: skip


def _as_failure(exc: BaseException) -> JobFailed | None:
    """The documented failure for an exception, or None for one that must propagate (KeyboardInterrupt)."""
    if isinstance(exc, JobFailed):
        return exc
    if isinstance(exc, FetchError):
        return JobFailed(FETCH_FAILURES.get(exc.code, failures.FETCH_FAILED), str(exc))
    if isinstance(exc, MediaError):
        return JobFailed(MEDIA_FAILURES.get(exc.code, failures.TRANSCODE_FAILED), str(exc))
    if isinstance(exc, embed.PrepareError):
        return JobFailed(failures.AUTOGRAPH_FAILED, str(exc))
    if isinstance(exc, InvalidInput):
        return JobFailed(failures.INVALID_SETTINGS, str(exc))
    if isinstance(exc, OSError) and exc.errno == errno.ENOSPC:
        return JobFailed(failures.OUT_OF_SPACE)
    if isinstance(exc, Exception):
        log.exception("unexpected error while processing a job")
        return JobFailed(failures.INTERNAL, type(exc).__name__)
    return None


# ---- the steps of one job --------------------------------------------------------------------------


class _Import:
    """The steps of one attempt at one job, sharing its workspace, heartbeat and progress."""

    def __init__(self, run: JobRun, env: ImportEnv, beat: Heartbeat, work: Path, stored: list[str]) -> None:
        self.run = run
        self.env = env
        self.beat = beat
        self.work = work
        self.stored = stored
        self.title_key = secrets.token_bytes(32)  # one per job: every rendition carries the same codewords
        self.policy = env.fetch_policy.with_download_options(run.pipeline.get("download_options"))
        self.output_share = (100 - INPUT_SHARE - RECORD_SHARE) / len(run.outputs)
        self.output_done = [0] * len(run.outputs)
        self.held_titles: list[str] = []  # AutoGraph renditions the content held above their target

    def _report(self, index: int | None = None, fraction: float = 0.0) -> None:
        if index is not None:
            self.output_done[index] = min(99, int(fraction * 100))
        overall = INPUT_SHARE + sum(done * self.output_share / 100 for done in self.output_done)
        self.beat.report(min(99, int(overall)), self.output_done)

    # the input --------------------------------------------------------------------------------------

    def bring_input(self) -> tuple[Path, MediaInfo]:
        """The input as a local file (fetched, or read in place from the store), and its probe."""
        run = self.run
        uri = resolve(run.pipeline.get("input_download_dir"), run.input_name)
        if uri is not None:
            local = self.work / "input" / (posixpath.basename(urlsplit(uri).path) or "input")
            local.parent.mkdir()
            fetch(uri, local, policy=self.policy, cancelled=self.beat.cancelled)
        else:
            local = self._from_store(relative_input_path(run.input_name), what="input")
        info = probe(local)
        self._report()
        return local, info

    def _from_store(self, path: str, *, what: str) -> Path:
        """A file of the pipeline's store as a local path (in place when the storage is local)."""
        storage = self.env.storage
        key = self.run.pipeline_folder + path
        if storage.stat(key) is None:
            raise JobFailed(failures.INPUT_NOT_FOUND, f"{what} {path} is not in the pipeline's store")
        local = storage.local_path(key)
        if local is None:
            local = self.work / f"store-{new_id()}{posixpath.splitext(path)[1]}"
            storage.download(key, local)
        return local

    def _logo(self, logo: dict[str, Any]) -> LogoOverlay:
        image = logo["logo_image"]
        uri = resolve_logo(self.run.pipeline.get("image_download_dir"), image)
        if uri is None:
            return LogoOverlay(image=self._from_store(relative_input_path(image), what="logo"), preset=logo["logo_preset"])
        local = self.work / f"logo-{new_id()}{posixpath.splitext(urlsplit(uri).path)[1]}"
        fetch(uri, local, policy=self.policy, cancelled=self.beat.cancelled)
        return LogoOverlay(image=local, preset=logo["logo_preset"])

    # one output -------------------------------------------------------------------------------------

    def make_output(self, index: int, source: Path, info: MediaInfo) -> OutputResult:
        """Encode (or prepare) output `index`, store it with its thumbnails; return its records."""
        run = self.run
        output = run.outputs[index]
        preset = run.presets[output["preset_id"]]
        target_format = preset["target_format"]
        plan = transcode.plan_output(
            info, target_format=target_format, preset_settings=preset["settings"],
            output_settings=output.get("settings"), input_options=run.input_options, autograph=run.autograph is not None,
        )  # fmt: skip
        extension = target_format.get("extension") or plan.container
        name = _object_name(output["output_name"], resolution=plan.resolution, extension=extension)
        logo = self._logo(output["logos"][0]) if output.get("logos") else None

        def progress(fraction: float) -> None:
            self._report(index, fraction * ENCODE_SHARE)

        if plan.autograph:
            produced = self._prepare(index, name, source, plan, logo, progress)
            pictures_from = source
        else:
            local = self.work / f"output-{index}.{extension}"
            transcode.encode(source, local, plan, logo=logo, progress=progress, cancelled=self.beat.cancelled)
            media = probe(local).file_columns()
            key = self._key(name)
            self._put(key, local)
            produced = ProducedFile(id=new_id(), name=name, storage_key=key, subtype="video", media=media)
            pictures_from = self.env.storage.local_path(key) or local
        result = self._thumbnails(index, output, pictures_from, plan, produced)
        self._report(index, 1.0)
        return result

    def _key(self, name: str) -> str:
        """The storage key of a file named `name` under the job's `output_prefix`."""
        return self.run.pipeline_folder + relative_input_path(self.run.output_prefix + name, label="output name")

    def _prepare(self, index: int, name: str, source: Path, plan: EncodePlan, logo: LogoOverlay | None,
                 progress: Callable[[float], None]) -> ProducedFile:
        """Prepare the A/B variants of one rendition (one title key, one grid) and store the title."""
        strength = (self.run.autograph or {}).get("watermark_strength", "light")
        start, span = 0.0, 1.0
        if planning.needs_intermediate(plan, logo=logo is not None):
            # The engine marks what it is given: burn the logo in and cut the excerpt first.
            staged = self.work / f"intermediate-{index}.{planning.INTERMEDIATE_CONTAINER}"
            transcode.encode(source, staged, planning.intermediate(plan), logo=logo,
                             progress=lambda f: progress(f * INTERMEDIATE_SHARE), cancelled=self.beat.cancelled)  # fmt: skip
            source, start, span = staged, INTERMEDIATE_SHARE, 1.0 - INTERMEDIATE_SHARE
        folder = self.work / f"title-{index}"
        manifest = embed.prepare(
            source, folder, strength=strength, position_seconds=AUTOGRAPH_POSITION_S, height=plan.height,
            key=self.title_key, workers=self.env.prepare_workers, cancelled=self.beat.cancelled,
            progress=lambda done, total: progress(start + span * done / max(total, 1)),
        )  # fmt: skip
        if not manifest["pattern"]["target_reached"]:
            self.held_titles.append(name)
        # What a viewer gets is a copy; its media fields are those of variant A's copy.
        copy = self.work / f"title-{index}-copy.mp4"
        _concatenate(copy, [folder / INIT_FILE, folder / VARIANT_FILES["A"]])
        media = probe(copy).file_columns()
        copy.unlink()
        media["size_on_disk"] = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        file_id = new_id()
        prefix = f"{TITLES_PREFIX}{file_id}/"
        self.stored.append(prefix)
        self.env.storage.put_tree(prefix, folder)
        return ProducedFile(id=file_id, name=name, storage_key=prefix, subtype="video", autograph=True, media=media)

    def _thumbnails(self, index: int, output: dict[str, Any], source: Path, plan: EncodePlan,
                    produced: ProducedFile) -> OutputResult:
        """Thumbnails per `thumbnails[]` entry: image files, a folder record each, one zip of all."""
        entries = output.get("thumbnails") or []
        if not entries:
            return OutputResult(file=produced)
        folders: list[ProducedFile] = []
        images: list[ProducedFile] = []
        stored_paths: list[Path] = []
        duration_ms = int(produced.media.get("duration") or 0)
        for number, entry in enumerate(entries):
            outdir = self.work / f"thumbnails-{index}-{number}"
            outdir.mkdir()
            made = thumbnails.make_thumbnails(
                source, outdir, preset=entry["thumbnail_preset"], names=entry.get("thumbnail_names"),
                resolution=plan.resolution, duration_ms=duration_ms, cancelled=self.beat.cancelled,
            )  # fmt: skip
            folder_id = new_id()
            children = []
            for path in made:
                media = probe(path).file_columns()
                key = self._key(path.name)
                self._put(key, path)
                stored_paths.append(self.env.storage.local_path(key) or path)
                image = ProducedFile(id=new_id(), name=path.name, storage_key=key, subtype="image", media=media,
                                     parents=[{"id": folder_id, "type": "folder", "is_root": False}])  # fmt: skip
                images.append(image)
                children.append({"id": image.id, "name": image.name})
            folders.append(ProducedFile(id=folder_id, name=entry["thumbnail_preset"], storage_key=None, type="folder",
                                        elements=children))  # fmt: skip
        zip_name = posixpath.splitext(produced.name)[0] + THUMBNAIL_ZIP_SUFFIX
        zip_local = thumbnails.zip_files(stored_paths, self.work / f"thumbnails-{index}.zip")
        media = {"size": zip_local.stat().st_size, "mime_type": "application/zip", "md5_checksum": md5_of(zip_local)}
        zip_key = self._key(zip_name)
        self._put(zip_key, zip_local)
        archive = ProducedFile(id=new_id(), name=zip_name, storage_key=zip_key, type="archive", subtype="zip",
                               media=media, elements=[{"id": image.id, "name": image.name} for image in images])  # fmt: skip
        return OutputResult(file=produced, thumbnail_folders=folders, thumbnails=images, thumbnail_zip=archive)

    def _put(self, key: str, local: Path) -> None:
        self.stored.append(key)
        self.env.storage.put_file(key, local)


# ---- recovery -------------------------------------------------------------------------------------


def recover(db: Database, env: ImportEnv, submit: Callable[[str], None]) -> None:
    """Requeue jobs whose worker died (or fail them after `max_attempts`); fail queued jobs past
    their pipeline's `cancel_timeout`; remove dead workers' workspaces. Safe to run from every
    worker at once."""
    for name in remove_leftovers(env.data_dir):
        log.info("removed the workspace %s of a worker that is gone", name)
    now = now_ms()
    for stalled in job_runs.stalled(db, now=now):
        if stalled.attempts >= env.max_attempts:
            detail = f"after {stalled.attempts} attempts, each lost with its worker"
            if job_runs.fail(db, job_id=stalled.job_id, code=failures.WORKER_LOST.code,
                             message=f"{failures.WORKER_LOST.summary} {detail}"):  # fmt: skip
                env.notify(stalled.job_id, "error")
        elif job_runs.requeue(db, job_id=stalled.job_id, now=now):
            log.warning("job %s: its worker stopped renewing the lease; queued again", stalled.job_id)
            submit(stalled.job_id)
    for job_id in job_runs.overdue(db, now=now):
        message = f"{failures.CANCELLED.summary}: queued longer than the pipeline's cancel_timeout"
        if job_runs.fail(db, job_id=job_id, code=failures.CANCELLED.code, message=message):
            env.notify(job_id, "error")


# ---- helpers --------------------------------------------------------------------------------------


def _object_name(template: str, *, resolution: str, extension: str) -> str:
    """The output's file name: the template with `{resolution}`, ending in the preset's extension."""
    name = template.replace("{resolution}", resolution)
    return name if name.lower().endswith("." + extension.lower()) else f"{name}.{extension}"


def _concatenate(target: Path, parts: list[Path]) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                shutil.copyfileobj(src, out, COPY_CHUNK_BYTES)
