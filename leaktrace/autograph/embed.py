"""`prepare()`: decode the input once, encode it once (U), and make A and B from U by re-encoding its intra pictures.

Pipeline (one decoding pass over the input, after a demux-only packet count):

    this process: demux ─► decode video ─► limited-range 8-bit 4:2:0, even size ─► a chunk of frames
                               └─► ReferenceBuilder.add_frame (unmarked luma)
                  decode audio ─► AAC once ─► the very same packets muxed into A and B
    per chunk (`chunk.py`, in worker processes, `parallel.py`): unmarked frames ─► x264 (CRF) ─► U
        per position (one GOP): intra pictures (the IDR, and any at a scene cut) ─► decode
            ─► perceptual mask of each ─► + delta(A) / + delta(B) ─► x264 intra (constant QP)
            A, B and their twins (negated deltas) decoded beside U ─► each variant's MSE, re-marked
            when off ─► detection templates and the next positions' RMS (`strength.py`)
    back here, chunk by chunk in title order: U's packets, with each variant's own intra pictures,
    muxed into A and B; the templates into the reference

Then `package.split_variants()` cuts both files into `init.mp4`, `A.m4s`, `B.m4s` and
`index.json`, and checks that they are interchangeable fragment by fragment. The chunk plan
depends on the title alone (`plan.py`), so the folder is the same bytes whatever the number of
workers.

Where each rule lives: positions, chunks and size in `plan.py`; frame timing and range in
`source.py`; the x264 settings in `encoder.py`; the pattern in `pattern.py` and `marker.py`; the
strength in `strength.py`; the files and the audio in `outputs.py`.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import av
import numpy as np

from leaktrace.autograph import h264, package, pattern
from leaktrace.autograph.chunk import VARIANTS, ChunkJob, ChunkResult
from leaktrace.autograph.encoder import X264_PARAMS, X264_THREADS, intra_qp, reorder_delay_frames
from leaktrace.autograph.marker import MASK_FLOOR
from leaktrace.autograph.outputs import Outputs
from leaktrace.autograph.parallel import ChunkRunner, worker_count
from leaktrace.autograph.plan import (
    CHUNK_SECONDS,
    MAX_POSITION_SECONDS,
    MIN_POSITION_SECONDS,
    PSNR_TOLERANCE_DB,
    STRENGTH_PSNR_DB,
    Chunk,
    PrepareCancelled,
    PrepareError,
    Progress,
    Rendition,
    frames_per_position,
    manifest_chunks,
    manifest_rendition,
    plan_chunks,
    plan_positions,
    psnr_db,
    target_mse,
)
from leaktrace.autograph.source import (
    FrameConverter,
    PlannedFrames,
    audio_plan,
    count_video_packets,
    open_input,
    rendition_of,
    source_fps,
    source_frames,
)
from leaktrace.autograph.strength import StrengthControl, StrengthModel

__all__ = [
    "PrepareCancelled", "PrepareError", "Progress", "Rendition", "StrengthControl", "StrengthModel",
    "encode_unmarked", "frames_per_position", "manifest_rendition", "prepare", "source_frames", "target_mse",
]

log = logging.getLogger(__name__)

# Seconds of audio taken beyond the video's end, so the AAC encoder's last frame is complete.
_AUDIO_TAIL_SECONDS = 1.0


def prepare(input_path: str | os.PathLike[str], outdir: str | os.PathLike[str], *, strength: str = "medium",
            position_seconds: float = 2.0, height: int | None = None, crf: int = 20, preset: str = "veryfast",
            progress: Progress | None = None, duration: float | None = None, force: bool = False,
            key: bytes | None = None, workers: int | None = None, cancelled: Callable[[], bool] | None = None,
            chunk_seconds: float = CHUNK_SECONDS) -> package.Manifest:
    """Prepare a title: write A/B variants as fragments, the index, key, manifest and reference; return the manifest.

    `duration` limits the title to the first seconds of the input (tests, excerpts). `key` is for
    reproducible tests only; by default 32 fresh random bytes from `secrets`. `workers` processes
    prepare chunks of about `chunk_seconds` side by side (None: one per core); the output does not
    depend on `workers`. `cancelled` is polled at least once per position; when it returns True,
    prepare stops its workers, leaves `outdir` empty and raises PrepareCancelled. `progress` is
    called in this process with (frames done, frames planned).
    """
    input_path, outdir = Path(input_path), Path(outdir)
    if strength not in STRENGTH_PSNR_DB:
        raise PrepareError(f"unknown strength {strength!r}; choose one of {', '.join(STRENGTH_PSNR_DB)}")
    if not MIN_POSITION_SECONDS <= position_seconds <= MAX_POSITION_SECONDS:
        raise PrepareError(f"position_seconds must be between {MIN_POSITION_SECONDS} and {MAX_POSITION_SECONDS}")
    if not input_path.is_file():
        raise PrepareError(f"input {input_path} does not exist or is not a file")
    workers = worker_count(workers)
    started = time.monotonic()
    key = secrets.token_bytes(32) if key is None else key

    container = open_input(input_path)
    try:
        stream = container.streams.video[0]
        fps = source_fps(stream)
        rendition = rendition_of(stream, fps, position_seconds, height)
        # read everything needed from the stream now: PyAV objects must not be used after close()
        source = {
            "file": input_path.name,
            "format": container.format.name,
            "video_codec": stream.codec_context.name,
            "width": stream.codec_context.width,
            "height": stream.codec_context.height,
            "pix_fmt": stream.codec_context.pix_fmt,
            "fps": [fps.numerator, fps.denominator],
        }
        n_frames = count_video_packets(input_path)
        if duration is not None:
            n_frames = min(n_frames, max(1, int(round(duration * fps))))
        if n_frames == 0:
            raise PrepareError(f"input {input_path} has no video frames")
        positions = plan_positions(n_frames, rendition.frames_per_position, fps)
        chunks = plan_chunks(positions, position_duration_s=float(rendition.frames_per_position / fps),
                             chunk_seconds=chunk_seconds)
        audio = audio_plan(container)
        _prepare_outdir(outdir, force)
        # from here on a failure leaves the folder empty, never a title without its manifest
        tmp_paths = {name: outdir / f".{name}.tmp.mp4" for name in VARIANTS}
        try:
            stats = _encode_title(container, outdir, rendition, chunks, audio, key=key, strength=strength, crf=crf,
                                  preset=preset, progress=progress, out_paths=tmp_paths, workers=workers,
                                  cancelled=cancelled)
            package.split_variants(tmp_paths["A"], tmp_paths["B"], outdir, n_positions=len(positions))
        except BaseException:
            _empty(outdir)
            raise
        finally:
            for path in tmp_paths.values():
                path.unlink(missing_ok=True)
    except av.FFmpegError as exc:
        raise PrepareError(f"decoding or encoding failed: {exc}") from exc
    except package.PackageError as exc:
        raise PrepareError(f"the A and B encodes are not interchangeable: {exc}") from exc
    except h264.UnsupportedSyntax as exc:
        raise PrepareError(f"the unmarked encode uses H.264 syntax the marker cannot rewrite: {exc}") from exc
    finally:
        container.close()
    package.write_key(outdir, key)

    manifest = {
        "format_version": package.FORMAT_VERSION,
        "source": {**source, "decoded_frames": stats["decoded_frames"]},
        "rendition": {
            "width": rendition.width,
            "height": rendition.height,
            "fps": [fps.numerator, fps.denominator],
            "time_base": [fps.denominator, fps.numerator],
            "geometry": "scaled" if rendition.scaled else "cropped to even size",
            "color_range": "limited",
            "pix_fmt": "yuv420p",
        },
        "n_frames": n_frames,
        "padded_frames": stats["padded_frames"],
        "position_seconds": position_seconds,
        "frames_per_position": rendition.frames_per_position,
        "position_duration_s": float(rendition.frames_per_position / fps),
        "chunks": [[c.positions[0]["index"], len(c.positions)] for c in chunks],
        "strength": strength,
        "target_psnr_db": STRENGTH_PSNR_DB[strength],
        "pattern": {"domain": "leaktrace/pattern/v1", "sigma_px": pattern.pattern_sigma(rendition.height),
                    "rms": {v: [round(stats["rms"][p["index"]][v], 4) for p in positions] for v in VARIANTS},
                    "model_scale": {v: [round(scale[v], 4) for scale in stats["model_scale"]] for v in VARIANTS},
                    "mask_floor": MASK_FLOOR[strength],
                    "mask_limit": {"flat": pattern.JND_FLAT, "slope": pattern.JND_SLOPE},
                    "carrier": "intra pictures of each position",
                    "intra_pictures": stats["intra_pictures"], "measured_psnr_db": stats["psnr_db"],
                    "target_reached": all(abs(psnr - STRENGTH_PSNR_DB[strength]) <= PSNR_TOLERANCE_DB
                                          for psnr in stats["psnr_db"].values())},
        "encoder": {"codec": "libx264", "crf": crf, "preset": preset,
                    "x264_params": X264_PARAMS, "threads": X264_THREADS,
                    "intra_qp": intra_qp(crf), "pix_fmt": "yuv420p",
                    "container": "fragmented mp4"},
        "audio": audio,
        "reference": stats["reference"],
        "positions": positions,
        "prepare_seconds": round(time.monotonic() - started, 3),
        # CPU time of the worker processes (0 with one worker: it all runs in the calling process)
        "worker_cpu_seconds": round(stats["worker_cpu_seconds"], 3),
    }
    (outdir / package.MANIFEST_FILE).write_text(json.dumps(manifest, indent=1) + "\n")
    log.info("prepared %s: %d frames, %d positions, %d workers, %.1f s", input_path.name, n_frames, len(positions),
             workers, manifest["prepare_seconds"])
    return manifest


def encode_unmarked(input_path: str | os.PathLike[str], out_path: str | os.PathLike[str],
                    manifest: package.Manifest, *, progress: Progress | None = None,
                    workers: int | None = None) -> Path:
    """Encode the title of `manifest` without any mark, with the very same settings and chunks (quality baseline)."""
    input_path, out_path = Path(input_path), Path(out_path)
    encoder = manifest["encoder"]
    container = open_input(input_path)
    try:
        _encode_title(container, None, manifest_rendition(manifest), manifest_chunks(manifest), manifest["audio"],
                      key=None, strength=None, crf=encoder["crf"], preset=encoder["preset"], progress=progress,
                      out_paths={"U": out_path}, workers=worker_count(workers), cancelled=None)
    finally:
        container.close()
    return out_path


def _encode_title(container: av.container.InputContainer, outdir: Path | None, rendition: Rendition,
                  chunks: list[Chunk], audio: dict[str, Any] | None, *, key: bytes | None, strength: str | None,
                  crf: int, preset: str, progress: Progress | None, out_paths: dict[str, Path], workers: int,
                  cancelled: Callable[[], bool] | None) -> dict[str, Any]:
    """Decode once, prepare the chunks, write each output of `out_paths` ("A", "B"; or "U": unmarked); return
    the title's counters and measurements.

    With a `key`, every intra picture of U is replaced per variant by a marked one, and `outdir`
    receives the detection reference.
    """
    n_frames = chunks[-1].first_frame + chunks[-1].frame_count
    video_stream = container.streams.video[0]
    video_start = float(video_stream.start_time * video_stream.time_base) if video_stream.start_time is not None else 0.0
    end_time = float(n_frames / rendition.fps)
    audio_delay = float(reorder_delay_frames(rendition, crf=crf, preset=preset) / rendition.fps) if audio else 0.0
    reference = _reference_builder(outdir, rendition, chunks) if outdir is not None else None
    outputs = Outputs(out_paths, rendition, crf=crf, preset=preset, audio=audio)

    def feed_audio(frame: av.AudioFrame) -> None:
        outputs.feed_audio(frame, video_start=video_start, end_time=end_time, delay=audio_delay)

    frames = PlannedFrames(container, n_frames, FrameConverter(rendition), on_audio=feed_audio if audio else None,
                           audio_until=video_start + end_time + _AUDIO_TAIL_SECONDS)
    decoded = iter(frames)

    def jobs() -> Iterator[tuple[ChunkJob, list[np.ndarray]]]:
        for chunk in chunks:
            chunk_frames: list[np.ndarray] = []
            for position in chunk.positions:
                if cancelled is not None and cancelled():
                    raise PrepareCancelled("prepare was cancelled")
                for _ in range(position["frame_count"]):
                    yuv = next(decoded)
                    if reference is not None:
                        reference.add_frame(chunk.first_frame + len(chunk_frames), yuv[:rendition.height])
                    chunk_frames.append(yuv)
            yield (ChunkJob(chunk, rendition, crf=crf, preset=preset, parameter_sets=tuple(outputs.parameter_sets),
                            strength=strength if key is not None else None, key=key), chunk_frames)

    done = 0

    def frames_done(count: int) -> None:
        nonlocal done
        done += count
        if progress is not None:
            progress(done, n_frames)

    results: list[ChunkResult] = []
    with ChunkRunner(workers, on_frames=frames_done, cancelled=cancelled) as runner:
        for result in runner.run(jobs()):
            for number, packet in enumerate(result.packets):
                outputs.mux_video(packet, {v: pictures[number] for v, pictures in result.pictures.items()
                                           if number in pictures})
            if reference is not None:
                for index, templates in sorted(result.templates.items()):
                    reference.add_position(index, templates["A"], templates["B"])
            result.packets, result.pictures, result.templates = [], {}, {}   # muxed: keep the measurements only
            results.append(result)
    for _ in decoded:   # the audio after the last video packet, up to the tail
        pass
    outputs.close()
    if reference is not None:
        reference.close()
    pixels = n_frames * rendition.width * rendition.height
    return {
        "planned_frames": n_frames,
        "decoded_frames": frames.decoded,
        "padded_frames": frames.padded,
        "reference": reference is not None,
        "psnr_db": ({v: psnr_db(sum(r.squared_error[v] for r in results) / pixels) for v in VARIANTS}
                    if key is not None else None),
        "intra_pictures": sum(r.intra_pictures for r in results),
        "rms": {index: rms for r in results for index, rms in r.rms.items()},
        "model_scale": [r.model_scale for r in results],
        "worker_cpu_seconds": sum(r.cpu_seconds for r in results) if workers > 1 else 0.0,
    }


def _prepare_outdir(outdir: Path, force: bool) -> None:
    if outdir.exists() and any(outdir.iterdir()):
        if not force:
            raise PrepareError(f"output folder {outdir} is not empty (pass --force / force=True to replace it)")
        if not (outdir / package.MANIFEST_FILE).exists() and not (outdir / package.INDEX_FILE).exists():
            raise PrepareError(f"output folder {outdir} is not empty and is not a prepared title; refusing to overwrite")
        _empty(outdir)
    outdir.mkdir(parents=True, exist_ok=True)


def _empty(folder: Path) -> None:
    for child in folder.iterdir():
        shutil.rmtree(child) if child.is_dir() else child.unlink()


def _reference_builder(outdir: Path, rendition: Rendition, chunks: list[Chunk]) -> Any:
    from leaktrace.autograph.reference import ReferenceBuilder

    return ReferenceBuilder(outdir, width=rendition.width, height=rendition.height, fps=rendition.fps,
                            positions=[p for c in chunks for p in c.positions])
