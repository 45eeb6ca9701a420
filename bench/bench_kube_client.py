"""The installer's Kubernetes client, in figures: the official ``kubernetes`` package against cni_common/kubeapi.py.

The installer needs one request (``GET /api/v1/nodes/NAME``). Both clients make it, each in a fresh process (as
the installer starts), against the local TLS stand-in for the API server (tests/helpers/kube_api.py, 127.0.0.1):
import alone, then import + in-cluster configuration + the GET. Both run under the same interpreter, which must
have the ``kubernetes`` package (it is not a dependency of the suite):

    python3 -m venv /tmp/kube && /tmp/kube/bin/pip install kubernetes==31.0.0
    .venv/bin/python bench/bench_kube_client.py /tmp/kube/bin/python [--runs 15]

Prints a Markdown table (medians and minimums of wall time) and the module counts. Result: docs/kubernetes.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.helpers.kube_api import SERVICE_ACCOUNT_USER, KubeAPIServer, make_token, write_state
from tests.helpers.tls import make_certs

REPO = Path(__file__).resolve().parents[1]
CASES = {
    "python -c pass (the interpreter alone)": "pass",
    "ours: import cni_common.kubeapi": "import cni_common.kubeapi",
    "ours: import + in_cluster() + get_node()":
        "import os, cni_common.kubeapi as k\n"
        "print(k.get_node(k.in_cluster(os.environ, os.environ['SA']), 'node-1')['spec']['podCIDR'])",
    "kubernetes: import kubernetes.client, kubernetes.config": "import kubernetes.client, kubernetes.config",
    "kubernetes: import + InClusterConfigLoader + read_node()":
        "import os, kubernetes.client\n"
        "from kubernetes.config.incluster_config import InClusterConfigLoader\n"
        "InClusterConfigLoader(token_filename=os.environ['SA'] + '/token',\n"
        "                      cert_filename=os.environ['SA'] + '/ca.crt').load_and_set()\n"
        "print(kubernetes.client.CoreV1Api().read_node('node-1').spec.pod_cidr)",
}
MODULES = ("import sys; n = len(sys.modules); import {}; print(len(sys.modules) - n)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("python", help="an interpreter with the kubernetes package installed")
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="cnt-kube-bench-") as tmp:
        folder = Path(tmp)
        certs = make_certs(folder / "ca")
        token = make_token()
        account = folder / "sa"
        account.mkdir()
        (account / "token").write_text(token)
        (account / "ca.crt").write_bytes(certs.ca.read_bytes())
        write_state(folder / "state.json", nodes={"node-1": ["10.244.1.0/24"]}, tokens={token: SERVICE_ACCOUNT_USER},
                    allowed=[SERVICE_ACCOUNT_USER])
        server = KubeAPIServer(folder / "state.json", certs.server_cert, certs.server_key)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        env = dict(os.environ, PYTHONPATH=str(REPO), KUBERNETES_SERVICE_HOST="127.0.0.1",
                   KUBERNETES_SERVICE_PORT=str(server.port), SA=str(account))
        print("| case | median | min |\n|---|---:|---:|")
        for name, code in CASES.items():
            times = []
            for _ in range(args.runs):
                start = time.perf_counter()
                subprocess.run([args.python, "-c", code], env=env, check=True, capture_output=True)
                times.append(time.perf_counter() - start)
            print(f"| {name} | {statistics.median(times) * 1000:.0f} ms | {min(times) * 1000:.0f} ms |")
        for module in ("cni_common.kubeapi", "kubernetes.client, kubernetes.config"):
            count = subprocess.run([args.python, "-c", MODULES.format(module)], env=env, check=True,
                                   capture_output=True, text=True).stdout.strip()
            print(f"\nmodules loaded by `import {module}`: {count}")
        server.shutdown()


if __name__ == "__main__":
    main()
