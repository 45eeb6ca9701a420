"""Chain names, hashes and rule comments, byte-for-byte identical to the Go plugins.

These strings are the compatibility contract: the Go plugins delete rules that we made and we delete theirs,
so every name here is derived exactly as upstream's ``pkg/utils`` and ``knftables`` do. Pure functions only.
"""

from __future__ import annotations

# The built-in SHA-512, not hashlib: hashlib loads OpenSSL's libcrypto first (~5 ms per plugin exec).
from _sha512 import sha512  # type: ignore[import-not-found]  # CPython-internal, no stub

# iptables chain names are limited to 28 characters (upstream utils.maxChainLength).
MAX_CHAIN_LEN = 28
# knftables.CommentLengthMax: nft comments longer than this are cut.
NFT_COMMENT_MAX = 128
# portmap's trimComment: iptables comments are limited to 255 characters.
IPT_COMMENT_MAX = 255


def format_hash(length: int, prefix: str, to_hash: str) -> str:
    """``prefix`` + hex sha512 of ``to_hash``, cut to ``length`` chars (upstream MustFormatHashWithPrefix)."""
    if len(prefix) >= length or length > 128:
        raise ValueError(f"invalid hash length {length} for prefix {prefix!r}")
    return (prefix + sha512(to_hash.encode()).hexdigest())[:length]


def masq_chain(network: str, container_id: str) -> str:
    """The bridge ipMasq chain: ``CNI-`` + 24 hex. ifname is not part of it (upstream, for history's sake)."""
    return format_hash(MAX_CHAIN_LEN, "CNI-", network + container_id)


def dnat_chain(network: str, container_id: str) -> str:
    """portmap's per-container chain: ``CNI-DN-`` + 21 hex."""
    return format_hash(MAX_CHAIN_LEN, "CNI-DN-", network + container_id)


def old_snat_chain(network: str, container_id: str) -> str:
    """The ``CNI-SN-`` chain of very old portmap versions, still removed on DEL."""
    return format_hash(MAX_CHAIN_LEN, "CNI-SN-", network + container_id)


_GO_ESCAPES = {'"': '\\"', "\\": "\\\\", "\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r",
               "\t": "\\t", "\v": "\\v"}


def go_quote(text: str) -> str:
    """Go's ``%q`` (strconv.Quote) for the strings CNI uses, so comments match the Go plugins' exactly."""
    out = []
    for ch in text:
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        elif not ch.isprintable():
            out.append(f"\\u{ord(ch):04x}" if ord(ch) <= 0xFFFF else f"\\U{ord(ch):08x}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def ipt_comment(network: str, container_id: str) -> str:
    """Comment on every masquerade rule: ``name: "<net>" id: "<cid>"`` (upstream utils.FormatComment)."""
    return f"name: {go_quote(network)} id: {go_quote(container_id)}"


def dnat_comment(network: str, container_id: str) -> str:
    """Comment on portmap's CNI-HOSTPORT-DNAT entry rules. Upstream uses plain %s here, not %q."""
    comment = f'dnat name: "{network}" id: "{container_id}"'
    return comment if len(comment) <= IPT_COMMENT_MAX else comment[:253] + "..."


def nft_network_hash(network: str) -> str:
    """16 hex chars identifying a network in nft masquerade comments (prefix used by GC)."""
    return format_hash(16, "", network)


def nft_instance_hash(network: str, ifname: str, container_id: str) -> str:
    """``<hash16(net)>-<hash16(ifname:cid)>``: the comment prefix of one attachment's masquerade rules."""
    return nft_network_hash(network) + "-" + format_hash(16, "", ifname + ":" + container_id)


def nft_masq_comment(network: str, ifname: str, container_id: str) -> str:
    """Full nft masquerade comment: hash prefix, then a readable (quote-free) description, cut to 128 chars."""
    comment = "{}, net: {}, if: {}, id: {}".format(
        nft_instance_hash(network, ifname, container_id),
        network.replace('"', ""), ifname.replace('"', ""), container_id.replace('"', ""))
    return comment[:NFT_COMMENT_MAX]


def macspoof_ref(container_id: str, ifname: str) -> str:
    """The id macspoofchk derives its chain names and comment from."""
    return f"{container_id}-{ifname}"


def macspoof_iface_chain(container_id: str, ifname: str) -> str:
    """Per-attachment chain in ``bridge nat``: ``cni-br-iface-<cid>-<ifname>``."""
    return "cni-br-iface-" + macspoof_ref(container_id, ifname)


def macspoof_mac_chain(container_id: str, ifname: str) -> str:
    """The chain holding the MAC check: the iface chain name + ``-mac``."""
    return macspoof_iface_chain(container_id, ifname) + "-mac"


def macspoof_comment(container_id: str, ifname: str) -> str:
    """Comment on every macspoofchk rule."""
    return "macspoofchk-" + macspoof_ref(container_id, ifname)
