"""The multi-call entry: plugin chosen by argv[0], VERSION answered without importing any plugin."""

import io
import json
import subprocess
import sys

from cni_common import multicall


def test_unknown_name_is_explained(capsys):
    assert multicall.main(["/opt/cni/bin/frobnicate"]) == 2
    assert "run me as one of" in capsys.readouterr().err


def test_version_imports_no_plugin_and_nothing_heavy():
    code = ("import sys, os; os.environ['CNI_COMMAND']='VERSION'; from cni_common import multicall; "
            "multicall.main(['/opt/cni/bin/bridge']); "
            "heavy = [m for m in ('plugins.bridge', 'pyroute2', 'netaddr', 'json', 'typing', 'enum') "
            "if m in sys.modules]; print(heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(__import__("pathlib").Path(__file__).resolve().parents[2]))
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
    assert proc.stderr.strip() == "[]"


def test_suite_name_with_type_argument(monkeypatch, capsys):
    monkeypatch.setenv("CNI_COMMAND", "VERSION")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert multicall.main(["cni-suite", "host-local"]) == 0
    assert "supportedVersions" in sys.stdout.getvalue()
