"""Kernel constants for rtnetlink (from linux/netlink.h, rtnetlink.h, if_link.h, if_addr.h, neighbour.h).

Only the values the suite uses; names follow the kernel's so they can be grepped in its headers.
"""

NETLINK_ROUTE = 0
SOL_NETLINK = 270
NETLINK_CAP_ACK = 10
NETLINK_EXT_ACK = 11

# nlmsghdr types and flags
NLMSG_NOOP = 1
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x01
NLM_F_MULTI = 0x02
NLM_F_ACK = 0x04
NLM_F_ECHO = 0x08  # on a change request: the kernel sends the sender its notification of the change
NLM_F_DUMP_INTR = 0x10
NLM_F_DUMP = 0x300
NLM_F_REPLACE = 0x100
NLM_F_EXCL = 0x200
NLM_F_CREATE = 0x400
NLM_F_APPEND = 0x800
NLM_F_CAPPED = 0x100  # on NLMSG_ERROR: the request was not echoed back
NLM_F_ACK_TLVS = 0x200  # on NLMSG_ERROR: extended-ack attributes follow
NLMSGERR_ATTR_MSG = 1

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
RTM_NEWADDR = 20
RTM_DELADDR = 21
RTM_GETADDR = 22
RTM_NEWROUTE = 24
RTM_DELROUTE = 25
RTM_GETROUTE = 26
RTM_NEWNEIGH = 28
RTM_DELNEIGH = 29
RTM_GETNEIGH = 30
RTM_NEWRULE = 32
RTM_DELRULE = 33
RTM_GETRULE = 34
RTM_NEWQDISC = 36
RTM_DELQDISC = 37
RTM_GETQDISC = 38
RTM_NEWTFILTER = 44
RTM_DELTFILTER = 45
RTM_GETTFILTER = 46

AF_UNSPEC = 0
AF_INET = 2
AF_BRIDGE = 7
AF_INET6 = 10

# net_device flags
IFF_UP = 0x1
IFF_PROMISC = 0x100
IFF_ALLMULTI = 0x200
IFF_LOWER_UP = 0x10000

# IFLA_OPERSTATE values
IF_OPER_UP = 6

IFLA_ADDRESS = 1
IFLA_IFNAME = 3
IFLA_MTU = 4
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_PROTINFO = 12
IFLA_TXQLEN = 13
IFLA_OPERSTATE = 16
IFLA_LINKINFO = 18
IFLA_IFALIAS = 20
IFLA_AF_SPEC = 26
IFLA_NET_NS_FD = 28
IFLA_INFO_KIND = 1
IFLA_INFO_DATA = 2
RTEXT_FILTER_BRVLAN = 1 << 1
RTEXT_FILTER_SKIP_STATS = 1 << 3

VETH_INFO_PEER = 1
IFLA_BRIDGE_VLAN_INFO = 2
BRIDGE_VLAN_INFO_PVID = 0x2
BRIDGE_VLAN_INFO_UNTAGGED = 0x4

IFLA_VXLAN_ID = 1
IFLA_VXLAN_LOCAL = 4
IFLA_VXLAN_PORT = 15

IFA_ADDRESS = 1
IFA_LOCAL = 2
IFA_FLAGS = 8
IFA_F_NODAD = 0x02
IFA_F_DADFAILED = 0x08
IFA_F_TENTATIVE = 0x40

RTA_DST = 1
RTA_OIF = 4
RTA_GATEWAY = 5
RTA_PREFSRC = 7
RTA_METRICS = 8
RTAX_MTU = 2
RT_TABLE_MAIN = 254
RTPROT_BOOT = 3
RTN_UNICAST = 1
RT_SCOPE_UNIVERSE = 0
RT_SCOPE_LINK = 253
RT_SCOPE_HOST = 254
RT_SCOPE_NOWHERE = 255  # in a delete request: match any scope (iproute2's default)
RTNH_F_ONLINK = 0x4
FR_ACT_TO_TBL = 1  # a policy rule's action: look up a table

# traffic control (linux/pkt_sched.h, pkt_cls.h, if_ether.h, tc_act/tc_mirred.h)
TC_H_ROOT = 0xFFFFFFFF
TC_H_INGRESS = 0xFFFFFFF1
TC_H_MIN_INGRESS = 0xFFF2  # clsact's ingress hook, as the minor of its handle
ETH_P_ALL = 0x0003
TC_ACT_STOLEN = 4
TCA_EGRESS_REDIR = 1
TC_U32_TERMINAL = 1  # tc_u32_sel.flags: the key list ends the match (a leaf)

NDA_DST = 1
NDA_LLADDR = 2
NUD_PERMANENT = 0x80
NTF_SELF = 0x02

# Attribute flag: the payload holds attributes (some kernel attributes are refused without it).
NLA_F_NESTED = 0x8000
