"""Issue 23, item 7: "which addresses do you hold for this attachment" is answered by the IPAM side, through the
in-process registry the program fills (host-local reads its own files), with a plain answer (none) for an IPAM
this build does not know; the bridge attachment reads no IPAM's files."""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Any

import pytest

from cni_common import inprocess, invoke
from cni_common.skel import CmdArgs
from plugins import multicall
from tests.helpers.paths import REPO


@pytest.fixture(autouse=True)
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The registry as the program fills it on a plugin call (and emptied again after the test)."""
    monkeypatch.setattr(inprocess, "_LOADERS", {})
    monkeypatch.setattr(inprocess, "_HELD_LOADERS", {})
    multicall.register_in_process_delegates()


def args_for(conf: dict[str, Any], cid: str = "c1", ifname: str = "eth0") -> CmdArgs:
    data = json.dumps(conf).encode()
    return CmdArgs(container_id=cid, netns="", ifname=ifname, args="", path=["/nonexistent"], stdin_data=data,
                   conf=conf, cni_version="1.1.0", command="DEL")


def conf(data_dir: Path, **ipam: Any) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "cntnet", "type": "bridge",
            "ipam": {"type": "host-local", "dataDir": str(data_dir), **ipam}}


def test_host_local_answers_from_its_own_records(tmp_path: Path) -> None:
    net = tmp_path / "cntnet"
    net.mkdir()
    (net / "10.1.0.2").write_bytes(b"c1\r\neth0")          # ours or Go's: the same format
    (net / "fd00::2").write_bytes(b"c1\r\neth0")
    (net / "10.1.0.3").write_bytes(b"c1\r\neth1")          # another interface of the container
    (net / "10.1.0.4").write_bytes(b"c2\r\neth0")          # another container
    held = invoke.held_addresses("host-local", args_for(conf(tmp_path)))
    assert sorted(held, key=str) == [ipaddress.ip_address("10.1.0.2"), ipaddress.ip_address("fd00::2")]


def test_no_data_dir_no_file_made_and_a_bad_config_answer_none(tmp_path: Path) -> None:
    assert invoke.held_addresses("host-local", args_for(conf(tmp_path / "missing"))) == []
    assert not (tmp_path / "missing").exists()
    assert invoke.held_addresses("host-local", args_for(conf(tmp_path, dataDir=5))) == []


def test_an_ipam_this_build_does_not_know_is_not_asked(tmp_path: Path) -> None:
    """The plain fallback: no answer (the DEL keeps to the interface and prevResult), nothing executed."""
    cfg = conf(tmp_path)
    cfg["ipam"]["type"] = "static"
    assert invoke.held_addresses("static", args_for(cfg)) == []
    assert inprocess.held_loader_of("static") is None


def test_the_bridge_attachment_reads_no_ipams_files() -> None:
    attach = REPO / "cni_common" / "attach"
    for module in attach.glob("*.py"):
        text = module.read_text()
        assert not re.search(r"\.alloc\b|DiskStore|data_dir", text), f"{module} reads an IPAM's records"
