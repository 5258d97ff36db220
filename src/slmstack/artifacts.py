"""Skill folders: written atomically, verified on load, described by a model card.

A skill folder holds ``config.json`` (parameters, learned scalars, provenance and the
sha256 of every other file), safetensors weights, and ``model_card.md``.

Two guarantees:

* **A save never leaves a broken skill.** Everything is written into a temporary sibling
  folder first, then swapped in with two renames; the old folder is removed only once
  the new one is in place. A failure halfway (disk full, permissions) leaves the old
  skill exactly as it was.
* **The folder decides nothing about its own safety.** Every file in the folder except
  the config and the card must be listed in ``config.json`` with its sha256; a missing
  hash, an unlisted file, or a changed file is an error. Whether pickles may load is the
  caller's decision (``load(..., allow_pickle=True)``), never the file's.
"""

from __future__ import annotations

import glob
import hashlib
import json
import platform
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict, dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from slmstack.data.utf8 import jsonl_lines
from slmstack.errors import ArtifactError
from slmstack.models.hashing import sha256_file

CONFIG = "config.json"
CARD = "model_card.md"
FORMAT_VERSION = 2
_UNHASHED = frozenset({CONFIG, CARD})


def library_versions(extra: Iterable[str] = ()) -> dict[str, str]:
    """Versions of Python and the libraries that shape a model's numbers."""
    versions = {"python": platform.python_version()}
    for pkg in ("slmstack", "torch", "transformers", "tokenizers", "scikit-learn", *extra):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = "not installed"
    return versions


def data_hash(rows: Iterable[tuple[str, ...]]) -> str:
    """sha256 over the training rows, independent of the file format they came from."""
    digest = hashlib.sha256()
    for row in rows:
        digest.update(json.dumps(row, ensure_ascii=False).encode("utf-8"))
        digest.update(b"\n")
    return digest.hexdigest()


@dataclass
class Provenance:
    """Where a fitted skill came from: recorded in its config and its model card.

    Attributes:
        base: the base model's reference, origin, sha256 and licence (empty when none).
        data_sha256: :func:`data_hash` of the training rows.
        rows: training rows used, after exact duplicates were dropped.
        duplicates_dropped: exact duplicate rows removed before the validation split.
        seconds: wall time of the last ``fit`` or ``resume``.
        metrics: validation metrics (numbers only).
        versions: :func:`library_versions` at training time.
        resumed: whether the last training continued from a saved skill.
    """

    base: dict[str, Any] = field(default_factory=dict)
    data_sha256: str = ""
    rows: int = 0
    duplicates_dropped: int = 0
    seconds: float = 0.0
    metrics: dict[str, Any] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)
    resumed: bool = False

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict (the ``provenance`` entry of ``config.json``)."""
        return asdict(self)

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> Provenance:
        """Inverse of :meth:`to_json`; unknown keys are an :class:`ArtifactError`."""
        known = set(cls.__dataclass_fields__)
        extra = set(body) - known
        if extra:
            raise ArtifactError(f"provenance has unknown entries {sorted(extra)}")
        return cls(**dict(body))


# ---------------------------------------------------------------------- output folders
def _config_or_none(folder: Path) -> dict[str, Any] | None:
    """``folder``'s ``config.json`` as a dict, or ``None`` when it has no readable one."""
    try:
        config = json.loads((folder / CONFIG).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) else None


def is_skill_folder(folder: Path) -> bool:
    """Whether ``folder`` looks like a saved skill (it has a ``config.json`` naming one)."""
    config = _config_or_none(folder)
    return config is not None and isinstance(config.get("skill"), str)


def foreign_files(folder: Path) -> list[str]:
    """Files in the skill ``folder`` that its ``config.json`` does not list (a user's own).

    Replacing the skill would delete them, so :func:`check_output_folder` and
    :func:`save_folder` refuse such a folder. A config without a file list lists nothing.
    """
    listed = (_config_or_none(folder) or {}).get("files")
    if not isinstance(listed, dict):
        return []
    return [name for name in _weight_files(folder) if name not in listed]


def inside_skill(path: Path) -> Path | None:
    """The saved skill folder that ``path`` lies in (or is), if any."""
    for folder in [path.absolute(), *path.absolute().parents]:
        if is_skill_folder(folder):
            return folder
    return None


def refuse_inside_skill(path: Path, flag: str) -> None:
    """Refuse an output ``path`` inside a saved skill, whose file check it would then fail."""
    skill = inside_skill(path.absolute().parent)
    if skill is not None:
        raise ArtifactError(
            f"{flag} {path} lies inside the saved skill {skill}, which would then fail its "
            "check (a file its config does not list); pass a path outside it."
        )


def _refuse_foreign(folder: Path, what: str) -> None:
    extra = foreign_files(folder)
    if extra:
        shown = ", ".join(extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
        raise ArtifactError(
            f"{what} {folder} is a saved skill that also holds files it did not write "
            f"({shown}); replacing it would delete them. Move them out, or choose another "
            "folder."
        )


def check_output_folder(folder: Path, *, force: bool, flag: str = "--force") -> None:
    """Refuse an output folder that a save would destroy, before any training starts.

    A file, a non-empty folder that is not a skill, and (unless ``force``) an existing
    skill are refused; so is a folder whose parent cannot be written. ``flag`` is the
    command's option that sets ``force``, named in the error.
    """
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"--out {folder} is a file; pass a folder path for the skill.")
    if folder.is_dir() and any(folder.iterdir()):
        if not is_skill_folder(folder):
            raise ArtifactError(
                f"--out {folder} is a non-empty folder that is not a saved skill; "
                "refusing to replace its files. Pass a new or empty folder."
            )
        if not force:
            raise ArtifactError(
                f"--out {folder} already holds a saved skill. Pass {flag} to replace it, "
                "or choose another folder."
            )
        _refuse_foreign(folder, "--out")
        here = Path.cwd()
        if folder.resolve() in (here, *here.parents):
            raise ArtifactError(
                f"--out {folder} is the folder you are working in (or holds it); replacing "
                "it would leave your shell in a deleted folder. Run from outside it."
            )
    refuse_inside_skill(folder, "--out")
    parent = _existing_parent(folder)
    try:  # a real probe: os.access says yes to root even on a read-only file system
        probe = Path(tempfile.mkdtemp(prefix=".slmstack-probe-", dir=parent))
    except OSError as exc:
        raise ArtifactError(
            f"cannot write to {parent} ({exc.strerror or exc}); choose another --out."
        ) from None
    probe.rmdir()


def _existing_parent(folder: Path) -> Path:
    probe = folder.absolute().parent
    while not probe.exists():
        probe = probe.parent
    return probe


# ---------------------------------------------------------------------- atomic save
Writer = Callable[[Path], None]


def save_folder(folder: Path, config: Mapping[str, Any], write: Writer, card: str) -> Path:
    """Write a skill folder atomically and return it.

    ``write(tmp)`` writes every weight and data file into the temporary folder; this
    function then hashes every file, writes ``config.json`` and ``model_card.md``, and
    swaps the folder in. A non-empty folder that is not a skill is never replaced.
    """
    folder = Path(folder).absolute()  # "." has no name to put the temporary folder beside
    if folder.exists() and not folder.is_dir():
        raise ArtifactError(f"{folder} is a file; pass a folder path to save the skill to.")
    if folder.is_dir() and any(folder.iterdir()) and not is_skill_folder(folder):
        raise ArtifactError(
            f"{folder} is a non-empty folder that is not a saved skill; refusing to replace "
            "its files. Save to a new or empty folder."
        )
    _refuse_foreign(folder, "the folder")
    folder.absolute().parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex[:8]
    tmp = folder.with_name(f".{folder.name}.saving-{tag}")
    try:
        tmp.mkdir()
        write(tmp)
        body = dict(config)
        body["format_version"] = FORMAT_VERSION
        body["files"] = {name: sha256_file(tmp / name) for name in _weight_files(tmp)}
        (tmp / CONFIG).write_text(
            json.dumps(body, indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
        )
        (tmp / CARD).write_text(card, encoding="utf-8")
        swap_in(tmp, folder, tag)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return folder


def swap_in(tmp: Path, folder: Path, tag: str) -> None:
    """Replace ``folder`` by ``tmp`` with renames, restoring the old folder on failure.

    ``tag`` names the old folder while it is moved aside (``.NAME.old-TAG``).
    """
    if not folder.exists():
        tmp.rename(folder)
        return
    if not any(folder.iterdir()):  # filled in place: it may be a shell's working folder
        for entry in sorted(tmp.iterdir(), key=lambda p: p.name == CONFIG):
            entry.rename(folder / entry.name)  # config.json last: a skill only when whole
        tmp.rmdir()
        return
    old = folder.with_name(f".{folder.name}.old-{tag}")
    folder.rename(old)
    try:
        tmp.rename(folder)
    except BaseException:
        old.rename(folder)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _weight_files(folder: Path) -> list[str]:
    """Every file under ``folder`` but the config and card, as sorted POSIX paths."""
    names = []
    for path in folder.rglob("*"):
        if path.is_file():
            rel = path.relative_to(folder).as_posix()
            if rel not in _UNHASHED:
                names.append(rel)
    return sorted(names)


# ---------------------------------------------------------------------- load
def read_config(folder: Path) -> dict[str, Any]:
    """Read ``config.json`` of a skill folder (not yet verified)."""
    path = folder / CONFIG
    if not folder.is_dir():
        if not folder.exists() and (aside := _set_aside(folder)) is not None:
            raise ArtifactError(
                f"{folder} does not exist: a save to it was interrupted (or is running), and "
                f"the skill is in {aside}. Once no save runs, rename it back: mv {aside} {folder}"
            )
        raise ArtifactError(f"{folder} is not a folder; pass the folder a skill was saved to.")
    if not path.is_file():
        raise ArtifactError(f"{folder} has no {CONFIG}; it is not a saved skill.")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise ArtifactError(
            f"{path} is not valid UTF-8 ({exc.reason} at byte {exc.start}); the file is "
            "damaged. Re-save the skill, or restore the folder from a copy."
        ) from exc
    except json.JSONDecodeError as exc:
        raise ArtifactError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict):
        raise ArtifactError(f"{path} must hold a JSON object")
    return config


def _set_aside(folder: Path) -> Path | None:
    """A whole skill :func:`swap_in` moved beside ``folder`` (the old one first), not back."""
    name = glob.escape(folder.name)
    for kind in ("old", "saving"):
        whole = [p for p in sorted(folder.parent.glob(f".{name}.{kind}-*")) if is_skill_folder(p)]
        if whole:
            return whole[-1]
    return None


def verify_files(folder: Path, config: Mapping[str, Any]) -> None:
    """Check that every file in the folder is listed with a sha256 and matches it."""
    files = config.get("files")
    if not isinstance(files, dict):
        raise ArtifactError(
            f"{folder}/{CONFIG} has no 'files' table of sha256 hashes; re-save the skill."
        )
    for name, expected in files.items():
        path = folder / name
        if not isinstance(expected, str) or len(expected) != 64:
            raise ArtifactError(
                f"{folder}/{CONFIG} lists {name} without a sha256; every file must be hashed. "
                "Re-save the skill."
            )
        if not path.is_file():
            raise ArtifactError(f"{folder} is missing {name}; the skill folder is incomplete.")
        if sha256_file(path) != expected:
            raise ArtifactError(
                f"{path} does not match the sha256 recorded in {CONFIG}; it was modified "
                "after saving. Re-save the skill or restore the file."
            )
    unlisted = [n for n in _weight_files(folder) if n not in files]
    if unlisted:
        raise ArtifactError(
            f"{folder} holds files that {CONFIG} does not list: {', '.join(unlisted[:5])}. "
            "They were added after saving and cannot be verified; remove them or re-save."
        )


def read_verified_config(folder: Path, skill_name: str, kind: str) -> dict[str, Any]:
    """Read ``config.json`` of a ``skill_name`` folder and verify every file in it.

    ``kind`` is the class name used in the error when the folder holds another skill.
    """
    config = read_config(folder)
    if config.get("skill") != skill_name:
        raise ArtifactError(f"{folder} holds a {config.get('skill')!r}, not a {kind}")
    version = config.get("format_version")
    if isinstance(version, int) and version > FORMAT_VERSION:
        raise ArtifactError(
            f"{folder} was saved by a newer slmstack (folder format {version}; this one reads "
            f"{FORMAT_VERSION}); upgrade slmstack (pip install -U slmstack) to load it."
        )
    verify_files(folder, config)
    provenance = config.get("provenance")
    base = provenance.get("base") if isinstance(provenance, Mapping) else None
    if isinstance(base, Mapping) and base.get("ref") and not isinstance(base.get("sha256"), str):
        raise ArtifactError(
            f"{folder}/{CONFIG} records base {base.get('ref')!r} without a sha256, so the base "
            "cannot be verified. Re-save the skill from a verified base."
        )
    return config


def read_jsonl(path: Path, parse: Callable[[dict[str, Any]], Any]) -> list[Any]:
    """The records of a JSONL file inside a skill folder, or an :class:`ArtifactError`."""
    lines = jsonl_lines(path.read_text(encoding="utf-8"))
    try:
        return [parse(json.loads(line)) for line in lines if line.strip()]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ArtifactError(f"{path} is damaged: {exc}") from exc


def json_value(config: Mapping[str, Any], key: str, folder: Path) -> Any:
    """``config[key]``, or an :class:`ArtifactError` that names the missing entry."""
    try:
        return config[key]
    except KeyError:
        raise ArtifactError(
            f"{folder}/{CONFIG} has no {key!r} entry; the file is incomplete or from another "
            "tool. Re-save the skill."
        ) from None


def render_card(title: str, sections: Mapping[str, Any]) -> str:
    """A Markdown model card with one section per key (mappings as bullet lists)."""
    lines = [f"# {title}", ""]
    for heading, value in sections.items():
        lines.append(f"## {heading}")
        lines.append("")
        if isinstance(value, Mapping):
            for k, v in value.items():
                lines.append(f"- **{k}**: {v}")
        else:
            lines.append(str(value))
        lines.append("")
    return "\n".join(lines)
