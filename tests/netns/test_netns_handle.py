"""NetNS handles, entered() and sysctl, on real namespaces (prefix ``cnt-l``)."""

from __future__ import annotations

import errno
import os

import pytest

from cni_common import sysctl
from cni_common.netns import NetNS, NetNSGone
from tests.helpers.netns import Netns, NetnsPool


@pytest.fixture
def ns(pool: NetnsPool) -> Netns:
    return pool.create("ns")


def test_missing_path_is_gone_and_never_created(tmp_path):
    path = tmp_path / "netns-that-is-not-there"
    with pytest.raises(NetNSGone) as info:
        NetNS(str(path))
    assert info.value.code == 3
    assert not path.exists()


def test_plain_file_is_not_a_netns(tmp_path):
    path = tmp_path / "plain"
    path.write_text("")
    with pytest.raises(NetNSGone, match="not a namespace"):
        NetNS(str(path))


def test_other_namespace_type_is_rejected():
    with pytest.raises(NetNSGone, match="not a network namespace"):
        NetNS("/proc/self/ns/mnt")


@pytest.fixture
def no_nstype_ioctl(monkeypatch: pytest.MonkeyPatch) -> None:
    """ioctl(NS_GET_NSTYPE) answers ENOSYS, as under qemu-user (the arm64 files on an amd64 machine)."""
    import fcntl

    real = fcntl.ioctl

    def ioctl(fd: int, request: int, *args: object) -> object:
        if request == 0xB703:
            raise OSError(errno.ENOSYS, os.strerror(errno.ENOSYS))
        return real(fd, request, *args)

    monkeypatch.setattr(fcntl, "ioctl", ioctl)


def test_without_the_ioctl_a_netns_is_still_recognised(no_nstype_ioctl, ns: Netns):
    before = os.stat("/proc/thread-self/ns/net")
    with NetNS(ns.path) as handle:
        assert not is_current(handle)
    after = os.stat("/proc/thread-self/ns/net")
    assert (after.st_dev, after.st_ino) == (before.st_dev, before.st_ino)


@pytest.mark.parametrize(("path", "reason"), [("/proc/self/ns/mnt", "not a network namespace"),
                                              ("/proc/self/ns/uts", "not a network namespace"),
                                              ("/etc/hostname", "not a namespace")])
def test_without_the_ioctl_the_same_files_are_refused(no_nstype_ioctl, path: str, reason: str):
    with pytest.raises(NetNSGone, match=reason):
        NetNS(path)


def is_current(handle: NetNS) -> bool:
    """Whether the calling thread is in the namespace ``handle`` holds."""
    mine, held = os.stat("/proc/thread-self/ns/net"), os.fstat(handle.fd)
    return (mine.st_dev, mine.st_ino) == (held.st_dev, held.st_ino)


def test_current_is_our_own():
    with NetNS.current() as me:
        assert is_current(me)


def test_entered_switches_and_returns(ns: Netns):
    before = os.stat("/proc/thread-self/ns/net").st_ino
    with NetNS(ns.path) as handle:
        assert not is_current(handle)
        with handle.entered():
            assert is_current(handle)
            assert os.stat("/proc/thread-self/ns/net").st_ino != before
        assert not is_current(handle)
    assert os.stat("/proc/thread-self/ns/net").st_ino == before


def test_entered_returns_after_an_exception(ns: Netns):
    before = os.stat("/proc/thread-self/ns/net").st_ino
    with NetNS(ns.path) as handle, pytest.raises(RuntimeError):
        with handle.entered():
            raise RuntimeError("boom")
    assert os.stat("/proc/thread-self/ns/net").st_ino == before


def test_deleted_namespace_is_gone(pool: NetnsPool):
    victim = pool.create("gone")
    pool.remove(victim)
    with pytest.raises(NetNSGone):
        NetNS(victim.path)


def test_sysctl_acts_on_the_entered_namespace(ns: Netns):
    ns.ip("link", "add", "cntdum0", "type", "bridge")
    with NetNS(ns.path) as handle, handle.entered():
        assert sysctl.read("ipv4", "ip_forward") == "0"
        assert sysctl.ensure(1, "ipv4", "ip_forward") is True
        assert sysctl.ensure(1, "ipv4", "ip_forward") is False
        sysctl.write(1, *sysctl.iface("ipv4", "cntdum0", "arp_notify"))
    assert ns.run(["cat", "/proc/sys/net/ipv4/ip_forward"]).stdout.strip() == "1"
    assert ns.run(["cat", "/proc/sys/net/ipv4/conf/cntdum0/arp_notify"]).stdout.strip() == "1"


@pytest.mark.parametrize("parts", [("ipv4", ".."), ("ipv4", "conf/all"), ("",)])
def test_sysctl_rejects_path_tricks(parts):
    with pytest.raises(Exception, match="invalid sysctl key"):
        sysctl.read(*parts)


def test_sysctl_missing_key_is_io_error():
    with pytest.raises(Exception) as info:
        sysctl.read("ipv4", "conf", "cnt-no-such-if", "arp_notify")
    assert info.value.code == 5
