"""Custody client: signed workflow history (docs/history-format.md) for MCP
calls through the Custody Envoy filter.

    svid = Svid.from_files("svid.pem", "svid.key")
    h = History().append(svid, step="fraud_check_passed", next="spiffe://example.org/ns/payments/sa/approvals")
    headers = prove(h, svid, audience="spiffe://example.org/ns/payments/sa/refund-tool", body=b"...")
"""

from custody_client._codec import EncodingError, b64u, b64u_decode, canonical_json, is_spiffe_id, sha256_b64u
from custody_client.call import CALL_CLAIM, CallError, args_sha256, call_claim
from custody_client.history import (
    CERTS_HEADER,
    HISTORY_HEADER,
    PROOF_HEADER,
    Entry,
    History,
    HistoryError,
    Jws,
    NotHolderError,
    VerificationError,
    check_proof,
    parse_proof,
    prove,
    sign_jws,
    verify_signature,
)
from custody_client.http import client, signing_hook, ssl_context
from custody_client.svid import Svid, SvidError

__version__ = "0.1.0"

__all__ = [
    "CALL_CLAIM",
    "CERTS_HEADER",
    "CallError",
    "HISTORY_HEADER",
    "PROOF_HEADER",
    "EncodingError",
    "Entry",
    "History",
    "HistoryError",
    "Jws",
    "NotHolderError",
    "Svid",
    "SvidError",
    "VerificationError",
    "args_sha256",
    "b64u",
    "b64u_decode",
    "call_claim",
    "canonical_json",
    "check_proof",
    "client",
    "is_spiffe_id",
    "parse_proof",
    "prove",
    "sha256_b64u",
    "sign_jws",
    "signing_hook",
    "ssl_context",
    "verify_signature",
]
