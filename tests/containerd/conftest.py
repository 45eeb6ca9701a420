"""Fixtures for the containerd suites: a busybox rootfs, a sandbox image, a private containerd.

`make_containerd(bin_dir, conflist)` starts one containerd per call inside
`host_ns` (conflist written first, as CRI requires) and tears it all down
after the test: pods stopped/removed through CRI when possible, then
containerd stopped, leftover container processes and cgroups removed.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from tests.containerd.cri import CriClient
from tests.containerd.daemon import Containerd
from tests.containerd.images import SANDBOX_IMAGE, busybox_rootfs, oci_image_archive
from tests.helpers.netns import Netns, NetnsPool
from tests.helpers.paths import GO_PLUGIN_DIR, make_bin_dir
from tests.helpers.skip import skip_or_fail


@pytest.fixture(scope="session")
def containerd_tools() -> None:
    """Skip (fail under CI=true) when containerd, ctr, runc or busybox are missing."""
    missing = [t for t in ("containerd", "ctr", "runc", "containerd-shim-runc-v2", "busybox") if not shutil.which(t)]
    if missing:
        skip_or_fail(f"containerd tests need: {', '.join(missing)}")


@pytest.fixture(scope="session")
def workroot() -> Iterator[Path]:
    """A short-named temp folder (unix socket paths must stay under 108 bytes)."""
    path = Path(tempfile.mkdtemp(prefix="cnt-hcd-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def rootfs(workroot: Path, containerd_tools: None) -> Path:
    """A busybox-static rootfs folder, built once per session (read-only use, please)."""
    return busybox_rootfs(workroot / "rootfs")


@pytest.fixture(scope="session")
def sandbox_image_tar(workroot: Path, rootfs: Path) -> Path:
    """OCI archive of the sandbox image `SANDBOX_IMAGE` (entrypoint `sleep infinity`)."""
    return oci_image_archive(rootfs, workroot / "pause.tar")


def go_bin_dir(dest: Path, names: tuple[str, ...] = ("bridge", "host-local", "portmap", "loopback")) -> Path:
    """A bin dir holding the Go reference plugins `names` (containerd needs `loopback` too)."""
    return make_bin_dir(dest, {name: GO_PLUGIN_DIR / name for name in names})


@pytest.fixture
def make_containerd(host_ns: Netns, netns_pool: NetnsPool, workroot: Path, sandbox_image_tar: Path,
                    containerd_tools: None) -> Iterator[Callable[..., Containerd]]:
    """Factory `make_containerd(bin_dir, conflist: dict | None, extra_env=None) -> Containerd`, started in `host_ns`.

    The conflist goes to `<workdir>/net.d/10-<name>.conflist` (None: none); the sandbox
    image is imported into the `k8s.io` namespace. `Containerd.namespace`
    (`cnt-h<run>-cd<n>`) is both the ctr namespace and the cgroup parent.
    """
    started: list[tuple[Containerd, CriClient | None]] = []

    def make(bin_dir: Path, conflist: dict[str, Any] | None, *, import_image: bool = True,
             extra_env: dict[str, str] | None = None) -> Containerd:
        name = f"{netns_pool.prefix}cd{len(started) + 1}"
        workdir = Path(tempfile.mkdtemp(prefix="cd", dir=workroot))
        conf_dir = workdir / "net.d"
        conf_dir.mkdir()
        if conflist is not None:  # None: a node whose network config an installer writes later
            (conf_dir / f"10-{conflist['name']}.conflist").write_text(json.dumps(conflist, indent=2))
        cd = Containerd(host=host_ns, workdir=workdir, bin_dir=bin_dir, conf_dir=conf_dir, namespace=name,
                        sandbox_image=SANDBOX_IMAGE, extra_env=dict(extra_env or {}))
        started.append((cd, None))
        cd.start()
        if import_image:
            cd.ctr("images", "import", str(sandbox_image_tar), namespace="k8s.io")
        return cd

    yield make
    for cd, _ in reversed(started):
        _remove_all_pods(cd)
        cd.stop()
        shutil.rmtree(cd.workdir, ignore_errors=True)


def _remove_all_pods(cd: Containerd) -> None:
    """Best effort: StopPodSandbox (CNI DEL) + RemovePodSandbox for every pod left."""
    if cd.proc is None or cd.proc.poll() is not None:
        return
    client = CriClient(cd.socket, cd.namespace, timeout=10)
    try:
        for pod in client.list_pods():
            client.stop_pod(pod.id)
            client.remove_pod(pod.id)
    except Exception:  # teardown must go on; stop() kills what is left
        pass
    finally:
        client.close()


@pytest.fixture
def cri_client() -> Iterator[Callable[[Containerd], CriClient]]:
    """Factory `cri_client(containerd) -> CriClient` (pods get cgroup parent = containerd.namespace)."""
    clients: list[CriClient] = []

    def make(cd: Containerd) -> CriClient:
        client = CriClient(cd.socket, cd.namespace)
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()
