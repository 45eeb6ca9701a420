"""Pure parts of tuning and firewall: sysctl keys that must stay in /proc/sys/net (symlinks included, on a
stand-in tree), the saved-originals file format, the iptables batches and the D-Bus message codec."""

from __future__ import annotations

import os

import pytest

from cni_common import sysctl
from cni_common.dbus import decode_message, encode_call, message_length, system_bus_path
from cni_common.errors import CNIError
from cni_common.link_tuning import LinkSettings
from cni_common.netfilter import firewall
from cni_common.netfilter.xtables import parse_save


@pytest.mark.parametrize("key, parts", [
    ("net.ipv4.conf.IFNAME.arp_filter", ("net", "ipv4", "conf", "eth0.100", "arp_filter")),
    ("net/ipv4/ip_forward", ("net", "ipv4", "ip_forward")),
    ("/net/ipv4/ip_forward", ("net", "ipv4", "ip_forward")),
])
def test_keys_inside_net(key, parts):
    assert sysctl.user_key_parts(key, "eth0.100") == parts


@pytest.mark.parametrize("key", ["kernel.hostname", "/proc/sys/kernel/hostname", "net/../kernel/hostname", "net",
                                 "..", "net..ipv4", "net//ipv4", "//net/ipv4", "", "net/ipv4/", "vm/../net/x"])
def test_keys_outside_or_ambiguous_are_refused(key):
    with pytest.raises(CNIError) as err:
        sysctl.user_key_parts(key, "eth0")
    assert err.value.code == 7 and "sysctl" in err.value.msg


@pytest.fixture
def fake_net(tmp_path):
    """A stand-in for /proc/sys/net with a symlinked directory and a symlinked file pointing outside it."""
    root, outside = tmp_path / "net", tmp_path / "outside"
    (root / "ipv4").mkdir(parents=True)
    outside.mkdir()
    (outside / "hostname").write_text("orig")
    (root / "ipv4" / "ip_forward").write_text("0")
    os.symlink(outside, root / "core")
    os.symlink(outside / "hostname", root / "ipv4" / "evil")
    return root, outside


def test_writes_beneath_the_root(fake_net):
    root, _ = fake_net
    sysctl.write_beneath(("net", "ipv4", "ip_forward"), "1", str(root))
    assert sysctl.read_beneath(("net", "ipv4", "ip_forward"), str(root)) == "1"


@pytest.mark.parametrize("parts", [("net", "core", "hostname"), ("net", "ipv4", "evil")])
def test_symlinks_are_never_followed(fake_net, parts):
    root, outside = fake_net
    with pytest.raises(CNIError) as err:
        sysctl.write_beneath(parts, "pwned", str(root))
    assert err.value.code == 7
    with pytest.raises(CNIError):
        sysctl.read_beneath(parts, str(root))
    assert (outside / "hostname").read_text() == "orig"


def test_saved_file_is_upstreams_layout():
    text = LinkSettings(mac="0a:58:0a:f4:00:01", promisc=False, mtu=1500, allmulti=True, txqlen=1000).to_json()
    assert text == ('{\n "mac": "0a:58:0a:f4:00:01",\n "promisc": false,\n "mtu": 1500,\n "allmulti": true,\n'
                    ' "txQLen": 1000\n}')
    assert LinkSettings.from_json(text).to_json() == text
    assert LinkSettings(mtu=1500).to_json() == '{\n "mtu": 1500\n}'


@pytest.mark.parametrize("text", ["[]", '{"mtu": "1500"}', '{"promisc": 1}', "{", '{"txQLen": true}'])
def test_foreign_saved_files_are_refused(text):
    with pytest.raises(ValueError):
        LinkSettings.from_json(text)


def test_second_add_keeps_saved_values():
    saved = LinkSettings(mac="0a:00:00:00:00:01", mtu=1500)
    now = LinkSettings(mac="0a:00:00:00:00:99", mtu=1400, txqlen=10)
    assert saved.filled_from(now) == LinkSettings(mac="0a:00:00:00:00:01", mtu=1500, txqlen=10)


def test_allow_batch_on_an_empty_table_is_upstreams_layout():
    ip = firewall.ipaddress.ip_interface("10.1.0.2/24")
    text = firewall.allow_batch(parse_save("", "filter"), [ip], "CNI-ADMIN").render()
    assert text == ("*filter\n-N CNI-FORWARD\n-N CNI-ADMIN\n"
                    '-I FORWARD 1 -m comment --comment "CNI firewall plugin rules" -j CNI-FORWARD\n'
                    '-I CNI-FORWARD 1 -m comment --comment "CNI firewall plugin admin overrides" -j CNI-ADMIN\n'
                    "-A CNI-FORWARD -d 10.1.0.2/32 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT\n"
                    "-A CNI-FORWARD -s 10.1.0.2/32 -j ACCEPT\nCOMMIT\n")


def test_isolation_rules_with_old_comments_count_as_present():
    old = firewall.OLD_COMMENT
    saved = parse_save(f"""*filter
:CNI-ISOLATION-STAGE-1 - [0:0]
:CNI-ISOLATION-STAGE-2 - [0:0]
-A FORWARD -m comment --comment "{old}" -j CNI-ISOLATION-STAGE-1
-A CNI-ISOLATION-STAGE-1 -i br0 ! -o br0 -m comment --comment "{old}" -j CNI-ISOLATION-STAGE-2
-A CNI-ISOLATION-STAGE-1 -m comment --comment "{old}" -j RETURN
-A CNI-ISOLATION-STAGE-2 -o br0 -m comment --comment "{old}" -j DROP
-A CNI-ISOLATION-STAGE-2 -m comment --comment "{old}" -j RETURN
COMMIT
""", "filter")
    assert firewall.isolation_batch(saved, "br0", "same-bridge").render() is None
    isolated = firewall.isolation_batch(saved, "br0", "isolated").render()
    assert isolated == ("*filter\n-I CNI-ISOLATION-STAGE-1 1 -i br0 -o br0 -m comment --comment "
                        '"CNI firewall plugin rules (ingressPolicy: isolated)" -j DROP\nCOMMIT\n')


def test_dbus_call_round_trip():
    message = encode_call(7, "org.fedoraproject.FirewallD1", "/org/fedoraproject/FirewallD1",
                          "org.fedoraproject.FirewallD1.zone", "addSource", ("trusted", "10.0.0.2/32"))
    assert message_length(message[:16]) == len(message)
    kind, fields, value = decode_message(message)
    assert kind == 1 and fields[3] == "addSource" and fields[8] == "ss" and value == "trusted"


def test_system_bus_address():
    assert system_bus_path({"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/tmp/b.sock,guid=1"}) == "/tmp/b.sock"
    assert system_bus_path({}) == "/run/dbus/system_bus_socket"
    assert system_bus_path({"DBUS_SYSTEM_BUS_ADDRESS": "tcp:host=x"}) == "/run/dbus/system_bus_socket"


def test_duplicated_sysctl_keys_are_refused_before_anything():
    """v1.2+ refuses them; a plain JSON decode would keep the last one silently (v1.1.1 did)."""
    import io

    from plugins import tuning

    stdin = (b'{"cniVersion":"1.0.0","name":"cntu","type":"tuning","prevResult":{"cniVersion":"1.0.0"},'
             b'"sysctl":{"net.ipv4.ip_forward":"1","net.ipv4.ip_forward":"0"}}')
    out = io.StringIO()
    env = {"CNI_COMMAND": "ADD", "CNI_CONTAINERID": "cnt", "CNI_IFNAME": "eth0", "CNI_NETNS": "/nonexistent/cnt",
           "CNI_PATH": "/nonexistent"}
    assert tuning.main(environ=env, stdin=io.BytesIO(stdin), stdout=out, stderr=io.StringIO()) == 1
    assert '"code": 7' in out.getvalue() and "duplicated sysctl keys" in out.getvalue()


def test_auto_backend(monkeypatch):
    """firewalld when running; else iptables; nftables only on a node without the iptables command."""
    from cni_common.netfilter import runner
    from plugins import firewall as plugin

    monkeypatch.setattr(plugin, "firewalld_running", lambda: False)
    monkeypatch.setattr(runner, "supports_nftables", lambda: True)
    monkeypatch.setattr(runner, "on_path", lambda name: True)
    assert plugin._choose_backend("") == plugin._choose_backend("bogus") == "iptables"
    monkeypatch.setattr(runner, "on_path", lambda name: False)
    assert plugin._choose_backend("") == "nftables" and plugin._choose_backend("iptables") == "iptables"
    monkeypatch.setattr(plugin, "firewalld_running", lambda: True)
    assert plugin._choose_backend("") == "firewalld"
