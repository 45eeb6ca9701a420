"""Suite-wide pytest wiring: markers, namespace fixtures, the libcni driver, plugin dirs.

Markers are applied by folder (tests/unit -> unit, tests/netns -> netns,
tests/binary -> binary, tests/containerd -> containerd), so `-m unit` runs the
fast tier anywhere. Anything the machine can't do (not root, no netns, no
built plugins) is a skip with a reason, except under CI=true, where it fails.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.helpers import paths, warm
from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns, NetnsPool, serve_pool
from tests.helpers.skip import require_dist, skip_or_fail

MARKERS = {
    "unit": "pure logic, no kernel, no root",
    "netns": "real kernel work inside throwaway network namespaces (root)",
    "binary": "runs the built plugin binaries from dist/",
    "containerd": "starts a private containerd inside a test namespace (root, slow)",
    "kernel_lane": "runs in Debian's own kernel under qemu (TCG): what this machine's kernel lacks",
}

# End-to-end folders change kernel state the same way as tests/netns (they also drive the built binaries).
FOLDER_MARKERS = {"e2e_bridge": "netns", "e2e_portmap": "netns", "e2e_links": "netns", "portability": "binary"}

_pool = NetnsPool()
_SESSION_START = pytest.StashKey[int]()


def pytest_configure(config: pytest.Config) -> None:
    config.stash[_SESSION_START] = warm.own_start_ticks()
    for name, doc in MARKERS.items():
        config.addinivalue_line("markers", f"{name}: {doc}")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    tests_dir = Path(__file__).parent
    for item in items:
        try:
            top = Path(item.path).relative_to(tests_dir).parts[0]
        except ValueError:
            continue
        marker = FOLDER_MARKERS.get(top, top)
        if marker in MARKERS:
            item.add_marker(marker)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Safety net: no namespace of this run survives it, even after a crash in a fixture."""
    left = _pool.cleanup_leftovers()
    if left:
        print(f"\nremoved leftover test namespaces: {', '.join(left)}", file=sys.stderr)
    # The warm processes the plugins of this run started (the build's default, auto, starts one for a settled
    # caller such as this process or a containerd of the tests): gone with the run, not after their idle time.
    # Only this run's: of the suite's build or of a test's own cache, never a runtime's on the machine.
    started = session.config.stash[_SESSION_START]
    for under in (warm.dist_build(), "/pytest-of-"):
        if under:
            warm.stop_warm_processes(under, started)


@pytest.fixture(scope="session")
def netns_pool() -> Iterator[NetnsPool]:
    """The run's NetnsPool (prefix `cnt-h<run>-`); skips/fails if namespaces are unavailable."""
    yield from serve_pool(_pool)


@pytest.fixture
def host_ns(netns_pool: NetnsPool) -> Iterator[Netns]:
    """A fresh "host" namespace with `lo` up: stands in for the machine."""
    ns = netns_pool.create("host", lo_up=True)
    yield ns
    netns_pool.remove(ns)


@pytest.fixture
def make_container_ns(netns_pool: NetnsPool) -> Iterator[Callable[..., Netns]]:
    """Factory `make_container_ns(lo_up=False) -> Netns`; all removed after the test."""
    made: list[Netns] = []

    def make(lo_up: bool = False) -> Netns:
        ns = netns_pool.create("ctr", lo_up=lo_up)
        made.append(ns)
        return ns

    yield make
    for ns in reversed(made):
        netns_pool.remove(ns)


@pytest.fixture(scope="session")
def cnitool_bin() -> Path:
    """tests/bin/cnitool, built once per session (offline, from Debian's libcni) when missing."""
    try:
        return paths.build_cnitool()
    except Exception as exc:  # build failure text is in the CalledProcessError
        detail = getattr(exc, "stderr", "") or exc
        pytest.fail(f"cannot build tests/bin/cnitool: {detail}")


@pytest.fixture(scope="session")
def plugin_dir() -> Path:
    """dist/, holding our built plugins (bridge, host-local, portmap, vxlan).

    Skips (fails under CI=true) when build.sh hasn't produced them yet.
    """
    return require_dist()


@pytest.fixture(scope="session")
def go_plugin_dir() -> Path:
    """/usr/lib/cni, the Go reference plugins v1.1.1 (Debian containernetworking-plugins)."""
    missing = paths.missing_plugins(paths.GO_PLUGIN_DIR, ("bridge", "host-local", "portmap", "loopback"))
    if missing:
        skip_or_fail(f"Go reference plugins missing in {paths.GO_PLUGIN_DIR}: {', '.join(missing)}")
    return paths.GO_PLUGIN_DIR


@pytest.fixture(scope="session")
def suite_builds(tmp_path_factory: pytest.TempPathFactory, plugin_dir: Path) -> tuple[Path, Path]:
    """Two different builds of the single file, each named `cni-suite` (tests/helpers/builds.py): the one in
    dist/ and a repacked one with another build hash, for upgrade tests."""
    from tests.helpers.builds import two_builds

    return two_builds(tmp_path_factory.mktemp("builds"), plugin_dir / "bridge")


@pytest.fixture
def make_cnitool(cnitool_bin: Path, host_ns: Netns, tmp_path: Path) -> Callable[..., Cnitool]:
    """Factory `make_cnitool(cni_path, host=host_ns) -> Cnitool`, each with its own conf/cache dirs."""
    count = 0

    def make(cni_path: str | Path, host: Netns | None = None) -> Cnitool:
        nonlocal count
        count += 1
        return Cnitool(cnitool_bin, host or host_ns, tmp_path / f"cnitool{count}", cni_path)

    return make


@pytest.fixture
def cnitool(make_cnitool: Callable[..., Cnitool], plugin_dir: Path) -> Cnitool:
    """libcni driver in `host_ns` with CNI_PATH = our dist/."""
    return make_cnitool(plugin_dir)


@pytest.fixture
def go_cnitool(make_cnitool: Callable[..., Cnitool], go_plugin_dir: Path) -> Cnitool:
    """libcni driver in `host_ns` with CNI_PATH = the Go reference plugins."""
    return make_cnitool(go_plugin_dir)
