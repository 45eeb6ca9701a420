"""The protocol dispatcher, driven in-process with injected env and streams (checklist sections 1 and 5)."""

import io
import json

import pytest

from cni_common.errors import CNIError
from cni_common.skel import CNIFuncs, plugin_main
from cni_common.types import IPConfig, Result
from cni_common.version import SUPPORTED_VERSIONS

BASE_ENV = {"CNI_CONTAINERID": "ctr1", "CNI_NETNS": "/run/netns/nowhere", "CNI_IFNAME": "eth0",
            "CNI_PATH": "/opt/cni/bin"}


class Recorder:
    """Verb handlers that record their calls; ADD returns one IPv4 address."""

    def __init__(self, fail_with=None):
        self.calls = []
        self.fail_with = fail_with

    def handler(self, verb):
        def handle(args):
            self.calls.append((verb, args))
            if self.fail_with:
                raise self.fail_with
            if verb == "ADD":
                import ipaddress
                return Result(ips=[IPConfig(address=ipaddress.ip_interface("10.0.0.2/24"))])
            return None
        return handle

    def funcs(self):
        return CNIFuncs(add=self.handler("ADD"), delete=self.handler("DEL"), check=self.handler("CHECK"),
                        gc=self.handler("GC"), status=self.handler("STATUS"))


def run(command, conf, env=None, recorder=None, raw=None):
    recorder = recorder or Recorder()
    environ = dict(BASE_ENV, **(env or {}))
    if command is not None:
        environ["CNI_COMMAND"] = command
    stdin = io.BytesIO(raw if raw is not None else json.dumps(conf).encode())
    out, err = io.StringIO(), io.StringIO()
    rc = plugin_main(recorder.funcs(), about="test plugin", environ=environ, stdin=stdin, stdout=out, stderr=err)
    text = out.getvalue()
    return rc, (json.loads(text) if text.strip() else None), err.getvalue(), recorder


CONF = {"cniVersion": "1.0.0", "name": "net1", "type": "test"}


def test_version_needs_nothing_else():
    environ = {"CNI_COMMAND": "VERSION"}
    out = io.StringIO()
    rc = plugin_main(Recorder().funcs(), "t", environ=environ, stdin=io.BytesIO(b"not read"), stdout=out,
                     stderr=io.StringIO())
    assert rc == 0
    assert json.loads(out.getvalue())["supportedVersions"] == list(SUPPORTED_VERSIONS)


@pytest.mark.parametrize("version", SUPPORTED_VERSIONS)
def test_add_prints_result_in_request_version(version):
    rc, out, _, rec = run("ADD", dict(CONF, cniVersion=version))
    assert rc == 0 and out["cniVersion"] == version
    assert rec.calls[0][1].cni_version == version


def test_all_missing_variables_are_named_together():
    rc, out, _, rec = run("ADD", CONF, env={"CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": " "})
    assert rc == 1 and out["code"] == 4
    assert out["msg"] == "required env variables [CNI_CONTAINERID,CNI_NETNS,CNI_IFNAME] missing"
    assert rec.calls == []


def test_run_by_hand_says_what_it_is_and_succeeds_as_upstream():
    """Upstream's skel, with CNI_COMMAND unset: the about line and the versions on stderr, nothing on stdout,
    exit 0 (``/usr/lib/cni/bridge`` run by hand does exactly that)."""
    rc, out, err, rec = run(None, CONF)
    assert rc == 0 and out is None and rec.calls == []
    assert err.startswith("test plugin\nCNI protocol versions supported: 0.1.0, ")


def test_about_line_is_upstreams_with_the_one_version():
    from cni_common import __version__
    from cni_common.version import about_line

    assert about_line("bridge") == f"CNI bridge plugin v{__version__}"


def test_del_does_not_need_netns():
    rc, out, _, rec = run("DEL", CONF, env={"CNI_NETNS": ""})
    assert rc == 0 and out is None and rec.calls[0][1].netns == ""


def test_gc_and_status_need_no_container():
    conf = dict(CONF, cniVersion="1.1.0")
    for verb in ("GC", "STATUS"):
        rc, out, _, rec = run(verb, conf, env={"CNI_CONTAINERID": "", "CNI_NETNS": "", "CNI_IFNAME": ""})
        assert rc == 0 and out is None and rec.calls[0][0] == verb


@pytest.mark.parametrize("command,conf,code,fragment", [
    ("ADD", None, 6, "failed to parse"),
    ("ADD", {"cniVersion": "1.0.0", "type": "t"}, 7, "missing network name"),
    ("ADD", dict(CONF, name="../etc"), 7, "invalid network name"),
    ("ADD", dict(CONF, cniVersion="9.9.9"), 1, "incompatible CNI versions"),
    ("CHECK", dict(CONF, cniVersion="0.3.1"), 1, "does not allow CHECK"),
    ("GC", dict(CONF, cniVersion="1.0.0"), 1, "does not allow GC"),
    ("STATUS", dict(CONF, cniVersion="0.4.0"), 1, "does not allow STATUS"),
    ("FROB", CONF, 4, "unknown CNI_COMMAND: FROB"),
    ("ADD", [1, 2], 6, "must be a JSON object"),
])
def test_bad_input_table(command, conf, code, fragment):
    raw = b"{not json" if conf is None else None
    rc, out, err, rec = run(command, conf, raw=raw)
    assert rc == 1 and out["code"] == code and fragment in out["msg"] + out.get("details", "")
    assert rec.calls == [] and "Traceback" not in err


# Regression tests of issue 12: each of these was accepted, or crashed as code 999, before.
@pytest.mark.parametrize("raw,code,fragment", [
    (json.dumps(CONF).encode("utf-16"), 6, "not UTF-8"),                      # UTF-16 with a BOM (Go: code 6)
    (b"\xef\xbb\xbf" + json.dumps(CONF).encode(), 6, "failed to parse"),    # UTF-8 BOM (Go refuses it too)
    (b'{"cniVersion":"1.0.0","name":"n","a":' + b"[" * 100_000 + b"]" * 100_000 + b"}", 6, "nested deeper"),
    (b'{"cniVersion":"1.0.0","name":"n","a":' + b"{" * 600 + b"}" * 600 + b"}", 6, "nested deeper"),
    (json.dumps(dict(CONF, name="net1\n")).encode(), 7, "invalid network name"),   # "$" matched before "\n"
    (json.dumps(dict(CONF, name=5)).encode(), 6, "name must be a string"),       # Go's skel: decoding, 6
    (json.dumps(dict(CONF, name=["n"])).encode(), 6, "name must be a string"),
    (json.dumps(dict(CONF, name="a" * 100_000)).encode(), 7, "invalid network name"),
    (json.dumps(dict(CONF, name="\ud800")).encode(), 7, "invalid network name"),  # no UTF-8 form: was 999
    (b'{"cniVersion":"1.0.0","name":"n","mtu":NaN}', 6, "NaN is not a JSON value"),
    (b'{"cniVersion":"1.0.0","name":"n","mtu":-Infinity}', 6, "Infinity is not a JSON value"),
], ids=["utf16-bom", "utf8-bom", "deep-lists", "deep-objects", "name-newline", "name-number", "name-list",
        "name-huge", "name-lone-surrogate", "nan", "infinity"])
def test_hostile_stdin_is_refused_with_the_decoding_or_config_code(raw, code, fragment):
    for verb in ("ADD", "DEL"):
        rc, out, err, rec = run(verb, None, raw=raw)
        assert rc == 1 and out["code"] == code and fragment in out["msg"] + out.get("details", "")
        assert rec.calls == [] and "Traceback" not in err
        assert len(out["msg"]) < 400  # a huge value is not echoed back whole


def test_brackets_inside_strings_do_not_count_as_nesting():
    conf = dict(CONF, note="[" * 10_000 + "{" * 10_000)
    rc, out, _, rec = run("ADD", conf)
    assert rc == 0 and rec.calls[0][1].conf["note"] == conf["note"]


def test_lone_surrogates_become_the_replacement_character_as_in_go():
    """JSON may escape a lone surrogate; Go's decoder reads U+FFFD there, and Python's kept a string with no UTF-8
    form (a crash, 999, wherever it was encoded later). A valid pair and an escaped backslash stay as they are."""
    conf = dict(CONF, note=["a\ud800b", {"\udc00": "\U0001f600"}], other="\\ud800")
    rc, _, _, rec = run("ADD", conf)
    assert rc == 0
    assert rec.calls[0][1].conf["note"] == ["a\ufffdb", {"\ufffd": "\U0001f600"}]
    assert rec.calls[0][1].conf["other"] == "\\ud800"


def test_container_id_with_a_trailing_newline_inside_is_refused():
    rc, out, _, rec = run("ADD", CONF, env={"CNI_CONTAINERID": "abc\nx"})
    assert rc == 1 and out["code"] == 4 and "CNI_CONTAINERID" in out["msg"] and rec.calls == []


@pytest.mark.parametrize("env,fragment", [
    ({"CNI_IFNAME": "a" * 16}, "longer than 15"),
    ({"CNI_IFNAME": "e\udcff"}, "is not UTF-8"),  # a byte 0xff in the environment (was 999)
    ({"CNI_IFNAME": "et/h0"}, "CNI_IFNAME"),
    ({"CNI_CONTAINERID": "../x"}, "CNI_CONTAINERID"),
])
def test_bad_identifiers(env, fragment):
    rc, out, _, rec = run("ADD", CONF, env=env)
    assert rc == 1 and out["code"] == 4 and fragment in out["msg"]
    assert rec.calls == []  # refused before the plugin runs


def test_own_netns_is_refused_unless_overridden():
    rc, out, _, rec = run("ADD", CONF, env={"CNI_NETNS": "/proc/self/ns/net"})
    assert rc == 1 and out["code"] == 8 and rec.calls == []
    rc, out, _, rec = run("ADD", CONF, env={"CNI_NETNS": "/proc/self/ns/net", "CNI_NETNS_OVERRIDE": "1"})
    assert rc == 0 and out["ips"][0]["address"] == "10.0.0.2/24"
    assert [(verb, args.netns) for verb, args in rec.calls] == [("ADD", "/proc/self/ns/net")]


def test_missing_cni_version_means_010():
    conf = {"name": "net1", "type": "t"}
    rc, out, _, _ = run("ADD", conf)
    assert rc == 0 and out["cniVersion"] == "0.1.0" and "ip4" in out


def test_cni_errors_are_printed_with_their_code():
    rc, out, _, _ = run("ADD", CONF, recorder=Recorder(fail_with=CNIError(101, "boom", "why")))
    assert rc == 1 and out == {"cniVersion": "1.0.0", "code": 101, "msg": "boom", "details": "why"}


def test_unexpected_exceptions_become_999_without_traceback():
    rc, out, err, _ = run("ADD", CONF, recorder=Recorder(fail_with=KeyError("x")))
    assert rc == 1 and out["code"] == 999 and "Traceback" not in err


def test_unknown_request_keys_are_tolerated():
    conf = dict(CONF, capabilities={"portMappings": True}, **{"cni.dev/valid-attachments": []},
                runtimeConfig={"io.kubernetes.cri.pod-annotations": {}}, args={"cni": {}})
    rc, out, _, rec = run("ADD", conf)
    assert rc == 0 and out["ips"][0]["address"] == "10.0.0.2/24"
    (verb, args), = rec.calls
    assert verb == "ADD" and args.conf == conf  # handed to the plugin as they came, for it to read or ignore


def test_log_level_comes_from_the_given_environment():
    """CNI_LOG_LEVEL is read from ``environ`` (as an in-process delegate receives it), not from os.environ."""
    from cni_common import log

    try:
        rc, _, err, _ = run("ADD", CONF, env={"CNI_LOG_LEVEL": "debug"},
                            recorder=Recorder(fail_with=KeyError("x")))
        assert rc == 1 and "unexpected failure" in err
    finally:
        log.configure()


def test_best_effort_runs_every_step_and_reports_all_failures():
    from cni_common.errors import BestEffort

    ran = []
    steps = BestEffort()
    with steps:
        raise CNIError(102, "link gone wrong")
    with steps:
        ran.append("second")
    with steps:
        raise CNIError(103, "rules gone wrong")
    assert ran == ["second"]
    with pytest.raises(CNIError) as err:
        steps.raise_if_failed("DEL failed")
    # The first failure's code (whose fault it is), not 999: a delegate's code 7 must reach the runtime as 7.
    assert err.value.code == 102 and err.value.msg == "DEL failed: link gone wrong"
    assert err.value.details == "link gone wrong; rules gone wrong"
    BestEffort().raise_if_failed("nothing failed")
    with pytest.raises(KeyError), BestEffort():
        raise KeyError("bugs are not swallowed")
