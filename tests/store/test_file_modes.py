"""Files holding secrets are private: the data directory 0700, the SQLite database and its
WAL and SHM files 0600, the media signing key 0600; looser ones are tightened at start.

Tests run as root here, so they read the mode bits rather than try to read as someone else.
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagerouter.server.settings import ServerSettings
from imagerouter.storage.local import KEY_FILE, load_signing_key


def mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The common 022 umask, which alone would leave files world-readable."""
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


async def write_secret(data_dir: Path) -> None:
    async with ServerSettings(data_dir=data_dir).job_store() as store:
        account = await store.create_account("acme")
        await store.add_webhook_secret(account.id, "whsec_" + "s" * 32, 60.0)
        db = data_dir / "imagerouter.db"
        # while the store is open the WAL and SHM files exist (os.stat) and are private
        for suffix in ("", "-wal", "-shm"):
            assert mode(Path(f"{db}{suffix}")) == 0o600, suffix


async def test_a_new_data_directory_and_database_are_private(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    await write_secret(data_dir)
    assert mode(data_dir) == 0o700
    for path in data_dir.glob("imagerouter.db*"):
        assert mode(path) == 0o600, path.name


async def test_looser_files_found_at_start_are_tightened_and_logged_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    data_dir = tmp_path / "data"
    await write_secret(data_dir)
    os.chmod(data_dir, 0o755)
    for path in data_dir.glob("imagerouter.db*"):
        os.chmod(path, 0o644)
    caplog.set_level(logging.WARNING, logger="imagerouter.private")
    await write_secret(data_dir)
    assert mode(data_dir) == 0o700
    for path in data_dir.glob("imagerouter.db*"):
        assert mode(path) == 0o600, path.name
    tightened = [r.getMessage() for r in caplog.records if "tightened" in r.getMessage()]
    assert any(str(data_dir) in message for message in tightened)
    assert any(message.startswith(str(data_dir / "imagerouter.db")) for message in tightened)
    caplog.clear()
    await write_secret(data_dir)  # now tight: nothing more to say
    assert not [r for r in caplog.records if "tightened" in r.getMessage()]


def test_the_media_signing_key_is_private_and_tightened(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    key = load_signing_key(data_dir)
    assert mode(data_dir) == 0o700
    assert mode(data_dir / KEY_FILE) == 0o600
    os.chmod(data_dir / KEY_FILE, 0o644)
    assert load_signing_key(data_dir) == key
    assert mode(data_dir / KEY_FILE) == 0o600


async def test_an_existing_directory_of_a_database_url_is_left_alone(tmp_path: Path) -> None:
    """Only the data directory is imagerouter's to tighten; a ``sqlite://`` store in some
    other directory makes its own files private, not the directory."""
    from imagerouter.jobs.backends import open_store

    shared = tmp_path / "shared"
    shared.mkdir(mode=0o755)
    async with open_store(f"sqlite://{shared / 'jobs.db'}") as store:
        await store.create_account("acme")
    assert mode(shared) == 0o755
    assert mode(shared / "jobs.db") == 0o600
