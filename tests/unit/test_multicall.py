"""The multi-call entry: plugin chosen by argv[0], VERSION answered without importing any plugin, modes, and the
one table of plugin types that setup.cfg and the in-process delegation follow."""

import configparser
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from cni_common import inprocess
from plugins import multicall

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _own_argv(monkeypatch):
    """``main`` rewrites ``sys.argv`` for ``cni-suite <type>``: every test gets it back as it was."""
    monkeypatch.setattr(sys, "argv", list(sys.argv))


def test_unknown_name_is_explained(capsys):
    assert multicall.main(["/opt/cni/bin/frobnicate"]) == 2
    err = capsys.readouterr().err
    assert "run me as one of bridge, dhcp, host-local, portmap, vxlan" in err and "vxlan agent" in err


def test_version_imports_no_plugin_and_nothing_heavy():
    code = ("import sys, os; os.environ['CNI_COMMAND']='VERSION'; from plugins import multicall; "
            "multicall.main(['/opt/cni/bin/bridge']); "
            "heavy = [m for m in ('plugins.bridge', 'pyroute2', 'netaddr', 'json', 'typing', 'enum') "
            "if m in sys.modules]; print(heavy, file=sys.stderr)")
    proc = subprocess.run([sys.executable, "-S", "-c", code], capture_output=True, text=True, check=True,
                          cwd=str(REPO))
    assert json.loads(proc.stdout)["supportedVersions"][-1] == "1.1.0"
    assert proc.stderr.strip() == "[]"


def test_suite_name_with_type_argument(monkeypatch):
    monkeypatch.setenv("CNI_COMMAND", "VERSION")
    monkeypatch.setattr(sys, "stdout", io.StringIO())
    assert multicall.main(["cni-suite", "host-local"]) == 0
    assert json.loads(sys.stdout.getvalue())["supportedVersions"][-1] == "1.1.0"
    assert sys.argv == ["host-local"]  # the plugin sees itself as argv[0]


def test_a_plugin_call_runs_that_plugins_main_and_registers_the_in_process_delegates(monkeypatch):
    """Under its own name, a call runs the plugin's ``main`` (here a fake module in place of bridge), and the
    library learns which types may run in-process, without importing them."""
    ran = []
    fake = type(sys)("cnt_fake_plugin")
    fake.main = lambda: ran.append("bridge") or 7
    monkeypatch.setitem(sys.modules, "cnt_fake_plugin", fake)
    monkeypatch.setitem(multicall.PLUGINS, "bridge", "cnt_fake_plugin")
    monkeypatch.setattr(inprocess, "_LOADERS", {})
    monkeypatch.delenv("CNI_COMMAND", raising=False)
    assert multicall.main(["/opt/cni/bin/bridge"]) == 7
    assert ran == ["bridge"]
    assert set(inprocess._LOADERS) == set(multicall.IN_PROCESS_DELEGATES) == {"host-local"}
    from ipam import host_local

    assert inprocess.loader_of("host-local")() is host_local.main and inprocess.loader_of("bridge") is None


@pytest.mark.parametrize("argv", [["/opt/cni/bin/vxlan", "agent", "--conf", "f"],
                                  ["cni-suite", "vxlan", "agent", "--conf", "f"]])
def test_a_mode_gets_the_arguments_after_its_words(monkeypatch, argv):
    seen = []
    fake = type(sys)("cnt_fake_agent")
    fake.run_cli = lambda args: seen.append(args) or 3
    monkeypatch.setitem(sys.modules, "cnt_fake_agent", fake)
    monkeypatch.setitem(multicall.MODES, ("vxlan", "agent"), "cnt_fake_agent:run_cli")
    assert multicall.main(argv) == 3
    assert seen == [["--conf", "f"]]


def test_every_mode_and_plugin_names_a_function_that_exists():
    for target in [*(module + ":main" for module in multicall.PLUGINS.values()), *multicall.MODES.values()]:
        assert callable(multicall._load(target)), target


def test_setup_cfg_console_scripts_are_the_table_of_types():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / "setup.cfg")
    scripts = dict(line.split(" = ") for line in cfg["options.entry_points"]["console_scripts"].split("\n") if line)
    assert scripts == {**{name: module + ":main" for name, module in multicall.PLUGINS.items()},
                       "cni-suite": "plugins.multicall:main"}


@pytest.mark.parametrize("argv", [["/opt/cni/bin/bridge", "inspect", "--format", "json"],
                                  ["cni-suite", "inspect", "--format", "json"]])
def test_a_one_word_mode_runs_under_a_plugin_name_too(monkeypatch, argv):
    seen = []
    fake = type(sys)("cnt_fake_inspect")
    fake.main = lambda args: seen.append(args) or 4
    monkeypatch.setitem(sys.modules, "cnt_fake_inspect", fake)
    monkeypatch.setitem(multicall.MODES, ("inspect",), "cnt_fake_inspect:main")
    assert multicall.main(argv) == 4
    assert seen == [["--format", "json"]]
