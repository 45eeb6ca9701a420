"""The bandwidth plugin without the kernel: its verdicts (tests/helpers/bandwidth_verdicts.py, also run against
Go), upstream's token-bucket numbers and names, the tc message bodies, and the cases where upstream crashes."""

from __future__ import annotations

import struct

import pytest

from cni_common import shaping
from cni_common.netlink import consts, msg, tc
from cni_common.shaping import Limit
from tests.helpers import inprocess
from tests.helpers import nlattrs as attrs
from tests.helpers.bandwidth_verdicts import CASES, VERBS, base

PREV = {"cniVersion": "1.0.0", "interfaces": [{"name": "vethcnt0"}, {"name": "eth0", "sandbox": "/nonexistent/x"}]}
LIMITS = {"ingressRate": 8_000_000, "ingressBurst": 80_000, "egressRate": 16_000_000, "egressBurst": 160_000}
_TCMSG = struct.Struct("=BxxxiIII")


pytestmark = pytest.mark.usefixtures("no_kernel")


def call(verb, conf):
    return inprocess.call("bandwidth", verb, conf, {"CNI_PATH": "/usr/lib/cni"})


@pytest.mark.parametrize("case", CASES, ids=[c.label for c in CASES])
def test_bad_configs_are_refused_in_every_verb_naming_the_key(case):
    for verb in VERBS:
        conf = dict(base(), **case.patch, prevResult=PREV)
        result = call(verb, conf)
        assert result.rc == 1 and not result.reached_kernel, (verb, result.out)
        assert result.out["code"] == 7, (verb, result.out)
        text = result.out["msg"] + " " + result.out.get("details", "")
        assert case.key in text and "Traceback" not in result.stderr, (verb, result.out)
        if case.go_msg and not case.go_msg.startswith("cannot unmarshal"):
            assert case.go_msg in result.out["msg"]  # upstream's words, for people who search for them


def test_neither_prev_result_nor_limits_is_an_error_not_a_crash():
    """Upstream panics here (a nil pointer in PrintResult, exit 2 with a Go stack on stderr)."""
    for conf in (base(), dict(base(), ingressRate=None), dict(base(), runtimeConfig={"bandwidth": None})):
        result = call("ADD", conf)
        assert result.rc == 1 and result.out["code"] == 7 and "prevResult" in result.out["msg"], result.out


def test_limits_without_prev_result_are_refused():
    result = call("ADD", dict(base(), **LIMITS))
    assert result.rc == 1 and result.out["code"] == 7 and "chained" in result.out["msg"]
    result = call("CHECK", dict(base(), **LIMITS))
    assert result.rc == 1 and result.out["code"] == 7 and "chained" in result.out["msg"]


@pytest.mark.parametrize("conf", [
    {}, {"ingressRate": 0, "egressRate": 0},
    {"ingressRate": None, "runtimeConfig": {"bandwidth": {"ingressRate": 8000, "ingressBurst": 8000}}},
    {"IngressRate": 0, "runtimeConfig": {"bandwidth": {"egressRate": 8000, "egressBurst": 8000}}},
], ids=["none", "zeros", "null-top-level-wins", "any-case-top-level-wins"])
def test_no_limit_passes_the_previous_result_through_untouched(conf):
    """A top-level key, even 0 or null and in any case, makes runtimeConfig ignored (upstream's rule)."""
    result = call("ADD", dict(base(), **conf, prevResult=PREV))
    assert result.rc == 0 and not result.reached_kernel, result.out
    assert result.out["interfaces"] == PREV["interfaces"]


def test_runtime_config_limits_are_used_when_the_top_level_has_none():
    conf = dict(base(), runtimeConfig={"bandwidth": {"ingressRate": 8000, "ingressBurst": 8000}}, prevResult=PREV)
    result = call("ADD", conf)  # accepted: it goes on to open the container netns (stopped at the kernel)
    assert result.reached_kernel, result.out


def test_old_config_versions_are_refused_like_upstream():
    result = call("ADD", dict(base(), cniVersion="0.2.0", **LIMITS))
    assert result.rc == 1 and result.out["code"] == 1


def test_gc_without_an_attachment_list_removes_nothing():
    result = call("GC", dict(base(), cniVersion="1.1.0"))
    assert result.rc == 0 and not result.reached_kernel
    result = call("GC", dict(base(), cniVersion="1.1.0", **{"cni.dev/valid-attachments": []}))
    assert result.reached_kernel


def test_ifb_name_is_upstreams():
    assert shaping.ifb_name("dg1bw", "ctr3") == "bwp50e57bcd558b"  # checked against the Go plugin


def test_tick_rate_is_read_like_iproute2():
    assert shaping.tick_in_usec("000003e8 00000040 000f4240 3b9aca00\n") == 15.625
    assert shaping.tick_in_usec("00000001 00000001 3b9aca00 3b9aca00\n") == 1000.0  # 1 GHz clock: t2us := us2t


def test_token_bucket_numbers_are_upstreams():
    # `tc` shows Go's qdisc for these as "rate 8Mbit burst 10000b lat 25ms"
    assert shaping.tbf_for(Limit(8_000_000, 80_000), 15.625) == tc.Tbf(rate=1_000_000, limit=35_000, buffer=156_250)
    # containerd's burst (2^32-1 bits) at 10 Mbit/s: the buffer wraps in 32 bits, exactly as Go's conversion does
    assert shaping.tbf_for(Limit(10_000_000, 2 ** 32 - 1), 15.625).buffer == 2_415_919_079


def test_tbf_body_carries_rate64_only_for_fast_rates():
    class Recorder:
        def request(self, mtype, body, flags, what):
            self.sent = (mtype, body, flags)
            return []

    for rate, has64 in ((1_000_000, False), (5 * 2 ** 32, True)):
        conn = Recorder()
        tc.replace_tbf(conn, 7, tc.Tbf(rate=rate, limit=35_000, buffer=156_250))  # type: ignore[arg-type]
        mtype, body, flags = conn.sent
        assert mtype == consts.RTM_NEWQDISC and flags == consts.NLM_F_CREATE | consts.NLM_F_REPLACE
        _, index, handle, parent, _ = _TCMSG.unpack_from(body)
        assert (index, handle, parent) == (7, 0x10000, consts.TC_H_ROOT)
        top = attrs.parse(body, _TCMSG.size)
        assert top[1] == b"tbf\0"
        options = attrs.parse(top[2])
        assert (4 in options) == has64  # TCA_TBF_RATE64
        parsed = msg.parse("tcmsg", consts.RTM_NEWQDISC, body)
        parms = parsed.get_attr("TCA_OPTIONS").get_attr("TCA_TBF_PARMS")
        assert (parms["rate"], parms["limit"], parms["buffer"]) == (rate & 0xFFFFFFFF, 35_000, 156_250)


def test_redirect_filter_body_is_a_match_all_u32_with_one_mirred_action():
    class Recorder:
        def request(self, mtype, body, flags, what):
            self.body = body
            return []

    conn = Recorder()
    tc.replace_redirect_filter(conn, 7, 9, parent=0xFFFF0000)  # type: ignore[arg-type]
    parsed = msg.parse("tcmsg", consts.RTM_NEWTFILTER, conn.body)
    assert parsed["handle"] == tc.U32_FIRST_HANDLE and parsed["info"] >> 16 == 1
    opts = parsed.get_attr("TCA_OPTIONS")
    assert opts.get_attr("TCA_U32_CLASSID") == 0x10001
    sel = opts.get_attr("TCA_U32_SEL")
    assert (sel["flags"], sel["nkeys"], sel["key_mask"], sel["key_val"]) == (1, 1, 0, 0)
    assert tc._first_redirect(opts.get_attr("TCA_U32_ACT")) == 9


def test_the_tc_layer_loads_pyroute2_only_through_the_light_loader():
    """tc.py must not import tcmsg itself: that would run pyroute2's package __init__ (absent from the bundle)."""
    import subprocess
    import sys

    code = ("import sys; from cni_common.netlink import tc; from cni_common import shaping\n"
            "print('pyroute2' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_the_installer_refuses_a_bad_bandwidth_entry_naming_it():
    from plugins.install_config import ConfigRefused, validate

    conflist = {"cniVersion": "1.0.0", "name": "k8s", "plugins": [
        {"type": "bridge", "ipam": {"type": "host-local", "ranges": [[{"subnet": "10.1.0.0/24"}]]}},
        {"type": "bandwidth", "capabilities": {"bandwidth": True}}]}
    assert validate(conflist) == ["bridge", "host-local", "bandwidth"]
    conflist["plugins"][1]["ingressRate"] = 1000
    with pytest.raises(ConfigRefused, match=r"plugins\[1\] \(bandwidth\): if rate is set, burst must also be set"):
        validate(conflist)
