"""The bundle's own interpreter start (cni_common/bundle/runner.c), seen from outside.

It replaces PyInstaller's bootloader, so what that bootloader guaranteed is pinned here: the caller's Python
variables cannot change the program, stdin is read as UTF-8 whatever the locale, ``sys.frozen`` is set (an IPAM
delegate of the same build runs in-process), and the bundle carries no shared libpython.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from tests.helpers import paths


@pytest.fixture(scope="module")
def bridge() -> Path:
    missing = paths.missing_plugins(paths.DIST_DIR)
    if missing:
        from tests.conftest import skip_or_fail
        skip_or_fail(f"dist/ lacks {missing}: run ./build.sh")
    return paths.DIST_DIR / "bridge"


def call(binary: Path, cache: Path, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    base = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "CNI_SUITE_CACHE_DIR": str(cache)}
    return subprocess.run([str(binary)], env={**base, **env}, input=stdin, capture_output=True, text=True,
                          timeout=60)


def test_python_variables_of_the_caller_are_ignored(bridge, tmp_path):
    shadow = tmp_path / "shadow"
    shadow.mkdir()
    (shadow / "json.py").write_text("raise SystemExit('the caller replaced json')\n")
    proc = call(bridge, tmp_path / "cache", {"PYTHONPATH": str(shadow), "PYTHONHOME": "/nonexistent",
                                             "PYTHONSTARTUP": str(shadow / "json.py"), "PYTHONINSPECT": "1"})
    assert proc.returncode == 0 and "CNI bridge plugin v" in proc.stderr, proc.stdout + proc.stderr


def test_stdin_is_utf8_in_the_c_locale(bridge, tmp_path):
    conf = {"cniVersion": "9.9.\u00e9", "name": "cnt-utf8", "type": "bridge"}
    proc = call(bridge, tmp_path / "cache", {"LC_ALL": "C", "CNI_COMMAND": "ADD", "CNI_CONTAINERID": "u1",
                                             "CNI_NETNS": "/run/netns/none", "CNI_IFNAME": "eth0",
                                             "CNI_PATH": str(tmp_path)}, json.dumps(conf, ensure_ascii=False))
    answer = json.loads(proc.stdout)
    assert answer["code"] == 1 and "9.9.\u00e9" in answer["details"], proc.stdout


def test_a_delegate_of_the_same_build_runs_in_process(bridge, tmp_path):
    conf = {"cniVersion": "1.0.0", "name": "cnt-inproc", "type": "bridge", "bridge": "cntinproc0",
            "ipam": {"type": "host-local", "subnet": "10.97.0.0/24", "dataDir": str(tmp_path / "ipam")}}
    proc = call(bridge, tmp_path / "cache", {"CNI_COMMAND": "DEL", "CNI_CONTAINERID": "p1", "CNI_NETNS": "",
                                             "CNI_IFNAME": "eth0", "CNI_PATH": str(bridge.parent),
                                             "CNI_LOG_LEVEL": "debug"}, json.dumps(conf))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "host-local DEL: in-process" in proc.stderr


def test_the_bundle_has_no_shared_libpython_nor_pyinstaller_bootloader(bridge, tmp_path):
    call(bridge, tmp_path / "cache", {})
    (bundle,) = [p for p in (tmp_path / "cache").iterdir() if not p.name.startswith(".")]
    assert not list((bundle / "_internal").glob("libpython*"))
    program = (bundle / "cni-suite").read_bytes()
    assert b"libpython3" not in program and b"_PYI_" not in program and b"_MEIPASS" not in program
