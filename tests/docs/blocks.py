"""Code blocks of README.md and docs/*.md, as tests run them (tests/docs/test_doc_blocks.py).

A fenced block whose language is ``bash``, ``sh`` or ``python`` is run; words after the language
in the info string are tags (docs/contributing.md):

- ``slow``: minutes; marked slow, so ``make test`` skips it and ``make test-all`` runs it
- ``hours``: a paper profile (hours on a CPU); skipped with that reason, run it by hand
- ``gpu``: needs CUDA; marked gpu and skipped without one
- ``network``: needs a network (downloads, online W&B); skipped with that reason
- ``slurm``: needs a SLURM cluster answering ``sinfo``; skipped without one
- ``suite``: runs the test suite itself (``make test``); skipped, it would run inside itself
- ``continue``: runs after the previous block of the same language on the same page
- ``exit=N``: the block is expected to exit with status N (an error shown on purpose)
- ``timeout=S``: seconds allowed (default 300, slow blocks 1800)

Blocks run in a fresh folder with the repository on ``PYTHONPATH``, the test's Python first on
``PATH`` (``python`` is the venv's), ``make`` told ``VENV=<that venv>`` through ``MAKEFLAGS`` and
``SPEAR_RESULTS`` pointing into the folder, so nothing is written into the repository.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
RUN = {"bash": "bash", "sh": "bash", "python": "python"}
FLAGS = {"slow", "hours", "gpu", "network", "slurm", "suite", "continue"}
SKIP_REASON = {"hours": "runs for hours (a paper profile): run it by hand",
               "network": "needs a network",
               "suite": "runs the test suite itself (it would run inside itself)"}
# repository entries a block may name by relative path (linked into its folder)
LINKED = ("Makefile", "conf", "scripts", "docs", "attacks", "bench", "datasets", "hydra_plugins",
          "tests", "pyproject.toml", "README.md")
_FENCE = re.compile(r"^```\s*([A-Za-z0-9_+-]*)\s*(.*)$")


@dataclass
class Block:
    page: Path
    line: int                      # 1-based line of the opening fence
    lang: str
    tags: dict[str, str] = field(default_factory=dict)
    code: str = ""
    previous: "Block | None" = None  # the block ``continue`` runs first

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(REPO)}:{self.line}"

    @property
    def runs(self) -> bool:
        return self.lang in RUN

    def script(self) -> str:
        """The code to run: the ``continue`` chain, then this block."""
        head = self.previous.script() + "\n" if ("continue" in self.tags and self.previous) else ""
        return head + self.code

    @property
    def timeout(self) -> int:
        if "timeout" in self.tags:
            return int(self.tags["timeout"])
        return 1800 if "slow" in self.tags else 300


def parse(page: Path) -> list[Block]:
    """Every fenced block of a markdown page, with its tags (unknown tags raise ValueError)."""
    blocks: list[Block] = []
    last: dict[str, Block] = {}
    current: Block | None = None
    body: list[str] = []
    for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
        if current is None:
            m = _FENCE.match(line)
            if m:
                current, body = Block(page, n, m.group(1).lower(), _tags(m.group(2), page, n)), []
            continue
        if line.strip() == "```":
            current.code = "\n".join(body) + "\n"
            if current.runs:
                kind = RUN[current.lang]
                current.previous = last.get(kind)
                if "continue" in current.tags and current.previous is None:
                    raise ValueError(f"{page}:{current.line}: 'continue' without an earlier {kind} block")
                last[kind] = current
            blocks.append(current)
            current = None
        else:
            body.append(line)
    if current is not None:
        raise ValueError(f"{page}:{current.line}: code block never closed")
    return blocks


def _tags(info: str, page: Path, line: int) -> dict[str, str]:
    tags: dict[str, str] = {}
    for word in info.split():
        key, eq, value = word.partition("=")
        if (eq and key in ("exit", "timeout") and value.isdigit()) or (not eq and key in FLAGS):
            tags[key] = value
        else:
            raise ValueError(f"{page}:{line}: unknown code-block tag {word!r} (known: "
                             f"{', '.join(sorted(FLAGS))}, exit=N, timeout=S)")
    return tags


def all_blocks() -> list[Block]:
    return [b for page in PAGES for b in parse(page)]


def slurm_answers() -> bool:
    if shutil.which("sinfo") is None:
        return False
    try:
        out = subprocess.run(["sinfo", "-h"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and bool(out.stdout.strip())


def environment(folder: Path) -> dict[str, str]:
    """The environment a block runs in (see the module docstring)."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env.update(
        PATH=bin_dir + os.pathsep + env.get("PATH", ""),
        PYTHONPATH=os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p),
        SPEAR_RESULTS=str(folder / "results"),
        MAKEFLAGS=f"VENV={Path(sys.executable).parent.parent}",
        WANDB_MODE="offline", WANDB_SILENT="true", WANDB_BASE_URL="http://127.0.0.1:9",
        WANDB_CONFIG_DIR=str(folder / ".wandb_config"), WANDB_CACHE_DIR=str(folder / ".wandb_cache"),
    )
    env.pop("WANDB_API_KEY", None)
    env.pop("MAKELEVEL", None)
    return env


def run(block: Block, folder: Path) -> subprocess.CompletedProcess:
    """Run ``block`` in ``folder`` (a fresh directory)."""
    for name in LINKED:
        target = folder / name
        if not target.exists():
            target.symlink_to(REPO / name)
    script = folder / ("block.py" if RUN[block.lang] == "python" else "block.sh")
    script.write_text(block.script(), encoding="utf-8")
    cmd = [sys.executable, str(script)] if RUN[block.lang] == "python" else \
        ["bash", "-e", "-o", "pipefail", str(script)]
    return subprocess.run(cmd, cwd=folder, env=environment(folder), capture_output=True, text=True,
                          timeout=block.timeout)
