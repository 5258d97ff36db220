"""sha256 of weight files, memoised by path and file identity so repeated loads stay cheap.

The identity is size, mtime, inode and ctime: a re-saved skill swaps in new files (a new
inode) that may keep the old size and, on file systems with coarse timestamps, the old
mtime; and resetting a changed file's mtime (``touch -d``) still moves its ctime.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

from slmstack.errors import IntegrityError

_CHUNK = 1 << 20


@lru_cache(maxsize=64)
def _sha256_cached(path: str, size: int, mtime_ns: int, inode: int, ctime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def sha256_file(path: Path) -> str:
    """Return the hex sha256 of a file."""
    st = path.stat()
    return _sha256_cached(
        str(path.resolve()), st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns
    )


def verify_sha256(path: Path, expected: str, *, what: str) -> None:
    """Raise :class:`IntegrityError` unless ``path`` hashes to ``expected``."""
    actual = sha256_file(path)
    if actual != expected:
        raise IntegrityError(
            f"{what}: {path} has sha256 {actual}, expected the pinned {expected}. "
            "The file is corrupt or was replaced; reinstall the package that provides it "
            "(pip install --force-reinstall ...) or pass a folder you trust."
        )
