"""Traffic-control messages (qdiscs, filters, actions): a ``tcmsg`` class on pyroute2's message framework.

Why not pyroute2's own ``pyroute2.netlink.rtnl.tcmsg``: its package imports every qdisc, classifier and action
it knows (cake, hfsc, bpf, ematch with its iproute2 table files...), 20-40 ms per process measured here, where
the bandwidth plugin needs three kinds. So this module declares only those, with pyroute2's ``nlmsg``/``nla``
base classes doing the encoding and decoding exactly as for the other rtnl classes. Loaded like them, through
:func:`~.pyroute2_light.message_class` (``"tcmsg"``), so only a call that shapes traffic pays for it.

Kinds: ``tbf`` (with ``TCA_TBF_RATE64``, which pyroute2's tbf lacks), ``ingress`` (no options), ``u32`` (the
match-all selector and an action list), and the ``mirred`` action. Options of any other kind decode as raw
bytes, which is all a listing of a link's qdiscs needs.
"""

from __future__ import annotations

from typing import Any

from pyroute2.netlink import NLA_F_NESTED, nla, nlmsg  # type: ignore[import-untyped]

#: A filter's actions, numbered TCA_ACT_PRIO_1..; the kernel's TCA_ACT_MAX_PRIO.
_ACT_MAX_PRIO = 32


class tbf_options(nla):
    """TCA_OPTIONS of a ``tbf`` qdisc (linux/pkt_sched.h)."""

    nla_map = (
        ("TCA_TBF_UNSPEC", "none"),
        ("TCA_TBF_PARMS", "tbf_parms"),
        ("TCA_TBF_RTAB", "hex"),
        ("TCA_TBF_PTAB", "hex"),
        ("TCA_TBF_RATE64", "uint64"),
        ("TCA_TBF_PRATE64", "uint64"),
        ("TCA_TBF_BURST", "uint32"),
        ("TCA_TBF_PBURST", "uint32"),
        ("TCA_TBF_PAD", "hex"),
    )

    class tbf_parms(nla):
        """struct tc_tbf_qopt: two tc_ratespec (rate, peakrate), then limit and buffer in bytes/ticks, mtu."""

        fields = (
            ("rate_cell_log", "B"),
            ("rate_linklayer", "B"),
            ("rate_overhead", "H"),
            ("rate_cell_align", "h"),
            ("rate_mpu", "H"),
            ("rate", "I"),
            ("peak_cell_log", "B"),
            ("peak_linklayer", "B"),
            ("peak_overhead", "H"),
            ("peak_cell_align", "h"),
            ("peak_mpu", "H"),
            ("peak", "I"),
            ("limit", "I"),
            ("buffer", "I"),
            ("mtu", "I"),
        )


class mirred_options(nla):
    """TCA_ACT_OPTIONS of a ``mirred`` action (linux/tc_act/tc_mirred.h)."""

    nla_flags = NLA_F_NESTED
    nla_map = (
        ("TCA_MIRRED_UNSPEC", "none"),
        ("TCA_MIRRED_TM", "hex"),
        ("TCA_MIRRED_PARMS", "tc_mirred"),
    )

    class tc_mirred(nla):
        """struct tc_mirred: tc_gen (index, capab, action, refcnt, bindcnt), then eaction and ifindex."""

        fields = (
            ("index", "I"),
            ("capab", "I"),
            ("action", "i"),
            ("refcnt", "i"),
            ("bindcnt", "i"),
            ("eaction", "i"),
            ("ifindex", "I"),
        )


class tca_act(nla):
    """One action of a filter: its kind and its options."""

    nla_flags = NLA_F_NESTED
    nla_map = (
        ("TCA_ACT_UNSPEC", "none"),
        ("TCA_ACT_KIND", "asciiz"),
        ("TCA_ACT_OPTIONS", "get_act_options"),
        ("TCA_ACT_INDEX", "uint32"),
        ("TCA_ACT_STATS", "hex"),
    )

    @staticmethod
    def get_act_options(self: Any, *argv: Any, **kwarg: Any) -> Any:
        return mirred_options if self.get_attr("TCA_ACT_KIND") == "mirred" else self.hex


class tca_act_prio(nla):
    """A filter's action list: TCA_ACT_PRIO_1, _2... in the order they run."""

    nla_flags = NLA_F_NESTED
    nla_map = tuple((f"TCA_ACT_PRIO_{i}", "tca_act") for i in range(_ACT_MAX_PRIO + 1))
    tca_act = tca_act


class u32_options(nla):
    """TCA_OPTIONS of a ``u32`` filter (linux/pkt_cls.h)."""

    nla_map = (
        ("TCA_U32_UNSPEC", "none"),
        ("TCA_U32_CLASSID", "uint32"),
        ("TCA_U32_HASH", "uint32"),
        ("TCA_U32_LINK", "uint32"),
        ("TCA_U32_DIVISOR", "uint32"),
        ("TCA_U32_SEL", "u32_sel"),
        ("TCA_U32_POLICE", "hex"),
        ("TCA_U32_ACT", "tca_act_prio"),
        ("TCA_U32_INDEV", "asciiz"),
        ("TCA_U32_PCNT", "hex"),
        ("TCA_U32_MARK", "hex"),
        ("TCA_U32_FLAGS", "uint32"),
    )
    tca_act_prio = tca_act_prio

    class u32_sel(nla):
        """struct tc_u32_sel with one tc_u32_key: all the suite writes is the match-all selector (one key
        of mask 0), and a listing reads the first key of a longer selector."""

        fields = (
            ("flags", "B"),
            ("offshift", "B"),
            ("nkeys", "B"),
            ("__align", "x"),
            ("offmask", ">H"),
            ("off", "H"),
            ("offoff", "h"),
            ("hoff", "h"),
            ("hmask", ">I"),
            ("key_mask", ">I"),
            ("key_val", ">I"),
            ("key_off", "i"),
            ("key_offmask", "i"),
        )


class tcmsg(nlmsg):
    """struct tcmsg (family, ifindex, handle, parent, info) and the TCA_* attributes of qdiscs and filters.

    ``info`` is a filter's priority in its upper 16 bits and its protocol (network order) in the lower.
    """

    prefix = "TCA_"
    fields = (
        ("family", "B"),
        ("pad1", "B"),
        ("pad2", "H"),
        ("index", "i"),
        ("handle", "I"),
        ("parent", "I"),
        ("info", "I"),
    )
    nla_map = (
        ("TCA_UNSPEC", "none"),
        ("TCA_KIND", "asciiz"),
        ("TCA_OPTIONS", "get_options"),
        ("TCA_STATS", "hex"),
        ("TCA_XSTATS", "hex"),
        ("TCA_RATE", "hex"),
        ("TCA_FCNT", "hex"),
        ("TCA_STATS2", "hex"),
        ("TCA_STAB", "hex"),
        ("TCA_PAD", "hex"),
        ("TCA_DUMP_INVISIBLE", "flag"),
        ("TCA_CHAIN", "uint32"),
    )

    @staticmethod
    def get_options(self: Any, *argv: Any, **kwarg: Any) -> Any:
        """The options class of this message's kind (TCA_KIND comes first, in requests and in replies)."""
        return _OPTIONS.get(self.get_attr("TCA_KIND"), self.hex)


_OPTIONS: dict[str, type] = {"tbf": tbf_options, "u32": u32_options}
