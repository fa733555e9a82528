"""The generated part of the book's first page: what the book finds, from the chapters' recorded verdicts.

A few sentences, then one matrix (rows: the paper's claims; columns: the settings they are tested in), each
cell a badge per verdict linking to its evidence in the chapter, and the full table of claims folded below.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Any

from .stats import CLASSES, INCONCLUSIVE, NOT_REPRODUCED, NOT_TESTABLE, REPRODUCED
from .tables import verdict_css

# the matrix's rows: (key a verdict names, the claim as the paper makes it)
ROWS = (
    ("exists", "Weak-to-strong deception exists (§4)"),
    ("families", "… within and across model families"),
    ("students", "… with each strong model alone"),
    ("gap", "It grows with the capability gap (§4, §5)"),
    ("po", "It exists under preference optimisation: SimPO (§5)"),
    ("dpo", "… and DPO (App. G)"),
    ("lora", "… and with LoRA students (App. H)"),
    ("scale", "Capability, not scale, drives it (App. H)"),
    ("T", "The pattern holds at every threshold T (App. I)"),
    ("alpha", "A stronger explicit conflict deceives more (App. J)"),
    ("spontaneous", "Deception appears without any conflict (App. K)"),
    ("spontaneous-gap", "… and grows with the gap (App. K)"),
    ("exacerbate", "Conflicts exacerbate it (App. K)"),
    ("honesty", "It exists for honesty too (App. O)"),
    ("filter", "The oracle high-confidence filter does not mitigate it (§6.1)"),
    ("filter-nonoracle", "… nor does a filter a deployer can run (beyond the paper)"),
    ("bootstrap", "Bootstrapping lowers it (§6.2)"),
    ("bootstrap-acc", "Bootstrapping raises the strong model's accuracy (§6.2)"),
    ("adaptive", "An adaptive loss mitigates it only a little (App. P)"),
)
COLUMNS = ("HH reward models", "HH policies", "sums policies")  # = analysis.SETTINGS
SHORT = {REPRODUCED: "reproduced", NOT_REPRODUCED: "not reproduced", INCONCLUSIVE: "inconclusive",
         NOT_TESTABLE: "not testable"}

Record = tuple[str, str, dict[str, Any]]  # (link to the chapter's page, its title, what it recorded)


def _rows(records: Sequence[Record]) -> list[tuple[str, str, int, dict[str, str]]]:
    """(chapter link, title, index of the verdict in its chapter, the verdict) in reading order."""
    return [(href, title, i, row) for href, title, payload in records for i, row in enumerate(payload["verdicts"])]


def _badge(href: str, i: int, row: dict[str, str], short: bool = True) -> str:
    verdict = row["verdict"]
    label = SHORT.get(verdict, verdict) if short else verdict
    if row.get("fragile"):
        label += " (fragile)"
    tip = html.escape(" ".join(f"{row['claim']} — {row['evidence']}".split()), quote=True)
    return (f'<a class="w2s-badge {verdict_css(verdict)}" href="{html.escape(href)}#verdict-{i}" title="{tip}">'
            f"{html.escape(label)}</a>")


def summary(rows: list[tuple[str, str, int, dict[str, str]]], placebo: bool) -> str:
    """What the book finds, in a few sentences generated from the verdicts."""
    classes = [r["verdict"] for _, _, _, r in rows]
    fragile = sum(bool(r.get("fragile")) for _, _, _, r in rows)
    names = dict(ROWS)
    out = [f"This build tests <b>{len(rows)} claim{'s' if len(rows) != 1 else ''}</b>: " + ", ".join(
        f"{classes.count(c)} {html.escape(c)}" for c in CLASSES) + (
        f" ({fragile} of the inconclusive ones fragile: leaving out one seed or moving T by 0.05 changed their class)."
        if fragile else ".")]
    for setting in COLUMNS:
        mine = [r for _, _, _, r in rows if r.get("setting") == setting]
        if not mine:
            continue
        parts = []
        for cls, word in ((REPRODUCED, "reproduced"), (NOT_REPRODUCED, "shown absent (not reproduced)")):
            keys = list(dict.fromkeys(r["key"] for r in mine if r["verdict"] == cls and r.get("key") in names))
            if keys:
                parts.append(f"{word}: " + "; ".join(html.escape(names[k].rstrip(".")) for k in keys))
        testable = sum(r["verdict"] != NOT_TESTABLE for r in mine)
        head = f"On <b>{html.escape(setting)}</b>, {testable} of {len(mine)} claims are testable"
        out.append(head + (". " + ". ".join(p[0].upper() + p[1:] for p in parts) + "." if parts else
                           ", and none is reproduced or shown absent."))
    if not placebo:
        out.append("No placebo twins have been trained yet: every cell is tested against its reference-matched and "
                   "label-matched chance levels only, not against a placebo conflict.")
    return "".join(f"<p>{p}</p>" for p in out)


def matrix(rows: list[tuple[str, str, int, dict[str, str]]]) -> str:
    """Rows: the paper's claims; columns: the settings; each cell a badge per verdict, linking to its evidence."""
    cells: dict[tuple[str, str], list[str]] = {}
    for href, _, i, row in rows:
        cells.setdefault((row.get("key", ""), row.get("setting", "")), []).append(_badge(href, i, row))
    out = ['<table class="w2s-matrix"><thead><tr><th>the paper\'s claim</th>'
           + "".join(f"<th>{html.escape(c)}</th>" for c in COLUMNS) + "</tr></thead><tbody>"]
    none = '<span class="w2s-none">—</span>'
    for key, claim in ROWS:
        badges = [cells.get((key, c), []) for c in COLUMNS]
        if not any(badges):
            continue
        out.append(f'<tr><th scope="row">{html.escape(claim)}</th>'
                   + "".join(f"<td>{' '.join(b) if b else none}</td>" for b in badges) + "</tr>")
    out.append("</tbody></table>")
    return "\n".join(out)


def full_table(rows: list[tuple[str, str, int, dict[str, str]]]) -> str:
    """Every claim with its chapter, evidence and verdict, folded."""
    out = [f"<details class=\"w2s-all\"><summary>Every claim, with its evidence ({len(rows)})</summary>",
           '<table class="w2s-verdicts"><thead><tr><th>claim and evidence</th><th>verdict</th></tr></thead><tbody>']
    for href, title, i, row in rows:
        claim, evidence = (html.escape(" ".join(str(row[c]).split())) for c in ("claim", "evidence"))
        out.append(f'<tr><td><a href="{html.escape(href)}#verdict-{i}">{html.escape(title)}</a>: {claim}'
                   f"<br><small>{evidence}</small></td><td>{_badge(href, i, row, short=False)}</td></tr>")
    out.append("</tbody></table></details>")
    return "\n".join(out)


def render(records: Sequence[Record], placebo: bool = False) -> str:
    """The intro's generated part: summary, matrix, folded table (Markdown-safe HTML)."""
    rows = _rows(records)
    if not rows:
        return "*No chapter has recorded verdicts yet: build the book with `python -m w2s_deception.book`.*"
    profiles = sorted({str(p.get("profile") or "—") for _, _, p in records})
    return "\n".join([f'<div class="w2s-findings"><p class="w2s-profile">Profile: {", ".join(profiles)}.</p>',
                      summary(rows, placebo), "</div>", matrix(rows), full_table(rows)])
