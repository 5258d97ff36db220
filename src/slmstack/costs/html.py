"""Self-contained HTML pages: inline styles and plots as base64 PNG, no external URL.

The cost report, the cascade-tuning curve and the break-even report are pages a user
opens from disk or attaches to a ticket, so nothing in them may load from the network.
"""

from __future__ import annotations

import base64
import html
import io
import re
import warnings
from collections.abc import Sequence
from typing import Any

from slmstack.errors import MissingDependencyError

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:2em auto;max-width:980px;color:#222}
table{border-collapse:collapse;width:100%;margin:1em 0}
th,td{padding:.3em .6em;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
tfoot td{font-weight:bold;border-top:2px solid #888}
.note{color:#666;font-size:12px} img{max-width:100%}
.warning{color:#a33;font-weight:bold}
"""


def new_figure(size: tuple[float, float], purpose: str) -> Any:
    """A matplotlib ``Figure`` (no global state), or an error naming the ``report`` extra."""
    try:
        from matplotlib.figure import Figure
    except ImportError as exc:
        raise MissingDependencyError("matplotlib", "report", purpose) from exc
    return Figure(figsize=size)


_GLYPH = re.compile(r"Glyph (\d+) .*missing from font")


def png_base64(fig: Any) -> str:
    """``fig`` as a base64 PNG, without matplotlib's metadata (it holds a URL).

    Characters no installed font draws (Chinese labels on a machine with only DejaVu)
    come out as boxes; matplotlib warns once per character and draw. They are gathered
    into one warning that names them and the fix.
    """
    buf = io.BytesIO()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fig.tight_layout()
        fig.savefig(buf, format="png", dpi=100, metadata={"Software": None})
    missing: dict[str, None] = {}
    for w in caught:
        found = _GLYPH.search(str(w.message))
        if found is None:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            missing[chr(int(found[1]))] = None
    if missing:
        shown = " ".join(list(missing)[:8]) + (" ..." if len(missing) > 8 else "")
        warnings.warn(
            f"{len(missing)} characters in this plot have no glyph in the installed fonts "
            f"({shown}) and are drawn as boxes; the page's tables show them as they are. "
            "Install a font that has them (Debian: apt-get install fonts-noto-cjk)",
            UserWarning, stacklevel=2,
        )  # fmt: skip
    return base64.b64encode(buf.getvalue()).decode("ascii")


def table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """An HTML table of already formatted cells (escaped here)."""
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "\n".join(
        "<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows
    )
    return f"<table><thead><tr>{th}</tr></thead><tbody>\n{body}\n</tbody></table>"


def image(title: str, data: str) -> str:
    """A titled inline image from :func:`png_base64`."""
    t = html.escape(title)
    return f'<h2>{t}</h2><img alt="{t}" src="data:image/png;base64,{data}">'


def page(title: str, body: str) -> str:
    """A complete HTML document around ``body``."""
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<title>{html.escape(title)}</title><style>{CSS}</style></head>
<body>
<h1>{html.escape(title)}</h1>
{body}
</body></html>
"""
