"""`ctr run --cni --rootfs` with our built bridge + host-local and conf-examples/10-bridge.conflist, unchanged.

ctr runs CNI itself (go-cni, libcni 1.1) with /etc/cni/net.d, /usr/lib/cni and /var/lib/cni mounted from test
folders (tests/containerd/ctr_run.py), so host-local's default dataDir /var/lib/cni/networks lands in the
test's cache folder. `--rm` runs CNI DEL with an empty netns after the task exits: the lease and the
masquerade rules must go even so.
"""

from __future__ import annotations

import json
from pathlib import Path

from tests.containerd.ctr_run import ctr_run_cni
from tests.e2e_bridge import lab
from tests.helpers.paths import DIST_DIR, REPO, make_bin_dir

EXAMPLE = REPO / "conf-examples" / "10-bridge.conflist"


def test_ctr_run_gets_an_address_pings_the_gateway_and_releases_it(make_containerd, rootfs: Path, host_ns,
                                                                    plugin_dir, tmp_path: Path):
    conflist = json.loads(EXAMPLE.read_text())
    bin_dir = make_bin_dir(tmp_path / "bin", {n: DIST_DIR / n for n in ("bridge", "host-local")})
    cd = make_containerd(bin_dir, conflist, import_image=False)
    cache = tmp_path / "ctr-cache"
    res = ctr_run_cni(cd, rootfs, "cnte-ping", ["/bin/sh", "-c", "ip -4 addr show eth0; ping -c1 -W2 10.22.0.1"],
                      bin_dir=cd.bin_dir, conf_dir=cd.conf_dir, cache_dir=cache)
    assert res.returncode == 0, (res.stdout, res.stderr, cd.log_tail())
    assert "inet 10.22.0." in res.stdout and "1 packets received" in res.stdout, res.stdout
    assert lab.leases(cache / "networks", "bridge-net") == []  # released by the DEL after the exit
    assert lab.ipt_masq_rules(host_ns, "bridge-net") == [] and lab.ipt_nat_chains(host_ns) == []
    assert lab.bridge_ports(host_ns, "cni0") == []
