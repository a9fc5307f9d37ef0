"""A SPIFFE bundle endpoint on loopback: HTTPS with its own certificate,
answering `GET /bundle` with whatever the test sets while it runs (a bundle,
another HTTP status, garbage, or an answer slower than Envoy's timeout), and
the Envoy cluster that reaches it (the shipped one of
envoy/bundle-endpoint/envoy.yaml, aimed at this server)."""

from __future__ import annotations

import json
import ssl
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import yaml

from custody_testkit.envoy import REPO

SHIPPED = REPO / "envoy" / "bundle-endpoint" / "envoy.yaml"
PATH = "/bundle"


def spiffe_bundle(sequence: int, *cas: Path, **members) -> dict:
    """One SPIFFE bundle with the keys of each `custody ca init` directory's
    bundle.spiffe.json, at `sequence` (None: no spiffe_sequence)."""
    keys = [k for ca in cas for k in json.loads((ca / "bundle.spiffe.json").read_text())["keys"]]
    bundle = {"keys": keys, **members}
    if sequence is not None:
        bundle["spiffe_sequence"] = sequence
    return bundle


class BundleEndpoint:
    """Use as a context manager; `serve`, `fail`, `garbage`, `stall` change the answer.
    It answers at `path` (SPIRE's endpoint answers at `/`) and 404 elsewhere."""

    def __init__(self, cert: Path, key: Path, path: str = PATH):
        self.lock = threading.Lock()
        self.path = path
        self.answer: tuple[int, bytes, float] = (503, b"not yet", 0.0)
        self.requests = 0
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 (http.server's name)
                with endpoint.lock:
                    endpoint.requests += 1
                    status, body, delay = endpoint.answer
                if delay:
                    time.sleep(delay)
                if self.path != endpoint.path:
                    status, body = 404, b"no such path"
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(cert), str(key))
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _set(self, status: int, body: bytes, delay: float = 0.0) -> None:
        with self.lock:
            self.answer = (status, body, delay)

    def serve(self, bundle: dict) -> None:
        self._set(200, json.dumps(bundle).encode())

    def fail(self, status: int = 500) -> None:
        self._set(status, b'{"error": "unavailable"}')

    def garbage(self) -> None:
        self._set(200, b"<html>upstream error</html>")

    def stall(self, bundle: dict, seconds: float) -> None:
        """A good bundle, sent only after `seconds` (past Envoy's timeout)."""
        self._set(200, json.dumps(bundle).encode(), seconds)

    def envoy_cluster(self, trusted_ca: Path) -> dict:
        """The shipped `spire_bundle` cluster, aimed at this server: its
        certificate is checked against `trusted_ca` and must carry the
        shipped SPIFFE ID (https_spiffe)."""
        boot = yaml.safe_load(SHIPPED.read_text())
        cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "spire_bundle")
        cluster["type"] = "STATIC"
        cluster.pop("dns_lookup_family", None)
        address = cluster["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
        address["socket_address"] = {"address": "127.0.0.1", "port_value": self.port}
        tls = cluster["transport_socket"]["typed_config"]
        tls["sni"] = "localhost"
        tls["common_tls_context"]["validation_context"]["trusted_ca"] = {"filename": str(trusted_ca)}
        return cluster

    @staticmethod
    def spiffe_id() -> str:
        """The SPIFFE ID the shipped cluster requires of the endpoint."""
        boot = yaml.safe_load(SHIPPED.read_text())
        cluster = next(c for c in boot["static_resources"]["clusters"] if c["name"] == "spire_bundle")
        validation = cluster["transport_socket"]["typed_config"]["common_tls_context"]["validation_context"]
        return validation["match_typed_subject_alt_names"][0]["matcher"]["exact"]

    def __enter__(self) -> "BundleEndpoint":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(10)
