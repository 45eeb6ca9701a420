"""The first thing to run: build a tiny container "node" in throwaway namespaces and watch CNI wire it up.

    .venv/bin/python -m tests.demo          # our plugins from dist/ (after `bash .ci/setup`)
    .venv/bin/python -m tests.demo --go     # the same with the upstream Go plugins in /usr/lib/cni
    .venv/bin/python -m tests.demo --picture FILE   # where to keep the picture of the node (an SVG)

As root. A "node" network namespace stands in for the machine, two more for two containers; libcni (the same
library containerd and CRI-O use, here as tests/bin/cnitool) runs the bridge plugin, which asks host-local for
addresses. Every step prints what it did and the real output of the commands that show it. At the end, or on
Ctrl-C or an error, the containers are DELeted and all namespaces and temp files removed: the machine's own
network is never touched. The one file it leaves is the picture of the node that `inspect` drew (--picture).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, Sequence

from bench.lab import Lab
from tests.helpers import net, paths
from tests.helpers.cnitool import Cnitool
from tests.helpers.netns import Netns

NET_NAME = "demo-net"
BRIDGE = "cntdemo0"
SUBNET = "10.77.0.0/24"
GATEWAY = "10.77.0.1"
DEFAULT_PICTURE = Path("/tmp/cni-suite-demo-node.svg")
#: Tables that iptables-nft manages itself; `iptables -S` already shows them.
_XTABLES_TABLES = {"nat", "filter", "mangle", "raw", "security"}


def say(text: str) -> None:
    """A paragraph of explanation, wrapped."""
    print(textwrap.fill(" ".join(text.split()), width=100))
    print()


def step(number: int, title: str) -> None:
    print(f"=== Step {number}: {title} ===")
    print()


def show(shown: str, output: str) -> None:
    """A command as a learner would type it, then its real output, indented."""
    print(f"  $ {shown}")
    body = output.rstrip() or "(no output)"
    print(textwrap.indent(body, "    "))
    print()


def show_in(ns: Netns, argv: Sequence[str], label: str) -> str:
    """Run `argv` inside `ns`, print it as `ip netns exec <label> ...`, return its output."""
    proc = ns.run(list(argv), check=False)
    show(f"ip netns exec {label} {' '.join(argv)}", proc.stdout + proc.stderr)
    return proc.stdout


def conflist(data_dir: Path) -> dict[str, Any]:
    """The network the demo creates: a bridge with a gateway, host-local addresses, masquerading."""
    return {
        "cniVersion": "1.0.0",
        "name": NET_NAME,
        "plugins": [{
            "type": "bridge",
            "bridge": BRIDGE,
            "isGateway": True,
            "ipMasq": True,
            "ipam": {"type": "host-local", "dataDir": str(data_dir), "ranges": [[{"subnet": SUBNET}]],
                     "routes": [{"dst": "0.0.0.0/0"}]},
        }],
    }


class Demo:
    """The steps, in order; `added` remembers which containers to DEL if the demo stops half-way."""

    def __init__(self, lab: Lab, cni_path: Path, cnitool: Path, flavour: str, picture: Path) -> None:
        self.lab = lab
        self.cni_path = cni_path
        self.flavour = flavour
        self.picture = picture
        self.data_dir = lab.tmp / "host-local"
        self.node = lab.netns("node")
        self.tool = Cnitool(cnitool, self.node, lab.tmp / "libcni", cni_path)
        self.containers: dict[str, Netns] = {}
        self.added: list[str] = []
        self.ips: dict[str, str] = {}

    def run(self) -> None:
        self.make_namespaces()
        self.write_config()
        self.add("ctr1", 3)
        self.show_node(4)
        self.show_container("ctr1", 5)
        self.add("ctr2", 6)
        self.ping(7)
        self.inspect(8)
        self.delete_all(9)

    def make_namespaces(self) -> None:
        step(1, "a node and two containers (network namespaces)")
        say(f"""A container's network is a network namespace: its own interfaces, addresses, routes and firewall.
            The demo makes three: '{self.node.name}' plays the node (the machine), and two play containers.
            Right after creation a namespace holds only a loopback interface, and nothing connects it to
            anything.""")
        for name in ("ctr1", "ctr2"):
            self.containers[name] = self.container_netns(name)
        for label, ns in [("node", self.node), *self.containers.items()]:
            print(f"  {label:5s} = {ns.name}")
        print()
        say("""Below, 'ip netns exec ctr1 …' is short for 'ip netns exec <the full name above> …'.""")
        show_in(self.containers["ctr1"], ["ip", "-br", "link"], "ctr1")

    def write_config(self) -> None:
        step(2, "the network configuration")
        say(f"""A runtime (containerd, CRI-O...) reads a network config list from /etc/cni/net.d; the demo keeps
            its own in a temp folder. 'bridge' connects each container to a Linux bridge '{BRIDGE}' on the node
            with a veth pair (a virtual cable); 'isGateway' gives the bridge the subnet's first address so it
            can route for the containers; 'ipMasq' rewrites their outgoing traffic to the node's address
            (NAT). 'ipam' names the plugin that hands out addresses: host-local keeps one file per address
            in its dataDir. The plugins are {self.flavour}, from {self.cni_path}.""")
        path = self.tool.write_conflist(conflist(self.data_dir))
        show(f"cat {path.name}", path.read_text())

    def add(self, name: str, number: int) -> None:
        ns = self.containers[name]
        step(number, f"ADD: connect {name}")
        if self.added:
            say(f"""Same call for {name}: the bridge exists already, so only a new veth pair, address and rules.""")
        else:
            say(f"""The runtime asks libcni to ADD the network to the container. libcni execs the 'bridge' program
            with CNI_COMMAND=ADD, CNI_NETNS={ns.path}, CNI_IFNAME=eth0 and the config on stdin. bridge execs
            'host-local' the same way to get an address, creates the bridge (first time only), the veth pair,
            moves one end into the container as eth0, sets the address and the default route, and adds the
            masquerade rules. It answers with a JSON result that the runtime keeps.""")
        cid = f"demo-{name}"
        res = self.tool.add(NET_NAME, ns, container_id=cid)
        self.added.append(name)
        print(f"  $ CNI_PATH={self.cni_path} CNI_CONTAINERID={cid} cnitool add {NET_NAME} {ns.path}")
        if res.rc != 0:
            raise RuntimeError(f"ADD {name} failed: {res.out} {res.stderr}")
        print(textwrap.indent(json.dumps(res.out, indent=2), "    "))
        print()
        self.ips[name] = res.out["ips"][0]["address"].split("/")[0]
        if len(self.added) == 1:
            say(f"""{name} got {self.ips[name]}. 'interfaces' lists what was made: the bridge and the node's end of the
                veth (no sandbox: they live on the node), and eth0 inside the container; 'ips[].interface' is
                an index into that list.""")

    def show_node(self, number: int) -> None:
        step(number, "what ADD created on the node")
        say(f"""On the node: the bridge '{BRIDGE}' and a 'veth…' interface whose peer is the container's eth0
            (@ifN names the peer's index). The veth is a port of the bridge.""")
        show_in(self.node, ["ip", "-br", "link"], "node")
        show_in(self.node, ["bridge", "link", "show"], "node")
        say(f"""The bridge holds the gateway address {GATEWAY}; the kernel adds a route to the subnet through it.
            isGateway also turned on IP forwarding on the node.""")
        show_in(self.node, ["ip", "-br", "addr", "show", "dev", BRIDGE], "node")
        show_in(self.node, ["ip", "route"], "node")
        show_in(self.node, ["sysctl", "net.ipv4.ip_forward"], "node")
        say("""ipMasq: traffic from the container to anywhere outside its subnet leaves with the node's address.
            The rule lives in a chain named after a hash of the network and container ID, so DEL can find
            and remove exactly this container's rules.""")
        self.show_rules()
        say("""host-local's bookkeeping: one file per address in use, named after it, holding the container ID
            and interface (that is how a DEL finds what to release); last_reserved_ip.0 makes the next
            allocation continue after it; 'lock' serialises concurrent calls. Files starting with a dot are
            private to an implementation.""")
        network_dir = self.data_dir / NET_NAME
        show(f"ls -A {network_dir}", "\n".join(sorted(p.name for p in network_dir.iterdir())))
        address_file = network_dir / self.ips["ctr1"]
        show(f"cat {address_file}", address_file.read_text() if address_file.exists() else "(missing)")

    def show_rules(self) -> None:
        show_in(self.node, ["iptables", "-t", "nat", "-S"], "node")
        tables = self.node.run(["nft", "list", "tables"], check=False).stdout.split()
        # "table <family> <name>" triples; iptables-nft's own tables were shown above in iptables syntax.
        for family, name in zip(tables[1::3], tables[2::3], strict=False):
            if name not in _XTABLES_TABLES:
                show_in(self.node, ["nft", "list", "table", family, name], "node")

    def container_netns(self, label: str) -> Netns:
        """`cnt-bdemo<run>-ctr1` for the container the demo calls ctr1 (the pool would number it after the node)."""
        return self.lab.pool.create(label, lo_up=True, numbered=False)

    def inspect(self, number: int) -> None:
        step(number, "the whole node at a glance: inspect")
        say(f"""'cni-suite inspect' reads what the plugins built (links, addresses, rules, host-local's files,
            libcni's cache) and joins it: which veth leads to which container, and what is orphaned. It only
            reads. It also draws the node as an SVG picture, kept at {self.picture}.""")
        argv = [sys.executable, "-m", "cni_common.inspect", "--netns", self.node.name, "--data-dir",
                str(self.data_dir), "--cache-dir", str(self.tool.cache_dir)]
        proc = subprocess.run(argv, cwd=paths.REPO, capture_output=True, text=True, timeout=60)
        show(f"cni-suite inspect --netns {self.node.name} --data-dir {self.data_dir} "
             f"--cache-dir {self.tool.cache_dir}", proc.stdout + proc.stderr)
        subprocess.run([*argv, "--format", "svg", "-o", str(self.picture)], cwd=paths.REPO, check=True,
                       capture_output=True, text=True, timeout=60)

    def show_container(self, name: str, number: int) -> None:
        ns = self.containers[name]
        step(number, f"inside {name}")
        say("""Inside the container: eth0 with its address, and a default route via the gateway on the node's
            bridge. This is all a process in the container sees.""")
        show_in(ns, ["ip", "-br", "addr"], name)
        show_in(ns, ["ip", "route"], name)

    def ping(self, number: int) -> None:
        step(number, "prove it: ping")
        say(f"""ctr1 pings ctr2 across the bridge (same subnet: plain layer 2 through the node's bridge), and the
            gateway {GATEWAY} (the node itself).""")
        for target in (self.ips["ctr2"], GATEWAY):
            proc = self.containers["ctr1"].run(["busybox", "ping", "-c", "2", "-W", "2", target], check=False,
                                               timeout=20)
            show(f"ip netns exec ctr1 ping -c 2 {target}", proc.stdout + proc.stderr)
            if proc.returncode != 0:
                raise RuntimeError(f"ping {target} from ctr1 failed")
        if not net.ping(self.containers["ctr2"], self.ips["ctr1"]):
            raise RuntimeError("ping from ctr2 to ctr1 failed")
        print("  ctr2 -> ctr1: ok as well")
        print()

    def delete_all(self, number: int) -> None:
        step(number, "DEL: disconnect both containers")
        say("""When a container goes away the runtime asks for DEL, with the same config. bridge removes the
            container's eth0 (which destroys the veth pair), its masquerade rules, and execs host-local to
            release the address. The bridge itself stays for the next container, as upstream does.""")
        for name in list(self.added):
            cid = f"demo-{name}"
            res = self.tool.delete(NET_NAME, self.containers[name], container_id=cid)
            show(f"CNI_CONTAINERID={cid} cnitool del {NET_NAME} {self.containers[name].path}",
                 f"exit status {res.rc}" + (f": {res.out}" if res.rc else ""))
            if res.rc != 0:
                raise RuntimeError(f"DEL {name} failed: {res.out}")
            self.added.remove(name)
        show_in(self.node, ["ip", "-br", "link"], "node")
        self.show_rules()
        left = sorted(p.name for p in (self.data_dir / NET_NAME).iterdir())
        show(f"ls -A {self.data_dir / NET_NAME}", "\n".join(left))
        say("""The veths, the rules and the address files are gone; the bridge stays for the next container.""")

    def undo(self) -> None:
        """Best-effort DEL of whatever is still connected (after an error or Ctrl-C)."""
        for name in list(self.added):
            self.tool.delete(NET_NAME, self.containers[name], container_id=f"demo-{name}")
            self.added.remove(name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--go", action="store_true", help="use the upstream Go plugins in /usr/lib/cni")
    parser.add_argument("--picture", type=Path, default=DEFAULT_PICTURE,
                        help=f"where inspect's picture of the node goes (default {DEFAULT_PICTURE})")
    opts = parser.parse_args(argv)
    cni_path = paths.GO_PLUGIN_DIR if opts.go else paths.DIST_DIR
    missing = paths.missing_plugins(cni_path, ("bridge", "host-local"))
    if missing:
        print(f"missing {', '.join(missing)} in {cni_path}: run `bash .ci/setup` (or ./build.sh) first",
              file=sys.stderr)
        return 2
    cnitool = paths.build_cnitool()
    status = 0
    with Lab(tag="bdemo") as lab:
        demo = Demo(lab, cni_path, cnitool, "the upstream Go plugins" if opts.go else "this repository's",
                    opts.picture)
        try:
            demo.run()
        except KeyboardInterrupt:
            print("\ninterrupted: cleaning up", file=sys.stderr)
            status = 130
        except Exception as exc:  # noqa: BLE001 - any failure: say it, then clean up
            print(f"\nFAILED: {exc}\ncleaning up", file=sys.stderr)
            status = 1
        finally:
            demo.undo()
        step(10, "clean up")
        say(f"""The namespaces {', '.join(ns.name for ns in lab.pool.created)} and the temp folder {lab.tmp}
            (config, libcni cache, host-local data) are removed now. Nothing was changed outside them.""")
    if status == 0:
        print(f"The picture of the node (open it in a browser): {opts.picture}")
    print("demo finished" if status == 0 else f"demo ended with status {status}")
    return status


if __name__ == "__main__":
    raise SystemExit(main())
