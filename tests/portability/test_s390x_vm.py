"""The s390x file on a big-endian kernel: Debian's s390x kernel under qemu-system-s390x (TCG), one boot.

netlink messages carry host-endian fields (lengths, types, flags, ifindex, MTU) beside network-endian ones
(addresses, ports) and nested attributes (IFLA_LINKINFO); a packing mistake (a ``<`` where ``=`` belongs, a
byte order assumed) only shows on a big-endian machine. qemu-user cannot show it: it byte-swaps the guest's
netlink for the little-endian host, and not the nested attributes, so there every s390x program's bridge (Debian's
Go one too) fails with EOPNOTSUPP. Here the kernel itself is s390x: the VM (made by ``.ci/s390x-vm``) boots
busybox, loads the bridge and veth modules, makes a "host" and two container namespaces, and runs the case
below with the s390x file from dist/ (the only program of the suite in the VM, under both names, as from the
tarball): bridge ADD for both containers, ping both ways, CHECK, DEL, and nothing left behind; then a bridge
with IP masquerade, whose rules go to nftables (the VM has nft, no iptables), ADD and DEL. One boot with its ~14
calls takes ~20-40 s.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from cni_common.version import version_info_json
from tests.helpers import paths
from tests.helpers.skip import skip_or_fail

VM_DIR = paths.REPO / "build" / "s390x-vm"
S390X_FILE = paths.DIST_DIR / "linux-s390x" / "bridge"
BOOT_TIMEOUT = 300
SUBNET_PREFIX = "10.89.0."
CONF = {"cniVersion": "1.0.0", "name": "cnt-vm", "type": "bridge", "bridge": "cntvmbr0", "isGateway": True,
        "ipam": {"type": "host-local", "dataDir": "/var/lib/cni-test", "ranges": [[{"subnet": "10.89.0.0/24"}]]}}
#: A second network with IP masquerade: the VM has nft and no iptables, so the rules go to nftables (nft writes
#: them; the plugin lists the tables over nfnetlink itself, cni_common/netfilter/runner.py, and says at debug level
#: when that fails and it falls back to ``nft list tables``).
NFNETLINK_FALLBACK = "nfnetlink table dump failed"
MASQ_CONF = {**CONF, "name": "cnt-vm-masq", "bridge": "cntvmbr1", "ipMasq": True, "logLevel": "debug",
             "ipam": {**CONF["ipam"], "ranges": [[{"subnet": "10.90.0.0/24"}]]}}

#: Run by the VM's /init in its "host" namespace's view (busybox sh). ``run NAME cmd...`` prints the command's
#: stdout, stderr and exit code as ``@@@ NAME out|err|rc ...`` lines on the console, read back by :func:`facts`.
CASE = r"""
run() {
    name=$1; shift
    "$@" >/tmp/out 2>/tmp/err; rc=$?
    sed "s/^/@@@ $name out /" /tmp/out; sed "s/^/@@@ $name err /" /tmp/err; echo "@@@ $name rc $rc"
    cp /tmp/out "/tmp/$name.out"
}
call() {  # call NAME VERB CONTAINER_INDEX IFNAME CONF
    echo "$5" | run "$1" nsenter --net=/run/netns/host env CNI_COMMAND="$2" CNI_CONTAINERID="cnt-$3-$4" \
        CNI_NETNS="/run/netns/ctr$3" CNI_IFNAME="$4" CNI_PATH=/opt/cni/bin /opt/cni/bin/bridge
}
cd /opt/cni/bin && ln bridge host-local
run machine uname -m
echo '{"cniVersion": "1.0.0"}' | run version env CNI_COMMAND=VERSION /opt/cni/bin/host-local
for i in 0 1; do call "add$i" ADD "$i" eth0 "$CONF"; done
run ping01 nsenter --net=/run/netns/ctr0 ping -c1 -W5 10.89.0.3
run ping10 nsenter --net=/run/netns/ctr1 ping -c1 -W5 10.89.0.2
for i in 0 1; do
    call "check$i" CHECK "$i" eth0 "${CONF%\}},\"prevResult\":$(cat "/tmp/add$i.out")}"
    call "del$i" DEL "$i" eth0 "$CONF"
    run "eth0_left$i" nsenter --net="/run/netns/ctr$i" ip link show eth0
done
run host_links nsenter --net=/run/netns/host ip -o link show
run reservations ls /var/lib/cni-test/cnt-vm
call masq_add ADD 0 eth1 "$MASQ_CONF"
run nft_added nsenter --net=/run/netns/host nft list ruleset
call masq_del DEL 0 eth1 "$MASQ_CONF"
run nft_deleted nsenter --net=/run/netns/host nft list ruleset
"""


def facts(console: str) -> dict[str, dict[str, Any]]:
    """``{name: {"out": str, "err": str, "rc": int}}`` from the ``@@@`` lines of the console."""
    found: dict[str, dict[str, Any]] = {}
    for line in console.replace("\r", "").splitlines():
        if not line.startswith("@@@ "):
            continue
        _, name, kind, *rest = line.split(" ", 3) + [""]
        fact = found.setdefault(name, {"out": "", "err": "", "rc": None})
        if kind == "rc":
            fact["rc"] = int(rest[0])
        else:
            fact[kind] += rest[0] + "\n"
    return found


def make_case_archive(dest: Path) -> Path:
    """The second initramfs archive: the s390x file as /opt/cni/bin/bridge and /case.sh."""
    tree = dest / "tree"
    (tree / "opt/cni/bin").mkdir(parents=True)
    shutil.copy(S390X_FILE, tree / "opt/cni/bin/bridge")
    (tree / "case.sh").write_text(f"CONF='{json.dumps(CONF)}'\nMASQ_CONF='{json.dumps(MASQ_CONF)}'\n{CASE}")
    archive = dest / "case.cpio.gz"
    listing = subprocess.run(["find", "."], cwd=tree, capture_output=True, check=True).stdout
    cpio = subprocess.run(["busybox", "cpio", "-o", "-H", "newc"], cwd=tree, input=listing, capture_output=True,
                          check=True).stdout
    archive.write_bytes(subprocess.run(["gzip", "-1"], input=cpio, capture_output=True, check=True).stdout)
    return archive


@pytest.fixture(scope="module")
def vm_facts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, dict[str, Any]]:
    """One boot of the VM running CASE; its facts."""
    if shutil.which("qemu-system-s390x") is None or not (VM_DIR / ".complete").exists():
        skip_or_fail(f"qemu-system-s390x or {VM_DIR} missing (run .ci/setup)")
    if not S390X_FILE.exists():
        skip_or_fail(f"{S390X_FILE} not built (run ./build.sh)")
    work = tmp_path_factory.mktemp("s390x-vm")
    initrd = work / "initrd.cpio.gz"
    # the kernel unpacks concatenated archives one after the other
    initrd.write_bytes((VM_DIR / "base.cpio.gz").read_bytes() + make_case_archive(work).read_bytes())
    proc = subprocess.run(
        ["qemu-system-s390x", "-M", "s390-ccw-virtio", "-m", "1024", "-nographic", "-no-reboot",
         "-kernel", str(VM_DIR / "vmlinuz"), "-initrd", str(initrd),
         "-append", "console=ttysclp0 quiet panic=-1"],
        capture_output=True, text=True, errors="replace", timeout=BOOT_TIMEOUT, stdin=subprocess.DEVNULL)
    (work / "console.log").write_text(proc.stdout + proc.stderr)
    found = facts(proc.stdout)
    assert "nft_deleted" in found, f"the VM did not finish its case: {(proc.stdout + proc.stderr)[-3000:]}"
    return found


def test_the_kernel_is_big_endian_s390x_and_version_answers(vm_facts: dict[str, dict[str, Any]]) -> None:
    assert vm_facts["machine"]["out"].strip() == "s390x"
    assert vm_facts["version"]["rc"] == 0
    assert json.loads(vm_facts["version"]["out"]) == json.loads(version_info_json())


def test_bridge_add_ping_check_del(vm_facts: dict[str, dict[str, Any]]) -> None:
    for index in (0, 1):
        added = vm_facts[f"add{index}"]
        assert added["rc"] == 0, added
        result = json.loads(added["out"])
        assert result["ips"][0]["address"] == f"{SUBNET_PREFIX}{index + 2}/24"
        assert result["ips"][0]["gateway"] == f"{SUBNET_PREFIX}1"
        assert [i["name"] for i in result["interfaces"]][0] == "cntvmbr0"
    assert vm_facts["ping01"]["rc"] == 0 and vm_facts["ping10"]["rc"] == 0, (vm_facts["ping01"], vm_facts["ping10"])
    for index in (0, 1):
        assert vm_facts[f"check{index}"]["rc"] == 0, vm_facts[f"check{index}"]
        assert vm_facts[f"del{index}"]["rc"] == 0, vm_facts[f"del{index}"]
        assert vm_facts[f"eth0_left{index}"]["rc"] != 0, "eth0 still in the container after DEL"
    assert "veth" not in vm_facts["host_links"]["out"], vm_facts["host_links"]
    assert "cntvmbr0" in vm_facts["host_links"]["out"]  # the bridge stays, as upstream's
    assert [n for n in vm_facts["reservations"]["out"].split() if n[0].isdigit()] == []


def test_ip_masquerade_rules_in_nftables_come_and_go(vm_facts: dict[str, dict[str, Any]]) -> None:
    assert vm_facts["masq_add"]["rc"] == 0, vm_facts["masq_add"]
    for call in ("masq_add", "masq_del"):  # the plugin's own nfnetlink message worked on the big-endian kernel
        assert "DEBUG" in vm_facts[call]["err"], vm_facts[call]["err"]  # (the level took effect)
        assert NFNETLINK_FALLBACK not in vm_facts[call]["err"], vm_facts[call]["err"]
    added = vm_facts["nft_added"]["out"]
    assert "masquerade" in added and "10.90.0.0/24" in added, added
    assert vm_facts["masq_del"]["rc"] == 0, vm_facts["masq_del"]
    assert "10.90.0" not in vm_facts["nft_deleted"]["out"], vm_facts["nft_deleted"]
