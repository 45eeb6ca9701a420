"""host-device's device selection from its keys, on a stand-in sysfs: which key wins, the PCI and auxiliary
look-ups (`net/`, then `virtio*/net/`), runtimeConfig.deviceID, DPDK drivers, and the refusals (code 7)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from cni_common.errors import CNIError
from cni_common.links import device

pytestmark = pytest.mark.unit
PCI = "0000:03:00.1"


@pytest.fixture
def sysfs(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setattr(device, "SYSFS", str(tmp_path))
    return tmp_path


def _pci(sysfs: Path, address: str = PCI, *, net: str = "net", name: str = "ens5", driver: str = "") -> Path:
    d = sysfs / "bus" / "pci" / "devices" / address
    (d / net / name).mkdir(parents=True)
    if driver:
        (sysfs / "drivers" / driver).mkdir(parents=True, exist_ok=True)
        os.symlink(sysfs / "drivers" / driver, d / "driver")
    return d


def test_the_first_key_set_wins(sysfs):
    sel = device.selector_from_conf("eth1", "02:00:00:00:00:01", "/sys/devices/x", PCI, "")
    assert sel.device == "eth1"
    assert device.selector_from_conf("", "02:AA:00:00:00:01", "", "", "").hwaddr == "02:aa:00:00:00:01"


def test_pci_device_and_its_virtio_fallback(sysfs):
    _pci(sysfs)
    assert device._pci_netdev(PCI) == "ens5"
    _pci(sysfs, "0000:00:04.0", net="virtio1/net", name="eth7")
    assert device._pci_netdev("0000:00:04.0") == "eth7"
    with pytest.raises(CNIError, match="no net directory under pci device 0000:00:05.0"):
        device._pci_netdev("0000:00:05.0")


def test_device_id_is_a_pci_address_or_an_auxiliary_device(sysfs):
    _pci(sysfs)
    assert device.selector_from_conf("", "", "", "", PCI).pci_bus_id == PCI
    (sysfs / "bus" / "auxiliary" / "devices" / "mlx5_core.sf.4" / "net" / "enp3s0f0s4").mkdir(parents=True)
    assert device.selector_from_conf("", "", "", "", "mlx5_core.sf.4").auxiliary == "mlx5_core.sf.4"
    with pytest.raises(CNIError, match="DeviceID nothing not found or unsupported") as err:
        device.selector_from_conf("eth1", "", "", "", "nothing")
    assert err.value.code == 7


def test_dpdk_driver(sysfs):
    _pci(sysfs, driver="vfio-pci")
    _pci(sysfs, "0000:03:00.2", driver="ixgbevf")
    assert device.dpdk_driver(device.selector_from_conf("", "", "", PCI, "")) == "vfio-pci"
    assert device.dpdk_driver(device.selector_from_conf("", "", "", "0000:03:00.2", "")) == ""
    assert device.dpdk_driver(device.selector_from_conf("eth1", "", "", "", "")) == ""


@pytest.mark.parametrize(("keys", "text"), [
    (("", "", "", "", ""), 'specify either "device", "hwaddr", "kernelpath" or "pciBusID"'),
    (("", "", "devices/pci0000:00", "", ""), "must be absolute and begin with /sys/devices/"),
    (("", "", "/etc/passwd", "", ""), "must be absolute and begin with /sys/devices/"),
    (("", "", "", "03:00.1", ""), "is not a PCI address"),
])
def test_refusals(sysfs, keys, text):
    with pytest.raises(CNIError, match=text) as err:
        device.selector_from_conf(*keys)
    assert err.value.code == 7


def test_state_file_round_trip_and_a_torn_one(tmp_path: Path):
    path = device.state_path(str(tmp_path / "d"), "net", "cid", "net1")
    device.save_host_side(path, device.HostSide("eth1", True, ["10.0.0.2/24", "fd00::2/64"]))
    assert device.load_host_side(path) == device.HostSide("eth1", True, ["10.0.0.2/24", "fd00::2/64"])
    Path(path).write_text('{"name": "eth1", "up"')
    assert device.load_host_side(path) is None
    os.unlink(path)
    os.symlink("/etc/hostname", path)
    assert device.load_host_side(path) is None, "a planted link is not followed"
    device.forget_host_side(path)
    device.forget_host_side(path)
    assert os.listdir(tmp_path / "d" / "net") == []


@pytest.mark.parametrize(("link", "name"), [
    ({"ifname": "net1", "ifalias": "eth1", "linkinfo": {"info_kind": "veth"}}, "eth1"),
    ({"ifname": "net1", "ifalias": "ens5f0v3"}, "ens5f0v3"),  # a physical device: no kind
    ({"ifname": "bw0", "ifalias": "cni-bandwidth cntbw0 cnt-1", "linkinfo": {"info_kind": "ifb"}}, ""),
    ({"ifname": "net1", "ifalias": "uplink to rack 3"}, ""),  # an operator's prose
    ({"ifname": "net1", "ifalias": "net1"}, ""),
    ({"ifname": "blue", "ifalias": "x", "linkinfo": {"info_kind": "vrf"}}, ""),
    ({"ifname": "net1"}, ""),
])
def test_inspect_knows_a_lent_device_by_its_alias(link, name):
    from cni_common.inspect.collect import lent_name

    assert lent_name(link) == name
