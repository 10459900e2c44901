"""Local storage writes files in batches: every file of a burst lands whole and atomically,
and one file that cannot be written fails alone. Each write test runs both ways a file is
written: unnamed and then named (Linux's ``O_TMPFILE``), and through a temporary file renamed
into place (where the filesystem has no unnamed files)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import os
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import Executor, ThreadPoolExecutor
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from imagerouter.storage import LocalStorage, StorageError

KEY = b"k" * 32


@pytest.fixture
def pool() -> Iterator[ThreadPoolExecutor]:
    """The bounded pool the storage writes in."""
    executor = ThreadPoolExecutor(max_workers=4)
    yield executor
    executor.shutdown(wait=True)


@pytest.fixture(params=["unnamed", "renamed"])
def make(request: pytest.FixtureRequest) -> Callable[[Path, Executor], LocalStorage]:
    """Builds the storage, writing its files one way or the other."""

    def build(root: Path, executor: Executor) -> LocalStorage:
        storage = LocalStorage(root, KEY, executor)
        if request.param == "renamed":
            storage.files.unnamed = False
        return storage

    return build


async def test_a_burst_of_writes_lands_every_file_whole(
    tmp_path: Path, pool: ThreadPoolExecutor, make: Callable[[Path, Executor], LocalStorage]
) -> None:
    storage = make(tmp_path / "media", pool)
    payloads = {f"job_{i:04d}/0.png": os.urandom(1000 + i) for i in range(300)}

    await asyncio.gather(*(storage.put(k, v, "image/png") for k, v in payloads.items()))

    for key, data in payloads.items():
        assert storage.path(key).read_bytes() == data
        assert await storage.get(key) == data
    leftovers = [p.name for p in (tmp_path / "media").rglob(".*.tmp")]
    assert leftovers == []


async def test_a_file_that_cannot_be_written_fails_alone(
    tmp_path: Path, pool: ThreadPoolExecutor, make: Callable[[Path, Executor], LocalStorage]
) -> None:
    storage = make(tmp_path / "media", pool)
    (tmp_path / "media" / "blocked").write_bytes(b"a file where a folder should be")
    good = {f"job_{i}/0.png": f"image {i}".encode() for i in range(20)}

    outcomes = await asyncio.gather(
        storage.put("blocked/0.png", b"never stored", "image/png"),
        *(storage.put(k, v, "image/png") for k, v in good.items()),
        return_exceptions=True,
    )

    assert isinstance(outcomes[0], StorageError)
    assert "blocked/0.png" in str(outcomes[0])
    assert outcomes[1:] == [None] * len(good)
    for key, data in good.items():
        assert storage.path(key).read_bytes() == data


async def test_rewriting_a_key_replaces_the_file(
    tmp_path: Path, pool: ThreadPoolExecutor, make: Callable[[Path, Executor], LocalStorage]
) -> None:
    storage = make(tmp_path / "media", pool)
    await storage.put("job_1/0.png", b"first", "image/png")
    await storage.put("job_1/0.png", b"second", "image/png")
    assert storage.path("job_1/0.png").read_bytes() == b"second"
    assert list((tmp_path / "media" / "job_1").iterdir()) == [storage.path("job_1/0.png")]


async def test_a_file_gets_the_mode_a_created_file_gets(
    tmp_path: Path, pool: ThreadPoolExecutor, make: Callable[[Path, Executor], LocalStorage]
) -> None:
    """Whichever way it is written, an output is created as ``open`` creates a file: 0666
    less the umask (the data dir itself is kept 0700)."""
    storage = make(tmp_path / "media", pool)
    umask = os.umask(0o027)
    try:
        await storage.put("2026-12-05/14/job_1-0.png", b"image", "image/png")
    finally:
        os.umask(umask)
    assert storage.path("2026-12-05/14/job_1-0.png").stat().st_mode & 0o777 == 0o640


@pytest.mark.skipif(sys.platform != "linux", reason="unnamed files (O_TMPFILE) are Linux's")
async def test_files_are_written_unnamed_where_the_filesystem_can(
    tmp_path: Path, pool: ThreadPoolExecutor
) -> None:
    """On Linux (ext4, tmpfs: CI's disks) files are written unnamed and named once whole,
    not through a temporary file: the storage still writes that way after a burst."""
    storage = LocalStorage(tmp_path / "media", KEY, pool)
    await asyncio.gather(*(storage.put(f"a/{i}.png", b"x", "image/png") for i in range(50)))
    assert storage.files.unnamed is True
    assert sorted(p.name for p in (tmp_path / "media" / "a").iterdir()) == sorted(
        f"{i}.png" for i in range(50)
    )


async def test_a_write_after_the_pool_is_shut_down_raises(tmp_path: Path) -> None:
    executor = ThreadPoolExecutor(max_workers=1)
    storage = LocalStorage(tmp_path / "media", KEY, executor)
    executor.shutdown(wait=True)
    with pytest.raises(RuntimeError):
        await storage.put("job_1/0.png", b"data", "image/png")


async def test_writes_queued_as_writers_finish_are_never_stranded(
    tmp_path: Path, pool: ThreadPoolExecutor, make: Callable[[Path, Executor], LocalStorage]
) -> None:
    storage = make(tmp_path / "media", pool)

    async def writer(n: int) -> None:
        for round_ in range(10):
            await storage.put(f"job_{n}_{round_}/0.png", b"x" * n, "image/png")
            for _ in range(n % 3):  # stagger, so puts land as writers drain and leave
                await asyncio.sleep(0)

    await asyncio.wait_for(asyncio.gather(*(writer(n) for n in range(1, 30))), timeout=30)
    assert len(list((tmp_path / "media").rglob("*.png"))) == 29 * 10


def test_every_url_is_signed_as_documented_and_alone(tmp_path: Path) -> None:
    """The signature is HMAC-SHA256 of ``"<path>\\n<expires>"`` under the key, for each URL on
    its own: signing one URL leaves nothing behind that changes the next one's signature."""
    with ThreadPoolExecutor(max_workers=1) as executor:
        storage = LocalStorage(tmp_path / "media", KEY, executor, clock=lambda: 1_000.0)
        signed = [(key, storage.url(key, 60)) for key in ("a/0.png", "b/1.webp", "a/0.png")]
    assert signed[0][1] == signed[2][1]
    for key, url in signed:
        query = parse_qs(urlsplit(url).query)
        message = f"/v1/media/{key}\n1060".encode()
        assert query["expires"] == ["1060"]
        assert query["sig"] == [hmac.new(KEY, message, hashlib.sha256).hexdigest()]
        assert storage.verify(key, "1060", query["sig"][0])
        assert not storage.verify("a/1.png", "1060", query["sig"][0])


async def test_a_data_dir_given_relative_to_the_working_directory_works(
    tmp_path: Path,
    pool: ThreadPoolExecutor,
    make: Callable[[Path, Executor], LocalStorage],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``--data-dir data`` gives the storage a relative root: files land under it either way."""
    monkeypatch.chdir(tmp_path)
    storage = make(Path("data") / "media", pool)
    await storage.put("2026-12-05/14/job_1-0.png", b"image", "image/png")
    assert (tmp_path / "data/media/2026-12-05/14/job_1-0.png").read_bytes() == b"image"
