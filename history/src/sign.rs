//! Signing entries and proofs (feature `sign`).
//!
//! ECDSA P-256 with RFC 6979 deterministic nonces (no RNG needed, so this
//! builds for `wasm32-unknown-unknown`), `s` always normalised to low-S.

use core::fmt;

use der::{Decode, DecodePem, Encode};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::DecodePrivateKey;
use serde_json::{json, Map, Value};
use x509_cert::Certificate;

use crate::codec::{b64url, b64url_decode, sha256};
use crate::jws::{ALG, ENTRY_TYP, PROOF_TYP, X5T};
use crate::spiffe::SpiffeId;
use crate::x509::{parse_cert, PublicKey};

/// Why signing failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SignError {
    /// The key is not a PKCS#8 ECDSA P-256 private key.
    Key,
    /// The certificate is not DER/PEM, its first URI SAN is not a SPIFFE ID, or
    /// does not hold the key's public key.
    Cert(&'static str),
    /// The existing history cannot be read.
    Chain(&'static str),
    /// The signer is not the holder the last entry named (`nxt`).
    NotNextHolder,
    /// The entry's `wid` differs from the chain's.
    WorkflowMismatch,
    /// A `jti` of fewer than 16 bytes.
    ShortJti,
    /// `claims` is not a JSON object.
    ClaimsNotObject,
}

impl fmt::Display for SignError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SignError::Key => f.write_str("the key is not a PKCS#8 ECDSA P-256 private key"),
            SignError::Cert(w) => write!(f, "bad signer certificate: {w}"),
            SignError::Chain(w) => write!(f, "cannot read the existing history: {w}"),
            SignError::NotNextHolder => {
                f.write_str("the signer is not the holder the last entry named")
            }
            SignError::WorkflowMismatch => f.write_str("the wid differs from the chain's"),
            SignError::ShortJti => f.write_str("a jti needs at least 16 random bytes"),
            SignError::ClaimsNotObject => f.write_str("claims must be a JSON object"),
        }
    }
}

impl std::error::Error for SignError {}

/// An X.509-SVID key and certificate that signs entries and proofs.
#[derive(Clone)]
pub struct Signer {
    key: SigningKey,
    cert_der: Vec<u8>,
    x5t: String,
    id: SpiffeId,
}

impl fmt::Debug for Signer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signer({})", self.id)
    }
}

impl Signer {
    /// From a PKCS#8 DER P-256 key and the leaf certificate's DER.
    pub fn from_pkcs8_der(key_der: &[u8], cert_der: &[u8]) -> Result<Signer, SignError> {
        let key = SigningKey::from_pkcs8_der(key_der).map_err(|_| SignError::Key)?;
        Signer::new(key, cert_der)
    }

    /// From a PKCS#8 PEM P-256 key and the leaf certificate's PEM.
    pub fn from_pkcs8_pem(key_pem: &str, cert_pem: &str) -> Result<Signer, SignError> {
        let key = SigningKey::from_pkcs8_pem(key_pem).map_err(|_| SignError::Key)?;
        let cert =
            Certificate::from_pem(cert_pem.as_bytes()).map_err(|_| SignError::Cert("not PEM"))?;
        let der = cert
            .to_der()
            .map_err(|_| SignError::Cert("cannot encode"))?;
        Signer::new(key, &der)
    }

    fn new(key: SigningKey, cert_der: &[u8]) -> Result<Signer, SignError> {
        Certificate::from_der(cert_der).map_err(|_| SignError::Cert("not DER"))?;
        let c = parse_cert(cert_der).map_err(SignError::Cert)?;
        // The first URI SAN; validating the certificate is the verifier's job
        // (tests sign with deliberately bad certificates).
        let Some(uri) = c.uri_sans.first() else {
            return Err(SignError::Cert("no URI SAN"));
        };
        let id = SpiffeId::parse(uri).map_err(|_| SignError::Cert("URI SAN is not a SPIFFE ID"))?;
        let PublicKey::P256(sec1) = &c.key else {
            return Err(SignError::Cert("the certificate key is not P-256"));
        };
        let ours = key.verifying_key().to_encoded_point(false);
        let theirs = p256::PublicKey::from_sec1_bytes(sec1)
            .map_err(|_| SignError::Cert("bad P-256 point"))?;
        if ours.as_bytes() != theirs.to_sec1_bytes().as_ref() {
            return Err(SignError::Cert("the certificate does not hold the key"));
        }
        Ok(Signer {
            key,
            x5t: b64url(&sha256(cert_der)),
            cert_der: cert_der.to_vec(),
            id,
        })
    }

    /// The SPIFFE ID of the certificate (the `iss` this signer writes).
    pub fn spiffe_id(&self) -> &SpiffeId {
        &self.id
    }

    /// The certificate's DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// `b64url(SHA-256(certificate DER))`, the JWS `x5t#S256`.
    pub fn x5t(&self) -> &str {
        &self.x5t
    }

    /// Signs arbitrary header and payload JSON texts as a compact JWS
    /// (low-S). For tests and tools that need exact control; prefer
    /// [`append_entry`] and [`make_proof`].
    pub fn sign_raw(&self, header_json: &str, payload_json: &str) -> String {
        let input = format!(
            "{}.{}",
            b64url(header_json.as_bytes()),
            b64url(payload_json.as_bytes())
        );
        let sig = self.sign_bytes(input.as_bytes());
        format!("{input}.{}", b64url(&sig))
    }

    /// ES256 over `message`: 64 bytes `r || s`, `s` normalised to low-S.
    pub fn sign_bytes(&self, message: &[u8]) -> [u8; 64] {
        let sig: Signature = self.key.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        sig.to_bytes().into()
    }

    /// The protected header this signer writes for `typ`.
    pub fn header_json(&self, typ: &str) -> String {
        json!({"alg": ALG, "typ": typ, X5T: self.x5t}).to_string()
    }
}

/// Fields of a new entry (`v`, `seq`, `prev` and `iss` are computed).
#[derive(Clone, Debug)]
pub struct EntryFields<'a> {
    pub wid: &'a str,
    pub step: &'a str,
    pub result: &'a str,
    /// SPIFFE ID of the next holder.
    pub nxt: &'a str,
    pub iat: u64,
    pub exp: u64,
    /// Optional JSON object.
    pub claims: Option<&'a Value>,
}

/// Reads the payload of a compact JWS without verifying it.
fn peek_payload(compact: &str) -> Result<Map<String, Value>, SignError> {
    let p = compact
        .split('.')
        .nth(1)
        .ok_or(SignError::Chain("not a JWS"))?;
    let bytes = b64url_decode(p).ok_or(SignError::Chain("payload is not base64url"))?;
    match serde_json::from_slice(&bytes) {
        Ok(Value::Object(m)) => Ok(m),
        _ => Err(SignError::Chain("payload is not a JSON object")),
    }
}

/// Signs a new entry and appends it to `history` (the `workflow-history`
/// header value; `None` to start a chain). Returns the new header value.
/// `seq` and `prev` follow the last entry; the signer must be its `nxt`.
pub fn append_entry(
    history: Option<&str>,
    signer: &Signer,
    fields: &EntryFields<'_>,
) -> Result<String, SignError> {
    let (seq, prev) = match history {
        None => (0u64, Value::Null),
        Some(h) => {
            let last = h.rsplit('~').next().unwrap_or(h);
            let p = peek_payload(last)?;
            let seq = p
                .get("seq")
                .and_then(Value::as_u64)
                .ok_or(SignError::Chain("no seq"))?;
            if p.get("wid").and_then(Value::as_str) != Some(fields.wid) {
                return Err(SignError::WorkflowMismatch);
            }
            if p.get("nxt").and_then(Value::as_str) != Some(signer.id.as_str()) {
                return Err(SignError::NotNextHolder);
            }
            (seq + 1, Value::String(b64url(&sha256(last.as_bytes()))))
        }
    };
    let mut payload = json!({
        "v": 1, "wid": fields.wid, "seq": seq, "prev": prev,
        "iss": signer.id.as_str(), "nxt": fields.nxt,
        "step": fields.step, "result": fields.result,
        "iat": fields.iat, "exp": fields.exp,
    });
    if let Some(c) = fields.claims {
        if !c.is_object() {
            return Err(SignError::ClaimsNotObject);
        }
        if let Value::Object(m) = &mut payload {
            m.insert("claims".into(), c.clone());
        }
    }
    let entry = signer.sign_raw(&signer.header_json(ENTRY_TYP), &payload.to_string());
    Ok(match history {
        None => entry,
        Some(h) => format!("{h}~{entry}"),
    })
}

/// Fields of a proof (`iss`, `wid`, `head`, `len`, `bdy` are computed).
#[derive(Clone, Debug)]
pub struct ProofFields<'a> {
    /// The tool server's audience.
    pub aud: &'a str,
    pub iat: u64,
    /// At most `iat + 60`.
    pub exp: u64,
    /// At least 16 random bytes, fresh for every request.
    pub jti: &'a [u8],
}

/// Signs the proof binding `history` to one request `body`.
pub fn make_proof(
    history: &str,
    signer: &Signer,
    body: &[u8],
    fields: &ProofFields<'_>,
) -> Result<String, SignError> {
    if fields.jti.len() < 16 {
        return Err(SignError::ShortJti);
    }
    let last = history.rsplit('~').next().unwrap_or(history);
    let wid = peek_payload(last)?
        .get("wid")
        .and_then(Value::as_str)
        .ok_or(SignError::Chain("no wid"))?
        .to_owned();
    let payload = json!({
        "v": 1, "iss": signer.id.as_str(), "aud": fields.aud, "wid": wid,
        "head": b64url(&sha256(last.as_bytes())),
        "len": history.split('~').count(),
        "bdy": b64url(&sha256(body)),
        "iat": fields.iat, "exp": fields.exp, "jti": b64url(fields.jti),
    });
    Ok(signer.sign_raw(&signer.header_json(PROOF_TYP), &payload.to_string()))
}

/// The `workflow-history-certs` header value for these DER certificates.
pub fn certs_header<'c>(ders: impl IntoIterator<Item = &'c [u8]>) -> String {
    ders.into_iter().map(b64url).collect::<Vec<_>>().join("~")
}
