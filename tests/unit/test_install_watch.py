"""Issue 23, item 5: `cni-suite install --watch` retries a failed re-install with back-off even when no input
changed (the built file against a real blocked directory: tests/binary/test_install.py)."""

from __future__ import annotations

import io
import threading
from pathlib import Path

import pytest

from cni_common import log
from plugins import install
from plugins.install_files import InstallError


@pytest.fixture
def logged(monkeypatch: pytest.MonkeyPatch) -> io.StringIO:
    """The installer's log lines (level info, as ``--log-level`` defaults to)."""
    out = io.StringIO()
    monkeypatch.setattr(log._Sinks, "streams", [out])
    monkeypatch.setattr(log._Sinks, "level", log.LEVELS["INFO"])
    return out


def test_backoff_doubles_up_to_its_limit_and_a_success_resets_it() -> None:
    backoff = install.Backoff(5, 60)
    assert backoff.wait(5) == 5 and not backoff.due()
    assert [backoff.failed() for _ in range(6)] == [5, 10, 20, 40, 60, 60]
    assert 0 < backoff.wait(5) <= 5
    assert backoff.succeeded() and not backoff.succeeded()
    assert backoff.failed() == 5 and not backoff.due()


def test_watch_retries_a_failed_reinstall_without_any_change(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                             logged: io.StringIO) -> None:
    stop = threading.Event()
    calls: list[int] = []

    def reconcile(options: install.Options, env: dict[str, str]) -> install.Installed:
        calls.append(len(calls))
        if len(calls) <= 3:
            raise InstallError("no space left on the device (faked)")
        threading.Timer(0.3, stop.set).start()  # nothing changes any more: no further call expected
        return install.Installed(config=None)

    monkeypatch.setattr(install, "reconcile", reconcile)
    monkeypatch.setattr(install, "_stop_event", lambda: stop)
    (tmp_path / "template.json").write_text("[]")
    options = install.Options(bin_dir=str(tmp_path / "bin"), conf_dir=str(tmp_path / "net.d"), source="",
                              types=["bridge"], conflist=str(tmp_path / "template.json"), conflist_name="10.conflist",
                              node_subnets="")
    threading.Timer(0.05, (tmp_path / "template.json").write_text, ["{}"]).start()  # an input changes, once
    assert install.watch(options, install.Installed(config=None), 0.02, False, retry_max=0.04) == 0
    assert len(calls) == 4  # the change, two retries of nothing changed, the success; then quiet
    err = logged.getvalue()
    assert [line.split("retrying in ")[1].split("s ")[0] for line in err.splitlines() if "retrying in" in line] \
        == ["0.02", "0.04", "0.04"]
    assert "re-install succeeded" in err
