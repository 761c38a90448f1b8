"""SQLite's write-ahead log, kept in place between Django's short-lived connections.

Connections are closed at the end of every request and task (CONN_MAX_AGE is 0). When the last
connection to a WAL database closes, SQLite checkpoints the log into the database, syncs both
files to disk and deletes the log; the next connection starts a new one, and its first commit
syncs it. On an idle site that happened on every request and every task: the commit of an idle
visitor's question took 2 ms instead of 0.1 ms.

One connection per process, opened with the first of Django's and never used for a
transaction, keeps the log alive. It holds no snapshot, so checkpoints still run as usual. At
exit it closes like Django's last connection would have, folding the log into the database and
removing it; the log of a database deleted meanwhile (the test database, at the end of a run) is
removed too.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import sqlite3
import threading
from typing import Any

from django.db.backends.base.base import BaseDatabaseWrapper

log = logging.getLogger(__name__)

_keepers: dict[tuple[int, str], sqlite3.Connection] = {}
_lock = threading.Lock()


def keep_log_open(sender: Any, connection: BaseDatabaseWrapper, **kwargs: Any) -> None:
    """`connection_created` receiver: the first SQLite connection of a process to a file
    database opens that process's keeper for it."""
    if connection.vendor != "sqlite" or connection.is_in_memory_db():
        return
    path = str(connection.settings_dict["NAME"])
    # Per process: a connection must never be used on both sides of a fork.
    key = (os.getpid(), path)
    if key in _keepers:
        return
    with _lock:
        if key in _keepers:
            return
        try:
            keeper = sqlite3.connect(path, check_same_thread=False)
            # Reading attaches it to the log's shared index; the statement is finished at
            # once, so no read transaction stays open.
            keeper.execute("SELECT count(*) FROM sqlite_master").fetchall()
        except sqlite3.Error as exc:
            # Only a speed-up: the connection Django asked for must not fail for it. The
            # process's next connection tries again.
            log.warning("could not keep %s's write-ahead log open: %s", path, exc)
            return
        _keepers[key] = keeper


def keepers() -> list[str]:
    """The databases this process keeps a log open for."""
    return [path for pid, path in _keepers if pid == os.getpid()]


@atexit.register
def _close_keepers() -> None:
    # Only this process's own: a forked child runs its parent's exit handlers too, and must
    # never touch a connection it inherited.
    for (pid, path), keeper in list(_keepers.items()):
        if pid == os.getpid():
            keeper.close()
            del _keepers[(pid, path)]
            if not os.path.exists(path):
                # Deleted while kept: SQLite will not write into a database that is gone, so
                # it leaves the log and its index behind for nobody.
                for leftover in (path + "-wal", path + "-shm"):
                    with contextlib.suppress(FileNotFoundError):
                        os.remove(leftover)
