//! Trust bundle: X.509 authorities per trust domain, from PEM or from a
//! SPIFFE bundle (JWKS with `use: "x509-svid"` keys carrying `x5c`).

use std::collections::BTreeMap;

use base64::Engine;
use der::Encode;
use serde_json::Value;
use x509_cert::Certificate;

use crate::codec::{parse_strict, sha256, JsonError};
use crate::error::Refusal;
use crate::spiffe::check_trust_domain;
use crate::svid::{check_signing, SigningRule};
use crate::x509::{parse_cert, ParsedCert, PublicKey};

#[derive(Clone, Debug, Default)]
struct Domain {
    authorities: Vec<ParsedCert>,
    sequence: Option<u64>,
}

/// X.509 authorities per trust domain. Build it once at configuration time.
#[derive(Clone, Debug, Default)]
pub struct TrustBundle {
    domains: BTreeMap<String, Domain>,
    fingerprint: [u8; 32],
}

fn malformed(what: &'static str) -> Refusal {
    Refusal::BundleMalformed { what }
}

/// An authority: strict DER, a key this verifier can use, and a signing
/// certificate by the X.509-SVID rules (a missing keyUsage is tolerated for
/// a trust anchor). Its pathLenConstraint is honoured when paths are built.
fn authority(der: &[u8]) -> Result<ParsedCert, Refusal> {
    let c = parse_cert(der).map_err(malformed)?;
    if matches!(c.key, PublicKey::Unsupported) {
        return Err(malformed(
            "an authority key is neither ECDSA P-256 (uncompressed) nor RSA 2048-4096 bits with e = 65537",
        ));
    }
    check_signing(&c, true).map_err(|rule| {
        malformed(match rule {
            SigningRule::CriticalExtension => {
                "an authority has a critical extension it cannot process (RFC 5280 §4.2)"
            }
            SigningRule::NameConstraints => {
                "an authority has nameConstraints, which are not processed (X509-SVID §4.2)"
            }
            SigningRule::NotCa => {
                "an authority is not a CA (basicConstraints cA true, X509-SVID §4.1)"
            }
            SigningRule::NoKeyCertSign => {
                "an authority's keyUsage lacks keyCertSign (X509-SVID §4.3)"
            }
            SigningRule::SpiffeIdWithPath => "an authority's SPIFFE ID has a path (X509-SVID §3.2)",
        })
    })?;
    Ok(c)
}

impl TrustBundle {
    /// An empty bundle (trusts nothing).
    pub fn new() -> TrustBundle {
        TrustBundle::default()
    }

    /// Adds the authorities in `pem` (one or more `CERTIFICATE` blocks) to
    /// `trust_domain` (a bare name like `example.org`). Returns how many.
    pub fn add_pem(&mut self, trust_domain: &str, pem: &str) -> Result<usize, Refusal> {
        check_trust_domain(trust_domain).map_err(|_| Refusal::BundleTrustDomain)?;
        let certs = Certificate::load_pem_chain(pem.as_bytes())
            .map_err(|_| malformed("not PEM certificates"))?;
        if certs.is_empty() {
            return Err(malformed("no certificate"));
        }
        let mut parsed = Vec::with_capacity(certs.len());
        for c in certs {
            let der = c
                .to_der()
                .map_err(|_| malformed("cannot encode certificate"))?;
            parsed.push(authority(&der)?);
        }
        let n = parsed.len();
        self.domains
            .entry(trust_domain.to_owned())
            .or_default()
            .authorities
            .extend(parsed);
        self.refresh_fingerprint();
        Ok(n)
    }

    /// Adds one DER authority to `trust_domain`.
    pub fn add_der(&mut self, trust_domain: &str, der: &[u8]) -> Result<(), Refusal> {
        check_trust_domain(trust_domain).map_err(|_| Refusal::BundleTrustDomain)?;
        let c = authority(der)?;
        self.domains
            .entry(trust_domain.to_owned())
            .or_default()
            .authorities
            .push(c);
        self.refresh_fingerprint();
        Ok(())
    }

    /// Replaces `trust_domain`'s authorities with the `x509-svid` keys of a
    /// SPIFFE bundle (JSON). Refused with `bundle_sequence` when its
    /// `spiffe_sequence` is lower than the one loaded for that domain.
    /// Keys with another `use` (e.g. `jwt-svid`) are ignored. Returns how
    /// many authorities were loaded.
    pub fn load_spiffe_bundle(&mut self, trust_domain: &str, json: &str) -> Result<usize, Refusal> {
        check_trust_domain(trust_domain).map_err(|_| Refusal::BundleTrustDomain)?;
        let doc = parse_strict(json.as_bytes()).map_err(|e| match e {
            JsonError::Malformed | JsonError::TooDeep => malformed("not JSON"),
            JsonError::DuplicateKey(_) => malformed("a JSON object has a member twice"),
        })?;
        let obj = doc.as_object().ok_or(malformed("not a JSON object"))?;
        let sequence = match obj.get("spiffe_sequence") {
            None => None,
            Some(v) => Some(
                v.as_u64()
                    .ok_or(malformed("spiffe_sequence is not an integer"))?,
            ),
        };
        let keys = obj
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(malformed("keys is not an array"))?;
        let mut parsed = Vec::new();
        for key in keys {
            let key = key.as_object().ok_or(malformed("a key is not an object"))?;
            if key.get("use").and_then(Value::as_str) != Some("x509-svid") {
                continue;
            }
            // X509-SVID §6.2: an entry without x5c, or with an empty one, MUST
            // be ignored; the first value is the authority and the others
            // MUST be ignored.
            let Some(first) = key
                .get("x5c")
                .and_then(Value::as_array)
                .and_then(|a| a.first())
            else {
                continue;
            };
            let b64 = first
                .as_str()
                .ok_or(malformed("an x5c value is not a string"))?;
            // x5c is standard base64 with padding (RFC 7517 4.7).
            let der = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|_| malformed("x5c entry is not base64"))?;
            parsed.push(authority(&der)?);
        }
        if parsed.is_empty() {
            return Err(malformed("no x509-svid authority"));
        }
        if let (Some(loaded), Some(offered)) = (self.sequence(trust_domain), sequence) {
            if offered < loaded {
                return Err(Refusal::BundleSequence { loaded, offered });
            }
        }
        let n = parsed.len();
        let d = self.domains.entry(trust_domain.to_owned()).or_default();
        d.authorities = parsed;
        d.sequence = sequence.or(d.sequence);
        self.refresh_fingerprint();
        Ok(n)
    }

    /// The trust domains that have authorities.
    pub fn trust_domains(&self) -> impl Iterator<Item = &str> {
        self.domains.keys().map(String::as_str)
    }

    /// The `spiffe_sequence` last loaded for `trust_domain`, if any.
    pub fn sequence(&self, trust_domain: &str) -> Option<u64> {
        self.domains.get(trust_domain).and_then(|d| d.sequence)
    }

    /// A SHA-256 over the trust domains and their authorities' certificates:
    /// cache entries remember it, so a changed bundle invalidates them.
    pub fn fingerprint(&self) -> [u8; 32] {
        self.fingerprint
    }

    /// `trust_domain`'s authorities, in bundle order (`None` when it has none).
    pub fn authorities(&self, trust_domain: &str) -> Option<&[ParsedCert]> {
        self.domains
            .get(trust_domain)
            .map(|d| d.authorities.as_slice())
            .filter(|a| !a.is_empty())
    }

    fn refresh_fingerprint(&mut self) {
        let mut buf = Vec::new();
        for (td, d) in &self.domains {
            buf.extend_from_slice(&(td.len() as u64).to_be_bytes());
            buf.extend_from_slice(td.as_bytes());
            buf.extend_from_slice(&(d.authorities.len() as u64).to_be_bytes());
            for a in &d.authorities {
                buf.extend_from_slice(&a.hash);
            }
        }
        self.fingerprint = sha256(&buf);
    }
}
