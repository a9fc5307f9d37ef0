"""The `custody` command, driven from Python: a development CA, X.509-SVIDs,
signed workflow history and per-request proofs, exactly as a user would make
them from the shell."""

from __future__ import annotations

import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from custody_testkit.envoy import REPO

CUSTODY = REPO / "dist" / "custody"


def custody(*args: str | Path, stdin: bytes | None = None) -> str:
    result = subprocess.run(
        [str(CUSTODY), *map(str, args)], input=stdin, capture_output=True, timeout=60
    )
    if result.returncode != 0:
        raise RuntimeError(f"custody {' '.join(map(str, args))}: {result.stderr.decode()}")
    return result.stdout.decode()


@dataclass
class Workload:
    spiffe_id: str
    cert: Path
    key: Path


class DevTrustDomain:
    """`custody ca init` once, `custody ca issue` per workload."""

    def __init__(self, root: Path, trust_domain: str = "example.org", backdate: str = "1m"):
        self.root = root
        self.trust_domain = trust_domain
        self.backdate = backdate
        custody("ca", "init", "--trust-domain", trust_domain, "--out", root / "ca", "--backdate", backdate)
        self.bundle = root / "ca" / "bundle.pem"

    def issue(self, name: str, path: str, *extra: str) -> Workload:
        spiffe_id = f"spiffe://{self.trust_domain}{path}"
        out = self.root / name
        custody("ca", "issue", "--ca", self.root / "ca", "--id", spiffe_id, "--out", out, "--backdate", self.backdate, *extra)
        return Workload(spiffe_id, out / "svid.pem", out / "svid.key")


class History:
    """A workflow history file (`custody history append --out`)."""

    def __init__(self, path: Path):
        self.path = path

    def append(self, by: Workload, step: str, next_holder: Workload | str, *, result="approved", claims=None, ttl=None, wid=None, age=None, bind_call=None) -> "History":
        nxt = next_holder if isinstance(next_holder, str) else next_holder.spiffe_id
        args = ["history", "append", "--cert", by.cert, "--key", by.key, "--step", step, "--result", result, "--next", nxt]
        if claims is not None:
            args += ["--claims", json.dumps(claims)]
        if ttl is not None:
            args += ["--ttl", ttl]
        if wid is not None:
            args += ["--wid", wid]
        if age is not None:
            args += ["--age", age]
        if self.path.exists():
            args += ["--in", self.path]
        if bind_call is None:
            custody(*args, "--out", self.path)
            return self
        # `--bind-call -`: the call (a JSON-RPC request or {"name", "arguments"}) on stdin.
        custody(*args, "--bind-call", "-", "--out", self.path, stdin=json.dumps(bind_call).encode())
        return self

    def headers(self) -> dict:
        return json.loads(self.path.read_text())

    def prove(self, caller: Workload, audience: str, body: bytes) -> dict:
        """The three request headers for this body, with a fresh proof by `caller`."""
        with tempfile.NamedTemporaryFile() as f:
            f.write(body)
            f.flush()
            out = custody(
                "history", "prove", "--in", self.path, "--cert", caller.cert, "--key", caller.key,
                "--aud", audience, "--body", f.name, "--format", "json",
            )
        return json.loads(out)
