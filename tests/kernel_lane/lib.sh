# Sourced by every case of the kernel lane (tests/helpers/kernel_lane.py writes `REPO=...; . lib.sh` first).
# A case runs in its own directory: net.d/ holds the conflists its test wrote; facts/ what the test reads back.
# shellcheck shell=sh
OURS=$REPO/dist
GO=/usr/lib/cni
CNI_PATH=$OURS
CNITOOL=$REPO/tests/bin/cnitool
HOST=cnt-l-host
# The single-file launcher unpacks into a root-only cache: the VM's /var/cache is the machine's (read-only).
export CNI_SUITE_CACHE_DIR=/run/cni-suite-cache
mkdir -p facts cache
ip -all netns delete  # the cases of one boot share the VM: each starts from no namespaces (VM-only state)

# mkns NAME: a network namespace with lo up (the case's "host" is $HOST, made here).
mkns() { ip netns add "$1" && ip -n "$1" link set lo up; }
mkns "$HOST"
# inns NS CMD...: CMD inside namespace NS.
inns() { _ns=$1; shift; ip netns exec "$_ns" "$@"; }
# cni VERB NET NETNS [IFNAME]: libcni (tests/cnitool) from the host namespace, with the plugins of $CNI_PATH
# (ours by default; CNI_PATH=$GO for the Go v1.1.1 ones); CNI_ARGS and CAP_ARGS pass through.
cni() {
    NETCONFPATH=$PWD/net.d CNI_CACHE_DIR=$PWD/cache CNI_PATH=$CNI_PATH CNI_IFNAME=${4:-eth0} \
        ip netns exec "$HOST" "$CNITOOL" "$1" "$2" "/run/netns/$3"
}
# fact NAME CMD...: CMD's stdout, stderr and exit code, kept for the test (CaseResult.fact).
fact() { _name=$1; shift; "$@" >"facts/$_name" 2>"facts/$_name.err"; echo $? >"facts/$_name.rc"; }
# ping1 NS ADDR: one echo request from NS, 2 s at most.
ping1() { ip netns exec "$1" ping -c1 -W2 "$2" >/dev/null 2>&1; }
# mkmaster NS NAME [ADDR]: a veth NAME in NS with its peer NAMEp up beside it (children get carrier); with ADDR
# (a.b.c.d/nn) also its address and the default route through it.
mkmaster() {
    ip -n "$1" link add "$2" type veth peer name "$2p" && ip -n "$1" link set "$2p" up && ip -n "$1" link set "$2" up
    if [ -n "${3:-}" ]; then
        ip -n "$1" addr add "$3" dev "$2" && ip -n "$1" route add default via "${3%.*}.254"
    fi
}
# lifecycle LABEL NET NS [IFNAME]: ADD, the link and its addresses, CHECK, DEL, what is left, a second DEL: facts
# add-LABEL, link-LABEL, addr-LABEL, check-LABEL, del-LABEL, left-LABEL, del2-LABEL.
lifecycle() {
    _if=${4:-eth0}
    fact "add-$1" cni add "$2" "$3" "$_if"
    fact "link-$1" inns "$3" ip -j -d link show dev "$_if"
    fact "addr-$1" inns "$3" ip -j addr show dev "$_if"
    fact "check-$1" cni check "$2" "$3" "$_if"
    fact "del-$1" cni del "$2" "$3" "$_if"
    fact "left-$1" inns "$3" ip -j link show
    fact "del2-$1" cni del "$2" "$3" "$_if"
}
