"""The full-kernel lane: shell cases run in one boot of Debian's own kernel under qemu (TCG).

This machine's kernel lacks some link kinds (dummy, ipvlan, vlan, vrf) and bridge VLAN filtering. The lane boots
the kernel of Debian's `linux-image-amd64` (unpacked under build/kernel-lane/ by `.ci/kernel-lane`, never
installed) with the machine's root filesystem shared read-only over virtio-9p, so the VM runs the very same
tools, cnitool and plugin files as the other tests. A Python start costs ~2.5 s under TCG, so a test module
gathers its cases first (`LaneBatch.case`), boots once (`LaneBatch.run`), and each test then asserts on its
case's facts on the host. A case is a shell script sourcing `tests/kernel_lane/lib.sh`; it records what the
test needs with `fact NAME cmd...` (stdout, stderr and exit code, read back with `CaseResult.fact`).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from tests.helpers import paths

LANE_DIR = paths.REPO / "build" / "kernel-lane"
LANE_LIB = paths.REPO / "tests" / "kernel_lane" / "lib.sh"
#: A safety net for one boot (a loaded machine slows TCG a lot); the lane itself takes ~4 minutes in all.
BOOT_TIMEOUT = 600
CASE_TIMEOUT = 120
#: Modules every case may need, loaded at boot (the VM's modprobe also autoloads on demand).
BASE_MODULES = ("veth", "bridge", "8021q", "dummy", "macvlan", "ipvlan", "vrf", "tun")


def unavailable() -> str | None:
    """Why the lane cannot run on this machine (None when it can): `.ci/kernel-lane` not run, no qemu."""
    if not shutil.which("qemu-system-x86_64"):
        return "qemu-system-x86_64 missing (run .ci/setup)"
    if not (LANE_DIR / ".complete").exists():
        return f"{LANE_DIR} not made (run .ci/kernel-lane)"
    if os.geteuid() != 0:
        return "the kernel lane needs root (qemu's 9p export of / as root)"
    return None


@dataclass(frozen=True)
class Fact:
    """One recorded command of a case: exit code, stdout, stderr."""

    rc: int
    out: str
    err: str

    def json(self) -> Any:
        """stdout as JSON (ip -j, a CNI result or error)."""
        return json.loads(self.out) if self.out.strip() else None


@dataclass(frozen=True, repr=False)
class CaseResult:
    """What one case left in its directory after the boot."""

    name: str
    rc: int | None  # None: the case never finished (the VM died or the case timed out)
    stdout: str
    stderr: str
    directory: Path

    def fact(self, name: str) -> Fact:
        d = self.directory / "facts"
        rc_file = d / f"{name}.rc"
        if not rc_file.exists():
            raise AssertionError(f"case {self.name}: no fact {name!r}\n{self}")
        return Fact(int(rc_file.read_text()), (d / name).read_text(), (d / f"{name}.err").read_text())

    def __repr__(self) -> str:
        return f"case {self.name}: rc={self.rc}\n--- stdout\n{self.stdout}\n--- stderr\n{self.stderr}"


class LaneBatch:
    """The cases of one boot. `case()` them all, then `run()` once."""

    def __init__(self, workdir: Path, modules: Iterable[str] = BASE_MODULES, *, case_timeout: int = CASE_TIMEOUT,
                 boot_timeout: int = BOOT_TIMEOUT) -> None:
        self.workdir = workdir
        self.boot_timeout = boot_timeout
        self.cases_dir = workdir / "cases"
        self.cases_dir.mkdir(parents=True, exist_ok=True)
        (workdir / "modules").write_text(" ".join(modules) + "\n")
        (workdir / "case-timeout").write_text(f"{case_timeout}\n")
        self._names: list[str] = []

    def case(self, name: str, script: str, *, conflists: Iterable[dict[str, Any]] = ()) -> Path:
        """Add case `name` (run in the order added): `script` runs under sh with lib.sh sourced, in the case's
        own directory, which holds `net.d/` with `conflists` (as `<name>.conflist`) for `cni`."""
        d = self.cases_dir / f"{len(self._names):03d}-{name}"
        (d / "net.d").mkdir(parents=True)
        for conflist in conflists:
            (d / "net.d" / f"{conflist['name']}.conflist").write_text(json.dumps(conflist, indent=1))
        (d / "script.sh").write_text(f"REPO={paths.REPO}\n. {LANE_LIB}\n{script}\n")
        self._names.append(name)
        return d

    def run(self) -> dict[str, CaseResult]:
        """Boot the lane's kernel once, run every case, power off; each case's result by name."""
        console = self.workdir / "console.log"
        argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", "-nographic", "-no-reboot",
                "-nic", "none", "-kernel", str(LANE_DIR / "vmlinuz"), "-initrd", str(LANE_DIR / "initrd.img"),
                "-append", f"console=ttyS0 quiet panic=-1 mitigations=off lanerepo={paths.REPO}",
                "-fsdev", "local,id=hostroot,path=/,security_model=none,readonly=on,multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=hostroot,mount_tag=hostroot",
                "-fsdev", f"local,id=job,path={self.workdir},security_model=none,multidevs=remap",
                "-device", "virtio-9p-pci,fsdev=job,mount_tag=job"]
        with console.open("wb") as log:
            try:
                subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                               timeout=self.boot_timeout, check=False)
            except subprocess.TimeoutExpired:
                pass  # the cases that finished still count; the others report rc None with the console
        release = self.workdir / "kernel-release"
        if not release.exists():
            raise AssertionError(f"the lane's VM never ran its cases; console:\n{console.read_text(errors='replace')}")
        results = {}
        for index, name in enumerate(self._names):
            d = self.cases_dir / f"{index:03d}-{name}"
            rc_file = d / "rc"
            stderr = (d / "stderr").read_text() if (d / "stderr").exists() else ""
            if not rc_file.exists():
                stderr += "\n--- console\n" + console.read_text(errors="replace")[-4000:]
            results[name] = CaseResult(name, int(rc_file.read_text()) if rc_file.exists() else None,
                                       (d / "stdout").read_text() if (d / "stdout").exists() else "", stderr, d)
        return results

    @property
    def kernel_release(self) -> str:
        return (self.workdir / "kernel-release").read_text().strip()
