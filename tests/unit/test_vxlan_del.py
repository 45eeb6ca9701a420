"""vxlan DEL is best effort, like bridge's: when a step fails, the others still run (the IPAM lease is released,
the masquerading removed), and the failures are reported together. The kernel and IPAM are replaced by
recorders: what is checked is which steps run, with what, after which failure."""

from __future__ import annotations

import ipaddress
import json
from typing import Any

import pytest

import cni_common.veth
import cni_common.invoke
import cni_common.netfilter
from cni_common.errors import CNIError, ErrorCode
from cni_common.overlay import attach
from cni_common.skel import CmdArgs
from plugins import vxlan

CONF = {"cniVersion": "1.1.0", "name": "pods", "type": "vxlan", "network": "10.244.0.0/16", "nodeName": "n1",
        "ipMasq": True, "ipam": {"type": "host-local", "dataDir": "/nonexistent"}}


def _args() -> CmdArgs:
    return CmdArgs(command="DEL", container_id="c1", netns="/run/netns/cnt-x", ifname="eth0", args="", path=[],
                   stdin_data=json.dumps(CONF).encode(), conf=CONF, cni_version="1.1.0")


@pytest.fixture
def steps(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, Any]]:
    """The DEL's steps as they run: the container link's deletion, IPAM, the masquerade teardown."""
    ran: list[tuple[str, Any]] = []
    monkeypatch.setattr(attach, "container_addresses", lambda args: [ipaddress.ip_interface("10.244.3.5/24")])
    monkeypatch.setattr(cni_common.invoke, "delegate", lambda verb, plugin, args: ran.append((f"IPAM {verb}", plugin)))
    monkeypatch.setattr(cni_common.netfilter, "teardown_masquerade",
                        lambda network, cid, ifname, ips: ran.append(("masquerade", [str(ip) for ip in ips])))
    return ran


def _fail(what: str) -> Any:
    def fail(*_args: Any, **_kwargs: Any) -> None:
        raise CNIError(ErrorCode.IO_FAILURE, what)
    return fail


def test_a_failed_link_deletion_still_releases_ipam_and_removes_masquerading(monkeypatch, steps) -> None:
    monkeypatch.setattr(cni_common.veth, "delete_container_link", _fail("link busy"))
    with pytest.raises(CNIError) as err:
        vxlan.cmd_del(_args())
    assert steps == [("IPAM DEL", "host-local"), ("masquerade", ["10.244.3.5/16"])]
    assert err.value.msg == "vxlan DEL failed: bridge DEL failed: link busy" and "link busy" in err.value.details


def test_a_failed_ipam_release_still_removes_masquerading(monkeypatch, steps) -> None:
    monkeypatch.setattr(cni_common.veth, "delete_container_link", lambda args, before_delete: None)
    monkeypatch.setattr(cni_common.invoke, "delegate", _fail("IPAM store locked"))
    with pytest.raises(CNIError) as err:
        vxlan.cmd_del(_args())
    assert steps == [("masquerade", ["10.244.3.5/16"])]
    assert "IPAM store locked" in err.value.details


def test_unreadable_addresses_still_delete_everything(monkeypatch, steps) -> None:
    """Without the container's addresses the rules are found by their names and comments."""
    monkeypatch.setattr(attach, "container_addresses", _fail("netns unreadable"))
    monkeypatch.setattr(cni_common.veth, "delete_container_link",
                        lambda args, before_delete: steps.append(("link", args.ifname)))
    with pytest.raises(CNIError) as err:
        vxlan.cmd_del(_args())
    # IPAM DEL first: an IPAM that talks on the link (dhcp's DHCPRELEASE) still has it (upstream #791)
    assert steps == [("IPAM DEL", "host-local"), ("link", "eth0"), ("masquerade", [])]
    assert "netns unreadable" in err.value.details


def test_a_del_where_everything_works_reports_nothing(monkeypatch, steps) -> None:
    monkeypatch.setattr(cni_common.veth, "delete_container_link", lambda args, before_delete: None)
    vxlan.cmd_del(_args())
    assert steps == [("IPAM DEL", "host-local"), ("masquerade", ["10.244.3.5/16"])]
