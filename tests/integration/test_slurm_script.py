"""scripts/slurm_local.sh without SLURM: its directory checks, its secrets, and what `stop` kills.

The script runs as root, so it must trust nothing another user could plant: a directory it did not
create (or a symlink, or one others can write), a link where it writes the database password, or
a pid file naming a process that is not the daemon. These tests plant each of those and need no
SLURM, munge or mariadb: they source the script's functions (sourcing runs nothing) or run
`stop`, which finds no daemon to stop.
"""
from __future__ import annotations

import os
import shutil
import stat
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "scripts" / "slurm_local.sh"
ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="the script trusts only root-owned directories")


def _bash(code: str, slurm_dir: Path, timeout: int = 30) -> subprocess.CompletedProcess:
    env = dict(os.environ, SPEAR_SLURM_DIR=str(slurm_dir))
    return subprocess.run(["bash", "-c", code], capture_output=True, text=True, timeout=timeout, env=env,
                          cwd="/")


@pytest.fixture(scope="module")
def sourceable():
    """The script runs nothing when sourced (else sourcing it would start a cluster)."""
    text = SCRIPT.read_text()
    assert 'if [[ ${BASH_SOURCE[0]} == "$0" ]]; then' in text, "sourcing the script would run it"
    return f"source {SCRIPT}; set +e; "


def _sleeper(tmp_path: Path, name: str = "sleep") -> subprocess.Popen:
    """A harmless process; named ``name`` (its /proc comm) by running a copy of sleep."""
    exe = shutil.which("sleep")
    if name != "sleep":
        copy = tmp_path / name
        shutil.copy(exe, copy)
        exe = str(copy)
    return subprocess.Popen([exe, "300"])


def _our_dir(tmp_path: Path) -> Path:
    """A directory as the script makes it: root-owned, 0755, with its marker and run/."""
    d = tmp_path / "spear-slurm"
    d.mkdir(mode=0o755)
    os.chmod(d, 0o755)
    (d / ".spear-slurm-dir").write_text("created by scripts/slurm_local.sh\n")
    (d / "run").mkdir(mode=0o755)
    os.chmod(d / "run", 0o755)
    return d


@needs_root
def test_stop_leaves_a_planted_pid_alone(tmp_path):
    """The pid file names an unrelated process: `stop` must not kill it."""
    d = _our_dir(tmp_path)
    victim = _sleeper(tmp_path)
    try:
        for daemon in ("slurmd", "slurmctld", "slurmdbd"):
            (d / "run" / f"{daemon}.pid").write_text(f"{victim.pid}\n")
        proc = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, SPEAR_SLURM_DIR=str(d)), cwd="/")
        time.sleep(0.2)
        assert victim.poll() is None, "stop killed a process that is not a SLURM daemon"
        assert proc.returncode == 0, proc.stderr
        assert f"names pid {victim.pid} (sleep), not slurmd; leaving it alone" in proc.stdout + proc.stderr
    finally:
        victim.kill()
        victim.wait()


@needs_root
def test_stop_refuses_a_symlinked_directory(tmp_path):
    real = _our_dir(tmp_path)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    victim = _sleeper(tmp_path)
    try:
        (real / "run" / "slurmd.pid").write_text(f"{victim.pid}\n")
        proc = subprocess.run(["bash", str(SCRIPT), "stop"], capture_output=True, text=True, timeout=60,
                              env=dict(os.environ, SPEAR_SLURM_DIR=str(link)), cwd="/")
        assert proc.returncode != 0
        assert f"refusing {link}: {link} is a symlink" in proc.stderr
        assert victim.poll() is None
    finally:
        victim.kill()
        victim.wait()


def test_daemon_pid_verifies_the_process_name(sourceable, tmp_path):
    """Only a live process whose comm/exe is the daemon counts; a planted pid is left alone."""
    other, named = _sleeper(tmp_path), _sleeper(tmp_path, "slurmd")
    try:
        time.sleep(0.2)
        (tmp_path / "other.pid").write_text(f"{other.pid}\n")
        (tmp_path / "named.pid").write_text(f"{named.pid}\n")
        (tmp_path / "junk.pid").write_text("1; rm -rf /\n")
        out = _bash(sourceable + f"daemon_pid slurmd {tmp_path}/other.pid; echo rc=$?; "
                    f"daemon_pid slurmd {tmp_path}/named.pid; echo rc=$?; "
                    f"stop_daemon slurmctld {tmp_path}/other.pid; "
                    f"stop_daemon slurmd {tmp_path}/named.pid", tmp_path / "unused")
        assert out.returncode == 0, out.stderr
        assert out.stdout.splitlines()[:3] == ["rc=1", str(named.pid), "rc=0"]
        named.wait(timeout=10)  # stop_daemon killed the real (name-matching) one ...
        assert other.poll() is None  # ... and left the planted one alone
        assert "not slurmctld; leaving it alone" in out.stderr
        # only the digits of a pid file are read, never run: "1; rm -rf /" is pid 1, not a slurmctld
        junk = _bash(sourceable + f"daemon_pid slurmctld {tmp_path}/junk.pid; echo rc=$?", tmp_path / "unused")
        assert junk.stdout.splitlines() == ["rc=1"] and "names pid 1 " in junk.stderr
    finally:
        for p in (other, named):
            p.kill()
            p.wait()


@pytest.mark.parametrize("plant", ["symlink", "no_marker", "holds_symlink", "world_writable",
                                   "open_parent"])
def test_untrusted_directories_are_refused(sourceable, tmp_path, plant):
    base = tmp_path / "base"
    base.mkdir(mode=0o755)
    os.chmod(base, 0o755)
    d = _our_dir(base)
    target = d
    if plant == "symlink":
        target = base / "link"
        target.symlink_to(d, target_is_directory=True)
        why = "is a symlink"
    elif plant == "no_marker":
        (d / ".spear-slurm-dir").unlink()
        why = "did not create it"
    elif plant == "holds_symlink":
        (d / "slurmdbd.conf").symlink_to("/etc/shadow")
        why = "holds a symlink"
    elif plant == "world_writable":
        os.chmod(d, 0o777)
        why = "writable by group or others"
    else:
        os.chmod(base, 0o777)
        why = f"its parent {base} is writable by group or others"
    out = _bash(sourceable + f"check_dir {target}; echo trusted", target)
    assert out.returncode != 0 and "trusted" not in out.stdout
    assert "refusing" in out.stderr
    if ROOT:
        assert why in out.stderr, out.stderr


@needs_root
def test_the_script_makes_its_directory_and_writes_secrets_private(sourceable, tmp_path):
    d = tmp_path / "fresh" / "spear-slurm"
    (tmp_path / "fresh").mkdir(mode=0o755)
    out = _bash(sourceable + "make_dir && check_dir \"$DIR\" && echo trusted", d)
    assert out.returncode == 0 and "trusted" in out.stdout, out.stderr
    assert stat.S_IMODE(d.stat().st_mode) == 0o755 and (d / ".spear-slurm-dir").is_file()
    assert all((d / s).is_dir() for s in ("state", "spool", "log", "run"))
    # a link planted where the secret goes is replaced, never followed
    bait = tmp_path / "bait"
    bait.write_text("untouched\n")
    (d / "slurmdbd.conf").symlink_to(bait)
    out = _bash(sourceable + "put 0600 \"$DIR/slurmdbd.conf\" <<< 'StoragePass=secret'; "
                "put 0644 \"$DIR/slurm.conf\" <<< 'ClusterName=x'", d)
    assert out.returncode == 0, out.stderr
    conf = d / "slurmdbd.conf"
    assert not conf.is_symlink() and conf.read_text() == "StoragePass=secret\n"
    assert stat.S_IMODE(conf.stat().st_mode) == 0o600
    assert stat.S_IMODE((d / "slurm.conf").stat().st_mode) == 0o644
    assert bait.read_text() == "untouched\n"
    # the password: random, alphanumeric, kept once written
    out = _bash(sourceable + "db_password", d)
    assert out.stdout.strip() == "secret"
    conf.unlink()
    first, second = (_bash(sourceable + "db_password", d).stdout.strip() for _ in range(2))
    assert first.isalnum() and len(first) >= 24 and first != second
