"""Every bash/sh/python block of README.md and docs/*.md runs (tags: tests/docs/blocks.py), and
the README is a manual: at most 150 lines, the quickstart first, every relative link resolves."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.docs.blocks import PAGES, REPO, SKIP_REASON, all_blocks, parse, run, slurm_answers


def _params():
    out = []
    for block in all_blocks():
        if not block.runs:
            continue
        marks = []
        if "slow" in block.tags:
            marks.append(pytest.mark.slow)
        if "gpu" in block.tags:
            marks.append(pytest.mark.gpu)
        for tag, reason in SKIP_REASON.items():
            if tag in block.tags:
                marks.append(pytest.mark.skip(reason=reason))
        if "slurm" in block.tags:
            marks.append(pytest.mark.skipif(not slurm_answers(),
                                            reason="needs a SLURM cluster answering sinfo (make slurm-local)"))
        out.append(pytest.param(block, id=block.id, marks=marks))
    return out


@pytest.mark.parametrize("block", _params())
def test_doc_block_runs(block, tmp_path):
    if "gpu" in block.tags:
        import torch

        if not torch.cuda.is_available():
            pytest.skip("needs a CUDA GPU")
    proc = run(block, tmp_path)
    expected = int(block.tags.get("exit", 0))
    assert proc.returncode == expected, (
        f"{block.id} exited {proc.returncode} (expected {expected})\n--- code\n{block.script()}"
        f"--- stdout\n{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}")


# ---------------------------------------------------------------------- the README as a manual
README = REPO / "README.md"


def test_readme_is_short_and_starts_with_the_quickstart():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines; keep it <= 150 (details go to docs/)"
    headings = [l for l in lines if l.startswith("## ")]
    assert headings and headings[0].lower().startswith("## quickstart"), headings[:3]
    first = next(b for b in parse(README) if b.runs)
    steps = [s for s in ("make install", "make reproduce-table1", "make test") if s in first.code]
    assert steps == ["make install", "make reproduce-table1", "make test"], first.code
    assert first.code.index("make install") < first.code.index("make reproduce-table1") < \
        first.code.index("make test")


_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings."""
    out = set()
    for line in page.read_text(encoding="utf-8").splitlines():
        if line.startswith("#"):
            text = line.lstrip("#").strip().lower()
            text = re.sub(r"[^\w\- ]", "", text)
            out.add(text.replace(" ", "-"))
    return out


def _outside_code(text: str) -> str:
    return re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_relative_links_resolve(page):
    bad = []
    for target in _LINK.findall(_outside_code(page.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z]+:", target):
            continue  # http(s), mailto
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{target}: {dest} does not exist")
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            bad.append(f"{target}: no heading #{anchor} in {dest.name}")
    assert not bad, f"{page.name}: " + "; ".join(bad)


def test_docs_pages_exist():
    names = {p.name for p in PAGES}
    for page in ("reproducing.md", "results.md", "spear.md", "api.md", "defenses.md", "large-batch.md",
                 "cluster.md", "troubleshooting.md", "contributing.md"):
        assert page in names, f"docs/{page} is missing"
