"""Delegation: lookup in CNI_PATH, same env and stdin bytes, errors passed through with their code."""

import json
import os
import stat

import pytest

from cni_common.errors import CNIError, ErrorCode, PluginCode
from cni_common.invoke import delegate, find_in_path
from cni_common.skel import CmdArgs

RECORDING_IPAM = """#!/bin/sh
cat > "$0.stdin"
env > "$0.env"
if [ "$CNI_COMMAND" = ADD ]; then
  echo '{"cniVersion":"1.0.0","ips":[{"address":"10.0.0.9/24","gateway":"10.0.0.1"}]}'
fi
"""

FAILING_IPAM = """#!/bin/sh
echo '{"cniVersion":"1.0.0","code":100,"msg":"no addresses left","details":"range 10.0.0.0/30"}'
exit 1
"""


def write_plugin(directory, name, body):
    path = directory / name
    path.write_text(body)
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def make_args(tmp_path, conf=None):
    conf = conf or {"cniVersion": "1.0.0", "name": "n", "type": "bridge", "ipam": {"type": "fake"}}
    data = json.dumps(conf).encode()
    return CmdArgs(command="ADD", container_id="c1", netns="/run/netns/x", ifname="eth0", args="A=1",
                   path=[str(tmp_path / "empty"), str(tmp_path)], stdin_data=data, conf=conf,
                   cni_version=conf["cniVersion"], env={"CNI_COMMAND": "ADD", "CNI_ARGS": "A=1", "KEEP": "me"})


def test_delegate_gets_same_stdin_and_env_with_verb_changed(tmp_path):
    plugin = write_plugin(tmp_path, "fake", RECORDING_IPAM)
    args = make_args(tmp_path)
    result = delegate("ADD", "fake", args)
    assert str(result.ips[0].address) == "10.0.0.9/24"
    assert plugin.with_name("fake.stdin").read_bytes() == args.stdin_data
    env = dict(line.split("=", 1) for line in plugin.with_name("fake.env").read_text().splitlines() if "=" in line)
    assert env["KEEP"] == "me" and env["CNI_ARGS"] == "A=1"
    assert delegate("DEL", "fake", args) is None
    assert "CNI_COMMAND=DEL" in plugin.with_name("fake.env").read_text()


def test_delegate_error_keeps_its_code(tmp_path):
    write_plugin(tmp_path, "fake", FAILING_IPAM)
    with pytest.raises(CNIError) as err:
        delegate("ADD", "fake", make_args(tmp_path))
    assert (err.value.code, err.value.msg) == (100, "no addresses left")


def test_missing_delegate_is_named(tmp_path):
    with pytest.raises(CNIError, match="'nothere'") as err:
        find_in_path("nothere", [str(tmp_path)])
    assert err.value.code == PluginCode.DELEGATE_NOT_FOUND


@pytest.mark.parametrize("bad", ["../bin/sh", "a/b", ""])
def test_types_with_separators_are_refused(tmp_path, bad):
    with pytest.raises(CNIError) as err:
        find_in_path(bad, [str(tmp_path)])
    assert err.value.code == ErrorCode.INVALID_CONFIG


def test_empty_cni_path_is_an_env_error():
    with pytest.raises(CNIError, match="CNI_PATH") as err:
        find_in_path("host-local", [])
    assert err.value.code == ErrorCode.INVALID_ENV


def test_non_executable_files_are_skipped(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    (first / "fake").write_text("x")
    os.chmod(first / "fake", 0o644)
    with pytest.raises(CNIError) as err:
        find_in_path("fake", [str(first)])
    assert err.value.code == PluginCode.DELEGATE_NOT_FOUND
    (second / "fake").write_text("x")
    os.chmod(second / "fake", 0o755)
    assert find_in_path("fake", [str(first), str(second)]) == str(second / "fake")  # the search goes on
