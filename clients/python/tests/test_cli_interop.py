"""Interoperability with the reference implementation, `dist/custody`:
histories built here verify there, and histories built there parse and
verify here (and can be extended here)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography import x509

from conftest import CUSTODY
from custody_client import History, Svid, check_proof, prove, sha256_b64u, verify_signature

pytestmark = pytest.mark.skipif(not CUSTODY.exists(), reason="dist/custody is not built (./build.sh)")

NS = "/ns/payments/sa/"
AUD = "spiffe://example.org/ns/payments/sa/refund-tool"
BODY = b'{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"refund","arguments":{"amount":12000}}}\n'


def custody(*args: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(CUSTODY), *map(str, args)], capture_output=True, text=True, timeout=60)


def ok(*args: object) -> str:
    r = custody(*args)
    assert r.returncode == 0, r.stderr
    return r.stdout


@dataclass
class W:
    spiffe_id: str
    cert: Path
    key: Path

    @property
    def svid(self) -> Svid:
        return Svid.from_files(self.cert, self.key)


@pytest.fixture(scope="module")
def td(tmp_path_factory: pytest.TempPathFactory) -> dict[str, W]:
    root = tmp_path_factory.mktemp("td")
    ok("ca", "init", "--trust-domain", "example.org", "--out", root / "ca", "--backdate", "10m")
    out: dict[str, W] = {}
    for name in ("fraud-agent", "approvals", "refund-agent"):
        sid = f"spiffe://example.org{NS}{name}"
        ok("ca", "issue", "--ca", root / "ca", "--id", sid, "--out", root / name, "--backdate", "10m")
        out[name] = W(sid, root / name / "svid.pem", root / name / "svid.key")
    return out


def verify(tmp: Path, headers: dict[str, str], bundle: Path, body: bytes = BODY, peer: str | None = None) -> subprocess.CompletedProcess[str]:
    hist = tmp / "history.json"
    hist.write_text(json.dumps({k: v for k, v in headers.items() if k != "workflow-history-proof"}))
    proof = tmp / "headers.txt"
    proof.write_text("".join(f"{k}: {v}\n" for k, v in headers.items()))
    (tmp / "body").write_bytes(body)
    return custody(
        "history", "verify", "--in", hist, "--bundle", bundle, "--proof-headers", proof, "--body", tmp / "body",
        "--peer", peer or f"spiffe://example.org{NS}refund-agent", "--aud", AUD,
    )


def python_history(td: dict[str, W]) -> History:
    h = History().append(
        td["fraud-agent"].svid, step="fraud_check_passed", next=td["approvals"].spiffe_id,
        claims={"amount": 12000, "currency": "USD", "note": "é \"q\" \n\u0001 ☃"},
    )
    return h.append(td["approvals"].svid, step="human_approval", next=td["refund-agent"].spiffe_id, ttl=1800)


def test_svid_from_custody_files(td: dict[str, W]) -> None:
    s = td["refund-agent"].svid
    assert s.spiffe_id == td["refund-agent"].spiffe_id
    # `custody ca issue` writes strict DER: cryptography reads every extension.
    san = s.leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.UniformResourceIdentifier) == [s.spiffe_id]
    assert len(s.x5t) == 43


def test_python_history_verifies_with_custody(td: dict[str, W], tmp_path: Path) -> None:
    bundle = td["fraud-agent"].cert.parent.parent / "ca" / "bundle.pem"
    h = python_history(td)
    headers = prove(h, td["refund-agent"].svid, audience=AUD, body=BODY)
    r = verify(tmp_path, headers, bundle)
    assert r.returncode == 0, r.stderr
    assert "2 entries" in r.stdout


def test_tampered_python_history_is_refused_by_custody(td: dict[str, W], tmp_path: Path) -> None:
    bundle = td["fraud-agent"].cert.parent.parent / "ca" / "bundle.pem"
    h = python_history(td)
    head, payload, sig = h.entries[1].split(".")
    sig = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
    forged = History((h.entries[0], f"{head}.{payload}.{sig}"), h.certs)
    headers = prove(forged, td["refund-agent"].svid, audience=AUD, body=BODY)
    r = verify(tmp_path, headers, bundle)
    assert r.returncode == 1
    assert r.stderr.startswith("custody: refused: signature_invalid"), r.stderr
    # A body other than the proven one.
    good = prove(python_history(td), td["refund-agent"].svid, audience=AUD, body=BODY)
    r = verify(tmp_path, good, bundle, body=BODY.rstrip(b"\n"))
    assert "proof_body" in r.stderr


def test_custody_history_parses_and_verifies_here(td: dict[str, W], tmp_path: Path) -> None:
    f, a, r = td["fraud-agent"], td["approvals"], td["refund-agent"]
    path = tmp_path / "h.json"
    ok("history", "append", "--cert", f.cert, "--key", f.key, "--step", "fraud_check_passed", "--result", "approved",
       "--next", a.spiffe_id, "--claims", '{"b":1,"a":[1,2,{"z":null}]}', "--out", path)
    ok("history", "append", "--in", path, "--cert", a.cert, "--key", a.key, "--step", "human_approval",
       "--result", "approved", "--next", r.spiffe_id, "--out", path)
    (tmp_path / "body").write_bytes(BODY)
    headers = json.loads(ok("history", "prove", "--in", path, "--cert", r.cert, "--key", r.key, "--aud", AUD,
                            "--body", tmp_path / "body", "--format", "json"))
    h = History.parse(headers)
    assert [e.step for e in h] == ["fraud_check_passed", "human_approval"]
    assert h.holder == r.spiffe_id and h[0].claims == {"a": [1, 2, {"z": None}], "b": 1}
    for e in h:
        cert = next(c for c in h.certs if sha256_b64u(c) == e.x5t)
        assert verify_signature(e.compact, cert)
    check_proof(headers)
    assert History.parse(json.loads(path.read_text())).entries == h.entries


def test_mixed_chain_python_extends_custody_and_back(td: dict[str, W], tmp_path: Path) -> None:
    f, a, r = td["fraud-agent"], td["approvals"], td["refund-agent"]
    bundle = f.cert.parent.parent / "ca" / "bundle.pem"
    path = tmp_path / "h.json"
    ok("history", "append", "--cert", f.cert, "--key", f.key, "--step", "fraud_check_passed", "--result", "approved",
       "--next", a.spiffe_id, "--out", path)
    h = History.parse(json.loads(path.read_text()))
    h = h.append(a.svid, step="human_approval", next=r.spiffe_id, claims={"amount": 5})
    path.write_text(json.dumps(h.headers()))
    # The CLI appends after a Python entry, and verifies the whole chain.
    ok("history", "append", "--in", path, "--cert", r.cert, "--key", r.key, "--step", "refund_issued",
       "--result", "done", "--next", r.spiffe_id, "--out", path)
    h = History.parse(json.loads(path.read_text()))
    assert len(h) == 3 and h[2].prev == h[1].sha256
    headers = prove(h, r.svid, audience=AUD, body=BODY)
    res = verify(tmp_path, headers, bundle)
    assert res.returncode == 0, res.stderr
    assert "3 entries" in res.stdout
