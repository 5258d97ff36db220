"""The compliance report: JSON per document, and one self-contained HTML page.

The HTML page has no script and loads nothing (no CDN): inline CSS, each document's
rules in a table with their flags, and the document's text with every evidence span
highlighted, coloured by the worst flag of the rules it supports, and linked both ways
(rule row → its evidence, highlight → the rule ids in its tooltip).
"""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

_ORDER = ("violated", "missing", "needs_review", "ok")
_CSS = """
body{font:14px/1.5 system-ui,sans-serif;margin:2em auto;max-width:70em;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:2em;border-top:1px solid #ccc;padding-top:1em}
table{border-collapse:collapse;width:100%;margin:.5em 0}
td,th{border:1px solid #ddd;padding:.3em .5em;vertical-align:top;text-align:left}
.flag{font-weight:600;white-space:nowrap}
.violated{background:#fdd}.missing{background:#ffe9c6}.needs_review{background:#e8e8ff}
.ok{background:#e3f6e3}
mark.violated{background:#f7a8a8}mark.missing{background:#ffd28a}
mark.needs_review{background:#c9c9ff}mark.ok{background:#b8e6b8}
pre{white-space:pre-wrap;font:13px/1.5 ui-monospace,monospace;background:#fafafa;
padding:1em;border:1px solid #eee}
.small{color:#666;font-size:.9em}
.warning{background:#fff4c2;border-left:4px solid #e0b000;padding:.3em .6em}
"""


def result_record(name: str, text: str, prediction: Mapping[str, Any]) -> dict[str, Any]:
    """One document's entry of the JSON report: its name, flag, and per-rule results."""
    data = prediction.get("data", {})
    return {
        "document": name,
        "flag": prediction.get("label"),
        "confidence": prediction.get("confidence"),
        "counts": data.get("counts", {}),
        "rules": data.get("rules", []),
        "chars": len(text),
        # what the checker says of its own verdicts (rules it was never trained on)
        "warnings": list(prediction.get("warnings", [])),
    }


def _worst(flags: Sequence[str]) -> str:
    return next((f for f in _ORDER if f in flags), "ok")


def _highlighted(text: str, rules: Sequence[Mapping[str, Any]], doc: int) -> str:
    marks: list[tuple[int, int, str, str]] = []
    for rule in rules:
        for ev in rule.get("evidence", ()):
            marks.append((int(ev["start"]), int(ev["end"]), str(rule["id"]), str(rule["flag"])))
    cuts = sorted({0, len(text), *(a for a, _, _, _ in marks), *(b for _, b, _, _ in marks)})
    out = []
    for a, b in itertools.pairwise(cuts):
        # An anchor where each piece of evidence starts: the rule table links to it.
        out += [f'<a id="{html.escape(f"d{doc}-{r}-{s}")}"></a>' for s, _, r, _ in marks if s == a]
        piece = html.escape(text[a:b])
        cover = [(rid, flag) for s, e, rid, flag in marks if s <= a and b <= e]
        if not cover:
            out.append(piece)
            continue
        ids = sorted({rid for rid, _ in cover})
        flag = _worst([f for _, f in cover])
        out.append(f'<mark class="{flag}" title="{html.escape(", ".join(ids))}">{piece}</mark>')
    return "".join(out)


def render_html(documents: Sequence[tuple[str, str, Mapping[str, Any]]], *, pack: str) -> str:
    """The page for ``(name, text, prediction dict)`` triples checked against ``pack``."""
    parts = [
        "<!doctype html><html lang=en><head><meta charset=utf-8>",
        f"<title>Compliance report: {html.escape(pack)}</title><style>{_CSS}</style></head><body>",
        f"<h1>Compliance report: pack {html.escape(pack)}</h1>",
        '<p class=small>Flags: <span class="flag violated">violated</span> the document '
        'goes against the rule; <span class="flag missing">missing</span> a required term '
        'is not there; <span class="flag needs_review">needs review</span> the model is not '
        'confident enough; <span class="flag ok">ok</span>. Highlights are the evidence.</p>',
    ]
    for i, (name, text, pred) in enumerate(documents):
        data = pred.get("data", {})
        rules = list(data.get("rules", [])) + list(data.get("field_rules", []))
        parts.append(f"<h2>{html.escape(name)}: <span class=\"flag {pred.get('label', 'ok')}\">"
                     f"{html.escape(str(pred.get('label')))}</span></h2>")  # fmt: skip
        parts += [f"<p class=warning>warning: {html.escape(str(w))}</p>"
                  for w in pred.get("warnings", ())]  # fmt: skip
        parts.append("<table><tr><th>rule</th><th>flag</th><th>verdict</th><th>confidence</th>"
                     "<th>severity</th><th>source</th><th>evidence</th></tr>")  # fmt: skip
        for r in rules:
            anchor = html.escape(f"d{i}-{r['id']}")
            links = " ".join(
                f'<a href="#{anchor}-{int(e["start"])}">{int(e["start"])}–{int(e["end"])}</a>'
                for e in r.get("evidence", ())
            )
            verdict = r.get("verdict") or r.get("why", "")
            parts.append(
                f'<tr class="{r["flag"]}"><td><b>{html.escape(str(r["id"]))}</b> '
                f"{html.escape(str(r.get('title', '')))}<br><span class=small>"
                f"{html.escape(str(r.get('hypothesis', r.get('check', ''))))}</span></td>"
                f"<td class=flag>{html.escape(str(r['flag']))}</td>"
                f"<td>{html.escape(str(verdict))}</td><td>{float(r['confidence']):.2f}</td>"
                f"<td>{html.escape(str(r.get('severity', '')))}</td>"
                f"<td>{html.escape(str(r.get('source', '')))}</td><td>{links}</td></tr>"
            )
        parts.append("</table>")
        parts.append(f"<pre>{_highlighted(text, rules, i)}</pre>")
    parts.append("</body></html>")
    return "\n".join(parts)


__all__ = ["render_html", "result_record"]
