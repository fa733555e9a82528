"""Altair charts for the book: offline, deterministic display and the figure builders."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import altair as alt

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
