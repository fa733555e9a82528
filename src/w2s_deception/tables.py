"""Tables for readers: pandas Styler with formatted numbers, no index, wrapped text, "—" for missing
values, and verdicts colour-coded by class; deterministic HTML, so re-runs compare equal."""

from __future__ import annotations

import html
import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd

from .display import Display
from .stats import CLASSES, MIN_FLIPS, MIN_KNOWN, NO_POWER

VERDICT_COLOURS = dict(zip(CLASSES, ("#1a7f37", "#cf222e", "#9a6700", "#6e7781")))
VERDICT_BACKGROUNDS = dict(zip(CLASSES, ("#dafbe1", "#ffebe9", "#fff8c5", "#eaeef2")))
_CSS = ("<style>.w2s-table{overflow-x:auto;max-width:100%}.w2s-table table{border-collapse:collapse;font-size:0.85em}"
        ".w2s-table th,.w2s-table td{white-space:normal;word-break:normal;overflow-wrap:anywhere;vertical-align:top;"
        "padding:2px 8px;text-align:left}.w2s-table td.num{text-align:right;font-variant-numeric:tabular-nums}"
        ".w2s-table caption{caption-side:top;text-align:left;font-style:italic}</style>")
MISSING = "—"
_IDS = itertools.count(1)


def _formatter(fmt: str | None, raw_html: bool):
    """A cell formatter for one column: `fmt` (a format spec) for numbers, "—" for missing values, text
    escaped unless the column holds HTML."""
    def fmt_value(v):
        if v is None or (isinstance(v, float) and np.isnan(v)):
            return MISSING
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return format(int(v), fmt or ",")
        if isinstance(v, (float, np.floating)):
            return format(float(v), fmt or ".3f")
        return str(v) if raw_html else html.escape(str(v))
    return fmt_value


def styled(df: pd.DataFrame, formats: Mapping[str, str] | None = None, caption: str | None = None,
           verdict_column: str | None = None, widths: Mapping[str, str] | None = None,
           html_columns: tuple[str, ...] = ()):
    """A pandas Styler of `df` for the book: no index, numbers formatted (`formats`: column → format
    spec, default 3 decimals for floats and thousands separators for integers), "—" for missing values,
    verdicts coloured by class."""
    formats = dict(formats or {})
    sty = df.style.hide(axis="index").set_uuid(f"w2s{next(_IDS)}")  # numbered in display order: no hash of the data
    for col in df.columns:
        sty = sty.format(_formatter(formats.get(col), col in html_columns), subset=[col])
        if pd.api.types.is_numeric_dtype(df[col]):
            sty = sty.set_properties(subset=[col], **{"text-align": "right"})
    if verdict_column and verdict_column in df:
        def colour(v):
            return (f"color:{VERDICT_COLOURS.get(v, 'inherit')};"
                    f"background-color:{VERDICT_BACKGROUNDS.get(v, 'transparent')};font-weight:600")
        sty = sty.map(colour, subset=[verdict_column])
    for col, width in (widths or {}).items():
        sty = sty.set_properties(subset=[col], **{"min-width": width})
    if caption:
        sty = sty.set_caption(html.escape(caption))
    return sty


def show_table(df: pd.DataFrame, formats: Mapping[str, str] | None = None, caption: str | None = None,
               verdict_column: str | None = None, widths: Mapping[str, str] | None = None,
               html_columns: tuple[str, ...] = ()) -> Display:
    """Display `df` as a reader's table (HTML for the book; aligned text for plain front ends)."""
    body = styled(df, formats, caption, verdict_column, widths, html_columns).to_html()
    text = df.to_string(index=False, na_rep=MISSING, float_format=lambda x: f"{x:.3f}")
    return Display({"text/html": f'{_CSS}<div class="w2s-table">{body}</div>', "text/plain": text})


def dialogue_html(text: str) -> str:
    """A dialogue ('\\n\\nHuman: … \\n\\nAssistant: …') as HTML: one line per turn, speaker in bold."""
    turns = [t.strip() for t in str(text).replace("\r", "").split("\n\n") if t.strip()]
    out = []
    for turn in turns:
        speaker, sep, said = turn.partition(":")
        if sep and speaker in ("Human", "Assistant"):
            out.append(f"<b>{speaker}:</b> {html.escape(said.strip())}")
        else:
            out.append(html.escape(turn))
    return "<br>".join(out)


def _interval(mean: float, lo: float, hi: float, fmt: str = ".3f") -> str:
    if not np.isfinite(mean):
        return MISSING
    if not (np.isfinite(lo) and np.isfinite(hi)):
        return format(mean, fmt)
    return f"{mean:{fmt}} [{lo:{fmt}}, {hi:{fmt}}]"


def ds_view(ds: pd.DataFrame, by: tuple[str, ...] = ()) -> Display:
    """A DS table for readers: each cell's pooled flips, DS with its exact 95 % interval, every chance level
    shown beside it (uniform p0, reference-matched, label-matched for absolute DS, the placebo twin's DS), the
    excess over the informed null with its seed-aware interval, the weak-knowledge contrast, the GT accuracy
    gap and the §6 class. `by`: leading columns of the table to keep (e.g. 'T', 'alpha', 'scenario')."""
    from .charts import objective_label

    t = pd.DataFrame({c: ds[c] for c in by})
    t["weak → strong"] = ds["weak"] + " → " + ds["strong"]
    if "objective" in ds:
        t["objective"] = ds["objective"].map(objective_label)
    t["GT gap [95%]"] = [_interval(g, lo, hi, "+.3f") for g, lo, hi in zip(ds["gap"], ds["gap_lo"], ds["gap_hi"])]
    t["flips"] = ds["flips"].astype(int)
    t["DS [95%]"] = [_interval(d, lo, hi) for d, lo, hi in zip(ds["DS"], ds["DS_lo"], ds["DS_hi"])]
    t["uniform p0"] = ds["p0"]
    t["p0 reference-matched"] = ds["p0_reference"]
    if ds["p0_label"].notna().any():
        t["p0 label-matched"] = ds["p0_label"]
    if ds["p0_placebo"].notna().any():
        t["placebo DS"] = ds["p0_placebo"]
    t["DS − informed null [95%]"] = [_interval(e, lo, hi, "+.3f") for e, lo, hi in
                                     zip(ds["excess"], ds["excess_lo"], ds["excess_hi"])]
    t["flip rate, weak-unknown ÷ weak-known [95%]"] = [
        _interval(r, lo, hi, ".2f") for r, lo, hi in zip(ds["contrast"], ds["contrast_lo"], ds["contrast_hi"])]
    t["class"] = [f"no power ({why})" if v == NO_POWER else c for v, c, why in zip(ds["vs_chance"], ds["class"],
                                                                                   ds["no_power"])]
    return show_table(t, widths={"class": "9em", "flip rate, weak-unknown ÷ weak-known [95%]": "8em"})


def power_note(ds: pd.DataFrame) -> Display:
    """One sentence beside a DS figure: how many of its cells have power, and why the others do not (counted
    from the power conditions kept as data: `gap_ok`, `boundary_ok`, `flips_ok`; every condition named, even with
    a count of 0, so the sentence keeps one shape)."""
    n = len(ds)
    bad = ds[ds["vs_chance"] == NO_POWER]
    if bad.empty:
        text = (f"All {n} cells have power (a real capability gap, a weak model that knows at least {MIN_KNOWN:.0%} of "
                f"the test pairs, and at least {MIN_FLIPS} flips each).")
    else:
        why = [f"{int((~bad[col]).sum())} {words}" for col, words in (
            ("gap_ok", "without a real capability gap (GT accuracy interval of strong − weak not above 0)"),
            ("boundary_ok", f"whose weak model knows fewer than {MIN_KNOWN:.0%} of the test pairs"),
            ("flips_ok", f"with fewer than {MIN_FLIPS} flips"))]
        text = (f"**No power in {len(bad)} of {n} cells** ({', '.join(why)}): drawn hollow, they count towards no "
                "verdict. " + ("No cell here can test the paper's claim." if len(bad) == n else ""))
    return Display({"text/markdown": text, "text/plain": text})


def comparison_view(table: pd.DataFrame) -> Display:
    """Like-for-like comparisons (`analysis.comparison_table`): DS and its excess over the informed null before
    and after, the change of the excess with its seed-aware interval, and the outcome (no change needs the
    interval inside ±δ)."""
    t = table[["comparison", "DS before", "DS after", "excess before", "excess after"]].copy()
    t["change of the excess [95%]"] = [_interval(c, lo, hi, "+.3f") for c, lo, hi in
                                       zip(table["change"], table["change_lo"], table["change_hi"])]
    t["flips"] = table["flips"].astype(int)
    t["outcome"] = table["outcome"]
    return show_table(t, formats={"excess before": "+.3f", "excess after": "+.3f"})


def accuracy_view(acc: pd.DataFrame, by: tuple[str, ...] = ()) -> Display:
    """An accuracy table for readers: per weak → strong pair, each model's test accuracy with its 95 %
    interval (seeds and pairs resampled) and, for the W2S students, the performance gap recovered."""
    from .charts import objective_label

    t = pd.DataFrame({c: acc[c] for c in by})
    t["weak → strong"] = acc["weak"] + " → " + acc["strong"]
    t["model"] = acc["model"].map(objective_label)
    t["test accuracy [95%]"] = [_interval(m, lo, hi) for m, lo, hi in zip(acc["mean"], acc["lo"], acc["hi"])]
    if "PGR" in acc:
        t["PGR"] = acc["PGR"]
    return show_table(t, formats={"PGR": ".2f"})


def tax_view(tax: pd.DataFrame) -> Display:
    """The conflict tax per area for readers: one row per cell, each area's share of its pooled flips."""
    from .charts import AREA_LABELS, objective_label

    t = tax.assign(pair=tax["weak"] + " → " + tax["strong"], objective=tax["objective"].map(objective_label),
                   area=tax["area"].map(AREA_LABELS))
    wide = t.pivot_table(index=["pair", "objective", "flips"], columns="area", values="share", sort=False).reset_index()
    wide = wide.rename(columns={"pair": "weak → strong"})
    wide.columns.name = None
    return show_table(wide[["weak → strong", "objective", "flips", *[a for a in AREA_LABELS.values() if a in wide]]])


def case_view(cases: pd.DataFrame) -> Display:
    """Case studies (Table 1) for readers: the confidences, then the dialogue and both replies as text."""
    conf = {c: c for c in cases.columns if c.startswith("M_")}
    labels = {"M_w^gt": "weak GT", "M_s^gt": "strong GT", **{c: "student " + c.split("(", 1)[1].rstrip(")")
                                                             for c in conf if c.startswith("M_s^w")}}
    t = pd.DataFrame({"pair": cases["pair_id"]})
    for col, label in labels.items():
        t[f"{label} M"] = cases[col]
    t["dialogue"] = [dialogue_html(p) for p in cases["prompt"]]
    t["chosen (harmless) reply"] = [html.escape(str(c).strip()) for c in cases["chosen"]]
    t["rejected reply"] = [html.escape(str(r).strip()) for r in cases["rejected"]]
    return show_table(t, html_columns=("dialogue", "chosen (harmless) reply", "rejected reply"),
                      widths={"dialogue": "16em", "chosen (harmless) reply": "12em", "rejected reply": "12em"})


def verdict_css(verdict: str) -> str:
    """The CSS class of a verdict's badge (book/_static/w2s.css)."""
    return "w2s-" + verdict.split(" on ")[0].replace(" ", "-")


def verdict_html(rows: list[dict[str, str]]) -> str:
    """A chapter's verdicts: one row per claim (anchor `verdict-<n>`, claim, evidence, the check that moved a fragile
    claim) and its class as a badge."""
    out = ['<table class="w2s-verdicts"><thead><tr><th>claim and evidence</th><th>verdict</th></tr></thead><tbody>']
    for i, row in enumerate(rows):
        claim, verdict, evidence = (html.escape(" ".join(str(row[c]).split()))
                                    for c in ("claim", "verdict", "evidence"))
        fragile = row.get("fragile") or ""
        note = f' <span class="w2s-fragile">(fragile: {html.escape(fragile)})</span>' if fragile else ""
        out.append(f'<tr id="verdict-{i}"><td>{claim}<br><small>{evidence}</small></td><td><span class="w2s-badge '
                   f'{verdict_css(row["verdict"])}">{verdict}</span>{note}</td></tr>')
    out.append("</tbody></table>")
    return "\n".join(out)
