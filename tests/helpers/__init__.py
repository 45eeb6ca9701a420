"""Test utilities shared by the netns, binary and containerd suites.

Modules: `netns` (throwaway network namespaces), `cnitool` (the libcni 1.1.2
driver), `plugin` (exec one plugin binary directly), `net` (connectivity probes
and `ip -j` readers), `paths` (where the plugin binaries live), `skip` (skip-or-fail policy), `etcd` (a
throwaway etcd server) and `vxlan_lab` (a simulated vxlan cluster).
"""
