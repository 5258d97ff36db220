"""Model folders zipped and split over several packages (the ``mpnet`` alias)."""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import pytest

from slmstack import IntegrityError
from slmstack.models import parts
from slmstack.models.parts import unzip_folder, zipped_parts_folder


def _zip(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _split(tmp_path: Path, blob: bytes, n: int) -> dict[str, Path]:
    size = -(-len(blob) // n)
    files = {}
    for i in range(n):
        files[f"dist-{i}"] = tmp_path / f"part{i}"
        files[f"dist-{i}"].write_bytes(blob[i * size : (i + 1) * size])
    return files


def test_zipped_parts_are_joined_verified_unzipped_and_cleaned(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_CACHE", str(tmp_path / "cache"))
    blob = _zip({
        "model/config.json": b"{}",
        "model/sub/pool.json": b"[1]",
        "model/desktop.ini": b"junk",
        "other/x.txt": b"not ours",
    })  # fmt: skip
    files = _split(tmp_path, blob, 3)
    monkeypatch.setattr(parts, "distribution_file", lambda dist, rel: files.get(dist))
    locate = zipped_parts_folder(
        "m", [(d, "x") for d in files], hashlib.sha256(blob).hexdigest(), "model"
    )
    folder = locate()
    assert folder == tmp_path / "cache" / "models" / "m"
    got = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
    assert got == ["config.json", "sub/pool.json"]  # desktop.ini and other/ left out
    assert (folder / "sub" / "pool.json").read_bytes() == b"[1]"
    assert not (tmp_path / "cache" / "models" / "m.zip").exists()
    files["dist-0"].unlink()  # cached now: the parts are no longer needed
    assert locate() == folder


def test_zipped_parts_with_wrong_hash_leave_nothing_behind(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_CACHE", str(tmp_path / "cache"))
    files = _split(tmp_path, _zip({"model/a": b"a"}), 2)
    monkeypatch.setattr(parts, "distribution_file", lambda dist, rel: files.get(dist))
    locate = zipped_parts_folder("m", [(d, "x") for d in files], "0" * 64, "model")
    with pytest.raises(IntegrityError, match="reinstall the part packages"):
        locate()
    assert list((tmp_path / "cache" / "models").iterdir()) == []


def test_zipped_parts_missing_package_is_none(tmp_path, monkeypatch):
    monkeypatch.setenv("SLMSTACK_CACHE", str(tmp_path))
    locate = zipped_parts_folder("m", [("no-such-dist-xyz", "a.zip.001")], "0" * 64, "model")
    assert locate() is None


def test_unzip_refuses_paths_that_escape(tmp_path):
    archive = tmp_path / "a.zip"
    archive.write_bytes(_zip({"model/../../evil": b"x"}))
    with pytest.raises(IntegrityError, match="unsafe member path"):
        unzip_folder(archive, "model", tmp_path / "out", ())
    assert not (tmp_path / "out").exists() and not (tmp_path.parent / "evil").exists()
