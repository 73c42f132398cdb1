"""Atomic file writes: a temporary file beside the target, fsync, then one rename.

A reader of the target sees the old file or the new one, never a part of either. The
temporary file is named ``.NAME.PID.RANDOM.tmp`` and locked (``flock``) while it is written.
A writer killed before its rename leaves it behind; the next write of the same target removes
such leftovers, but only those of this target whose writer is gone (process ``PID`` is dead
on this host and nobody holds the lock). A failed write raises an ``OSError`` that names the
target and says that the previous file there is intact.
"""
from __future__ import annotations

import errno
import os
import re
import secrets

try:
    import fcntl
except ImportError:  # not POSIX: no leftover is ever judged stale
    fcntl = None  # type: ignore[assignment]

_WHY = {errno.ENOSPC: "the disk is full", errno.EFBIG: "a file size limit was reached"}
if hasattr(errno, "EDQUOT"):
    _WHY[errno.EDQUOT] = "the disk quota is exceeded"


def _temp_pattern(base):
    return re.compile(rf"\.{re.escape(base)}\.(\d+)\.[0-9a-f]+\.tmp\Z")


def _alive(pid):
    """Whether process ``pid`` exists on this host (POSIX only)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process: it exists
        return True
    return True


def _unlocked(path):
    """True when nobody holds an ``flock`` on ``path`` (then nobody writes it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)  # also drops the lock just taken


def remove_stale_temps(path) -> list[str]:
    """Remove the leftover temporary files of writes of ``path`` whose writer is gone;
    return their paths. Other files, and temporaries of live writers, are never touched."""
    if fcntl is None:
        return []
    directory, base = os.path.split(os.path.abspath(os.fspath(path)))
    pattern = _temp_pattern(base)
    try:
        names = os.listdir(directory)
    except OSError:
        return []
    removed = []
    for name in names:
        match = pattern.match(name)
        if match is None:
            continue
        pid, leftover = int(match.group(1)), os.path.join(directory, name)
        if pid != os.getpid() and not _alive(pid) and _unlocked(leftover):
            try:
                os.unlink(leftover)
            except OSError:
                continue
            removed.append(leftover)
    return removed


def _failure(exc, path, what):
    """``exc`` reworded: which file could not be written, why, and what is left."""
    reason = exc.strerror or str(exc)
    if exc.errno in _WHY:
        reason = f"{reason} ({_WHY[exc.errno]})"
    kept = (f"the previous {what} there is intact" if os.path.exists(path)
            else f"no {what} was written")
    return OSError(exc.errno, f"could not write the {what} {path}: {reason}; {kept}")


def atomic_write(path, write, *, what="file"):
    """Create ``path`` (or replace it) with what ``write(f)`` writes to a binary file ``f``.

    ``path`` keeps its permission bits (new files: 0o644). ``what`` names the file in the
    error raised when writing fails, e.g. ``"checkpoint"``. Returns ``path``.
    """
    path = os.fspath(path)
    directory, base = os.path.split(os.path.abspath(path))
    remove_stale_temps(path)
    # pid and 64 random bits: no other file has this name, so whatever exists under it
    # after an error or a signal (even one arriving just after the file was made) is ours
    tmp = os.path.join(directory, f".{base}.{os.getpid()}.{secrets.token_hex(8)}.tmp")
    try:
        with open(tmp, "xb") as f:
            if fcntl is not None:
                fcntl.flock(f.fileno(), fcntl.LOCK_EX)  # ours until the rename
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, os.stat(path).st_mode & 0o777 if os.path.exists(path) else 0o644)
            os.replace(tmp, path)
    except BaseException as exc:
        if os.path.exists(tmp):
            os.unlink(tmp)
        if isinstance(exc, OSError):
            raise _failure(exc, path, what) from exc
        raise
    _fsync_directory(directory)
    return path


def write_text(path, text, *, what="file"):
    """:func:`atomic_write` of ``text`` as UTF-8."""
    return atomic_write(path, lambda f: f.write(text.encode("utf-8")), what=what)


def _fsync_directory(directory):
    """Make the rename durable where the platform allows it (POSIX)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
