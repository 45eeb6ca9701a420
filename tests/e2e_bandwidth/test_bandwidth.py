"""bandwidth through libcni after our bridge, beside the Go bandwidth v1.1.1: the same kernel objects, each
plugin's state understood by the other, traffic at the configured rate, and nothing left behind."""

from __future__ import annotations

import json
import secrets
from typing import Any

import pytest

from cni_common.shaping import ifb_name
from tests.e2e_bandwidth.conftest import GATEWAY, Attached, Lab
from tests.helpers import paths, throughput
from tests.helpers.plugin import run_plugin

INGRESS, EGRESS = 8_000_000, 16_000_000  # the lab conflist's top-level limits (bits/s)
CAP = {"bandwidth": {"ingressRate": 4_000_000, "ingressBurst": 400_000,
                     "egressRate": 12_000_000, "egressBurst": 120_000}}


def facts(lab: Lab, att: Attached) -> dict[str, Any]:
    """What shaping built for ``att``, with its names taken out so two attachments compare."""
    assert att.ifb == ifb_name(att.net, att.cid)
    veth = [{k: v for k, v in q.items() if k != "dev"} for q in lab.qdiscs(att.host_veth)]
    ifb = [{k: v for k, v in q.items() if k != "dev"} for q in lab.qdiscs(att.ifb)]
    flt = [line.replace(att.ifb, "IFB") for line in lab.redirect_filter(att.host_veth)]
    return {"veth": veth, "ifb_link": lab.ifb_facts(att.ifb), "ifb": ifb, "filter": flt}


def bandwidth_conf(lab: Lab, att: Attached, verb_conf: dict[str, Any] | None = None) -> dict[str, Any]:
    """The bandwidth plugin's own config as libcni would send it for ``att`` (prevResult = its ADD result)."""
    listing = json.loads((att.tool.conf_dir / f"{att.net}.conflist").read_text())
    conf = {"cniVersion": listing["cniVersion"], "name": att.net, **listing["plugins"][1], **(verb_conf or {})}
    conf["prevResult"] = att.result
    return conf


def run_ours(lab: Lab, verb: str, att: Attached, conf: dict[str, Any]) -> Any:
    return run_plugin(f"{lab.tools['ours'].cni_path}/bandwidth", verb, conf, netns=att.ns,
                      container_id=att.cid, in_netns=lab.node)


def run_go(lab: Lab, verb: str, att: Attached, conf: dict[str, Any]) -> Any:
    return run_plugin(paths.GO_PLUGIN_DIR / "bandwidth", verb, conf, netns=att.ns, container_id=att.cid,
                      in_netns=lab.node, cni_path=paths.GO_PLUGIN_DIR)


def assert_unshaped(lab: Lab, att: Attached, veth: str) -> None:
    assert lab.ifb_facts(ifb_name(att.net, att.cid)) is None
    assert lab.qdiscs(veth) == [], lab.qdiscs(veth)


@pytest.fixture(autouse=True)
def _go_bandwidth() -> None:
    if not (paths.GO_PLUGIN_DIR / "bandwidth").exists():
        pytest.skip("Go bandwidth not installed (Debian's containernetworking-plugins)")


@pytest.mark.parametrize("cap_args", [None, CAP], ids=["config-keys", "runtimeConfig"])
def test_same_qdiscs_and_ifb_as_go_and_nothing_left_after_del(clean_lab: Lab, cap_args: Any) -> None:
    lab = clean_lab
    net = lab.net if cap_args is None else lab.net + "c"
    seen = {}
    for impl in ("ours", "go"):
        att = lab.add(impl, impl, net=net, cap_args=cap_args)
        seen[impl] = facts(lab, att)
        ifb_entry = next(i for i in att.result["interfaces"] if i["name"] == att.ifb)
        assert ifb_entry.get("mac") and "sandbox" not in ifb_entry
        veth = att.host_veth
        res = lab.delete(att)
        assert res.rc == 0, res
        assert lab.ifb_facts(att.ifb) is None and att.ifb not in lab.ifb_links()
        assert lab.node.ip("link", "show", veth, check=False).returncode != 0  # bridge DEL took the veth
        assert lab.delete(att).rc == 0, "a second DEL must succeed"
    assert seen["ours"] == seen["go"]
    kinds = [q["kind"] for q in seen["ours"]["veth"]]
    assert kinds == ["tbf", "ingress"] and seen["ours"]["ifb"][0]["kind"] == "tbf"
    assert seen["ours"]["ifb_link"] == {"kind": "ifb", "mtu": 1500, "txqlen": 0, "up": True, "qdisc": "tbf"}
    want = (INGRESS, EGRESS) if cap_args is None else (CAP["bandwidth"]["ingressRate"],
                                                       CAP["bandwidth"]["egressRate"])
    assert seen["ours"]["veth"][0]["options"]["rate"] * 8 == want[0]
    assert seen["ours"]["ifb"][0]["options"]["rate"] * 8 == want[1]


def test_top_level_keys_win_over_the_capability(clean_lab: Lab) -> None:
    att = clean_lab.add("ours", "both", cap_args=CAP)
    assert clean_lab.qdiscs(att.host_veth)[0]["options"]["rate"] * 8 == INGRESS


def test_each_plugin_checks_and_deletes_the_others_state(clean_lab: Lab) -> None:
    lab = clean_lab
    for maker, other, run_other in (("go", "ours", run_ours), ("ours", "go", run_go)):
        att = lab.add(maker, f"by{maker}")
        conf = bandwidth_conf(lab, att)
        res = run_other(lab, "CHECK", att, conf)
        assert res.rc == 0, (maker, other, res)
        res = run_other(lab, "DEL", att, conf)
        assert res.rc == 0, (maker, other, res)
        assert lab.ifb_facts(att.ifb) is None
        if other == "ours":  # ours also clears the host veth, which Go leaves to the bridge's DEL
            assert lab.qdiscs(att.host_veth) == []
        lab.remove(att)


def test_second_add_converges_and_del_clears_a_surviving_veth(clean_lab: Lab) -> None:
    lab = clean_lab
    att = lab.add("ours", "again")
    before = facts(lab, att)
    for _ in range(2):
        res = run_ours(lab, "ADD", att, bandwidth_conf(lab, att))
        assert res.rc == 0, res
        assert [i["name"] for i in res.out["interfaces"]].count(att.ifb) == 1
    assert facts(lab, att) == before
    assert run_ours(lab, "CHECK", att, bandwidth_conf(lab, att)).rc == 0
    # DEL of bandwidth alone: the veth stays (the bridge's DEL has not run), its qdiscs and filter go.
    res = run_ours(lab, "DEL", att, bandwidth_conf(lab, att))
    assert res.rc == 0, res
    assert_unshaped(lab, att, att.host_veth)
    assert lab.tc("filter", "show", "dev", att.host_veth, "ingress") == ""
    res = run_ours(lab, "CHECK", att, bandwidth_conf(lab, att))
    assert res.rc == 1 and "qdisc" in res.out["msg"], res


def test_failed_add_leaves_nothing(clean_lab: Lab) -> None:
    lab = clean_lab
    att = lab.add("ours", "blocked", net=lab.net + "c")  # no limits yet: bandwidth passed the result through
    assert att.ifb is None and lab.qdiscs(att.host_veth) == []
    blocker = ifb_name(att.net, att.cid)
    lab.node.ip("link", "add", blocker, "type", "veth", "peer", "name", f"cntb{secrets.token_hex(3)}")
    try:
        conf = bandwidth_conf(lab, att, {"runtimeConfig": CAP})
        res = run_ours(lab, "ADD", att, conf)
        assert res.rc == 1 and "not an ifb" in res.out["msg"], res
        assert lab.qdiscs(att.host_veth) == []  # the ingress tbf made before the failure is undone
        assert lab.node.ip("-d", "link", "show", blocker).stdout.count("veth") >= 1  # not ours to delete
    finally:
        lab.node.ip("link", "del", blocker, check=False)


def test_gc_removes_only_this_networks_stale_ifbs(clean_lab: Lab) -> None:
    lab = clean_lab
    keep, stale, foreign = lab.add("ours", "keep"), lab.add("ours", "stale"), lab.add("go", "foreign")
    conf = {"cniVersion": "1.1.0", "name": lab.net, "type": "bandwidth",
            "cni.dev/valid-attachments": [{"containerID": keep.cid, "ifname": "eth0"}]}
    res = run_plugin(f"{lab.tools['ours'].cni_path}/bandwidth", "GC", conf, container_id="", in_netns=lab.node)
    assert res.rc == 0, res
    links = lab.ifb_links()
    assert keep.ifb in links and stale.ifb not in links
    assert foreign.ifb in links  # made by the Go plugin, which marks nothing: its network is unknown
    res = run_plugin(f"{lab.tools['ours'].cni_path}/bandwidth", "STATUS", conf, container_id="",
                     in_netns=lab.node)
    assert res.rc == 0, res


@pytest.mark.parametrize("impl", ["ours", "go"])
def test_tcp_streams_run_at_the_configured_rates(clean_lab: Lab, impl: str) -> None:
    """A TCP stream each way between the node and a shaped container lands within 20% of its limit."""
    lab = clean_lab
    att = lab.add(impl, f"tcp{impl}")
    to_ctr = throughput.measure(lab.node, att.ns, att.ip, 5201)
    from_ctr = throughput.measure(att.ns, lab.node, GATEWAY, 5202)
    print(f"{impl}: to the container {to_ctr}, from it {from_ctr}")
    assert abs(to_ctr["bits_per_s"] - INGRESS) <= 0.2 * INGRESS, to_ctr
    assert abs(from_ctr["bits_per_s"] - EGRESS) <= 0.2 * EGRESS, from_ctr


def test_inspect_shows_shaped_links_and_orphaned_ifbs(clean_lab: Lab, tmp_path: Any) -> None:
    import subprocess
    import sys

    lab = clean_lab
    atts = {impl: lab.add(impl, f"insp{impl}") for impl in ("ours", "go")}

    def inspect(*extra: str) -> str:
        argv = [sys.executable, "-m", "cni_common.inspect", "--netns", lab.node.name, "--data-dir",
                str(tmp_path / "none"), "--cache-dir", str(tmp_path / "none"), *extra]
        return subprocess.run(argv, capture_output=True, text=True, check=True, cwd=paths.REPO).stdout

    node = json.loads(inspect("--format", "json"))
    shaped = {i["host_veth"]: i["shaping"] for c in node["containers"] for i in c["interfaces"]}
    for att in atts.values():  # Go's state reads the same
        assert shaped[att.host_veth] == {
            "ingress": {"device": att.host_veth, "rate_bits": INGRESS, "burst_bytes": 10_000},
            "egress": {"device": att.ifb, "rate_bits": EGRESS, "burst_bytes": 20_000}}
    assert not any(link["name"].startswith("bwp") for link in node["links"]) and node["orphans"]["ifbs"] == []
    assert f"shaped: to it 8Mbit (tbf on {atts['ours'].host_veth}), from it 16Mbit" in inspect()
    # An ifb that no veth's filter redirects to (its veth went away, say) is an orphan.
    lab.node.ip("link", "add", "bwpcnt0000001", "type", "ifb")
    try:
        assert json.loads(inspect("--format", "json"))["orphans"]["ifbs"] == ["bwpcnt0000001"]
    finally:
        lab.node.ip("link", "del", "bwpcnt0000001", check=False)


@pytest.mark.parametrize("name", ["60-bridge-bandwidth.conflist", "61-bridge-bandwidth-kubernetes.conflist"])
def test_conf_examples_shape_as_they_say(clean_lab: Lab, name: str, tmp_path: Any) -> None:
    """The shipped examples, with a test bridge and a private dataDir: 50 with its own limits, 51 with the
    limits a runtime sends through the capability (portmap before it passes the result on)."""
    lab = clean_lab
    conf = json.loads((paths.REPO / "conf-examples" / name).read_text())
    conf["name"] = f"{lab.net}x{name[:2]}"
    conf["plugins"][0]["bridge"] = f"cntbwx{name[:2]}"
    conf["plugins"][0]["ipam"]["dataDir"] = str(tmp_path / "ipam")
    lab.tools["ours"].write_conflist(conf)
    bw = next(p for p in conf["plugins"] if p["type"] == "bandwidth")
    limits = bw if "ingressRate" in bw else CAP["bandwidth"]
    try:
        att = lab.add("ours", f"ex{name[:2]}", net=conf["name"], cap_args=None if "ingressRate" in bw else CAP)
        assert lab.qdiscs(att.host_veth)[0]["options"]["rate"] * 8 == limits["ingressRate"]
        assert lab.qdiscs(att.ifb)[0]["options"]["rate"] * 8 == limits["egressRate"]
        lab.remove(att)
        assert att.ifb not in lab.ifb_links()
    finally:
        lab.node.ip("link", "del", conf["plugins"][0]["bridge"], check=False)


def test_an_existing_clsact_is_shared_and_left_in_place(clean_lab: Lab) -> None:
    """eBPF agents put a clsact on pod veths; upstream's ADD then fails ("file exists", #894)."""
    lab = clean_lab
    att = lab.add("ours", "clsact", net=lab.net + "c")
    lab.tc("qdisc", "add", "dev", att.host_veth, "clsact")
    conf = bandwidth_conf(lab, att, {"runtimeConfig": CAP})
    res = run_go(lab, "ADD", att, conf)
    assert res.rc == 1 and "exists" in res.out["msg"], res
    run_go(lab, "DEL", att, conf)
    lab.tc("qdisc", "del", "dev", att.host_veth, "root")  # Go's leftover (its DEL keeps the veth's qdiscs)
    res = run_ours(lab, "ADD", att, conf)
    assert res.rc == 0, res
    ifb = ifb_name(att.net, att.cid)
    assert f"Redirect to device {ifb}" in lab.tc("filter", "show", "dev", att.host_veth, "ingress")
    assert run_ours(lab, "CHECK", att, conf).rc == 0
    assert run_ours(lab, "DEL", att, conf).rc == 0
    assert [q["kind"] for q in lab.qdiscs(att.host_veth)] == ["clsact"]
    assert lab.tc("filter", "show", "dev", att.host_veth, "ingress") == ""


def test_del_leaves_other_filters_on_the_ingress_qdisc(clean_lab: Lab) -> None:
    lab = clean_lab
    att = lab.add("ours", "others")
    lab.tc("filter", "add", "dev", att.host_veth, "ingress", "prio", "5", "protocol", "ip", "u32", "match", "u32",
           "0", "0", "flowid", "1:5")  # no action: an action module may need loading first
    assert run_ours(lab, "DEL", att, bandwidth_conf(lab, att)).rc == 0
    assert [q["kind"] for q in lab.qdiscs(att.host_veth)] == ["ingress"]
    left = lab.tc("filter", "show", "dev", att.host_veth, "ingress")
    assert "pref 5" in left and "pref 1 " not in left and "mirred" not in left
