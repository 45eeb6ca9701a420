"""Key lookup, typed getters and CNI_ARGS parsing."""

import pytest

from cni_common import config
from cni_common.errors import CNIError, ErrorCode


def test_keys_match_case_insensitively_like_go():
    mapping = {"HostPort": 8080, "containerPort": 80}
    assert config.get_key(mapping, "hostPort") == 8080
    assert config.get_key(mapping, "containerPort") == 80
    assert config.get_key(mapping, "protocol", "tcp") == "tcp"


def test_exact_spelling_wins():
    assert config.get_key({"mtu": 1, "MTU": 2}, "MTU") == 2


@pytest.mark.parametrize("getter,value", [
    (config.get_bool, "yes"), (config.get_int, "5"), (config.get_int, True), (config.get_str, 5),
    (config.get_list, {}), (config.get_dict, []),
])
def test_wrong_types_name_the_key(getter, value):
    with pytest.raises(CNIError) as err:
        getter({"someKey": value}, "someKey")
    assert err.value.code == ErrorCode.INVALID_CONFIG
    assert "someKey" in err.value.msg


def test_null_means_default():
    assert config.get_int({"mtu": None}, "mtu", 1500) == 1500


@pytest.mark.parametrize("raw,expected", [
    ("", {}),
    ("IgnoreUnknown=1;K8S_POD_NAME=a", {"IgnoreUnknown": "1", "K8S_POD_NAME": "a"}),
    ("A=b=c;", {"A": "b=c"}),
    (";;IP=10.0.0.5;", {"IP": "10.0.0.5"}),
])
def test_cni_args_are_parsed_tolerantly(raw, expected):
    assert config.parse_cni_args(raw) == expected


def test_cni_args_without_equals_is_named():
    with pytest.raises(CNIError, match="'garbage'") as err:
        config.parse_cni_args("A=1;garbage")
    assert err.value.code == ErrorCode.INVALID_ENV


def test_gc_attachment_keys_either_spelling_null_and_absent():
    item = {"containerID": "c1", "ifname": "eth0"}
    assert config.valid_attachments({"cni.dev/valid-attachments": [item]}) == {("c1", "eth0")}
    assert config.valid_attachments({"cni.dev/attachments": [item]}) == {("c1", "eth0")}
    assert config.valid_attachments({"cni.dev/valid-attachments": None}) == set()
    assert config.valid_attachments({}) is None
    with pytest.raises(CNIError) as exc:
        config.valid_attachments({"cni.dev/valid-attachments": [{"ifname": "eth0"}]})
    assert exc.value.code == ErrorCode.INVALID_CONFIG and "ifname" in exc.value.msg
