"""Altair charts for the book: offline, deterministic display and the figure builders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt
import pandas as pd

# ---------------------------------------------------------------------------
# Display: embed charts in the built book without a CDN.
#
# Each chart becomes a <div> plus a small script calling `vegaEmbed`. The Vega
# libraries come from one local file, `_static/vega-bundle.js`, written at build
# time by `write_vega_bundle` and loaded on demand, once per page.
# ---------------------------------------------------------------------------

VEGA_BUNDLE = "vega-bundle.js"

_EMBED_SCRIPT = """<div id="{div_id}"></div>
<script type="text/javascript">
(function () {{
  var spec = {spec};
  var target = document.getElementById("{div_id}");
  function embed() {{ window.vegaEmbed(target, spec, {{actions: false}}); }}
  function fail() {{ target.textContent = "{text} (interactive in the built book only)"; }}
  if (window.vegaEmbed) {{ embed(); return; }}
  var loader = document.querySelector("script[data-vega-bundle]");
  if (!loader) {{
    loader = document.createElement("script");
    loader.src = (document.documentElement.dataset.content_root || "../") + "_static/{bundle}";
    loader.setAttribute("data-vega-bundle", "");
    document.head.appendChild(loader);
  }}
  loader.addEventListener("load", embed);
  loader.addEventListener("error", fail);
}})();
</script>"""


@dataclass(frozen=True)
class ChartDisplay:
    """Notebook display data of one chart: HTML for the book, a short text for plain front ends."""

    html: str
    text: str

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict[str, str]:
        """Offer both MIME types so each front end picks what it can show."""
        return {"text/html": self.html, "text/plain": self.text}


def vega_lite_version() -> str:
    """Vega-Lite 'major.minor' that Altair writes specs for, so the bundle matches the specs."""
    return ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])


def write_vega_bundle(static_dir: Path) -> Path:
    """Write Vega, Vega-Lite and vega-embed to `static_dir`, scoped so only `window.vega*` leak."""
    import vl_convert  # book extra only: the package itself does not need it

    bundle = vl_convert.javascript_bundle(vl_version=vega_lite_version())
    path = static_dir / VEGA_BUNDLE
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"(function () {{\n{bundle}\n}})();\n", encoding="utf-8")
    return path


def chart_title(spec: dict[str, Any]) -> str:
    """Plain-text title of a Vega-Lite spec ('' if it has none)."""
    title = spec.get("title", "")
    text = title.get("text", "") if isinstance(title, dict) else title
    return " ".join(text) if isinstance(text, list) else str(text)


def show(chart: alt.TopLevelMixin) -> ChartDisplay:
    """Display `chart` via the local vega bundle; byte-identical output for an identical chart."""
    spec = chart.to_dict()
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    div_id = "vis-" + hashlib.sha256(spec_json.encode()).hexdigest()[:16]
    title = chart_title(spec)
    text = f"Chart: {title}" if title else "Chart"
    html = _EMBED_SCRIPT.format(
        div_id=div_id,
        spec=spec_json.replace("<", "\\u003c"),  # no "</script>" inside the script
        text=json.dumps(text)[1:-1].replace("<", "\\u003c"),
        bundle=VEGA_BUNDLE,
    )
    return ChartDisplay(html=html, text=text)


# ---------------------------------------------------------------------------
# Figure builders: each takes a table from `analysis` and returns an Altair chart
# whose tooltips show the numbers behind every mark.
# ---------------------------------------------------------------------------

_FMT = ".3f"


def _interval_marks(base: alt.Chart, x: str, y: str, color: str, tooltip: list) -> alt.LayerChart:
    """Points at `y` with error bars from `lo` to `hi`, coloured and offset by `color`."""
    enc = dict(x=alt.X(f"{x}:N", title=None), xOffset=alt.XOffset(f"{color}:N"),
               color=alt.Color(f"{color}:N"), tooltip=tooltip)
    points = base.mark_point(filled=True, size=60).encode(y=alt.Y(f"{y}:Q"), **enc)
    bars = base.mark_rule().encode(y="lo:Q", y2="hi:Q", **enc)
    return bars + points


def ladder_chart(rungs: pd.DataFrame, baselines: dict[str, float]) -> alt.LayerChart:
    """GT test accuracy per rung (95 % intervals) against surface-feature baselines."""
    tips = [alt.Tooltip("rung:N"), alt.Tooltip("mean:Q", format=_FMT, title="accuracy"),
            alt.Tooltip("lo:Q", format=_FMT), alt.Tooltip("hi:Q", format=_FMT),
            alt.Tooltip("known_share:Q", format=".2f", title="share known (M ≥ T)")]
    base = alt.Chart(rungs)
    order = list(rungs["rung"])
    x = alt.X("rung:N", sort=order, title="rung (weak → strong)")
    marks = base.mark_rule().encode(x=x, y="lo:Q", y2="hi:Q", tooltip=tips) + base.mark_point(
        filled=True, size=80).encode(x=x, y=alt.Y("mean:Q", title="GT reward-model test accuracy",
                                                  scale=alt.Scale(zero=False)), tooltip=tips)
    ref = alt.Chart(pd.DataFrame({"baseline": list(baselines), "accuracy": list(baselines.values())}))
    rules = ref.mark_rule(strokeDash=[4, 4]).encode(
        y="accuracy:Q", color=alt.Color("baseline:N", title="baseline"),
        tooltip=["baseline:N", alt.Tooltip("accuracy:Q", format=_FMT)])
    return (marks + rules).properties(title="The CPU ladder: ground-truth RM accuracy per rung", width=360)


def accuracy_chart(acc: pd.DataFrame, title: str) -> alt.FacetChart:
    """Fig. 4/10 style: weak, strong ceiling and W2S accuracies for each weak×strong pair."""
    data = acc.assign(pair=acc["weak"] + " → " + acc["strong"])
    tips = ["pair:N", "model:N", alt.Tooltip("mean:Q", format=_FMT, title="accuracy"),
            alt.Tooltip("lo:Q", format=_FMT), alt.Tooltip("hi:Q", format=_FMT)]
    if "PGR" in data:
        tips.append(alt.Tooltip("PGR:Q", format=".2f"))
    layer = _interval_marks(alt.Chart(), "model", "mean", "model", tips)
    return alt.layer(layer, data=data).properties(width=170, height=180).facet(
        facet=alt.Facet("pair:N", title=None, sort=list(dict.fromkeys(data["pair"]))), columns=3
    ).resolve_scale(y="shared").properties(title=title)


def ds_chart(ds: pd.DataFrame, title: str) -> alt.FacetChart:
    """Fig. 5/7 style: DS per strong rung for each weak rung, with the area-proportion null as grey."""
    rows = []
    for _, r in ds.iterrows():
        common = {"weak": f"weak = {r['weak']}", "strong": r["strong"], "flips": r["flips"],
                  "verdict vs null": r["vs_null"]}
        rows.append({**common, "series": f"DS {r['objective']}", "value": r["DS"], "lo": r["DS_lo"], "hi": r["DS_hi"]})
        rows.append({**common, "series": f"null {r['objective']}", "value": r["null"], "lo": r["null_lo"],
                     "hi": r["null_hi"]})
    data = pd.DataFrame(rows)
    tips = ["weak:N", "strong:N", "series:N", alt.Tooltip("value:Q", format=_FMT), alt.Tooltip("lo:Q", format=_FMT),
            alt.Tooltip("hi:Q", format=_FMT), alt.Tooltip("flips:Q", format=".0f", title="flips (mean)"),
            "verdict vs null:N"]
    objectives = list(dict.fromkeys(ds["objective"]))
    series = [f"DS {o}" for o in objectives] + [f"null {o}" for o in objectives]
    colours = {"explicit": "#d62728", "implicit": "#1f77b4", "no_conflict": "#2ca02c", "adaptive": "#9467bd"}
    palette = [colours.get(o, "#8c564b") for o in objectives] + ["#bbbbbb", "#888888", "#555555", "#333333"][
        :len(objectives)]
    enc = dict(x=alt.X("strong:N", title="strong rung"), xOffset=alt.XOffset("series:N", sort=series),
               color=alt.Color("series:N", sort=series, scale=alt.Scale(domain=series, range=palette)),
               tooltip=tips)
    base = alt.Chart()
    layer = base.mark_rule().encode(y="lo:Q", y2="hi:Q", **enc) + base.mark_point(filled=True, size=60).encode(
        y=alt.Y("value:Q", title="deception score / null"), **enc)
    return alt.layer(layer, data=data).properties(width=200, height=200).facet(
        column=alt.Column("weak:N", title=None)).properties(title=title)


AREA_LABELS = {"SkWk": "Sk∩Wk", "SkWuk": "Sk∩Wuk", "SukWk": "Suk∩Wk", "SukWuk": "Suk∩Wuk"}


def tax_chart(tax: pd.DataFrame, title: str) -> alt.FacetChart:
    """App. L style: the share of flips in each knowledge area, stacked per weak → strong cell."""
    order = list(AREA_LABELS.values())
    data = tax.assign(pair=tax["weak"] + " → " + tax["strong"], area=tax["area"].map(AREA_LABELS),
                      area_rank=tax["area"].map({a: i for i, a in enumerate(AREA_LABELS)}))
    tips = ["pair:N", "objective:N", "area:N", alt.Tooltip("share:Q", format=_FMT), alt.Tooltip("lo:Q", format=_FMT),
            alt.Tooltip("hi:Q", format=_FMT)]
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("pair:N", title="weak → strong", sort=list(dict.fromkeys(data["pair"]))),
        y=alt.Y("share:Q", title="share of flips (mean over seeds)", stack="normalize"),
        color=alt.Color("area:N", sort=order, scale=alt.Scale(domain=order, range=["#9ecae1", "#d62728", "#bdbdbd",
                                                                                  "#636363"])),
        order=alt.Order("area_rank:Q"), tooltip=tips,
    ).properties(width=220, height=200).facet(column=alt.Column("objective:N", title=None)).properties(title=title)


def sweep_chart(table: pd.DataFrame, param: str, axis_title: str, title: str) -> alt.FacetChart:
    """DS of every weak → strong cell at each value of one swept setting (T in App. I, α in App. J, the
    training-data filter in App. M), one panel per scenario × objective."""
    data = table.assign(pair=table["weak"] + " → " + table["strong"], lo=table["DS_lo"], hi=table["DS_hi"])
    value_tip = alt.Tooltip(f"{param}:Q", format=".2f") if pd.api.types.is_numeric_dtype(data[param]) else f"{param}:N"
    tips = ["scenario:N", "objective:N", "pair:N", value_tip, alt.Tooltip("DS:Q", format=_FMT),
            alt.Tooltip("lo:Q", format=_FMT), alt.Tooltip("hi:Q", format=_FMT), alt.Tooltip("null:Q", format=_FMT),
            alt.Tooltip("flips:Q", format=".0f", title="flips (mean)")]
    enc = dict(x=alt.X(f"{param}:O", title=axis_title, sort=list(dict.fromkeys(data[param]))),
               color=alt.Color("pair:N", title="weak → strong"), xOffset=alt.XOffset("pair:N"), tooltip=tips)
    base = alt.Chart()
    layer = base.mark_rule().encode(y="lo:Q", y2="hi:Q", **enc) + base.mark_point(filled=True, size=50).encode(
        y=alt.Y("DS:Q", title="deception score"), **enc)
    return alt.layer(layer, data=data).properties(width=220, height=180).facet(
        row=alt.Row("scenario:N", title=None), column=alt.Column("objective:N", title=None)).properties(title=title)


def threshold_chart(table: pd.DataFrame, title: str) -> alt.FacetChart:
    """App. I style: DS of every weak → strong cell at each threshold T, one panel per scenario × objective."""
    return sweep_chart(table, "T", "threshold T", title)


def flip_scatter_chart(points: pd.DataFrame, T: float, title: str) -> alt.FacetChart:
    """Fig. 19/20 style: GT confidences of weak (x) and strong (y) models on pairs the no-conflict
    student gets right; red crosses flip under the conflict; dashed lines at T mark the areas."""
    data = points.assign(outcome=points["flipped"].map({True: "flipped", False: "kept"}))
    tips = ["objective:N", "outcome:N", alt.Tooltip("M_w^gt:Q", format=_FMT), alt.Tooltip("M_s^gt:Q", format=_FMT)]
    dots = alt.Chart().mark_point(filled=True, size=18, opacity=0.6).encode(
        x=alt.X("M_w^gt:Q", title="weak GT confidence M_w^gt", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("M_s^gt:Q", title="strong GT confidence M_s^gt", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["kept", "flipped"], range=["#2ca02c", "#d62728"])),
        shape=alt.Shape("outcome:N", scale=alt.Scale(domain=["kept", "flipped"], range=["circle", "cross"])),
        tooltip=tips)
    lines = alt.Chart(pd.DataFrame({"T": [T]}))
    rules = lines.mark_rule(strokeDash=[4, 4], color="#555").encode(x="T:Q") + lines.mark_rule(
        strokeDash=[4, 4], color="#555").encode(y="T:Q")
    return alt.layer(dots, rules, data=data).properties(width=220, height=220).facet(
        column=alt.Column("objective:N", title=None)).properties(title=title)
