"""The default netfilter backend: iptables without a probe, nftables only when the probes say so."""

from typing import Any

import pytest

from cni_common.netfilter import backend, runner
from cni_common.netfilter.runner import NetfilterError


def _fake(monkeypatch: pytest.MonkeyPatch, *, ipt_ok: bool, nft_ok: bool, ipt_fails: bool) -> list[str]:
    calls: list[str] = []

    def ipt_setup(*args: Any) -> None:
        calls.append("iptables")
        if ipt_fails:
            raise NetfilterError("iptables-save failed")

    monkeypatch.setattr(backend.masquerade, "ipt_setup", ipt_setup)
    monkeypatch.setattr(backend.masquerade, "nft_setup", lambda *a: calls.append("nftables"))
    monkeypatch.setattr(runner, "on_path", lambda name: True)
    monkeypatch.setattr(runner, "supports_iptables", lambda: calls.append("probe-ipt") or ipt_ok)
    monkeypatch.setattr(runner, "supports_nftables", lambda: calls.append("probe-nft") or nft_ok)
    b = backend.select_backend(None)
    assert b.name == "iptables"
    return calls


def test_iptables_works_no_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ipt_ok=True, nft_ok=True, ipt_fails=False)
    backend.select_backend(None).setup_masq("net", "cid", "eth0", [])
    assert calls == ["iptables"]


def test_only_nft_works_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = _fake(monkeypatch, ipt_ok=False, nft_ok=True, ipt_fails=True)
    b = backend.select_backend(None)
    b.setup_masq("net", "cid", "eth0", [])
    assert calls == ["iptables", "probe-ipt", "probe-nft", "nftables"] and b.name == "nftables"


@pytest.mark.parametrize("ipt_ok,nft_ok", [(True, True), (False, False)])
def test_iptables_error_is_raised_when_probes_do_not_prefer_nft(monkeypatch: pytest.MonkeyPatch, ipt_ok: bool,
                                                               nft_ok: bool) -> None:
    calls = _fake(monkeypatch, ipt_ok=ipt_ok, nft_ok=nft_ok, ipt_fails=True)
    with pytest.raises(NetfilterError):
        backend.select_backend(None).setup_masq("net", "cid", "eth0", [])
    assert "nftables" not in calls
