"""A classifier's ``labels.json``: written beside its weights, checked on load."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from slmstack.artifacts import json_value
from slmstack.errors import ArtifactError

LABELS = "labels.json"


def write_labels(folder: Path, labels: Sequence[str]) -> None:
    """Write ``labels.json`` (hashed with the weights, unlike ``config.json``)."""
    (folder / LABELS).write_text(json.dumps(list(labels), indent=1) + "\n", encoding="utf-8")


def saved_labels(folder: Path, config: Mapping[str, Any]) -> list[str]:
    """A classifier's labels: ``config.json``'s, checked against the hashed ``labels.json``.

    ``config.json`` is not hashed, so a hand edit there would relabel every prediction
    in silence; ``labels.json`` is (a folder saved without it keeps its config's labels).

    Raises:
        ArtifactError: the labels are missing, not a list, or differ between the files.
    """
    labels = json_value(config, "labels", folder)
    if not isinstance(labels, list) or not labels:
        raise ArtifactError(f"{folder}/config.json: 'labels' must be a non-empty list")
    shown = [str(x) for x in labels]
    hashed = folder / LABELS
    if hashed.is_file():
        kept = [str(x) for x in json.loads(hashed.read_text(encoding="utf-8"))]
        if kept != shown:
            more = "..." if len(shown) > 4 or len(kept) > 4 else ""
            raise ArtifactError(
                f"{folder}/config.json lists the labels {shown[:4]}{more}, but the model was "
                f"saved with {kept[:4]}{more} (labels.json, checked by its sha256): "
                "config.json was edited. Restore it, "
                "or retrain to change the labels"
            )
    return shown
