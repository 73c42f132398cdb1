"""One run per output folder: :class:`RunClaim` holds a lock on ``DIR/.gpunet-run.lock``
while ``gpunet train`` writes into ``DIR``.

The lock is an ``flock`` (POSIX; ``msvcrt.locking`` on Windows) on that file, taken without
waiting: a second run finds it held and fails at once, naming the holder (process id, host,
start time and command line, which the holder writes into the file). The operating system
drops the lock when its process ends in any way (exit, crash, ``kill -9``), so a lock file
left behind by a killed run is stale by construction: the next run or ``--resume`` takes it
over. A run that ends normally removes the file.
"""
from __future__ import annotations

import datetime
import json
import os
import socket
import sys
import tempfile

try:
    import fcntl
except ImportError:
    fcntl = None  # type: ignore[assignment]
    import msvcrt

LOCK_NAME = ".gpunet-run.lock"


class FolderInUse(RuntimeError):
    """The output folder is claimed by another running process."""


def check_writable(folder):
    """Raise PermissionError (or the OSError met) unless a file can be created in
    ``folder``: found before training, not at the first checkpoint."""
    try:
        fd, probe = tempfile.mkstemp(prefix=".gpunet-write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise type(exc)(exc.errno, f"the output folder {folder} is not writable "
                                   f"({exc.strerror or exc}); choose another --out or "
                                   f"make it writable") from None


def _try_lock(fd):
    try:
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        else:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    except OSError:
        return False
    return True


def _holder(path):
    """What the holder of the lock file wrote about itself, as words."""
    try:
        with open(path, encoding="utf-8") as f:
            info = json.loads(f.read(4096))
        return (f"pid {int(info['pid'])} on {str(info['host'])[:64]}, started "
                f"{str(info['started'])[:32]}: {str(info['command'])[:200]}")
    except (OSError, ValueError, KeyError, TypeError):
        return "a process that has not yet said who it is"


class RunClaim:
    """``with RunClaim(folder):`` creates ``folder`` if needed, checks that it is writable
    and claims it for this process, or raises :class:`FolderInUse` naming the holder. On
    leaving, the lock file is removed (and the folder too, if this claim created it and
    nothing was written into it)."""

    def __init__(self, folder):
        self.folder = os.fspath(folder)
        self.path = os.path.join(self.folder, LOCK_NAME)
        self._fd = None
        self._created = False

    def __enter__(self):
        self._created = not os.path.isdir(self.folder)
        os.makedirs(self.folder, exist_ok=True)
        try:
            check_writable(self.folder)
            self._fd = self._lock()
        except BaseException:
            self._remove_created_folder()
            raise
        info = {"pid": os.getpid(), "host": socket.gethostname(),
                "started": datetime.datetime.now().isoformat(timespec="seconds"),
                "command": " ".join(["gpunet", *sys.argv[1:]])}
        os.ftruncate(self._fd, 0)
        os.write(self._fd, json.dumps(info).encode("utf-8"))
        return self

    def _lock(self):
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            if not _try_lock(fd):
                os.close(fd)
                raise FolderInUse(f"the output folder {self.folder} is in use by another "
                                  f"gpunet run ({_holder(self.path)}); wait for it to "
                                  f"finish or choose another --out")
            try:
                if os.path.samestat(os.fstat(fd), os.stat(self.path)):
                    return fd
            except FileNotFoundError:
                pass
            os.close(fd)  # the holder finished and removed the file meanwhile: try again

    def __exit__(self, *exc):
        try:
            os.unlink(self.path)  # while locked: nobody else holds this file
        except OSError:
            pass
        os.close(self._fd)
        self._fd = None
        self._remove_created_folder()

    def _remove_created_folder(self):
        if self._created:
            try:
                os.rmdir(self.folder)
            except OSError:  # not empty: the run wrote something
                pass
