"""The files build.sh makes: multi-call, unpack-once cache, no temp leftovers, atomic install."""

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from tests.helpers import paths

REPO = Path(__file__).resolve().parents[2]
TYPES = ("bridge", "host-local", "portmap", "vxlan")


@pytest.fixture(scope="module")
def dist() -> Path:
    missing = paths.missing_plugins(paths.DIST_DIR)
    if missing:
        from tests.conftest import skip_or_fail
        skip_or_fail(f"dist/ lacks {missing}: run ./build.sh")
    return paths.DIST_DIR


def version(binary, cache: Path, argv0: str | None = None) -> subprocess.CompletedProcess:
    env = {"CNI_COMMAND": "VERSION", "CNI_SUITE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run([argv0 or str(binary)], executable=str(binary), env=env, capture_output=True,
                          text=True, timeout=60)


def test_every_type_answers_version(dist, tmp_path):
    for plugin_type in TYPES:
        proc = version(dist / plugin_type, tmp_path / "cache")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert '"1.1.0"' in proc.stdout and '"0.1.0"' in proc.stdout


def test_unpacks_once_into_a_private_cache(dist, tmp_path):
    cache = tmp_path / "cache"
    assert version(dist / "host-local", cache).returncode == 0
    bundles = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(bundles) == 1 and len(bundles[0].name) == 64
    assert (cache.stat().st_mode & 0o077) == 0
    first_mtime = bundles[0].stat().st_mtime_ns
    assert version(dist / "bridge", cache).returncode == 0
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == bundles
    assert bundles[0].stat().st_mtime_ns == first_mtime


def test_multicall_name_comes_from_argv0(dist, tmp_path):
    proc = version(dist / "host-local", tmp_path / "cache", argv0="not-a-plugin")
    assert proc.returncode == 2 and "run me as one of" in proc.stderr


def test_refuses_a_cache_others_can_write(dist, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    proc = version(dist / "host-local", cache)
    assert proc.returncode == 1 and '"code": 999' in proc.stdout and "not private" in proc.stdout


def test_sigkill_mid_unpack_leaves_nothing_in_tmp_and_next_call_works(dist, tmp_path):
    cache = tmp_path / "cache"
    tmp_before = set(os.listdir("/tmp"))
    env = {"CNI_COMMAND": "VERSION", "CNI_SUITE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    for delay in (0.01, 0.03, 0.06):
        proc = subprocess.Popen([str(dist / "host-local")], env=env, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not [n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith(("_MEI", "cni-suite"))]
    assert version(dist / "host-local", cache).returncode == 0
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_install_is_atomic_hard_links(dist, tmp_path):
    target = tmp_path / "bin"
    subprocess.run([str(REPO / "build.sh"), "install", str(target)], check=True, capture_output=True)
    inodes = {(target / t).stat().st_ino for t in TYPES}
    assert len(inodes) == 1
    assert sorted(os.listdir(target)) == sorted(TYPES)
    assert version(target / "portmap", tmp_path / "cache").returncode == 0
