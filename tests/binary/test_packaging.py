"""The files build.sh makes: multi-call, unpack-once cache, no temp leftovers, atomic install."""

import fcntl
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from plugins.multicall import PLUGINS
from tests.helpers import paths
from tests.helpers.skip import skip_or_fail

REPO = Path(__file__).resolve().parents[2]
TYPES = tuple(PLUGINS)  # every type the suite ships (plugins/multicall.py)


@pytest.fixture(scope="module")
def dist() -> Path:
    missing = paths.missing_plugins(paths.DIST_DIR)
    if missing:
        skip_or_fail(f"dist/ lacks {missing}: run ./build.sh")
    return paths.DIST_DIR


def run(binary, cache: Path, command: str = "", argv0: str | None = None) -> subprocess.CompletedProcess:
    """One call; without a command the Python program itself answers (its about line, as upstream's)."""
    env = {"CNI_COMMAND": command, "CNI_SUITE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    return subprocess.run([argv0 or str(binary)], executable=str(binary), env=env, capture_output=True,
                          text=True, timeout=60)


def reaches_python(proc: subprocess.CompletedProcess) -> bool:
    return proc.returncode == 0 and not proc.stdout and "CNI protocol versions supported" in proc.stderr


def test_every_type_answers_version_without_unpacking(dist, tmp_path):
    from cni_common.version import version_info_json

    for plugin_type in TYPES:
        proc = run(dist / plugin_type, tmp_path / "cache", "VERSION")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert proc.stdout == version_info_json()
    assert not (tmp_path / "cache").exists()


def test_every_type_runs_the_python_program(dist, tmp_path):
    from cni_common import __version__

    for plugin_type in TYPES:
        proc = run(dist / plugin_type, tmp_path / "cache")
        assert reaches_python(proc), proc.stdout + proc.stderr
        assert proc.stderr.startswith(f"CNI {plugin_type} plugin v{__version__}\n"), proc.stderr
        assert "Bundled (Debian package versions): linux/" in proc.stderr and " glibc 2." in proc.stderr


def test_unpacks_once_into_a_private_cache(dist, tmp_path):
    cache = tmp_path / "cache"
    assert reaches_python(run(dist / "host-local", cache))
    bundles = [p for p in cache.iterdir() if not p.name.startswith(".")]
    assert len(bundles) == 1 and len(bundles[0].name) == 64
    assert (cache.stat().st_mode & 0o077) == 0
    first_mtime = bundles[0].stat().st_mtime_ns
    assert reaches_python(run(dist / "bridge", cache))
    assert [p for p in cache.iterdir() if not p.name.startswith(".")] == bundles
    assert bundles[0].stat().st_mtime_ns == first_mtime


def test_multicall_name_comes_from_argv0(dist, tmp_path):
    proc = run(dist / "host-local", tmp_path / "cache", "VERSION", argv0="not-a-plugin")
    assert proc.returncode == 2 and "run me as one of" in proc.stderr


def test_refuses_a_cache_others_can_write(dist, tmp_path):
    import json

    cache = tmp_path / 'a "quoted\\ cache'  # the path lands in the error JSON: it must stay valid JSON
    cache.mkdir(mode=0o777)
    cache.chmod(0o777)
    proc = run(dist / "host-local", cache)
    error = json.loads(proc.stdout)
    assert proc.returncode == 1 and error["code"] == 999 and "not private" in error["msg"]
    assert error["details"] == str(cache)


def test_sigkill_mid_unpack_leaves_nothing_in_tmp_and_next_call_works(dist, tmp_path):
    cache = tmp_path / "cache"
    tmp_before = set(os.listdir("/tmp"))
    env = {"CNI_COMMAND": "", "CNI_SUITE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin"}
    for delay in (0.01, 0.03, 0.06):
        proc = subprocess.Popen([str(dist / "host-local")], env=env, stdout=subprocess.DEVNULL)
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not [n for n in set(os.listdir("/tmp")) - tmp_before if n.startswith(("_MEI", "cni-suite"))]
    assert reaches_python(run(dist / "host-local", cache))
    assert not [p for p in cache.iterdir() if p.name.startswith(".tmp-")]


def test_install_is_atomic_hard_links(dist, tmp_path):
    target = tmp_path / "bin"
    subprocess.run([str(REPO / "build.sh"), "install", str(target)], check=True, capture_output=True)
    inodes = {(target / t).stat().st_ino for t in TYPES}
    assert len(inodes) == 1
    assert sorted(os.listdir(target)) == sorted(TYPES)
    assert reaches_python(run(target / "portmap", tmp_path / "cache"))


def test_a_failed_install_leaves_no_temporary_file(dist, tmp_path):
    """./build.sh install into a full file system (a 1 MiB tmpfs in a mount namespace of its own) fails, and
    leaves DIR as empty as it found it (once, its half-copied temporary file stayed)."""
    target = tmp_path / "bin"
    target.mkdir()
    script = 'mount -t tmpfs -o size=1m cnt-install "$1" && { "$2" install "$1"; echo rc=$?; ls -A "$1"; }'
    proc = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           str(target), str(REPO / "build.sh")], capture_output=True, text=True, timeout=120)
    assert proc.stdout == "rc=1\n", (proc.stdout, proc.stderr)


def test_install_takes_the_architecture_asked_for(dist, tmp_path):
    """`./build.sh --arch arm64 install DIR` installs that architecture's file (it once installed the build
    machine's whatever --arch said)."""
    arm64 = dist / "linux-arm64" / "bridge"
    if not arm64.exists():
        skip_or_fail("no arm64 files in dist/ (./build.sh builds them by default)")
    target = tmp_path / "bin"
    subprocess.run([str(REPO / "build.sh"), "--arch", "arm64", "install", str(target)], check=True,
                   capture_output=True, timeout=120)
    assert (target / "host-local").read_bytes() == arm64.read_bytes()


def _fake_older_build(cache: Path) -> Path:
    """A folder as another build's launcher leaves it (its in-use marker included)."""
    older = cache / ("0" * 64)
    older.mkdir()
    (older / ".in-use").touch()
    (older / "cni-suite").write_text("an older build")
    return older


def test_other_builds_are_pruned_only_when_no_call_uses_them(dist, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir(mode=0o700)
    older = _fake_older_build(cache)
    with open(older / ".in-use") as held:  # what a running call of that build holds
        fcntl.flock(held, fcntl.LOCK_SH)
        assert reaches_python(run(dist / "bridge", cache))
        assert older.exists(), "a build in use must survive another build's unpack"
    for bundle in cache.iterdir():
        if len(bundle.name) == 64 and bundle != older:
            subprocess.run(["rm", "-rf", str(bundle)], check=True)
    assert reaches_python(run(dist / "bridge", cache))
    assert not older.exists(), "an unused older build is removed at the next unpack"


def _call_blocked_on_stdin(dist: Path, cache: Path) -> subprocess.Popen:
    """A host-local ADD, unpacked into ``cache``, that waits for its config on stdin until the caller kills it."""
    env = {"CNI_COMMAND": "ADD", "CNI_SUITE_CACHE_DIR": str(cache), "PATH": "/usr/bin:/bin",
           "CNI_CONTAINERID": "c1", "CNI_NETNS": "/proc/1/ns/net", "CNI_IFNAME": "eth0"}
    return subprocess.Popen([str(dist / "host-local")], env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE)


def test_a_running_call_holds_its_build(dist, tmp_path):
    cache = tmp_path / "cache"
    proc = _call_blocked_on_stdin(dist, cache)  # stands for a long call: its build folder must stay locked
    try:
        deadline = time.time() + 20
        bundle = None
        while time.time() < deadline and bundle is None:
            bundle = next((p for p in cache.glob("?" * 64) if (p / ".in-use").exists()), None) if cache.exists() else None
            time.sleep(0.05)
        assert bundle is not None
        time.sleep(0.3)
        probe = subprocess.run(["flock", "--exclusive", "--nonblock", str(bundle / ".in-use"), "true"])
        assert probe.returncode != 0, "the in-use lock is held by the running call"
    finally:
        proc.kill()
        proc.wait()


def test_the_launcher_is_linked_against_musl_not_glibc(dist, tmp_path):
    """The launcher starts without glibc's static start-up, which probes the CPU (~75 `cpuid`, each a trap to the
    hypervisor on a VM: 0.56 ms per call on the test VM): no glibc tunables parser in it, and the file says which
    musl it carries."""
    from cni_common.bundle import trailer

    data = (dist / "host-local").read_bytes()
    tail = data[-trailer.SIZE:]
    assert tail.startswith(trailer.MAGIC)
    launcher = data[:int.from_bytes(tail[8:16], "little")]  # the ELF before the payload
    assert launcher.startswith(b"\x7fELF") and b"GLIBC_TUNABLES" not in launcher
    about = run(dist / "host-local", tmp_path / "cache")
    assert "musl 1." in about.stderr and "(the launcher)" in about.stderr, about.stderr


def test_the_launcher_is_static_and_the_program_runs_on_the_bundles_c_library(dist, tmp_path):
    """Portable files (docs/packaging.md): no loader requested by the file itself, and the running program's
    loader and libc are the bundle's copies, whatever the machine has; the process carries the plugin's name."""
    headers = subprocess.run(["readelf", "--program-headers", "--wide", str(dist / "host-local")],
                             capture_output=True, text=True, check=True).stdout
    assert "INTERP" not in headers and "DYNAMIC" not in headers
    cache = tmp_path / "cache"
    proc = _call_blocked_on_stdin(dist, cache)
    try:
        deadline = time.time() + 20
        maps = ""
        while time.time() < deadline and "libc.so.6" not in maps:  # until the loader mapped it
            maps = Path(f"/proc/{proc.pid}/maps").read_text()
            time.sleep(0.05)
        (bundle,) = [p for p in cache.iterdir() if len(p.name) == 64]
        libraries = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
        assert str(bundle / "_internal" / "libc.so.6") in libraries
        assert [lib for lib in libraries if lib.startswith(str(bundle / "_internal" / "ld-linux"))]
        assert not [lib for lib in libraries if not lib.startswith(str(bundle))], libraries
        assert Path(f"/proc/{proc.pid}/comm").read_text().strip() == "host-local"
    finally:
        proc.kill()
        proc.wait()
