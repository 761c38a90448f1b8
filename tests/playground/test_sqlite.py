"""SQLite: a sqlite:// DATABASE_URL gets the same settings as the default database, and each
process keeps the write-ahead log in place between Django's short-lived connections."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db.backends.signals import connection_created
from django.db.utils import ConnectionHandler

from playground import settings as project_settings
from playground import sqlite

ROOT = Path(__file__).resolve().parents[2]


def scratch_connection(name: str) -> Any:
    """A Django connection of its own to `name`, configured like the project's SQLite."""
    handler = ConnectionHandler(
        {
            "default": {
                "ENGINE": "django.db.backends.sqlite3",
                "NAME": name,
                "OPTIONS": dict(project_settings.SQLITE_OPTIONS),
            }
        }
    )
    return handler["default"]


def write_and_close(name: str) -> None:
    connection = scratch_connection(name)
    with connection.cursor() as cursor:
        cursor.execute("CREATE TABLE IF NOT EXISTS answers (text TEXT)")
        cursor.execute("INSERT INTO answers VALUES ('forty-two')")
    connection.close()


def run_with_sqlite_url(database: Path, code: str) -> subprocess.CompletedProcess[str]:
    """`code` run by a process of its own whose DATABASE_URL names `database`."""
    env = {
        **os.environ,
        "DATABASE_URL": f"sqlite:///{database}",
        "DJANGO_SETTINGS_MODULE": "playground.settings",
    }
    return subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True
    )


@pytest.fixture(autouse=True)
def scratch_databases_allowed(django_db_blocker: Any) -> Iterator[None]:
    # Each test here opens connections of its own to files of its own, never the test database.
    with django_db_blocker.unblock():
        yield


@pytest.fixture
def without_keepers() -> Iterator[None]:
    connection_created.disconnect(dispatch_uid="playground.sqlite")
    try:
        yield
    finally:
        connection_created.connect(sqlite.keep_log_open, dispatch_uid="playground.sqlite")


def test_a_sqlite_url_gets_the_settings_of_the_default_database(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DATABASE_URL", f"sqlite:///{tmp_path / 'db.sqlite3'}")

    config = project_settings._database()

    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == str(tmp_path / "db.sqlite3")
    assert config["OPTIONS"] == project_settings.SQLITE_OPTIONS


def test_a_process_configured_by_url_writes_ahead_and_commits_without_syncing(
    tmp_path: Path,
) -> None:
    # Before, a sqlite:// URL (the benchmark's) fell back to SQLite's defaults: a rollback
    # journal synced to disk at every commit, and a 5 s wait for the write lock.
    code = (
        "import django; django.setup(); from django.db import connection; "
        "cursor = connection.cursor(); "
        "print(cursor.execute('PRAGMA journal_mode').fetchone()[0], "
        "cursor.execute('PRAGMA synchronous').fetchone()[0], "
        "connection.transaction_mode)"
    )

    result = run_with_sqlite_url(tmp_path / "db.sqlite3", code)

    assert result.returncode == 0, result.stderr
    # synchronous 1 is NORMAL: a WAL commit is not synced, a checkpoint is.
    assert result.stdout.split() == ["wal", "1", "IMMEDIATE"]
    # The process's keeper closed at exit, folding the log into the database.
    assert not (tmp_path / "db.sqlite3-wal").exists()


def test_a_database_deleted_while_kept_leaves_no_log_behind_at_exit(tmp_path: Path) -> None:
    # As the test database is, at the end of a run: its file is removed while the keeper of
    # the process that used it is still open.
    code = (
        "import os, django; django.setup(); from django.db import connection; "
        "connection.cursor().execute('CREATE TABLE answers (text TEXT)'); connection.close(); "
        "os.remove(connection.settings_dict['NAME']); "
        "print(sorted(os.listdir(os.path.dirname(connection.settings_dict['NAME']))))"
    )

    result = run_with_sqlite_url(tmp_path / "db.sqlite3", code)

    assert result.returncode == 0, result.stderr
    # The log was still there while the process ran, and is gone after it.
    assert "'db.sqlite3-wal'" in result.stdout
    assert sorted(path.name for path in tmp_path.iterdir()) == []


def test_the_log_outlives_the_last_django_connection(tmp_path: Path) -> None:
    name = str(tmp_path / "kept.sqlite3")

    write_and_close(name)

    assert Path(name + "-wal").exists()
    assert name in sqlite.keepers()


def test_without_the_keeper_the_last_connection_takes_the_log_with_it(
    tmp_path: Path, without_keepers: None
) -> None:
    # What the keeper prevents: a checkpoint, two disk syncs and a new log on the next write.
    name = str(tmp_path / "unkept.sqlite3")

    write_and_close(name)

    assert not Path(name + "-wal").exists()
    assert name not in sqlite.keepers()


def test_the_keeper_holds_no_snapshot_so_a_checkpoint_completes(tmp_path: Path) -> None:
    name = str(tmp_path / "checkpointed.sqlite3")
    write_and_close(name)
    write_and_close(name)
    other = sqlite3.connect(name, timeout=0)

    busy, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    # The same checkpoint with a reader in the middle of a transaction cannot finish, so the
    # check above can fail.
    reader = sqlite3.connect(name, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM answers").fetchall()
    write_and_close(name)
    busy_with_reader, _, _ = other.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    reader.close()
    other.close()

    assert busy == 0
    assert busy_with_reader == 1


def test_a_database_in_memory_gets_no_keeper() -> None:
    connection = scratch_connection(":memory:")
    connection.ensure_connection()
    connection.close()

    assert ":memory:" not in sqlite.keepers()


def test_a_keeper_that_cannot_open_fails_nothing_and_is_tried_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = str(tmp_path / "busy.sqlite3")
    real_connect = sqlite3.connect
    attempts: list[str] = []

    def locked_once(path: str, **kwargs: Any) -> sqlite3.Connection:
        attempts.append(path)
        if len(attempts) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real_connect(path, **kwargs)

    monkeypatch.setattr(sqlite.sqlite3, "connect", locked_once)

    write_and_close(name)
    kept_after_failure = name in sqlite.keepers()
    write_and_close(name)

    assert not kept_after_failure
    assert name in sqlite.keepers() and attempts == [name, name]
