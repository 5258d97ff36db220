"""Where API keys come from: ``name:key`` pairs in an environment variable, or a file.

Messages name the variable, or the file and line, and never show a key.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from slmstack.errors import ConfigError

MIN_KEY_CHARS = 16  # a key shorter than this can be guessed; token_urlsafe(32) gives 43
_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,200}")  # goes into the ledger and log lines
MAKE_KEY = "python -c 'import secrets; print(secrets.token_urlsafe(32))'"


def check_pair(name: str, key: str, *, where: str) -> None:
    """Refuse unusable names and weak keys; the message never shows the key."""
    if not _NAME.fullmatch(name):
        raise ConfigError(
            f"{where}: key name {name[:40]!r} must be 1-200 characters of letters, digits "
            "and _ . @ -"
        )
    if len(key) < MIN_KEY_CHARS or not (key.isascii() and key.isprintable()) or " " in key:
        raise ConfigError(
            f"{where}: the key of {name!r} must be at least {MIN_KEY_CHARS} printable ASCII "
            f"characters without spaces (it has {len(key)}; an HTTP header carries ASCII "
            f"only); make one with {MAKE_KEY}"
        )


def parse_env(value: str, var: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for i, entry in enumerate(value.split(","), start=1):
        entry = entry.strip()
        if not entry:
            continue  # a trailing comma
        name, sep, key = entry.partition(":")
        if not sep:
            raise ConfigError(
                f"${var}: entry {i} is not `name:key` (no ':'); the variable holds "
                "'name:KEY,name2:KEY2'"
            )
        name, key = name.strip(), key.strip()
        check_pair(name, key, where=f"${var} entry {i}")
        if name in out:
            raise ConfigError(f"${var}: the key name {name!r} appears twice")
        out[name] = key
    if not out:
        raise ConfigError(f"${var} holds no keys; it holds 'name:KEY,name2:KEY2'")
    return out


def parse_file(path: Path) -> dict[str, str]:
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise ConfigError(
            f"auth.keys_file {path} {what}; write one `name key` line per client there "
            f"(make a key with {MAKE_KEY}), outside the repository"
        )
    _refuse_tracked(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read the keys file {path}: {exc}") from None
    out: dict[str, str] = {}
    for row, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        if len(parts) != 2:
            raise ConfigError(
                f"{path}:{row}: expected `name key` (two fields separated by a space), "
                f"found {len(parts)} field{'s' if len(parts) != 1 else ''}"
            )
        name, key = parts
        check_pair(name, key, where=f"{path}:{row}")
        if name in out:
            raise ConfigError(f"{path}:{row}: the key name {name!r} appears twice")
        out[name] = key
    if not out:
        raise ConfigError(f"the keys file {path} holds no keys; write one `name key` line each")
    return out


def _refuse_tracked(path: Path) -> None:
    """A keys file committed to git is a leaked secret: refuse to serve with it."""
    folder = path.resolve().parent
    if not any((p / ".git").exists() for p in (folder, *folder.parents)):
        return
    try:
        done = subprocess.run(
            ["git", "-C", str(folder), "ls-files", "--error-unmatch", path.resolve().name],
            capture_output=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired):
        return  # no git to ask: the file cannot be known to be committed
    if done.returncode == 0:
        raise ConfigError(
            f"the keys file {path} is tracked by git: keys must never be committed. Move it "
            "out of the repository (or `git rm --cached` it and ignore it), and replace the "
            "keys, which anyone with the history has seen"
        )
