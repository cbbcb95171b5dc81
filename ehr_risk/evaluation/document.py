"""A tiny document model rendered both as Markdown and as HTML, so the report and the model card say the
same thing in both formats. Every text is escaped for HTML; nothing here reads patient-level data."""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

CSS = " ".join(
    [
        "body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#1d2430;",
        "line-height:1.45} h1{font-size:1.6em;border-bottom:2px solid #2b5b84;padding-bottom:.2em}",
        "h2{font-size:1.25em;margin-top:1.8em;color:#2b5b84} table{border-collapse:collapse;margin:.6em 0;",
        "font-size:.88em} th,td{border:1px solid #ccd3dc;padding:.25em .6em;text-align:right}",
        "th{background:#eef2f6} td:first-child,th:first-child{text-align:left}",
        ".figs{display:flex;flex-wrap:wrap;gap:1em} .figs figure{margin:0}",
        ".figs img{max-width:520px;border:1px solid #ddd} .note{color:#5a6573;font-size:.9em}",
    ]
)


@dataclass
class Block:
    kind: str  # p | ul | table | img | note
    text: str = ""
    items: Sequence[str] = ()
    header: Sequence[str] = ()
    rows: Sequence[Sequence[Any]] = ()
    data_uri: str = ""


@dataclass
class Section:
    title: str
    anchor: str
    blocks: list[Block] = field(default_factory=list)

    def p(self, text: str) -> Section:
        self.blocks.append(Block("p", text=text))
        return self

    def note(self, text: str) -> Section:
        self.blocks.append(Block("note", text=text))
        return self

    def ul(self, items: Sequence[str]) -> Section:
        if items:
            self.blocks.append(Block("ul", items=list(items)))
        return self

    def table(self, header: Sequence[str], rows: Sequence[Sequence[Any]]) -> Section:
        self.blocks.append(Block("table", header=list(header), rows=[list(r) for r in rows]))
        return self

    def images(self, items: Sequence[tuple[str, str]]) -> Section:
        """(caption, data URI) pairs, shown side by side."""
        self.blocks.append(Block("img", items=[c for c, _ in items], rows=[[u] for _, u in items]))
        return self


def to_markdown(title: str, sections: Sequence[Section]) -> str:
    out = [f"# {title}", ""]
    for s in sections:
        out += [f"## {s.title}", ""]
        for b in s.blocks:
            if b.kind in ("p", "note"):
                out += [f"_{b.text}_" if b.kind == "note" else b.text, ""]
            elif b.kind == "ul":
                out += [f"- {item}" for item in b.items] + [""]
            elif b.kind == "table":
                out.append("| " + " | ".join(_md(h) for h in b.header) + " |")
                out.append("|" + "|".join("---" for _ in b.header) + "|")
                out += ["| " + " | ".join(_md(c) for c in row) + " |" for row in b.rows]
                out.append("")
            elif b.kind == "img":
                out += [f"- figure: {caption}" for caption in b.items] + [""]
    return "\n".join(out).rstrip() + "\n"


def to_html(title: str, sections: Sequence[Section], subtitle: str = "") -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{e(title)}</h1>",
    ]
    if subtitle:
        out.append(f'<p class="note">{e(subtitle)}</p>')
    out.append(
        "<nav><ul>"
        + "".join(f'<li><a href="#{e(s.anchor)}">{e(s.title)}</a></li>' for s in sections)
        + "</ul></nav>"
    )
    for s in sections:
        out.append(f'<section id="{e(s.anchor)}"><h2>{e(s.title)}</h2>')
        for b in s.blocks:
            if b.kind == "p":
                out.append(f"<p>{e(b.text)}</p>")
            elif b.kind == "note":
                out.append(f'<p class="note">{e(b.text)}</p>')
            elif b.kind == "ul":
                out.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>")
            elif b.kind == "table":
                head = "".join(f"<th>{e(str(h))}</th>" for h in b.header)
                body = "".join(
                    "<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in row) + "</tr>" for row in b.rows
                )
                out.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
            elif b.kind == "img":
                figs = "".join(
                    f'<figure><img alt="{e(cap)}" src="{row[0]}"><figcaption>{e(cap)}</figcaption></figure>'
                    for cap, row in zip(b.items, b.rows, strict=True)
                )
                out.append(f'<div class="figs">{figs}</div>')
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")
