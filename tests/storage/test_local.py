"""The local-folder storage: atomic writes, ranges, key refusal, symbolic links, permissions."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from leaktrace.storage import BlobNotFound, InvalidKey, LocalStorage, open_storage


@pytest.fixture
def storage(tmp_path: Path) -> LocalStorage:
    return LocalStorage(tmp_path / "media")


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _incoming(storage: LocalStorage) -> list[str]:
    return sorted(p.name for p in (storage.root / ".incoming").iterdir())


def test_writer_publishes_only_on_clean_exit(storage: LocalStorage) -> None:
    with storage.writer("a/b/c.bin") as handle:
        handle.write(b"first")
        assert not storage.exists("a/b/c.bin")  # nothing visible while writing
    assert b"".join(storage.read_range("a/b/c.bin")) == b"first"

    class Interrupted(Exception):
        pass

    with pytest.raises(Interrupted), storage.writer("a/b/c.bin") as handle:
        handle.write(b"second, half")
        raise Interrupted
    assert b"".join(storage.read_range("a/b/c.bin")) == b"first"  # the old blob is untouched
    with pytest.raises(Interrupted), storage.writer("new.bin") as handle:
        handle.write(b"x")
        raise Interrupted
    assert not storage.exists("new.bin")
    assert _incoming(storage) == []  # no temporary file left behind


def test_ranges(storage: LocalStorage) -> None:
    data = bytes(range(256)) * 40
    with storage.writer("r.bin") as handle:
        handle.write(data)

    def read(*args: int | None, chunk: int = 1000) -> bytes:
        chunks = list(storage.read_range("r.bin", *args, chunk_bytes=chunk))  # type: ignore[arg-type]
        assert all(len(c) <= chunk for c in chunks)
        return b"".join(chunks)

    assert read() == data
    assert read(100, 5000) == data[100:5000]
    assert read(5000) == data[5000:]
    assert read(10, 10) == b""
    assert read(10_000, 20_000) == data[10_000:]  # end clamps to the size
    assert read(20_000) == b""
    assert read(0, None, chunk=7) == data
    with pytest.raises(ValueError):
        storage.read_range("r.bin", 10, 5)
    with pytest.raises(ValueError):
        storage.read_range("r.bin", -1)
    with pytest.raises(BlobNotFound):
        storage.read_range("missing.bin")  # raised on the call, before iteration


def test_stat_exists_keys_delete(storage: LocalStorage) -> None:
    for key in ("p/x/1", "p/x/y/2", "p/z", "q/3"):
        with storage.writer(key) as handle:
            handle.write(key.encode())
    info = storage.stat("p/x/y/2")
    assert info is not None and info.size == 7 and info.modified_ms > 1_600_000_000_000
    assert storage.stat("p/x") is None  # a folder is not a blob
    assert storage.stat("nope") is None
    assert list(storage.keys("p")) == ["p/x/1", "p/x/y/2", "p/z"]
    assert list(storage.keys("p/x/")) == ["p/x/1", "p/x/y/2"]
    assert list(storage.keys("none")) == []
    storage.delete("p/z")
    storage.delete("p/z")  # missing is fine
    assert not storage.exists("p/z")
    assert storage.delete_prefix("p/x/") == 2
    assert list(storage.keys("p")) == []
    assert storage.exists("q/3")
    assert storage.delete_prefix("gone") == 0


def test_put_file_tree_and_download(storage: LocalStorage, tmp_path: Path) -> None:
    source = tmp_path / "out.mp4"
    source.write_bytes(b"movie")
    source.chmod(0o644)
    storage.put_file("t/out.mp4", source)
    assert not source.exists()  # consumed
    assert _mode(storage.root / "t/out.mp4") == 0o600
    tree = tmp_path / "prepared"
    (tree / "variants").mkdir(parents=True)
    (tree / "index.json").write_bytes(b"{}")
    (tree / "variants" / "a.bin").write_bytes(b"A")
    storage.put_tree("titles/1/", tree)
    assert list(storage.keys("titles/1")) == ["titles/1/index.json", "titles/1/variants/a.bin"]
    copy = tmp_path / "copy"
    storage.download_tree("titles/1", copy)
    assert (copy / "variants" / "a.bin").read_bytes() == b"A"
    storage.download("t/out.mp4", tmp_path / "back.mp4")
    assert (tmp_path / "back.mp4").read_bytes() == b"movie"
    with pytest.raises(BlobNotFound):
        storage.download("t/none.mp4", tmp_path / "x")
    assert storage.local_path("t/out.mp4") == storage.root / "t/out.mp4"
    with pytest.raises(BlobNotFound):
        storage.local_path("t/none.mp4")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "passwd").symlink_to("/etc/passwd")
    with pytest.raises(ValueError):
        storage.put_tree("leak", linked)
    assert not storage.exists("leak/passwd")


@pytest.mark.parametrize(
    "key",
    ["", "/etc/passwd", "../x", "a/../../x", "a/./b", "a//b", "a/", "a\\b", "a\x00b", "a\nb", "a\x7fb",
     ".incoming/w-1", "x" * 1025],
)  # fmt: skip
def test_bad_keys_are_refused(storage: LocalStorage, key: str) -> None:
    assert issubclass(InvalidKey, ValueError)
    _refused_everywhere(storage, key)


def _refused_everywhere(storage: LocalStorage, key: str) -> None:
    """Reading, writing and deleting `key` all raise InvalidKey and leave nothing behind."""
    for call in (storage.exists, storage.read_range, storage.stat, storage.delete, storage.local_path):
        with pytest.raises(InvalidKey):
            call(key)
    with pytest.raises(InvalidKey), storage.writer(key) as handle:
        handle.write(b"overwritten")
    assert _incoming(storage) == []


def test_symbolic_links_cannot_escape(storage: LocalStorage, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_bytes(b"secret")
    (storage.root / "escape").symlink_to(outside)
    (storage.root / "file-link").symlink_to(outside / "secret")
    for key in ("escape/secret", "file-link", "escape/new"):
        _refused_everywhere(storage, key)
    with pytest.raises(InvalidKey):
        storage.delete_prefix("escape")
    assert (outside / "secret").read_bytes() == b"secret"
    assert sorted(p.name for p in outside.iterdir()) == ["secret"]
    with pytest.raises(InvalidKey):
        list(storage.keys("escape"))
    with storage.writer("p/real") as handle:
        handle.write(b"real")
    (storage.root / "p" / "dir-link").symlink_to(outside)
    (storage.root / "p" / "file-link").symlink_to(outside / "secret")
    assert list(storage.keys("p")) == ["p/real"]  # listing never follows links
    assert storage.delete_prefix("p") == 1
    assert (outside / "secret").read_bytes() == b"secret"
    (storage.root / "inside").mkdir()
    (storage.root / "alias").symlink_to(storage.root / "inside")
    with storage.writer("alias/ok") as handle:  # a link that stays inside is harmless
        handle.write(b"ok")
    assert storage.exists("inside/ok")


def test_permissions(tmp_path: Path) -> None:
    old_umask = os.umask(0o022)
    try:
        storage = LocalStorage(tmp_path / "media")
        with storage.writer("a/b/c") as handle:
            handle.write(b"x")
    finally:
        os.umask(old_umask)
    assert _mode(storage.root) == 0o700
    assert _mode(storage.root / "a") == 0o700
    assert _mode(storage.root / "a" / "b") == 0o700
    assert _mode(storage.root / "a" / "b" / "c") == 0o600


def test_discard_incomplete(storage: LocalStorage) -> None:
    stale = storage.root / ".incoming" / "w-killed"
    stale.write_bytes(b"half")
    os.utime(stale, (1, 1))
    fresh = storage.root / ".incoming" / "w-running"
    fresh.write_bytes(b"half")
    assert storage.discard_incomplete(older_than_s=3600) == 1
    assert _incoming(storage) == ["w-running"]


def test_open_storage(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}/blobs")
    assert isinstance(storage, LocalStorage) and storage.root == (tmp_path / "blobs").resolve()
    for url, message in [
        ("s3://AKIAKEY:topsecret@bucket/prefix", "not s3://"),
        ("/var/media", "not a bare path"),
        ("file://host/var/media", "without a host"),
        ("file:relative/path", "absolute path"),
    ]:
        with pytest.raises(ValueError, match=message) as raised:
            open_storage(url)
        assert "topsecret" not in str(raised.value)
