"""GGUF generator files: an alias, a ``.gguf`` file, or a folder holding one."""

from __future__ import annotations

from pathlib import Path

from slmstack.errors import ConfigError, ModelNotFoundError
from slmstack.models.catalog import known_models
from slmstack.models.resolve import resolve


def gguf_path(ref: str | Path) -> Path:
    """Resolve a generator reference to a verified ``.gguf`` file.

    ``ref`` is a known alias (``"smollm2"``, sha256 checked), a ``.gguf`` file, or a
    folder holding exactly one ``.gguf`` file.
    """
    ref_s = str(ref)
    known = known_models().get(ref_s)
    if known is not None:
        if not known.weights_file.endswith(".gguf"):
            generators = [m.alias for m in known_models().values() if m.kind == "generator"]
            raise ConfigError(
                f"model alias {ref_s!r} is a {known.kind}, not a GGUF generator. "
                f"Generator aliases: {', '.join(generators)}."
            )
        weights = resolve(ref_s).weights
        if weights is None:  # resolve() sets it for every catalog alias; guard the contract
            raise ModelNotFoundError(f"model alias {ref_s!r} resolved without a weights file")
        return weights
    path = Path(ref_s).expanduser()
    if path.is_file() and path.suffix == ".gguf":
        return path
    if path.is_dir():
        files = sorted(path.glob("*.gguf"))
        if len(files) == 1:
            return files[0]
        if files:
            names = ", ".join(f.name for f in files)
            raise ConfigError(f"{path} holds several GGUF files ({names}); pass one of them.")
    generators = [m.alias for m in known_models().values() if m.kind == "generator"]
    raise ModelNotFoundError(
        f"generator {ref_s!r} is not a known alias, a .gguf file, or a folder with one. "
        f"Known generator aliases: {', '.join(generators)} (see `slmstack models`)."
    )
