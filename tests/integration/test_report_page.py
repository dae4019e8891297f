"""``python -m bench.report`` on a small real run: the page results/index.html, its images and links.

The module's fixture runs one Table 1 batch (MNIST, B=4) through ``python -m bench.run``, then the
report's entry (``python -m bench.report``, called in this process). One test parses the page
(html.parser); one opens it in headless Chromium (marker ``browser``: skipped when ``chromium`` is
not on PATH, unless SPEAR_REQUIRE_BROWSER=1 -- as ``.ci/run`` sets it -- turns the skip into a failure).
"""
from __future__ import annotations

import contextlib
import functools
import io
import json
import os
import shutil
import subprocess
import sys
import threading
from html.parser import HTMLParser
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

import pytest

from bench.report.__main__ import main as report_main

REPO = Path(__file__).resolve().parents[2]


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__()
        self.imgs, self.links, self.text = [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "a" and "href" in a:
            self.links.append(a["href"])

    def handle_data(self, data):
        self.text.append(data)


@pytest.fixture(scope="module")
def page(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("page")
    results = tmp / "results"
    env = dict(os.environ, WANDB_MODE="disabled", OMP_NUM_THREADS="1", SPEAR_RESULTS=str(results))
    run = subprocess.run([sys.executable, "-m", "bench.run", "experiment=table1", "dataset=mnist", "n_batches=1",
                          "batch_size=4", f"paths.results={results}", "progress=false",
                          f"hydra.run.dir={tmp / 'outputs'}"], cwd=REPO, env=env, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):  # python -m bench.report --results <results>, in this process
        assert report_main(["--results", str(results)]) == 0
    assert "| spear | MNIST |" in out.getvalue()  # the markdown table on the terminal
    return results


def test_page_lists_tables_figures_grids_and_rows_and_every_reference_resolves(page):
    index = page / "index.html"
    refs = _Refs()
    refs.feed(index.read_text(encoding="utf-8"))
    text = " ".join(refs.text)
    assert refs.imgs and any("teaser_" in s for s in refs.imgs) and any("/grid_" in s for s in refs.imgs)
    assert any(h.startswith("raw/table1/") and h.endswith(".jsonl") for h in refs.links)
    assert {"tables/table1.md", "tables/table1.csv", "tables/table1.tex"} <= set(refs.links)
    row = json.loads(next((page / "raw" / "table1").glob("*.jsonl")).read_text().splitlines()[0])
    assert row["git_sha"][:10] in text and row["machine"] in text and "device" in text and "cpu" in text
    assert "Acc %" in text and "certified %" in text
    missing = [r for r in refs.imgs + refs.links
               if not urlparse(r).scheme and not r.startswith("#") and not (page / unquote(r)).is_file()]
    assert not missing, missing
    for r in refs.links:
        if r.startswith("#"):
            assert f'id="{r[1:]}"' in index.read_text(encoding="utf-8"), r


CHECK = """<!DOCTYPE html><html><body><pre id="result">pending</pre>
<iframe id="f" src="index.html" style="width:1200px;height:800px"></iframe>
<script>
const f = document.getElementById('f');
f.addEventListener('load', async () => {
  const doc = f.contentDocument;
  const imgs = [...doc.images];
  imgs.forEach(i => { i.loading = 'eager'; });
  await Promise.all(imgs.map(i => i.complete ? null : new Promise(r => { i.onload = i.onerror = r; })));
  const links = [...doc.querySelectorAll('a[href]')].map(a => a.href).filter(h => !h.includes('#'));
  const bad = [];
  for (const h of links) {
    try { const r = await fetch(h, {method: 'HEAD'}); if (!r.ok) bad.push(h + ' ' + r.status); }
    catch (e) { bad.push(h + ' ' + e); }
  }
  document.getElementById('result').textContent = JSON.stringify({
    images: imgs.map(i => [i.getAttribute('src'), i.naturalWidth]), links: links.length, bad});
});
</script></body></html>
"""


@pytest.mark.browser
def test_page_in_headless_chromium_loads_every_image_and_link(page, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        if os.environ.get("SPEAR_REQUIRE_BROWSER") == "1":
            pytest.fail("SPEAR_REQUIRE_BROWSER=1 but no chromium on PATH (apt-get install chromium)")
        pytest.skip("chromium is not on PATH (Debian: apt-get install chromium)")
    (page / "_check.html").write_text(CHECK, encoding="utf-8")
    handler = functools.partial(type("Quiet", (SimpleHTTPRequestHandler,), {"log_message": lambda *a: None}),
                                directory=str(page))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/_check.html"
        p = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                            f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=20000",
                            "--dump-dom", url], capture_output=True, text=True, timeout=120)
    finally:
        server.shutdown()
        (page / "_check.html").unlink()
    assert '<pre id="result">' in p.stdout, p.stderr[-2000:]
    result = json.loads(p.stdout.split('<pre id="result">', 1)[1].split("</pre>", 1)[0])
    refs = _Refs()
    refs.feed((page / "index.html").read_text(encoding="utf-8"))
    assert len(result["images"]) == len(refs.imgs) > 0
    assert all(width > 0 for _, width in result["images"]), result["images"]
    assert result["links"] == len([h for h in refs.links if not h.startswith("#")]) > 0
    assert result["bad"] == []
