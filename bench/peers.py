"""The peer: invisible-watermark (PyPI `invisible-watermark`), methods dwtDctSvd and rivaGan.

Both are blind, per-frame, 32-bit image watermarks. The wheel declares torch as a dependency and
`imwatermark/rivaGan.py` imports it at load, but rivaGan inference runs through onnxruntime (the
two .onnx models ship inside the wheel); torch is only used for a handful of array operations.
Installing torch (hundreds of MB) for that is not worth it, so `load_imwatermark()` registers a
tiny numpy stand-in as the `torch` module before importing the package, unless a real torch is
installed. Install: see bench/requirements.txt.

Note: dwtDctSvd rebuilds the plane with `pywt.idwt2((ca, (v, h, d)))` (horizontal and vertical
details swapped); we measure the package as shipped and do not patch it.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types

from pathlib import Path

import numpy as np

METHODS = ("dwtDctSvd", "rivaGan")
PAYLOAD_BITS = 32


class _NumpyTensor(np.ndarray):
    """The few torch.Tensor methods that imwatermark.rivaGan calls, on a numpy array."""

    def permute(self, *dims: int) -> "_NumpyTensor":
        return self.transpose(*dims)

    def unsqueeze(self, dim: int) -> "_NumpyTensor":
        return np.expand_dims(self, dim)

    def detach(self) -> "_NumpyTensor":
        return self

    def cpu(self) -> "_NumpyTensor":
        return self

    def numpy(self) -> np.ndarray:
        return np.asarray(self)


def _torch_shim() -> types.ModuleType:
    shim = types.ModuleType("torch")
    shim.from_numpy = lambda array: np.asarray(array).view(_NumpyTensor)  # type: ignore[attr-defined]
    shim.clamp = lambda t, min=None, max=None: np.clip(t, min, max).view(_NumpyTensor)  # type: ignore[attr-defined]
    shim.Tensor = _NumpyTensor  # type: ignore[attr-defined]
    shim.__leaktrace_shim__ = True  # type: ignore[attr-defined]
    return shim


def available() -> tuple[bool, str]:
    """Whether the peer can run here, and why not when it cannot."""
    for module in ("imwatermark", "pywt", "onnxruntime"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed (see bench/requirements.txt)"
    return True, ""


def load_imwatermark() -> types.ModuleType:
    """Import `imwatermark`, with the numpy torch stand-in when torch is absent.

    The stand-in is registered only while imwatermark imports (its rivaGan module keeps its own
    reference): left in sys.modules it would make other libraries believe torch is installed.
    """
    shimmed = "torch" not in sys.modules and importlib.util.find_spec("torch") is None
    if shimmed:
        sys.modules["torch"] = _torch_shim()
    try:
        module = importlib.import_module("imwatermark")
    finally:
        if shimmed:
            del sys.modules["torch"]
    module.WatermarkEncoder.loadModel()  # loads the two rivaGan ONNX sessions once
    return module


def payload(seed: int = 2024) -> np.ndarray:
    """The 32 payload bits embedded in every marked frame (uint8 0/1), fixed by `seed`."""
    return np.random.default_rng(seed).integers(0, 2, PAYLOAD_BITS).astype(np.uint8)


def embed(frame_bgr: np.ndarray, bits: np.ndarray, method: str) -> np.ndarray:
    """Return `frame_bgr` (uint8 (H, W, 3)) carrying `bits` with the given peer method."""
    imw = load_imwatermark()
    encoder = imw.WatermarkEncoder()
    encoder.set_watermark("bits", [int(b) for b in bits])
    return encoder.encode(frame_bgr, method)


def extract(frame_bgr: np.ndarray, method: str) -> np.ndarray:
    """The 32 bits the peer method reads from `frame_bgr` (uint8 0/1)."""
    imw = load_imwatermark()
    decoder = imw.WatermarkDecoder("bits", PAYLOAD_BITS)
    return np.asarray(decoder.decode(frame_bgr, method), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# The peer comparison protocol
# --------------------------------------------------------------------------------------------------

PROTOCOL = """\
Peer protocol. invisible-watermark embeds the same 32 payload bits in each of {n} sample frames of
the master, the same frames for dwtDctSvd and rivaGan (rivaGan needs seconds per frame on this CPU, see
the table, so marking every frame is out of reach). Each sample frame is the centre of a {window:g} s
window of master footage (frames around it unmarked, as a per-frame peer would leave them when
only sampled frames are marked); the windows are concatenated into one clip per method, encoded
once with libx264 CRF 18 (the distribution copy), and that clip goes through the same ffmpeg
attack commands as our copies. The attacked frame that shows each sample is found by time
(frame-rate changes map by time), the best of +-1 candidate frames by luma distance to the marked
frame (generous to the peer), resized back to the master size (the peer is blind and has no
registration of its own), then decoded. Bit accuracy = mean over sample frames of the fraction of
the 32 bits read correctly (0.5 = chance); "ID" = the per-bit majority vote over all sample
frames recovers all 32 bits. Excerpts do not change a per-frame mark, so the peer's numbers hold
for both excerpt lengths; collusion is not run for the peer (no collusion decoder). Caveat: a
marked frame between unmarked neighbours is a temporal outlier that the encoder's prediction
partly smooths away, so these numbers are pessimistic for the peer compared with marking every
frame (which would cost rivaGan seconds per frame for every frame here)."""


def sample_frames(total_frames: int, fps: float, n: int) -> list[int]:
    """Master frame indices of `n` evenly spread sample frames (centres of equal slices)."""
    step = total_frames / n
    return [int(step * (k + 0.5)) for k in range(n)]


def build_peer_clip(master: Path, out_path: Path, *, method: str, bits: np.ndarray,
                    samples: list[int], window: int, progress=None) -> dict:
    """Write the peer clip (windows of `window` frames centred on each sample, the sample frame
    marked with `method`) encoded with libx264 CRF 18; return marking stats (PSNR, seconds per frame)."""
    import subprocess
    import time

    from bench import media

    info = media.probe(master)
    wanted: dict[int, int] = {}  # master frame -> sample number, for every frame of every window
    for k, centre in enumerate(samples):
        for f in range(centre - window // 2, centre - window // 2 + window):
            wanted[f] = k
    cmd = [media.FFMPEG, "-y", "-hide_banner", "-loglevel", "error", "-f", "rawvideo",
           "-pix_fmt", "bgr24", "-s", f"{info.width}x{info.height}", "-r", str(info.fps), "-i", "-",
           "-c:v", "libx264", "-preset", "medium", "-crf", "18", "-pix_fmt", "yuv420p", "-an",
           str(out_path)]
    out_path.parent.mkdir(parents=True, exist_ok=True)
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE)
    psnr_y: list[float] = []
    psnr_rgb: list[float] = []
    embed_seconds: list[float] = []
    import av

    with av.open(str(master)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for index, frame in enumerate(container.decode(stream)):
            if index not in wanted:
                if index > max(wanted):
                    break
                continue
            image = frame.to_ndarray(format="bgr24")
            if index in samples:
                began = time.perf_counter()
                marked = embed(image, bits, method)
                embed_seconds.append(time.perf_counter() - began)
                psnr_y.append(_psnr(media.luma(image), media.luma(marked)))
                psnr_rgb.append(_psnr(image.astype(np.float64), marked.astype(np.float64)))
                image = marked
                if progress:
                    progress(f"{method}: marked sample {len(embed_seconds)}/{len(samples)}")
            assert proc.stdin is not None
            proc.stdin.write(np.ascontiguousarray(image).tobytes())
    assert proc.stdin is not None
    proc.stdin.close()
    if proc.wait() != 0:
        raise RuntimeError(f"peer clip encode failed: {' '.join(cmd)}")
    return {"psnr_y": float(np.mean(psnr_y)), "psnr_rgb": float(np.mean(psnr_rgb)),
            "embed_s_per_frame": float(np.mean(embed_seconds))}


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


def read_peer_bits(leak: Path, *, method: str, marked_frames: list[np.ndarray], window: int,
                   clip_fps: float) -> tuple[list[np.ndarray], float]:
    """Find each sample in the attacked clip (by time, best of +-1 by luma distance), resize it to
    the master size and decode it; return the bits per sample and the mean decode seconds per frame."""
    import time

    import cv2

    from bench import media

    leak_fps = float(media.probe(leak).fps)
    guesses = [int((k * window + window // 2 + 0.5) / clip_fps * leak_fps) for k in range(len(marked_frames))]
    wanted = sorted({j for g in guesses for j in (g - 1, g, g + 1) if j >= 0})
    decoded = media.read_frames(leak, times=[(j + 0.5) / leak_fps for j in wanted])
    frames = dict(zip(wanted, decoded))
    height, width = marked_frames[0].shape[:2]
    results: list[np.ndarray] = []
    seconds: list[float] = []
    for guess, marked in zip(guesses, marked_frames):
        target = media.luma(marked)
        best, best_err = None, float("inf")
        for j in (guess - 1, guess, guess + 1):
            if j in frames:
                candidate = cv2.resize(frames[j], (width, height), interpolation=cv2.INTER_CUBIC)
                err = float(np.mean((media.luma(candidate) - target) ** 2))
                if err < best_err:
                    best, best_err = candidate, err
        if best is None:
            continue
        began = time.perf_counter()
        results.append(extract(best, method))
        seconds.append(time.perf_counter() - began)
    return results, float(np.mean(seconds)) if seconds else float("nan")


def bit_accuracy(read: list[np.ndarray], bits: np.ndarray) -> tuple[float, bool]:
    """Mean per-frame bit accuracy, and whether the per-bit majority vote recovers every bit."""
    if not read:
        return float("nan"), False
    stack = np.stack(read)
    accuracy = float((stack == bits[None, :]).mean())
    vote = (stack.mean(axis=0) > 0.5).astype(np.uint8)
    return accuracy, bool((vote == bits).all())
