"""vxlan GC: the attachments it keeps masquerading for, without touching netfilter or IPAM."""

from __future__ import annotations

import json

import pytest

import cni_common.invoke
import cni_common.netfilter
from cni_common.skel import CmdArgs
from plugins import vxlan


@pytest.mark.parametrize("attachments, kept", [
    (None, [set()]),  # JSON null reads as an empty list (it used to raise TypeError)
    ([{"containerID": "c1", "ifname": "eth0"}], [{("c1", "eth0")}]),
    ("absent", []),  # no list at all: nothing is garbage-collected
])
def test_gc_passes_valid_attachments_to_masquerade_gc(monkeypatch: pytest.MonkeyPatch, attachments: object,
                                                       kept: list[set[tuple[str, str]]]) -> None:
    seen: list[set[tuple[str, str]]] = []
    monkeypatch.setattr(cni_common.invoke, "delegate", lambda *a: None)
    monkeypatch.setattr(cni_common.netfilter, "gc_masquerade", lambda net, valid: seen.append(valid))
    conf = {"cniVersion": "1.1.0", "name": "pods", "type": "vxlan", "network": "10.244.0.0/16", "nodeName": "n1",
            "ipMasq": True}
    if attachments != "absent":
        conf["cni.dev/valid-attachments"] = attachments
    vxlan.cmd_gc(CmdArgs(command="GC", container_id="", netns="", ifname="", args="", path=[],
                         stdin_data=json.dumps(conf).encode(), conf=conf, cni_version="1.1.0"))
    assert seen == kept
