"""irc's per-user cache folder and the only way to read and write files in it.

The folder is $XDG_CACHE_HOME/irc (or ~/.cache/irc). What lies there is
trusted (object code is linked into the process, the parser's tables are
loaded), so it must be private: it is created with mode 0700, and before any
read or write it must be a real folder (not a link) owned by the current user
and not writable by group or others (a folder of ours that is too open is
tightened to 0700; one of another user's is refused, and irc then runs
without a cache). Each file read must be a regular file owned by the user and
not group/other writable. Writes go to a temporary file in the folder, renamed
into place (atomic: a reader sees the old file or the new, never half).

Nothing here ever unpickles; callers store bytes (object code, JSON).

Imports the standard library only (every layer may use it).
"""

from __future__ import annotations

import os
import stat
import tempfile

_CHECKED: dict = {}  # paths found safe (checked once per process)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "irc")


def _safe(st) -> bool:
    if not hasattr(os, "getuid"):  # pragma: no cover - no POSIX owners to check
        return True
    return st.st_uid == os.getuid() and not st.st_mode & (stat.S_IWGRP | stat.S_IWOTH)


def private_dir(create: bool = True):
    """The cache folder, made and checked as the module docstring says, or None
    when it cannot be used safely (then nothing is read or written)."""
    d = cache_dir()
    if d in _CHECKED:
        return d
    if _check(d, create):
        _CHECKED[d] = True  # only a good answer is kept: a missing folder may appear
        return d
    return None


def _check(d: str, create: bool) -> bool:
    try:
        if create:
            os.makedirs(d, mode=0o700, exist_ok=True)
        st = os.lstat(d)
    except OSError:
        return False
    if not stat.S_ISDIR(st.st_mode):
        return False  # a link or a file where our folder should be
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        return False
    if st.st_mode & 0o077:
        try:
            os.chmod(d, 0o700)
            st = os.lstat(d)
        except OSError:
            return False
    return _safe(st) and not st.st_mode & 0o077


def read(name: str):
    """The bytes of cache file `name`, or None (missing, unsafe or unreadable)."""
    d = private_dir(create=False)
    if d is None:
        return None
    try:
        fd = os.open(os.path.join(d, name), os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
    except OSError:
        return None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or not _safe(st):
            return None
        with os.fdopen(fd, "rb") as f:
            fd = -1
            return f.read()
    except OSError:
        return None
    finally:
        if fd >= 0:
            os.close(fd)


def write(name: str, data: bytes) -> None:
    """Write cache file `name` atomically; a read-only, full or unsafe cache
    folder only costs the next load a compile."""
    d = private_dir()
    if d is None:
        return
    try:
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=d)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, os.path.join(d, name))
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
    except OSError:
        pass
