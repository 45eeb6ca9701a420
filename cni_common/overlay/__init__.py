"""The vxlan overlay's shared pieces: its config, the etcd store, subnet leases, peers and VTEP addressing.

Modules, each with one job:

- :mod:`.config`   the ``vxlan`` plugin config, parsed and validated (code 7 naming the key);
- :mod:`.etcd`     a small etcd v3 client over etcd's JSON gateway (stdlib only, endpoint fail-over, TLS);
- :mod:`.subnets`  per-node subnet reservation with etcd transactions, and the pure "first free" search;
- :mod:`.liveness` the leased liveness record of a node, and the list of live nodes;
- :mod:`.peers`    the pure diff between the wanted peers and what the kernel holds;
- :mod:`.vtep`     the stable VTEP MAC of a node (derived from the VNI and its underlay address);
- :mod:`.datapath` kernel programming of the VXLAN device and per-peer entries;
- :mod:`.attach`   the container side (bridge + veth + IPAM), through the library's :mod:`cni_common.attach`;
- :mod:`.agent`    the long-running ``vxlan agent`` loop (lease keep-alive, watch-driven reconciliation).
"""
