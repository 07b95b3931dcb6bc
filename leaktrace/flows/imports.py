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
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from leaktrace.autograph import embed
from leaktrace.autograph.package import INDEX_FILE, INIT_FILE, VARIANT_FILES
from leaktrace.flows import failures
from leaktrace.flows.failures import JobFailed
from leaktrace.flows.lease import Heartbeat, worker_name
from leaktrace.ids import new_id, now_ms
from leaktrace.media import logos, thumbnails, transcode
from leaktrace.media.errors import MediaError
from leaktrace.media.fetch import FetchError, FetchPolicy, fetch, redact
from leaktrace.media.probe import probe
from leaktrace.storage import Storage, workspace
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
# Within one output: the encode (or prepare), then its thumbnails.
ENCODE_SHARE = 0.9

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
    run_ = job_runs.claim(db, job_id=job_id, worker=worker_name(), lease_s=env.lease_s)
    if run_ is None:
        log.info("job %s: nothing to run (deleted, ended, or running elsewhere)", job_id)
        return
    log.info("job %s: attempt %d by %s", job_id, run_.attempt, run_.worker)
    env.notify(job_id, "started")

    def renew(percentage: int | None, outputs: list[int] | None) -> bool:
        return job_runs.renew(db, job_id=job_id, worker=run_.worker, lease_s=env.lease_s,
                              percentage=percentage, output_percentages=outputs)  # fmt: skip

    stored: list[str] = []  # keys (and "…/" prefixes) this attempt wrote, removed unless it succeeds
    with Heartbeat(renew, lease_s=env.lease_s) as beat, workspace(env.data_dir, f"job-{job_id}-{run_.attempt}") as work:
        try:
            job = _Import(run_, env, beat, work, stored)
            source, source_media = job.bring_input()
            results = [job.make_output(index, source, source_media) for index in range(len(run_.outputs))]
            if beat.lost or not job_runs.succeed(db, run=run_, input_media=source_media, results=results):
                raise _Stop()
        except _Stop:
            _remove(env.storage, stored)
            log.info("job %s: stopped (deleted, or its lease moved to another worker)", job_id)
            return
        except BaseException as exc:
            _remove(env.storage, stored)
            if beat.lost:
                log.info("job %s: stopped (deleted, or its lease moved to another worker)", job_id)
                return
            failed = _as_failure(exc)
            if failed is None:
                raise
            log.warning("job %s failed: %s", job_id, failed.message)
            if job_runs.fail(db, job_id=job_id, worker=run_.worker, code=failed.failure.code, message=failed.message):
                env.notify(job_id, "error")
            return
    log.info("job %s: SUCCESS", job_id)
    env.notify(job_id, "finished")


class _Stop(Exception):
    """The job is no longer this worker's: stop without recording anything."""


def _as_failure(exc: BaseException) -> JobFailed | None:
    """The documented failure for an exception, or None for one that must propagate (KeyboardInterrupt)."""
    if isinstance(exc, JobFailed):
        return exc
    if isinstance(exc, FetchError):
        table = {"refused_address": failures.REFUSED_ADDRESS, "not_found": failures.INPUT_NOT_FOUND,
                 "path_escape": failures.INVALID_SETTINGS, "cancelled": failures.CANCELLED}  # fmt: skip
        return JobFailed(table.get(exc.code, failures.FETCH_FAILED), str(exc))
    if isinstance(exc, MediaError):
        table = {"unreadable_input": failures.UNREADABLE_INPUT, "unsupported_codec": failures.UNSUPPORTED_CODEC,
                 "out_of_space": failures.OUT_OF_SPACE, "cancelled": failures.CANCELLED}  # fmt: skip
        return JobFailed(table.get(exc.code, failures.TRANSCODE_FAILED), str(exc))
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


def _remove(storage: Storage, keys: list[str]) -> None:
    for key in reversed(keys):
        try:
            if key.endswith("/"):
                storage.delete_prefix(key)
            else:
                storage.delete(key)
        except Exception:
            log.warning("could not remove a partial blob; it is left for the storage's own cleanup", exc_info=True)


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
        self.output_share = (100 - INPUT_SHARE - RECORD_SHARE) / len(run.outputs)
        self.output_done = [0] * len(run.outputs)

    # progress -------------------------------------------------------------------------------------

    def _report(self, index: int | None = None, fraction: float = 0.0) -> None:
        if index is not None:
            self.output_done[index] = min(99, int(fraction * 100))
        overall = INPUT_SHARE + sum(done * self.output_share / 100 for done in self.output_done)
        self.beat.report(min(99, int(overall)), self.output_done)

    # the input --------------------------------------------------------------------------------------

    def bring_input(self) -> tuple[Path, dict[str, Any]]:
        """The input as a local file, and its media fields for the input's file record."""
        run, storage = self.run, self.env.storage
        name = run.input_name
        if "://" in name or run.pipeline.get("input_download_dir"):
            uri = name if "://" in name else _join(run.pipeline["input_download_dir"], relative_input_path(name))
            local = self.work / "input" / (posixpath.basename(name.split("?")[0]) or "input")
            local.parent.mkdir()
            fetch(uri, local, policy=self._policy(), cancelled=self.beat.cancelled)
        else:
            key = run.pipeline_folder + relative_input_path(name)
            if storage.stat(key) is None:
                raise JobFailed(failures.INPUT_NOT_FOUND, f"{name} is not in the pipeline's store")
            local = storage.local_path(key) or self.work / "input" / posixpath.basename(key)
            if not local.exists():
                local.parent.mkdir()
                storage.download(key, local)
        media = probe(local).file_fields()
        self._report()
        return local, media

    def _policy(self) -> FetchPolicy:
        check = (self.run.pipeline.get("download_options") or {}).get("https_certificate_check")
        return self.env.fetch_policy if check is None else replace(self.env.fetch_policy, verify_certificates=bool(check))

    # one output -------------------------------------------------------------------------------------

    def make_output(self, index: int, source: Path, source_media: dict[str, Any]) -> OutputResult:
        """Encode (or prepare) output `index`, store it with its thumbnails; return its records."""
        run = self.run
        output = run.outputs[index]
        preset = run.presets[output["preset_id"]]
        autograph = run.autograph is not None
        plan = transcode.plan_output(
            _media_info(source), target_format=preset["target_format"], preset_settings=preset["settings"],
            output_settings=output.get("settings"), input_options=run.input_options, autograph=autograph,
        )  # fmt: skip
        file_id = new_id()
        name = _object_name(output["output_name"], resolution=plan.resolution, extension=plan.extension)
        overlays = [self._logo(logo) for logo in output.get("logos") or ()]

        def progress(fraction: float) -> None:
            self._report(index, fraction * ENCODE_SHARE)

        if autograph:
            produced = self._prepare(index, file_id, name, source, plan, overlays, progress)
        else:
            local = self.work / f"output-{index}.{plan.extension}"
            transcode.encode(source, local, plan, logo=overlays[0] if overlays else None, progress=progress,
                             cancelled=self.beat.cancelled)  # fmt: skip
            key = run.pipeline_folder + relative_input_path(run.output_prefix + name)
            media = probe(local).file_fields()
            self._put(key, local)
            produced = ProducedFile(id=file_id, name=name, storage_key=key, subtype="video", media=media)
        thumbs = self._thumbnails(index, output, source if autograph else self._local(produced), plan, source_media)
        self._report(index, 1.0)
        return replace(thumbs, file=produced)

    def _prepare(self, index: int, file_id: str, name: str, source: Path, plan: Any, overlays: list[Any],
                 progress: Callable[[float], None]) -> ProducedFile:
        """Prepare the A/B variants of one rendition and store the title folder."""
        strength = (self.run.autograph or {}).get("watermark_strength", "light")
        if overlays or plan.trims_input:
            # The engine marks what it is given: burn the logo and cut the excerpt first, near-losslessly.
            intermediate = self.work / f"intermediate-{index}.mkv"
            transcode.encode(source, intermediate, plan.intermediate(), logo=overlays[0] if overlays else None,
                             progress=lambda f: progress(f * 0.3), cancelled=self.beat.cancelled)  # fmt: skip
            source, offset, scale = intermediate, 0.3, 0.7
        else:
            offset, scale = 0.0, 1.0
        folder = self.work / f"title-{index}"
        embed.prepare(
            source, folder, strength=strength, position_seconds=AUTOGRAPH_POSITION_S, height=plan.height,
            key=self.title_key, workers=self.env.prepare_workers, cancelled=self.beat.cancelled,
            progress=lambda done, total: progress(offset + scale * done / max(total, 1)),
        )  # fmt: skip
        copy = self.work / f"title-{index}-copy.mp4"
        _concatenate(copy, [folder / INIT_FILE, folder / VARIANT_FILES["A"]])
        media = probe(copy).file_fields()
        media["size_on_disk"] = sum(path.stat().st_size for path in folder.iterdir() if path.is_file())
        copy.unlink()
        prefix = f"{TITLES_PREFIX}{file_id}/"
        self.stored.append(prefix)
        self.env.storage.put_tree(prefix, folder)
        return ProducedFile(id=file_id, name=name, storage_key=prefix, subtype="video", autograph=True, media=media)

    def _logo(self, logo: dict[str, Any]) -> Any:
        image = logo["logo_image"]
        base = self.run.pipeline.get("image_download_dir")
        uri = image if "://" in image else (_join(base, relative_input_path(image)) if base else None)
        if uri is None:
            key = self.run.pipeline_folder + relative_input_path(image)
            if self.env.storage.stat(key) is None:
                raise JobFailed(failures.INPUT_NOT_FOUND, f"logo {image} is not in the pipeline's store")
            local = self.env.storage.local_path(key) or self.work / f"logo-{new_id()}"
            if not local.exists():
                self.env.storage.download(key, local)
        else:
            local = self.work / f"logo-{new_id()}{posixpath.splitext(image)[1][:8]}"
            fetch(uri, local, policy=self._policy(), cancelled=self.beat.cancelled)
        return logos.LogoOverlay(image=local, preset=logo["logo_preset"])

    def _thumbnails(self, index: int, output: dict[str, Any], source: Path, plan: Any,
                    source_media: dict[str, Any]) -> OutputResult:
        """Thumbnails per `thumbnails[]` entry: image files, a folder record each, one zip of all."""
        entries = output.get("thumbnails") or []
        placeholder = ProducedFile(id="", name="", storage_key=None)
        if not entries:
            return OutputResult(file=placeholder)
        run = self.run
        folders: list[ProducedFile] = []
        images: list[ProducedFile] = []
        paths: list[Path] = []
        for number, entry in enumerate(entries):
            outdir = self.work / f"thumbnails-{index}-{number}"
            outdir.mkdir()
            made = thumbnails.make_thumbnails(
                source, outdir, preset=entry["thumbnail_preset"], names=entry.get("thumbnail_names") or "thumb_{resolution}",
                resolution=plan.resolution, duration_ms=source_media.get("duration") or 0, cancelled=self.beat.cancelled,
            )  # fmt: skip
            folder_id = new_id()
            folder_key = run.pipeline_folder + relative_input_path(run.output_prefix or ".") + "/"
            children = []
            for path in made:
                key = run.pipeline_folder + relative_input_path(run.output_prefix + path.name)
                self._put(key, path)
                image = ProducedFile(id=new_id(), name=path.name, storage_key=key, subtype="image",
                                     media=probe(self._stored_path(key, path)).file_fields(),
                                     parents=[{"id": folder_id, "type": "folder", "is_root": False}])  # fmt: skip
                images.append(image)
                children.append({"id": image.id, "name": image.name})
                paths.append(self._stored_path(key, path))
            folders.append(ProducedFile(id=folder_id, name=f"{entry['thumbnail_preset']}", storage_key=folder_key,
                                        type="folder", elements=children))  # fmt: skip
        zip_name = f"{posixpath.splitext(_object_name(output['output_name'], resolution=plan.resolution, extension='zip'))[0]}_thumbnails.zip"
        zip_local = self.work / f"thumbnails-{index}.zip"
        thumbnails.zip_files(paths, zip_local)
        zip_key = run.pipeline_folder + relative_input_path(run.output_prefix + zip_name)
        media = {"size": zip_local.stat().st_size, "mime_type": "application/zip", "md5_checksum": _md5(zip_local)}
        self._put(zip_key, zip_local)
        archive = ProducedFile(id=new_id(), name=zip_name, storage_key=zip_key, type="archive", subtype="zip",
                               media=media, elements=[{"id": image.id, "name": image.name} for image in images])  # fmt: skip
        return OutputResult(file=placeholder, thumbnail_folders=folders, thumbnails=images, thumbnail_zip=archive)

    # storage ------------------------------------------------------------------------------------------

    def _put(self, key: str, local: Path) -> None:
        self.stored.append(key)
        self.env.storage.put_file(key, local)

    def _stored_path(self, key: str, local: Path) -> Path:
        """A readable local copy of a blob just stored from `local` (moved in, or copied)."""
        return self.env.storage.local_path(key) or local

    def _local(self, produced: ProducedFile) -> Path:
        assert produced.storage_key is not None
        path = self.env.storage.local_path(produced.storage_key)
        if path is None:
            path = self.work / f"stored-{produced.id}"
            self.env.storage.download(produced.storage_key, path)
        return path


# ---- recovery -------------------------------------------------------------------------------------


def recover(db: Database, env: ImportEnv, submit: Callable[[str], None]) -> None:
    """Requeue jobs whose worker died (or fail them after `max_attempts`); fail queued jobs past
    their pipeline's `cancel_timeout`. Safe to run from every worker at once."""
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


def _join(base: str, relative: str) -> str:
    return base.rstrip("/") + "/" + relative


def _object_name(template: str, *, resolution: str, extension: str) -> str:
    """The output's file name: the template with `{resolution}`, ending in the preset's extension."""
    name = template.replace("{resolution}", resolution)
    return name if name.lower().endswith("." + extension.lower()) else f"{name}.{extension}"


def _concatenate(target: Path, parts: list[Path]) -> None:
    with open(target, "wb") as out:
        for part in parts:
            with open(part, "rb") as src:
                while chunk := src.read(1 << 20):
                    out.write(chunk)


def _md5(path: Path) -> str:
    import hashlib

    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as src:
        while chunk := src.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _media_info(path: Path) -> Any:
    return probe(path)


__all__ = ["AUTOGRAPH_POSITION_S", "ImportEnv", "recover", "redact", "run", "INDEX_FILE"]
