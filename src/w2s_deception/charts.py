"""Altair charts for the book: offline, deterministic display and the figure builders."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import altair as alt
import numpy as np
import pandas as pd

from .display import Display

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
  function embed() {{ window.vegaEmbed(target, spec, {{actions: false, mode: "vega-lite"}}); }}
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


# Vega-Lite of the bundle. vl-convert ships one Vega (6.x); Vega-Lite 5 compiles specs for Vega 5, which
# makes vega-embed warn in the console on every chart, so the bundle takes the Vega-Lite that targets Vega 6.
# Altair's Vega-Lite 5 specs (without `$schema`, `show`) render under it unchanged: the browser test draws
# every chart of the book.
BUNDLE_VEGA_LITE = "6.4"


def write_vega_bundle(static_dir: Path) -> Path:
    """Write Vega, Vega-Lite and vega-embed to `static_dir`, scoped so only `window.vega*` leak."""
    import vl_convert  # book extra only: the package itself does not need it

    bundle = vl_convert.javascript_bundle(vl_version=BUNDLE_VEGA_LITE)
    path = static_dir / VEGA_BUNDLE
    text = f"(function () {{\n{bundle}\n}})();\n"
    if not path.is_file() or path.read_text(encoding="utf-8") != text:  # unchanged: keep its time, the
        path.parent.mkdir(parents=True, exist_ok=True)                     # workflow re-renders on newer inputs
        path.write_text(text, encoding="utf-8")
    return path


def chart_title(spec: dict[str, Any]) -> str:
    """Plain-text title of a Vega-Lite spec ('' if it has none)."""
    title = spec.get("title", "")
    text = title.get("text", "") if isinstance(title, dict) else title
    return " ".join(text) if isinstance(text, list) else str(text)


_IDS = itertools.count(1)


def show(chart: alt.TopLevelMixin) -> Display:
    """Display `chart` via the local vega bundle. The data sit inline in the spec and the div is numbered
    in display order, so the output holds no hash of the data: a re-run on a machine whose last digits
    differ changes only those digits (which the nbval sanitizer masks)."""
    with alt.data_transformers.disable_max_rows():
        spec = chart.to_dict()
    spec = _inline_datasets(spec)
    # without `$schema` (Altair's Vega-Lite 5), vega-embed takes the mode given and does not warn that the
    # bundle's Vega-Lite is another version (BUNDLE_VEGA_LITE)
    spec.pop("$schema", None)
    spec_json = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    div_id = f"vis-{next(_IDS)}"
    title = chart_title(spec)
    text = f"Chart: {title}" if title else "Chart"
    html = _EMBED_SCRIPT.format(
        div_id=div_id,
        spec=spec_json.replace("<", "\\u003c"),  # no "</script>" inside the script
        text=json.dumps(text)[1:-1].replace("<", "\\u003c"),
        bundle=VEGA_BUNDLE,
    )
    return Display({"text/html": html, "text/plain": text})


def _inline_datasets(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with Altair's named datasets (`data-<md5 of the values>`) inlined where they are used."""
    datasets = spec.pop("datasets", {})

    def walk(node: Any) -> Any:
        if isinstance(node, dict):
            if set(node) == {"name"} and node["name"] in datasets:
                return {"values": datasets[node["name"]]}
            return {k: walk(v) for k, v in node.items()}
        if isinstance(node, list):
            return [walk(v) for v in node]
        return node

    return walk(spec)


# ---------------------------------------------------------------------------
# Figure builders: each takes a table from `analysis` and returns an Altair chart whose tooltips
# show the numbers behind every mark. One naming and one palette for the whole book; rungs and
# weak → strong pairs always in ladder order (`order`: rung names, weakest first).
# ---------------------------------------------------------------------------

_FMT = ".3f"
OBJECTIVE_LABELS = {"no_conflict": "no conflict", "explicit": "explicit conflict", "implicit": "implicit conflict",
                    "adaptive": "adaptive loss"}
MODEL_LABELS = {"weak": "weak teacher (GT)", "strong ceiling": "strong ceiling (GT)",
                **{f"W2S {k}": f"W2S, {v}" for k, v in OBJECTIVE_LABELS.items()}}
PALETTE = {"weak teacher (GT)": "#9e9e9e", "strong ceiling (GT)": "#3a3a3a",
           "no conflict": "#2ca02c", "explicit conflict": "#d62728", "implicit conflict": "#1f77b4",
           "adaptive loss": "#9467bd", "chance level p0": "#000000",
           **{f"W2S, {v}": c for v, c in (("no conflict", "#2ca02c"), ("explicit conflict", "#d62728"),
                                          ("implicit conflict", "#1f77b4"), ("adaptive loss", "#9467bd"))}}
EXTRA_COLOURS = ["#ff7f0e", "#8c564b", "#e377c2", "#bcbd22", "#17becf", "#7f7f7f"]
AREA_LABELS = {"SkWk": "Sk∩Wk", "SkWuk": "Sk∩Wuk", "SukWk": "Suk∩Wk", "SukWuk": "Suk∩Wuk"}
AREA_COLOURS = ["#9ecae1", "#d62728", "#bdbdbd", "#636363"]


def objective_label(name: str) -> str:
    """The book's name of an objective (or student) for legends, tables and axes."""
    return OBJECTIVE_LABELS.get(name, MODEL_LABELS.get(name, name))


def _scale(domain: list[str]) -> alt.Scale:
    """The shared palette on `domain`; names it lacks get distinct extra colours."""
    extra = iter(EXTRA_COLOURS * 4)
    return alt.Scale(domain=domain, range=[PALETTE.get(d) or next(extra) for d in domain])


def pair_order(table: pd.DataFrame, order: list[str]) -> list[str]:
    """'weak → strong' labels of a table's pairs, in ladder order (weak first, then strong)."""
    rank = {r: i for i, r in enumerate(order)}
    pairs = sorted({(w, s) for w, s in zip(table["weak"], table["strong"])},
                   key=lambda p: (rank.get(p[0], len(rank)), rank.get(p[1], len(rank))))
    return [f"{w} → {s}" for w, s in pairs]


def _zoom(lo: pd.Series, hi: pd.Series, floor: float = 0.0, ceiling: float = 1.0, pad: float = 0.02) -> alt.Scale:
    """A y scale fitted to the intervals drawn (never cut), within [floor, ceiling]."""
    lo_v = float(np.nanmin(lo)) if len(lo) and np.isfinite(np.nanmin(lo)) else floor
    hi_v = float(np.nanmax(hi)) if len(hi) and np.isfinite(np.nanmax(hi)) else ceiling
    return alt.Scale(domain=[max(floor, lo_v - pad), min(ceiling, hi_v + pad)], zero=False, nice=False)


def _legend(title: str | None = None) -> alt.Legend:
    return alt.Legend(title=title, orient="bottom", direction="horizontal", columns=3, labelLimit=260)


def ladder_chart(rungs: pd.DataFrame, baselines: dict[str, float], title: str,
                 y_title: str = "GT test accuracy") -> alt.LayerChart:
    """GT test accuracy per rung (95 % intervals) against surface-feature baselines, rungs in ladder order."""
    tips = [alt.Tooltip("rung:N"), alt.Tooltip("mean:Q", format=_FMT, title="accuracy"),
            alt.Tooltip("lo:Q", format=_FMT), alt.Tooltip("hi:Q", format=_FMT),
            alt.Tooltip("known_share:Q", format=".2f", title="share known (M ≥ T)")]
    order = list(rungs["rung"])
    values = list(baselines.values())
    scale = _zoom(pd.concat([rungs["lo"], pd.Series(values, dtype=float)]),
                  pd.concat([rungs["hi"], pd.Series(values, dtype=float)]))
    y = alt.Y("mean:Q", title=y_title, scale=scale)
    x = alt.X("rung:N", sort=order, title="rung (weak → strong)", axis=alt.Axis(labelAngle=0))
    base = alt.Chart(rungs)
    marks = base.mark_rule().encode(x=x, y=alt.Y("lo:Q", scale=scale), y2="hi:Q", tooltip=tips) + \
        base.mark_point(filled=True, size=80, color="#3a3a3a").encode(x=x, y=y, tooltip=tips)
    if not baselines:
        return marks.properties(title=title, width=360)
    ref = alt.Chart(pd.DataFrame({"baseline": list(baselines), "accuracy": values}))
    rules = ref.mark_rule(strokeDash=[4, 4]).encode(
        y=alt.Y("accuracy:Q", scale=scale), color=alt.Color("baseline:N", legend=_legend("baseline"),
                                                              scale=alt.Scale(range=EXTRA_COLOURS)),
        tooltip=["baseline:N", alt.Tooltip("accuracy:Q", format=_FMT)])
    return (marks + rules).properties(title=title, width=360)


def accuracy_chart(acc: pd.DataFrame, title: str, order: list[str]) -> alt.FacetChart:
    """Fig. 4/10 style: weak, strong ceiling and W2S accuracies for each weak → strong pair."""
    data = acc.assign(pair=acc["weak"] + " → " + acc["strong"], model=acc["model"].map(objective_label))
    models = list(dict.fromkeys(data["model"]))
    tips = ["pair:N", "model:N", alt.Tooltip("mean:Q", format=_FMT, title="accuracy"),
            alt.Tooltip("lo:Q", format=_FMT), alt.Tooltip("hi:Q", format=_FMT),
            alt.Tooltip("n_seeds:Q", title="seeds")]
    if "PGR" in data:
        tips.append(alt.Tooltip("PGR:Q", format=".2f"))
    scale = _zoom(data["lo"], data["hi"])
    enc = dict(x=alt.X("model:N", sort=models, title=None, axis=alt.Axis(labels=False, ticks=False)),
               color=alt.Color("model:N", sort=models, scale=_scale(models), legend=_legend()), tooltip=tips)
    base = alt.Chart()
    layer = base.mark_rule(strokeWidth=2).encode(y=alt.Y("lo:Q", scale=scale), y2="hi:Q", **enc) + \
        base.mark_point(filled=True, size=70).encode(
            y=alt.Y("mean:Q", title="test accuracy (mean over seeds, 95% interval)", scale=scale), **enc)
    return alt.layer(layer, data=data).properties(width=150, height=170).facet(
        facet=alt.Facet("pair:N", title=None, sort=pair_order(acc, order)), columns=4).properties(title=title)


def _null_ticks(base: alt.Chart, x: alt.X, offset: alt.XOffset, scale: alt.Scale, tips: list, size: int) -> list:
    """Chance levels beside each DS: the informed null (reference-matched, or label-matched for absolute DS) as
    a black tick, the uniform p0 as a grey one."""
    return [base.mark_tick(color="#9a9a9a", thickness=1.5, size=size).encode(
                x=x, xOffset=offset, y=alt.Y("p0:Q", scale=scale), tooltip=tips),
            base.mark_tick(color="black", thickness=2, size=size).encode(
                x=x, xOffset=offset, y=alt.Y("informed_null:Q", scale=scale), tooltip=tips)]


CHART_COLUMNS = ("weak", "strong", "objective", "DS", "DS_lo", "DS_hi", "p0", "excess", "flips", "gap", "class",
                 "no_power", "vs_chance", "T", "alpha", "filter", "via", "scenario")


def _with_nulls(ds: pd.DataFrame) -> pd.DataFrame:
    """The columns of a DS table a chart draws or shows (the data sit inline in each chart: no more than it needs),
    with the chance level of each cell's informed null as one column."""
    informed = np.where(ds["null"] == "label", ds["p0_label"], ds["p0_reference"])
    return ds[[c for c in CHART_COLUMNS if c in ds]].assign(informed_null=informed)


def _null_tips() -> list:
    return [alt.Tooltip("p0:Q", format=_FMT, title="uniform p0"),
            alt.Tooltip("informed_null:Q", format=_FMT, title="informed null"),
            alt.Tooltip("excess:Q", format="+.3f", title="DS − informed null"),
            alt.Tooltip("flips:Q", title="flips (pooled)"), alt.Tooltip("class:N", title="class")]


def ds_chart(ds: pd.DataFrame, title: str, order: list[str]) -> alt.FacetChart:
    """Fig. 5/7 style: DS per strong rung (exact 95 % interval) beside its chance levels (black tick: the
    informed null; grey: the uniform p0), one panel per weak rung; hollow marks are cells without power (§6)."""
    rank = {r: i for i, r in enumerate(order)}
    data = _with_nulls(ds).assign(objective=ds["objective"].map(objective_label), weak_panel="weak = " + ds["weak"],
                                  power=np.where(ds["vs_chance"] == "no power", "no power: " + ds["no_power"],
                                                 "testable"),
                                  filled=ds["vs_chance"] != "no power")
    objectives = list(dict.fromkeys(data["objective"]))
    panels = [f"weak = {w}" for w in sorted(set(ds["weak"]), key=lambda r: rank.get(r, len(rank)))]
    strong_order = sorted(set(ds["strong"]), key=lambda r: rank.get(r, len(rank)))
    tips = ["weak:N", "strong:N", "objective:N", alt.Tooltip("DS:Q", format=_FMT),
            alt.Tooltip("DS_lo:Q", format=_FMT, title="DS 95% lo"),
            alt.Tooltip("DS_hi:Q", format=_FMT, title="DS 95% hi"), *_null_tips(),
            alt.Tooltip("gap:Q", format="+.3f", title="GT accuracy gap"), "power:N"]
    x = alt.X("strong:N", sort=strong_order, title="strong rung", axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("objective:N", sort=objectives)
    enc = dict(x=x, xOffset=offset,
               color=alt.Color("objective:N", sort=objectives, scale=_scale(objectives), legend=_legend()),
               tooltip=tips)
    scale = alt.Scale(domain=[0, 1], nice=False)
    base = alt.Chart()
    layer = alt.layer(
        base.mark_rule(strokeWidth=2).encode(y=alt.Y("DS_lo:Q", scale=scale), y2="DS_hi:Q",
                                             opacity=alt.condition("datum.filled", alt.value(1.0), alt.value(0.35)),
                                             **enc),
        base.mark_point(size=70, strokeWidth=2).encode(
            y=alt.Y("DS:Q", title="deception score (95% exact interval)", scale=scale),
            fill=alt.condition("datum.filled", alt.Color("objective:N", sort=objectives, scale=_scale(objectives),
                                                         legend=None), alt.value("white")), **enc),
        *_null_ticks(base, x, offset, scale, tips, 14),
    )
    return alt.layer(layer, data=data).properties(width=alt.Step(34), height=200).facet(
        column=alt.Column("weak_panel:N", title=None, sort=panels)).resolve_scale(x="independent").properties(
        title=title)


def group_chart(table: pd.DataFrame, value: str, title: str, order: list[str]) -> alt.Chart:
    """A per-group value (`analysis.group_table`: accuracy or known share) for each rung, rungs in ladder
    order from light to dark, groups on the x axis in the table's order."""
    rungs = [r for r in order if r in set(table["rung"])]
    tips = ["rung:N", "group:N", alt.Tooltip(f"{value}:Q", format=_FMT), alt.Tooltip("pairs:Q", title="test pairs")]
    shades = ["#c6dbef", "#6baed6", "#2171b5", "#08306b", "#000000"][-len(rungs):] if len(rungs) <= 5 else None
    return alt.Chart(table).mark_line(point=True).encode(
        x=alt.X("group:N", title=None, sort=list(dict.fromkeys(table["group"])), axis=alt.Axis(labelAngle=-30)),
        y=alt.Y(f"{value}:Q", title=value.replace("_", " "), scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("rung:N", sort=rungs, legend=_legend("rung (weak → strong)"),
                        scale=alt.Scale(domain=rungs, range=shades) if shades else alt.Undefined),
        tooltip=tips,
    ).properties(title=title, width=420, height=220)


def tax_chart(tax: pd.DataFrame, title: str, order: list[str]) -> alt.FacetChart:
    """App. L style: the share of flips in each knowledge area, stacked per weak → strong cell."""
    areas = list(AREA_LABELS.values())
    data = tax.assign(pair=tax["weak"] + " → " + tax["strong"], area=tax["area"].map(AREA_LABELS),
                      area_rank=tax["area"].map({a: i for i, a in enumerate(AREA_LABELS)}),
                      objective=tax["objective"].map(objective_label))
    tips = ["pair:N", "objective:N", "area:N", alt.Tooltip("share:Q", format=_FMT), alt.Tooltip("lo:Q", format=_FMT),
            alt.Tooltip("hi:Q", format=_FMT), alt.Tooltip("flips:Q", title="flips (pooled)")]
    return alt.Chart(data).mark_bar().encode(
        x=alt.X("pair:N", title="weak → strong", sort=pair_order(tax, order), axis=alt.Axis(labelAngle=-40)),
        y=alt.Y("share:Q", title="share of flips (pooled over seeds)", stack="normalize"),
        color=alt.Color("area:N", sort=areas, scale=alt.Scale(domain=areas, range=AREA_COLOURS),
                        legend=_legend("knowledge area")),
        order=alt.Order("area_rank:Q"), tooltip=tips,
    ).properties(width=alt.Step(26), height=200).facet(column=alt.Column("objective:N", title=None)).properties(
        title=title)


def sweep_chart(table: pd.DataFrame, param: str, axis_title: str, title: str, order: list[str]) -> alt.FacetChart:
    """DS of every weak → strong cell at each value of one swept setting (T in App. I, α in App. J, the
    training-data filter in App. M), with its chance levels (black tick: the informed null; grey: the uniform
    p0); one panel per scenario × objective; hollow marks are cells without power."""
    data = _with_nulls(table).assign(pair=table["weak"] + " → " + table["strong"],
                                     objective=table["objective"].map(objective_label),
                                     filled=table["vs_chance"] != "no power")
    if "scenario" not in data:
        data = data.assign(scenario="")
    value_tip = alt.Tooltip(f"{param}:Q", format=".2f") if pd.api.types.is_numeric_dtype(data[param]) else f"{param}:N"
    tips = ["scenario:N", "objective:N", "pair:N", value_tip, alt.Tooltip("DS:Q", format=_FMT),
            alt.Tooltip("DS_lo:Q", format=_FMT, title="DS 95% lo"),
            alt.Tooltip("DS_hi:Q", format=_FMT, title="DS 95% hi"), *_null_tips()]
    pairs = pair_order(table, order)
    x = alt.X(f"{param}:O", title=axis_title, sort=list(dict.fromkeys(data[param])), axis=alt.Axis(labelAngle=0))
    enc = dict(x=x, xOffset=alt.XOffset("pair:N", sort=pairs),
               color=alt.Color("pair:N", title="weak → strong", sort=pairs, legend=_legend("weak → strong"),
                               scale=alt.Scale(range=["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd",
                                                      "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf"])),
               tooltip=tips)
    scale = alt.Scale(domain=[0, 1], nice=False)
    base = alt.Chart()
    layer = alt.layer(
        base.mark_rule(strokeWidth=2).encode(y=alt.Y("DS_lo:Q", scale=scale), y2="DS_hi:Q",
                                             opacity=alt.condition("datum.filled", alt.value(1.0), alt.value(0.35)),
                                             **enc),
        base.mark_point(filled=True, size=50).encode(y=alt.Y("DS:Q", title="deception score", scale=scale),
                                                     opacity=alt.condition("datum.filled", alt.value(1.0),
                                                                           alt.value(0.35)), **enc),
        *_null_ticks(base, x, alt.XOffset("pair:N", sort=pairs), scale, tips, 8),
    )
    facet = dict(column=alt.Column("objective:N", title=None))
    if data["scenario"].nunique() > 1:
        facet["row"] = alt.Row("scenario:N", title=None)
    return alt.layer(layer, data=data).properties(width=alt.Step(60), height=180).facet(**facet).properties(title=title)


def threshold_chart(table: pd.DataFrame, title: str, order: list[str]) -> alt.FacetChart:
    """App. I style: DS of every weak → strong cell at each threshold T, one panel per scenario × objective."""
    return sweep_chart(table, "T", "threshold T", title, order)


def flip_scatter_chart(points: pd.DataFrame, T: float, title: str) -> alt.FacetChart:
    """Fig. 19/20 style: GT confidences of weak (x) and strong (y) models on pairs the no-conflict
    student gets right; red crosses flip under the conflict; dashed lines at T mark the areas."""
    data = points.assign(outcome=points["flipped"].map({True: "flipped", False: "kept"}),
                         objective=points["objective"].map(objective_label))
    tips = ["objective:N", "outcome:N", alt.Tooltip("M_w^gt:Q", format=_FMT, title="weak GT confidence"),
            alt.Tooltip("M_s^gt:Q", format=_FMT, title="strong GT confidence")]
    dots = alt.Chart().mark_point(filled=True, size=18, opacity=0.6).encode(
        x=alt.X("M_w^gt:Q", title="weak GT confidence", scale=alt.Scale(domain=[0, 1])),
        y=alt.Y("M_s^gt:Q", title="strong GT confidence", scale=alt.Scale(domain=[0, 1])),
        color=alt.Color("outcome:N", scale=alt.Scale(domain=["kept", "flipped"], range=["#2ca02c", "#d62728"]),
                        legend=_legend()),
        shape=alt.Shape("outcome:N", scale=alt.Scale(domain=["kept", "flipped"], range=["circle", "cross"])),
        tooltip=tips)
    lines = alt.Chart(pd.DataFrame({"T": [T]}))
    rules = lines.mark_rule(strokeDash=[4, 4], color="#555").encode(x="T:Q") + lines.mark_rule(
        strokeDash=[4, 4], color="#555").encode(y="T:Q")
    return alt.layer(dots, rules, data=data).properties(width=220, height=220).facet(
        column=alt.Column("objective:N", title=None)).properties(title=title)
