"""Import jobs through the HTTP API of a real service, each a ratio against the same work done by hand.

Measured in one run, on a 720p master of about 60 s built from the 720p test clips:

1. a job with one 720p H.264 output (system preset "MP4 720p H.264 AAC"), from `POST /v1/jobs` to
   SUCCESS seen by polling every 0.2 s, against the same encode run as a plain `ffmpeg` command
   (the arguments come from the job's own plan: `media.plan.plan_output` and the argument builder
   of `media.transcode`, so both encodes are identical; target <= 1.15);
2. an AutoGraph job (`watermark_strength` medium) with the same output, against the same plain
   encode (target <= 1.5);
3. upload throughput of the master through the upload flow (initiate, form POSTs in chunks
   streamed from disk, completion until COMPLETED) against `shutil.copyfile` + fsync of it;
4. prepare's CPU time over a plain encode's with the engine's own settings, and the parallel
   efficiency of the chunked prepare with 1 and 2 workers: `bench.speed`'s measurements, on
   this master and the service's 2 s positions.

The service is `leaktrace serve` in its own process on a free loopback port, with its own data
folder (embedded worker, SQLite, local storage) and an account made by `leaktrace admin
create-app`. Jobs run in rounds of (job, plain encode, AutoGraph job), `repeats` times, so each
plain encode sees the load its two jobs see on a shared machine; a ratio is the median of the
rounds' ratios. The engine measurements run after the service stops.

    .venv/bin/python -m bench.jobs            # full run, writes BENCHMARKS.md
    .venv/bin/python -m bench.jobs --quick    # tiny master, seconds, no write
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import media, report, speed
from bench.api import _free_port as free_port
from bench.speed import log
from leaktrace.autograph.package import MANIFEST_FILE
from leaktrace.config import Settings
from leaktrace.flows.imports import TITLES_PREFIX
from leaktrace.media import transcode
from leaktrace.media.ffmpeg import FFMPEG
from leaktrace.media.probe import probe as probe_input
from leaktrace.storage import open_storage
from leaktrace.store import presets
from leaktrace.store.db import open_database

PRESET_720P = "525ce63284aed52635e85e02"  # "MP4 720p H.264 AAC"
TARGETS = {"job": 1.15, "autograph_job": 1.5, "prepare_cpu": speed.TARGETS["prepare_cpu"]}
POLL_S = 0.2  # how often a job is polled
UPLOAD_POLL_S = 0.05  # how often a completing upload is polled: finer, its assembly takes well under a second
JOB_TIMEOUT_S = 900.0
START_TIMEOUT_S = 120.0
READ_BYTES = 1 << 20  # the upload body is read from disk in pieces of this size
SERVICE_SECRET_KEY = "bench-jobs-key"
STRENGTH = "medium"
SECTION = "jobs"


@dataclass(frozen=True)
class Config:
    master: media.MasterSpec
    repeats: int  # rounds of (job, plain encode, AutoGraph job)
    upload_repeats: int  # pairs of (upload, file copy)
    upload_chunk_bytes: int
    engine_repeats: int  # prepare / plain pairs, and 1- / 2-worker prepares (bench.speed)
    position_seconds: float  # the service prepares 2 s positions (flows.imports.AUTOGRAPH_POSITION_S)


MASTER_720P = media.MasterSpec(width=1280, height=720, fps=25, seconds=60.0, crf=10,
                               clips=("bbb_0-30s_720p24.webm", "squirrel_720p25_10s.mp4",
                                      "cockatoo_720p20_14s.mp4", "plane_clouds_720p30_6s.mp4"))
# Quick: a few seconds of a small picture, and chunks small enough that the upload has several.
QUICK_MASTER = media.MasterSpec(width=480, height=270, fps=25, seconds=6.0, crf=18,
                                clips=("squirrel_720p25_10s.mp4",))
FULL = Config(master=MASTER_720P, repeats=3, upload_repeats=3, upload_chunk_bytes=64 << 20,
              engine_repeats=1, position_seconds=2.0)
QUICK = Config(master=QUICK_MASTER, repeats=1, upload_repeats=1, upload_chunk_bytes=64 << 10,
               engine_repeats=1, position_seconds=2.0)


# ---- the service ----------------------------------------------------------------------------------


def service_settings(data_dir: Path) -> Settings:
    """The service's settings as `serve` reads them from `_service_env` (defaults under `data_dir`)."""
    return Settings(data_dir=data_dir, database_url=None, queue_url=None, storage_url=None,
                    secret_key=SERVICE_SECRET_KEY)


def _service_env(data_dir: Path) -> dict[str, str]:
    """This environment without any LEAKTRACE_ setting, plus the service's own data folder and key."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("LEAKTRACE_")}
    env.update(LEAKTRACE_DATA_DIR=str(data_dir), LEAKTRACE_SECRET_KEY=SERVICE_SECRET_KEY)
    return env


def _leaktrace(*args: str, env: dict[str, str]) -> str:
    cmd = [sys.executable, "-m", "leaktrace.cli", *args]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, cwd=media.REPO_ROOT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}: {proc.stderr[-2000:]}")
    return proc.stdout


@dataclass
class Service:
    """A running `leaktrace serve` and an account on it."""

    base_url: str
    pid: int
    data_dir: Path
    client: httpx.Client
    pipeline_id: str


@contextlib.contextmanager
def serving(data_dir: Path) -> Iterator[Service]:
    """`leaktrace serve` (embedded worker) on a free loopback port over a fresh data folder, with
    an account from `leaktrace admin create-app` and a client holding its bearer token."""
    shutil.rmtree(data_dir, ignore_errors=True)
    data_dir.mkdir(parents=True)
    env = _service_env(data_dir)
    account = json.loads(_leaktrace("admin", "create-app", "--name", "bench-jobs", env=env))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    cmd = [sys.executable, "-m", "leaktrace.cli", "serve", "--host", "127.0.0.1", "--port", str(port),
           "--embedded-worker"]
    with open(data_dir / "serve.log", "w") as serve_log:
        server = subprocess.Popen(cmd, env=env, stdout=serve_log, stderr=subprocess.STDOUT, cwd=media.REPO_ROOT)
    try:
        _wait_until_up(base, server, data_dir / "serve.log")
        with httpx.Client(base_url=base, timeout=300) as client:
            token = client.post("/v1/oauth2/token/", data={"grant_type": "client_credentials",
                                                           "client_id": account["client_id"],
                                                           "client_secret": account["client_secret"]})
            _check(token, 200)
            client.headers["Authorization"] = f"Bearer {token.json()['access_token']}"
            pipelines = client.get("/v1/pipelines/")
            _check(pipelines, 200)
            yield Service(base_url=base, pid=server.pid, data_dir=data_dir, client=client,
                          pipeline_id=pipelines.json()["pipelines"][0]["id"])
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _wait_until_up(base: str, server: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while True:
        with contextlib.suppress(httpx.TransportError):
            if httpx.get(base + "/v1/codecs/", timeout=5).status_code == 200:
                return
        if server.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"leaktrace serve did not start; see {log_path}")
        time.sleep(POLL_S)


def _check(response: httpx.Response, *expected: int) -> httpx.Response:
    if response.status_code not in expected:
        raise RuntimeError(f"{response.request.method} {response.request.url} -> {response.status_code}: "
                           f"{response.text[:2000]}")
    return response


def tree_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process and of its children it has reaped (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(fields[i]) for i in (11, 12, 13, 14))
    return (utime + stime + cutime + cstime) / os.sysconf("SC_CLK_TCK")


def descendant_commands(pid: int) -> list[str]:
    """The command names (`comm`) of every living descendant of `pid`."""
    children: dict[int, list[tuple[int, str]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:  # ended while we looked
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        parent = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(parent, []).append((int(entry.name), name))
    found, todo = [], [pid]
    while todo:
        for child, name in children.get(todo.pop(), []):
            found.append(name)
            todo.append(child)
    return found


# ---- uploads --------------------------------------------------------------------------------------


def multipart_body(fields: dict[str, str], *, path: Path, start: int, length: int,
                   boundary: str) -> tuple[int, Iterator[bytes]]:
    """A `multipart/form-data` body of `fields` then `length` bytes of `path` from `start` as the
    field `file`, read from disk as it is sent; returns (its exact length, its pieces)."""
    head = b"".join(f'--{boundary}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode()
                    for key, value in fields.items())
    head += (f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
             f"Content-Type: application/octet-stream\r\n\r\n").encode()
    tail = f"\r\n--{boundary}--\r\n".encode()

    def pieces() -> Iterator[bytes]:
        yield head
        with path.open("rb") as source:
            source.seek(start)
            remaining = length
            while remaining:
                block = source.read(min(READ_BYTES, remaining))
                if not block:
                    raise RuntimeError(f"{path} ended before its {start + length} bytes")
                remaining -= len(block)
                yield block
        yield tail

    return len(head) + length + len(tail), pieces()


def upload(service: Service, path: Path, object_key: str, *, chunk_bytes: int) -> dict[str, Any]:
    """Upload `path` through the upload flow in chunks of `chunk_bytes`; return the COMPLETED upload
    with the seconds from its creation to the last form POST's answer and from there to COMPLETED."""
    client = service.client
    began = time.perf_counter()
    created = _check(client.post("/v1/files/uploads/", params={"object_key": object_key,
                                                               "pipeline_id": service.pipeline_id}), 200, 201)
    upload_ = created.json()["upload"]
    size = path.stat().st_size
    chunks = max(1, -(-size // chunk_bytes))
    for index in range(chunks):
        start = index * chunk_bytes
        boundary = uuid.uuid4().hex
        fields = {**upload_["form_post_params"], "chunk": str(index), "chunks": str(chunks)}
        length, body = multipart_body(fields, path=path, start=start, length=min(chunk_bytes, size - start),
                                      boundary=boundary)
        # The form endpoint is authorised by its signed fields alone: no bearer token.
        _check(httpx.post(upload_["form_post_url"], content=body, timeout=300,
                          headers={"Content-Type": f"multipart/form-data; boundary={boundary}",
                                   "Content-Length": str(length)}), 201)
    sent = time.perf_counter()
    _check(client.put(f"/v1/files/uploads/{upload_['id']}", json={"upload": {"nb_chunks": chunks}}), 200)
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        upload_ = _check(client.get(f"/v1/files/uploads/{upload_['id']}"), 200).json()["upload"]
        if upload_["status"] == "COMPLETED":
            return {**upload_, "chunks": chunks, "form_s": sent - began, "completion_s": time.perf_counter() - sent}
        if upload_["status"] not in ("UPLOADING", "COMPLETING") or time.monotonic() > deadline:
            raise RuntimeError(f"upload of {object_key} ended {upload_['status']}: {upload_}")
        time.sleep(UPLOAD_POLL_S)


def plain_copy_seconds(path: Path, target: Path) -> float:
    """`shutil.copyfile` of `path` then fsync of the copy (the upload's bytes are on disk too)."""
    began = time.perf_counter()
    shutil.copyfile(path, target)
    with target.open("rb+") as handle:
        os.fsync(handle.fileno())
    seconds = time.perf_counter() - began
    target.unlink()
    return seconds


def measure_upload(service: Service, master: Path, workdir: Path, *, repeats: int, chunk_bytes: int) -> dict:
    """Upload the master and copy it, alternately, `repeats` times; throughputs of the medians.
    Returns the object key of the last upload too (the jobs' input)."""
    size = master.stat().st_size
    uploads, copies, phases = [], [], []
    for run in range(repeats):
        key = f"uploads/bench/master-{run}{master.suffix}"
        log(f"upload {run + 1}/{repeats} ({size / 1e6:.1f} MB in chunks of {chunk_bytes / 2**20:g} MiB) ...")
        began = time.perf_counter()
        done = upload(service, master, key, chunk_bytes=chunk_bytes)
        uploads.append(time.perf_counter() - began)
        phases.append((done["form_s"], done["completion_s"]))
        copies.append(plain_copy_seconds(master, workdir / "copy-of-master.bin"))
    upload_s, copy_s = statistics.median(uploads), statistics.median(copies)
    return {"bytes": size, "chunks": done["chunks"], "chunk_bytes": chunk_bytes, "object_key": key,
            "upload_s": upload_s, "upload_runs": uploads, "phases": phases, "copy_s": copy_s, "copy_runs": copies,
            "upload_mb_s": size / upload_s / 1e6, "copy_mb_s": size / copy_s / 1e6, "ratio": copy_s / upload_s}


# ---- jobs -----------------------------------------------------------------------------------------


def run_job(service: Service, *, input_name: str, output_name: str, autograph: bool) -> dict:
    """Submit a one-output job and poll it every POLL_S to SUCCESS; its wall time from the POST,
    the time it waited in the queue, the server's CPU (with its reaped children; answering the
    polls included) and about how long an ffmpeg process of the server was seen running."""
    job: dict[str, Any] = {"pipeline": {"id": service.pipeline_id}, "input": {"input_name": input_name},
                           "outputs": [{"preset": {"id": PRESET_720P}, "output_name": output_name}]}
    if autograph:
        job["autograph"] = {"watermark_strength": STRENGTH}
    cpu_before = tree_cpu_seconds(service.pid)
    began = time.perf_counter()
    job_id = _check(service.client.post("/v1/jobs/", json={"job": job}), 201).json()["job"]["id"]
    queued_s, ffmpeg_seen_s, last = None, 0.0, began
    while True:
        state = _check(service.client.get(f"/v1/jobs/{job_id}"), 200).json()["job"]
        now = time.perf_counter()
        if "ffmpeg" in descendant_commands(service.pid):
            ffmpeg_seen_s += now - last
        last = now
        if queued_s is None and state["status"] != "QUEUED":
            queued_s = now - began
        if state["status"] == "SUCCESS":
            break
        if state["status"] == "FAILURE" or now - began > JOB_TIMEOUT_S:
            raise RuntimeError(f"job {job_id} ended {state['status']}: {state.get('error_code')} {state.get('error_msg')}")
        time.sleep(POLL_S)
    seconds = now - began
    cpu = tree_cpu_seconds(service.pid) - cpu_before
    file_id = state["outputs"][0]["file"]["id"]
    output = _check(service.client.get(f"/v1/files/{file_id}"), 200).json()["file"]
    return {"id": job_id, "status": state["status"], "seconds": seconds, "queued_s": queued_s or 0.0,
            "server_cpu_s": cpu, "ffmpeg_seen_s": ffmpeg_seen_s, "file": output}


def plain_encode_command(master: Path, out_path: Path, *, preset_id: str, data_dir: Path) -> list[list[str]]:
    """The job's encode as plain ffmpeg commands (one per pass): the master probed as the job
    probes its input, planned with the preset as stored, arguments from `media.transcode`."""
    db = open_database(service_settings(data_dir).resolved_database_url)
    preset = presets.get(db, user_id=None, preset_id=preset_id)
    plan = transcode.plan_output(probe_input(master), target_format=preset.target_format, preset_settings=preset.settings,
                                 output_settings=None, input_options={}, autograph=False)
    passes = [1, 2] if plan.video is not None and plan.video.passes == 2 else [None]
    passlog = out_path.with_name(out_path.stem + ".passlog")
    # ffmpeg.run's global options, less the progress report that only the service reads
    return [[FFMPEG, "-hide_banner", "-nostdin", "-nostats", "-v", "error", "-y",
             *transcode._arguments(master, None if number == 1 else out_path, plan, logo=None,
                                   pass_number=number, passlog=passlog)]
            for number in passes]


def plain_encode(commands: list[list[str]], out_path: Path) -> dict:
    """Run the plain encode; its wall and CPU seconds, and the output's size and probe."""
    cpu_before = speed.children_cpu_seconds()
    seconds = sum(media.run(cmd, what="plain encode") for cmd in commands)
    cpu = speed.children_cpu_seconds() - cpu_before
    info = media.probe(out_path)
    return {"seconds": seconds, "cpu_s": cpu, "size": out_path.stat().st_size,
            "width": info.width, "height": info.height, "frames": info.frames}


def measure_jobs(service: Service, master: Path, workdir: Path, *, input_name: str, repeats: int) -> tuple[dict, dict]:
    """`repeats` rounds of a job, the plain encode, an AutoGraph job, back to back: each plain encode
    is the baseline of the job just before it and of the AutoGraph job just after it. Returns the
    comparison for jobs and for AutoGraph jobs."""
    out_path = workdir / "plain-encode.mp4"
    commands = plain_encode_command(master, out_path, preset_id=PRESET_720P, data_dir=service.data_dir)
    plains: list[dict] = []
    jobs: dict[bool, list[dict]] = {False: [], True: []}
    for run in range(repeats):
        log(f"job {run + 1}/{repeats} ...")
        jobs[False].append(run_job(service, input_name=input_name, output_name=f"plain-{run}_{{resolution}}",
                                   autograph=False))
        log(f"plain encode {run + 1}/{repeats} ...")
        plains.append(plain_encode(commands, out_path))
        log(f"AutoGraph job {run + 1}/{repeats} ...")
        done = run_job(service, input_name=input_name, output_name=f"autograph-{run}_{{resolution}}", autograph=True)
        jobs[True].append({**done, "manifest": _title_manifest(service, done["file"]["id"])})
    plain_job, autograph_job = (_compare(jobs[autograph], plains) for autograph in (False, True))
    return {**plain_job, "command": commands}, autograph_job


def _compare(jobs: list[dict], plains: list[dict]) -> dict:
    """Median wall and CPU seconds of the jobs and of the plain encodes, and the ratios: the median
    of each round's job / plain encode (the two ran back to back, under the same load). A job's CPU
    is the server's plus, for AutoGraph, the prepare's worker processes (not reaped into it)."""
    job_cpu = [j["server_cpu_s"] + j.get("manifest", {}).get("worker_cpu_seconds", 0.0) for j in jobs]
    return {"jobs": jobs, "plains": plains,
            "job_s": statistics.median(j["seconds"] for j in jobs),
            "plain_s": statistics.median(p["seconds"] for p in plains),
            "ratio": statistics.median(j["seconds"] / p["seconds"] for j, p in zip(jobs, plains, strict=True)),
            "job_cpu_s": statistics.median(job_cpu), "plain_cpu_s": statistics.median(p["cpu_s"] for p in plains),
            "cpu_ratio": statistics.median(cpu / p["cpu_s"] for cpu, p in zip(job_cpu, plains, strict=True))}


def _title_manifest(service: Service, file_id: str) -> dict:
    """The engine's manifest of an AutoGraph output's prepared title, read from the service's storage."""
    storage = open_storage(service_settings(service.data_dir).resolved_storage_url)
    path = storage.local_path(f"{TITLES_PREFIX}{file_id}/{MANIFEST_FILE}")
    if path is None:
        raise RuntimeError("the service's storage is not local: the title's manifest cannot be read")
    manifest = json.loads(path.read_text())
    return {key: manifest[key] for key in ("prepare_seconds", "worker_cpu_seconds", "encoder")}


# ---- the run --------------------------------------------------------------------------------------


def _runs(values: list[float]) -> str:
    return ", ".join(f"{v:.1f}" for v in values)


def _verdict(ok: bool) -> str:
    return "OK" if ok else "MISS"


def _job_rows(title: str, part: dict, *, target: float, rounds: int, of_the_job: str, cpu_of: str) -> list[list[str]]:
    """The wall-time row of one kind of job against the plain encode (with what the job spent its
    time on), and its CPU-time row."""
    return [
        [title,
         f"{part['job_s']:.1f} s / {part['plain_s']:.1f} s (medians; ratio: median of {rounds} rounds' ratios; job "
         f"{_runs([j['seconds'] for j in part['jobs']])}, plain {_runs([p['seconds'] for p in part['plains']])}; "
         f"of the job: queued {_runs([j['queued_s'] for j in part['jobs']])} s, {of_the_job})",
         f"{part['ratio']:.2f}", f"<= {target}", _verdict(part["ratio"] <= target)],
        ["same, CPU time",
         f"{part['job_cpu_s']:.1f} s / {part['plain_cpu_s']:.1f} s CPU ({cpu_of} over the job / ffmpeg; "
         f"medians, ratio: median of {rounds} rounds' ratios)",
         f"{part['cpu_ratio']:.2f}", "reported", "info"],
    ]


def table_rows(config: Config, up: dict, plain: dict, ag: dict, prep: dict, par: dict) -> list[list[str]]:
    """One row per figure: measure, what was compared, ratio, target, OK/MISS (or info)."""
    n = config.repeats
    sizes = [f"{j['file']['size'] / 1e6:.2f} / {p['size'] / 1e6:.2f}" for j, p in zip(plain["jobs"], plain["plains"])]
    manifests = [j["manifest"] for j in ag["jobs"]]
    return [
        *_job_rows("job, one 720p H.264 output / plain ffmpeg encode", plain, target=TARGETS["job"], rounds=n,
                   of_the_job=f"ffmpeg running {_runs([j['ffmpeg_seen_s'] for j in plain['jobs']])} s; "
                              f"output MB, job / plain: {', '.join(sizes)}",
                   cpu_of="server process and its reaped children"),
        *_job_rows(f"AutoGraph job ({STRENGTH}), one 720p output / the same plain encode", ag,
                   target=TARGETS["autograph_job"], rounds=n,
                   of_the_job=f"engine prepare {_runs([m['prepare_seconds'] for m in manifests])} s",
                   cpu_of="server process, its reaped children and the prepare's worker processes"),
        ["upload throughput / plain file copy",
         f"{up['upload_mb_s']:.0f} MB/s / {up['copy_mb_s']:.0f} MB/s ({up['bytes'] / 1e6:.1f} MB in {up['chunks']} "
         f"chunk(s); medians of {config.upload_repeats}: upload {', '.join(f'{x:.2f}' for x in up['upload_runs'])} s, "
         f"copy {', '.join(f'{x:.2f}' for x in up['copy_runs'])} s; of each upload, form POSTs + completion: "
         f"{', '.join(f'{form:.2f} + {completion:.2f}' for form, completion in up['phases'])} s)",
         f"{up['ratio']:.2f}", "reported", "info"],
        ["prepare / plain x264 encode with the engine's settings, CPU time",
         f"{prep['prepare_cpu_s']:.1f} s / {prep['plain_cpu_s']:.1f} s CPU (prepare wall {_runs(prep['prepare_runs'])} s, "
         f"plain {_runs(prep['plain_runs'])} s; `bench.speed.measure_prepare`, {config.engine_repeats} run(s))",
         f"{prep['cpu_ratio']:.2f}", f"<= {TARGETS['prepare_cpu']}",
         _verdict(prep["cpu_ratio"] <= TARGETS["prepare_cpu"])],
        ["parallel efficiency of prepare, T1 / (2 x T2)",
         f"{par['t1_s']:.1f} s with 1 worker / {par['t2_s']:.1f} s with 2 ({par['chunks']} chunks; "
         f"`bench.speed.measure_workers`, {config.engine_repeats} run(s))",
         f"{par['efficiency']:.2f}", "reported", "info"],
    ]


def main(argv: list[str] | None = None) -> int:
    args = report.parse_run_options(argv, description=__doc__.split("\n\n")[0], quick_help="tiny master, seconds, no BENCHMARKS.md write")
    config = QUICK if args.quick else FULL
    media.require_testdata()
    workdir = media.OUT / ("jobs-quick" if args.quick else "jobs")
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    load_before = os.getloadavg()[0]

    master = media.build_master(config.master)
    info = media.probe(master)
    with serving(workdir / "service") as service:
        up = measure_upload(service, master, workdir, repeats=config.upload_repeats,
                            chunk_bytes=config.upload_chunk_bytes)
        plain, ag = measure_jobs(service, master, workdir, input_name=up["object_key"], repeats=config.repeats)
    prep = speed.measure_prepare(master, workdir, config.position_seconds, config.engine_repeats)
    par = speed.measure_workers(master, workdir, config.position_seconds, config.engine_repeats)
    load_after = os.getloadavg()[0]

    rows = table_rows(config, up, plain, ag, prep, par)
    table = report.markdown_table(["measure", "measured / baseline", "ratio", "target", "result"], rows)
    body = (f"Input: a master of the 720p test clips ({', '.join(config.master.clips)}), {info.width}x{info.height}, "
            f"{float(info.fps):g} fps, {info.duration:.0f} s, H.264 CRF {config.master.crf}, {master.stat().st_size / 1e6:.1f} MB, "
            f"uploaded once per upload run. The service: `leaktrace serve` with its embedded worker, SQLite and local "
            f"storage, on a loopback port. Jobs have one output with the system preset {PRESET_720P} "
            f"(MP4 720p H.264 AAC); the time is from `POST /v1/jobs` to SUCCESS seen by polling every {POLL_S:g} s. "
            f"The plain encode is the job's own plan (`plan_output` + `media.transcode`'s arguments), run as "
            f"`{shlex.join(Path(part).name if part.startswith('/') else part for part in plain['command'][-1])}` "
            f"between the two jobs of each round. Upload: initiate, form POSTs of {up['chunk_bytes'] / 2**20:g} MiB chunks streamed "
            f"from disk, completion, polled to COMPLETED, against `shutil.copyfile` + fsync. Prepare CPU and "
            f"efficiency: `bench.speed` on the same master with {config.position_seconds:g} s positions (the "
            f"engine's own x264 settings: preset {prep['manifest']['encoder']['preset']}, CRF "
            f"{prep['manifest']['encoder']['crf']}). 1-minute load average {load_before:.1f} before the run and "
            f"{load_after:.1f} after, on {os.cpu_count()} cores.\n\n{table}")
    print(body)
    failures = [row[0] for row in rows if row[-1] == "MISS"]
    if args.json_out:
        args.json_out.write_text(json.dumps({
            "master": {"path": str(master), "width": info.width, "height": info.height, "seconds": info.duration},
            "upload": up, "job": plain, "autograph_job": ag,
            "prepare": {k: v for k, v in prep.items() if k not in ("outdir", "manifest")}, "workers": par,
            "targets": TARGETS, "failures": failures}, indent=1, default=str))
    if (args.write or not args.quick) and not args.no_write:
        title = "Import jobs (bench/jobs.py)" + (" (quick run: the small master)" if args.quick else "")
        report.write_section(SECTION, title=title, body=body, command=report.command_line("bench.jobs", argv))
    if failures:
        print("TARGETS MISSED: " + "; ".join(failures), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
