"""A minimal CRI (runtime.v1) client: the calls kubelet makes for a pod's network and its containers.

Uses the generated stubs of PyPI `container-runtime-interface-api==2.0.1`
(`cri_api.v1`), with grpcio 1.85.3 / protobuf 6.33.6. Pitfalls:
- `kubernetes-cri` on PyPI is the old v1alpha1 API: containerd 1.6 rejects it.
- The gRPC target for a unix socket is `unix://` + absolute path (3 slashes).
- RunPodSandbox runs CNI ADD *before* it starts the sandbox task; if the task
  fails, containerd runs DEL itself. StopPodSandbox runs CNI DEL (the address
  is freed there); RemovePodSandbox only deletes files.
- Port mappings reach plugins as runtimeConfig.portMappings with capitalised
  keys ({"HostPort":..,"ContainerPort":..,"Protocol":"tcp","HostIP":""}), and
  dns_config as runtimeConfig.dns {"Servers","Searches","Options"}, only for
  plugins that declare those capabilities.
- CRI protocol enums: Protocol.TCP == 0, so a mapping without `protocol` is TCP.
"""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class HostMount:
    """A hostPath volume of a container: `host_path` (as containerd sees it) at `container_path`."""

    container_path: str
    host_path: Path
    readonly: bool = False


@dataclass
class PortMap:
    """One hostPort mapping of a pod."""

    host_port: int
    container_port: int
    protocol: str = "tcp"
    host_ip: str = ""


@dataclass
class DnsConfig:
    """Pod DNS settings (CRI DNSConfig)."""

    servers: list[str] = field(default_factory=list)
    searches: list[str] = field(default_factory=list)
    options: list[str] = field(default_factory=list)


class CriClient:
    """RunPodSandbox / PodSandboxStatus / StopPodSandbox / RemovePodSandbox over a unix socket."""

    def __init__(self, socket: Path, cgroup_parent: str, timeout: float = 30) -> None:
        import grpc
        from cri_api.v1 import api_pb2, api_pb2_grpc

        self.pb = api_pb2
        self.channel = grpc.insecure_channel(f"unix://{socket}")
        self.runtime = api_pb2_grpc.RuntimeServiceStub(self.channel)
        self.cgroup_parent = cgroup_parent
        self.timeout = timeout
        self._configs: dict[str, Any] = {}  # pod name -> its PodSandboxConfig (CreateContainer repeats it)

    def close(self) -> None:
        self.channel.close()

    def status(self) -> dict[str, bool]:
        """Runtime conditions, e.g. {"RuntimeReady": True, "NetworkReady": True}."""
        resp = self.runtime.Status(self.pb.StatusRequest(), timeout=self.timeout)
        return {c.type: c.status for c in resp.status.conditions}

    def run_pod(self, name: str, *, namespace: str = "default", ports: list[PortMap] | None = None,
                dns: DnsConfig | None = None, uid: str | None = None, host_network: bool = False,
                log_directory: str = "", annotations: dict[str, str] | None = None) -> str:
        """RunPodSandbox (CNI ADD happens here, unless `host_network`); returns the sandbox id.

        Each pod gets `linux.cgroup_parent = /<cgroup_parent>/<name>` so the
        test can kill and remove everything it started. A `host_network` pod
        (a DaemonSet's `hostNetwork: true`) shares the node's netns: no CNI call.
        """
        self._configs[name] = config = self._pod_config(name, namespace, ports, dns, uid, host_network, log_directory)
        config.annotations.update(annotations or {})  # e.g. kubernetes.io/ingress-bandwidth, as the kubelet sends
        resp = self.runtime.RunPodSandbox(self.pb.RunPodSandboxRequest(config=config), timeout=self.timeout)
        return resp.pod_sandbox_id

    def _pod_config(self, name: str, namespace: str, ports: list[PortMap] | None, dns: DnsConfig | None,
                    uid: str | None, host_network: bool, log_directory: str) -> Any:
        pb = self.pb
        security = pb.LinuxSandboxSecurityContext(
            namespace_options=pb.NamespaceOption(network=pb.NODE if host_network else pb.POD))
        return pb.PodSandboxConfig(
            metadata=pb.PodSandboxMetadata(name=name, namespace=namespace, uid=uid or secrets.token_hex(8),
                                           attempt=0),
            hostname="" if host_network else name,  # a host-network pod keeps the node's (kubelet sends none)
            port_mappings=[pb.PortMapping(protocol=getattr(pb, p.protocol.upper()), container_port=p.container_port,
                                          host_port=p.host_port, host_ip=p.host_ip) for p in ports or []],
            dns_config=pb.DNSConfig(servers=dns.servers, searches=dns.searches, options=dns.options) if dns else None,
            linux=pb.LinuxPodSandboxConfig(cgroup_parent=f"/{self.cgroup_parent}/{name}", security_context=security),
            log_directory=log_directory,
        )

    def run_container(self, pod_id: str, pod_name: str, name: str, image: str, command: list[str], *,
                      env: dict[str, str] | None = None, mounts: list[HostMount] | None = None,
                      drop_all_capabilities: bool = False, add_capabilities: list[str] | None = None,
                      readonly_rootfs: bool = False, host_network: bool = False) -> str:
        """CreateContainer + StartContainer in pod `pod_id` (run by `run_pod(pod_name, ...)`), as the kubelet
        does for a container of a pod spec; returns the container id. `mounts` are hostPath volumes."""
        pb = self.pb
        security = pb.LinuxContainerSecurityContext(
            capabilities=pb.Capability(drop_capabilities=["ALL"] if drop_all_capabilities else [],
                                       add_capabilities=add_capabilities or []),
            readonly_rootfs=readonly_rootfs,
            namespace_options=pb.NamespaceOption(network=pb.NODE if host_network else pb.POD))
        config = pb.ContainerConfig(
            metadata=pb.ContainerMetadata(name=name, attempt=0), image=pb.ImageSpec(image=image), command=command,
            envs=[pb.KeyValue(key=k, value=v) for k, v in (env or {}).items()],
            mounts=[pb.Mount(container_path=m.container_path, host_path=str(m.host_path), readonly=m.readonly)
                    for m in mounts or []],
            log_path=f"{name}.log", linux=pb.LinuxContainerConfig(security_context=security))
        created = self.runtime.CreateContainer(pb.CreateContainerRequest(
            pod_sandbox_id=pod_id, config=config, sandbox_config=self._configs[pod_name]), timeout=self.timeout)
        self.runtime.StartContainer(pb.StartContainerRequest(container_id=created.container_id), timeout=self.timeout)
        return created.container_id

    def container_status(self, container_id: str) -> Any:
        """ContainerStatus's `status`: `state` (pb.CONTAINER_RUNNING / CONTAINER_EXITED), `exit_code`..."""
        req = self.pb.ContainerStatusRequest(container_id=container_id)
        return self.runtime.ContainerStatus(req, timeout=self.timeout).status

    def wait_exited(self, container_id: str, timeout: float = 60) -> int:
        """Poll until the container exited; returns its exit code."""
        deadline = time.monotonic() + timeout
        while True:  # readiness poll, not a timed assertion
            status = self.container_status(container_id)
            if status.state == self.pb.CONTAINER_EXITED:
                return int(status.exit_code)
            if time.monotonic() > deadline:
                raise TimeoutError(f"container {container_id[:12]} still {status.state} after {timeout}s")
            time.sleep(0.1)

    def stop_container(self, container_id: str, grace: int = 10) -> None:
        """StopContainer: SIGTERM, then SIGKILL after `grace` seconds (the pod's terminationGracePeriod)."""
        self.runtime.StopContainer(self.pb.StopContainerRequest(container_id=container_id, timeout=grace),
                                   timeout=self.timeout + grace)

    def pod_status(self, pod_id: str) -> Any:
        """PodSandboxStatus response's `status` (state, network.ip, network.additional_ips...)."""
        req = self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        return self.runtime.PodSandboxStatus(req, timeout=self.timeout).status

    def pod_pid(self, pod_id: str) -> int:
        """PID of the sandbox process, from the verbose status info.

        The pod's netns is pinned under containerd's state dir, inside its
        private mount namespace, so tests reach it through /proc/<pid>/ns/net
        (e.g. `NetnsPool.attach("pod", pid)`).
        """
        return int(json.loads(self.pod_status_info(pod_id)["info"])["pid"])

    def pod_status_info(self, pod_id: str) -> dict[str, str]:
        """The verbose `info` map of PodSandboxStatus (JSON strings keyed by topic)."""
        req = self.pb.PodSandboxStatusRequest(pod_sandbox_id=pod_id, verbose=True)
        return dict(self.runtime.PodSandboxStatus(req, timeout=self.timeout).info)

    def pod_ip(self, pod_id: str) -> str:
        """The pod's primary IP as the runtime recorded it from the CNI result."""
        return self.pod_status(pod_id).network.ip

    def stop_pod(self, pod_id: str) -> None:
        """StopPodSandbox: kills the sandbox and runs CNI DEL."""
        self.runtime.StopPodSandbox(self.pb.StopPodSandboxRequest(pod_sandbox_id=pod_id), timeout=self.timeout)

    def remove_pod(self, pod_id: str) -> None:
        """RemovePodSandbox: deletes the stopped sandbox's files (no CNI call)."""
        self.runtime.RemovePodSandbox(self.pb.RemovePodSandboxRequest(pod_sandbox_id=pod_id), timeout=self.timeout)

    def list_pods(self) -> list[Any]:
        """All sandboxes this runtime knows (for teardown)."""
        return list(self.runtime.ListPodSandbox(self.pb.ListPodSandboxRequest(), timeout=self.timeout).items)
