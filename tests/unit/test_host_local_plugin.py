"""host-local driven in-process through plugin_main: ADD/DEL/CHECK/GC/STATUS on a temp dataDir."""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from typing import Any

import pytest

from ipam import host_local


def run(verb: str, conf: dict[str, Any], cid: str = "c1", ifname: str = "eth0", cni_args: str = "") -> tuple[int, Any]:
    env = {"CNI_COMMAND": verb, "CNI_CONTAINERID": cid, "CNI_NETNS": "/proc/1/ns/net" if verb != "DEL" else "",
           "CNI_IFNAME": ifname, "CNI_PATH": "/nonexistent", "CNI_ARGS": cni_args, "CNI_NETNS_OVERRIDE": "1"}
    out, err = io.StringIO(), io.StringIO()
    rc = host_local.plugin_main(
        host_local.CNIFuncs(host_local.cmd_add, host_local.cmd_del, host_local.cmd_check, host_local.cmd_gc,
                            host_local.cmd_status),
        about=host_local.ABOUT, environ=env, stdin=io.BytesIO(json.dumps(conf).encode()), stdout=out, stderr=err)
    text = out.getvalue()
    return rc, json.loads(text) if text.strip() else None


@pytest.fixture
def conf(tmp_path: Path) -> dict[str, Any]:
    return {"cniVersion": "1.1.0", "name": "net1",
            "ipam": {"type": "host-local", "dataDir": str(tmp_path),
                     "ranges": [[{"subnet": "10.5.0.0/29"}], [{"subnet": "fd05::/125"}]],
                     "routes": [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]}}


def reserved(conf: dict[str, Any]) -> list[str]:
    d = Path(conf["ipam"]["dataDir"], conf["name"])
    return sorted(n for n in os.listdir(d) if n[0].isdigit() or ":" in n)


def test_add_result_shape(conf):
    rc, out = run("ADD", conf)
    assert rc == 0
    assert out["cniVersion"] == "1.1.0"
    assert out["ips"] == [{"address": "10.5.0.2/29", "gateway": "10.5.0.1"},
                          {"address": "fd05::2/125", "gateway": "fd05::1"}]
    assert out["routes"] == [{"dst": "0.0.0.0/0"}, {"dst": "::/0"}]
    assert "interfaces" not in out


@pytest.mark.parametrize("version", ["0.3.1", "0.4.0", "1.0.0"])
def test_add_in_older_versions(conf, version):
    conf["cniVersion"] = version
    rc, out = run("ADD", conf)
    assert rc == 0 and out["cniVersion"] == version
    assert [ip.get("version") for ip in out["ips"]] == (["4", "6"] if version < "1" else [None, None])


def test_add_legacy_020(conf):
    conf["cniVersion"] = "0.2.0"
    rc, out = run("ADD", conf)
    assert rc == 0 and out["ip4"]["ip"] == "10.5.0.2/29" and out["ip6"]["ip"] == "fd05::2/125"


def test_add_del_check_cycle(conf):
    assert run("ADD", conf)[0] == 0
    assert run("ADD", conf, cid="c2")[0] == 0
    assert run("CHECK", conf) == (0, None)
    rc, out = run("ADD", conf)
    assert rc == 1 and "duplicate allocation is not allowed" in out["msg"]
    assert run("DEL", conf) == (0, None)
    assert run("DEL", conf) == (0, None)  # idempotent
    assert reserved(conf) == ["10.5.0.3", "fd05::3"]
    rc, out = run("CHECK", conf)
    assert rc == 1 and "no address of container c1" in out["msg"]


def test_del_with_missing_data_dir_and_broken_ranges(conf, tmp_path):
    conf["ipam"]["dataDir"] = str(tmp_path / "fresh")
    conf["ipam"]["ranges"] = "garbage"
    assert run("DEL", conf) == (0, None)


def test_requested_ip_via_cni_args(conf):
    rc, out = run("ADD", conf, cni_args="IgnoreUnknown=1;K8S_POD_NAME=x;IP=10.5.0.5")
    assert rc == 0 and out["ips"][0]["address"] == "10.5.0.5/29"


def test_dns_from_resolv_conf(conf, tmp_path):
    path = tmp_path / "resolv.conf"
    path.write_text("nameserver 10.0.0.53\nsearch example.com\n")
    conf["ipam"]["resolvConf"] = str(path)
    rc, out = run("ADD", conf)
    assert rc == 0 and out["dns"] == {"nameservers": ["10.0.0.53"], "search": ["example.com"]}


def test_failed_add_leaves_nothing(conf):
    conf["ipam"]["ranges"].append([{"subnet": "10.6.0.0/30"}])
    assert run("ADD", conf, cid="other", cni_args="IP=10.6.0.2")[0] == 0
    before = reserved(conf)
    rc, out = run("ADD", conf)
    assert rc == 1 and out["code"] == 100 and "range 2" in out["msg"]
    assert reserved(conf) == before


def test_gc(conf):
    for cid in ("c1", "c2", "c3"):
        assert run("ADD", conf, cid=cid)[0] == 0
    gc_conf = {**conf, "cni.dev/valid-attachments": [{"containerID": "c2", "ifname": "eth0"}]}
    assert run("GC", gc_conf, cid="", ifname="") == (0, None)
    assert reserved(conf) == ["10.5.0.3", "fd05::3"]
    # without the key, nothing is released
    assert run("GC", conf, cid="", ifname="") == (0, None)
    assert reserved(conf) == ["10.5.0.3", "fd05::3"]
    assert run("GC", {**conf, "cni.dev/attachments": []}, cid="", ifname="") == (0, None)
    assert reserved(conf) == []


def test_gc_and_status_need_110(conf):
    conf["cniVersion"] = "1.0.0"
    rc, out = run("STATUS", conf, cid="", ifname="")
    assert rc == 1 and out["code"] == 1


def test_status(conf, tmp_path):
    assert run("STATUS", conf, cid="", ifname="") == (0, None)
    for i in range(5):
        assert run("ADD", conf, cid=f"c{i}")[0] == 0
    rc, out = run("STATUS", conf, cid="", ifname="")
    assert rc == 1 and out["code"] == 50 and "range set 0: 10.5.0.1-10.5.0.6" in out["msg"]
    (tmp_path / "file").write_text("")
    conf["ipam"]["dataDir"] = str(tmp_path / "file")
    rc, out = run("STATUS", conf, cid="", ifname="")
    assert rc == 1 and out["code"] == 50 and "not a directory" in out["msg"]


def test_status_does_not_create_the_data_dir(conf, tmp_path):
    conf["ipam"]["dataDir"] = str(tmp_path / "later")
    assert run("STATUS", conf, cid="", ifname="") == (0, None)
    assert not (tmp_path / "later").exists()
