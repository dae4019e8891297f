"""The static page ``results/index.html``: every table, figure and reconstruction grid, the rows
files linked, with the commit, date, machine and device the rows record.

The page is built from the report's manifests (``results/report/<experiment>.json``, one per
experiment, written by ``python -m bench.report``): tables show exactly the cells of the markdown
and LaTeX tables; every link and image is relative to ``results/``, so the folder can be moved or
served as it is.
"""
from __future__ import annotations

import json
import platform
from datetime import datetime, timezone
from html import escape
from pathlib import Path

ORDER = ["table1", "tabular", "cnn", "dp", "fedavg", "depth", "label_homogeneous", "large_batch",
         "fig_failure_width", "fig_sampling", "fig_two_stage", "fig_teaser"]
TITLES = {"table1": "Table 1: SPEAR across datasets", "tabular": "Tabular data (Adult)",
          "cnn": "CNN pipelines", "dp": "DP-SGD", "fedavg": "FedAvg", "depth": "Attacked layer depth",
          "label_homogeneous": "Label-homogeneous batches", "large_batch": "Large batches",
          "fig_failure_width": "Failure probability against width", "fig_sampling": "Sampling cost",
          "fig_two_stage": "Single- vs two-stage selection", "fig_teaser": "Teaser grids"}
DEFINITIONS = ("<b>Acc</b>: share of batches whose every image is at or above the stated PSNR threshold "
               "after Hungarian matching (measured against the ground truth, whatever the attack's status). "
               "<b>certified</b>: share of batches whose attack returned status <code>ok</code> &mdash; its own "
               "certificate (SPEAR's a-posteriori check), without the ground truth; &ndash; for attacks "
               "without one. <b>failures</b>: batches with status failed, error or not_applicable.")
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',sans-serif;margin:0 auto;max-width:1400px;padding:1em 2em;
color:#222;line-height:1.4}
h1{margin-bottom:.2em}h2{border-bottom:2px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse;font-size:.85em;margin:.6em 0;display:block;overflow-x:auto}
th,td{border:1px solid #ccc;padding:.25em .5em;text-align:right;white-space:nowrap}
th{background:#f3f3f3}td.t,th:first-child{text-align:left}
.prov,.files{font-size:.85em;color:#555}.notes{font-size:.8em;color:#444}
figure{margin:1em 0}figure img{max-width:100%;border:1px solid #eee}figcaption{font-size:.85em;color:#444}
.grids{display:flex;flex-wrap:wrap;gap:1em}.grids figure{max-width:48%}details{margin:1em 0}summary{cursor:pointer}
nav a{margin-right:1em}.skipped{font-size:.8em;color:#a60}
"""


def _manifests(results: Path) -> list[dict]:
    found = [json.loads(p.read_text(encoding="utf-8")) for p in sorted((results / "report").glob("*.json"))]
    rank = {e: i for i, e in enumerate(ORDER)}
    return sorted(found, key=lambda m: (rank.get(m["experiment"], len(ORDER)), m["experiment"]))


def _link(href: str, text: str | None = None) -> str:
    return f'<a href="{escape(href)}">{escape(text or Path(href).name)}</a>'


def _numeric(cell: str) -> bool:
    """A number cell (right-aligned): ``12.3``, ``1.2e-05``, ``290.0 ± 1.3``, ``–``, ``∞``."""
    return cell[:1] in set("0123456789-−–∞.") and not cell.startswith(("n/a", "–:"))


def _table(t: dict, level: int = 3) -> str:
    out = [f"<h{level}>{escape(t['title'])}</h{level}>", f'<table data-table="{escape(t["name"])}">',
           "<thead><tr>" + "".join(f"<th>{escape(h)}</th>" for h in t["header"]) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(("<td>" if _numeric(c) else '<td class="t">') + f"{escape(c)}</td>" for c in row) + "</tr>"
            for row in t["cells"]]
    out.append("</tbody></table>")
    if t["notes"]:
        out.append('<ul class="notes">' + "".join(f"<li>{escape(n)}</li>" for n in t["notes"]) + "</ul>")
    for part in t.get("parts", []):
        out.append(_table(part, level + 1))
    if level == 3:
        out.append('<p class="files">files: ' + " · ".join(_link(f) for f in t["files"]) + "</p>")
    return "\n".join(out)


def _figure(f: dict) -> str:
    links = " · ".join(_link(x) for x in f["files"][1:])
    return (f'<figure><a href="{escape(f["png"])}"><img src="{escape(f["png"])}" alt="{escape(f["title"])}" '
            f'loading="lazy"></a><figcaption>{escape(f["title"])}' + (f" ({links})" if links else "")
            + "</figcaption></figure>")


def _prov(p: dict) -> str:
    def item(k: str, label: str) -> str:
        v = p.get(k) or []
        return f"<b>{label}</b>: {escape(' – '.join(v) if k == 'date' else ', '.join(v)) or 'not recorded'}"
    return '<p class="prov">' + "; ".join(item(k, lab) for k, lab in (
        ("commit", "commit"), ("date", "date (UTC)"), ("machine", "machine"), ("device", "device"),
        ("profile", "profile"), ("torch", "torch"))) + "</p>"


def _section(m: dict) -> str:
    exp = m["experiment"]
    out = [f'<section id="{escape(exp)}"><h2>{escape(TITLES.get(exp, exp))} '
           f'<small>({escape(exp)}, profile {escape(m.get("profile") or "all")})</small></h2>',
           _prov(m["provenance"]),
           f'<p class="prov">{m["n_rows"]} rows ({escape(m["statuses"])}), built {escape(m["built_utc"])}</p>']
    out += [_table(t) for t in m["tables"]]
    plots = [f for f in m["figures"] if f["kind"] == "plot"]
    teasers = [f for f in m["figures"] if f["kind"] == "grid" and f["name"].startswith("teaser_")]
    runs = [f for f in m["figures"] if f["kind"] == "grid" and not f["name"].startswith("teaser_")]
    out += [_figure(f) for f in plots]
    if teasers or runs:
        out.append('<h3>Reconstruction grids</h3><p class="notes">attacks top to bottom, ground truth last</p>')
    out += [_figure(f) for f in teasers]
    if runs:
        out.append(f"<details{'' if teasers else ' open'}><summary>the first batch of each run ({len(runs)})</summary>"
                   '<div class="grids">' + "".join(_figure(f) for f in runs) + "</div></details>")
    out += [f'<p class="skipped">{escape(s)}</p>' for s in m.get("skipped", [])]
    out.append('<p class="files">rows: ' + " · ".join(_link(f) for f in m["rows_files"]) + "</p></section>")
    return "\n".join(out)


def build_page(results: Path) -> Path:
    """Write ``results/index.html`` from every manifest under ``results/report``."""
    from bench.run.provenance import git_state

    results = Path(results)
    manifests = _manifests(results)
    sha, dirty = git_state()
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    head = (f"built {now} on {escape(platform.node())} from commit {escape((sha or 'unknown')[:10])}"
            + (" (uncommitted changes)" if dirty else ""))
    nav = "<nav>" + "".join(f'<a href="#{escape(m["experiment"])}">{escape(TITLES.get(m["experiment"], m["experiment"]))}</a>'
                            for m in manifests) + "</nav>"
    body = "\n".join(_section(m) for m in manifests) or (
        "<p>No experiment has rows yet: run one (e.g. <code>make reproduce-table1</code>), then "
        "<code>make report</code>.</p>")
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>spear-bench results</title>"
            f"<style>{CSS}</style></head><body>\n<h1>spear-bench results</h1><p class=\"prov\">{head}; every "
            f"number below comes from the rows files linked in each section</p>\n<p>{DEFINITIONS}</p>\n{nav}\n"
            f"{body}\n</body></html>\n")
    out = results / "index.html"
    results.mkdir(parents=True, exist_ok=True)
    out.write_text(page, encoding="utf-8")
    return out


__all__ = ["build_page"]
