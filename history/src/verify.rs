//! The verifier: every check of the v1 wire format, in a fixed order.

use serde_json::Value;
use std::sync::Arc;

use crate::bundle::TrustBundle;
use crate::cache::{CachedCert, CachedEntry, VerifyCache};
use crate::codec::{b64url_decode, sha256};
use crate::ecdsa::{EcdsaP256Verifier, P256Verifier};
use crate::error::{Header, Part, Refusal};
use crate::jws::{entry_payload, parse_jws, proof_payload, EntryPayload, ENTRY_TYP, PROOF_TYP};
use crate::path::{check_path_times, PathSearch, ValidatedSigner};
use crate::spiffe::SpiffeId;
use crate::svid::leaf_spiffe_id;
use crate::x509::{parse_cert, ParsedCert, PublicKey};

/// Caps and time rules. Over a cap is refused, never truncated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Most entries in `workflow-history` (default 32).
    pub max_entries: usize,
    /// Most bytes in each of the three headers (default 48 KiB).
    pub max_header_bytes: usize,
    /// Most bytes of an entry's `claims`, re-serialized compactly (default 2 KiB).
    pub max_claims_bytes: usize,
    /// Most certificates from the leaf up to (not counting) the authority,
    /// i.e. leaf + intermediates (default 4).
    pub max_chain_depth: usize,
    /// Most certificates in `workflow-history-certs`, duplicates included
    /// (default 32). A request may verify at most twice as many certificate
    /// signatures while building paths ([`Limits::path_signature_budget`]).
    pub max_certs: usize,
    /// Clock skew tolerated on every time check, in seconds (default 30).
    pub skew_secs: u64,
    /// Longest proof lifetime `exp - iat`, in seconds (default 60).
    pub max_proof_lifetime_secs: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_entries: 32,
            max_header_bytes: 48 * 1024,
            max_claims_bytes: 2 * 1024,
            max_chain_depth: 4,
            max_certs: 32,
            skew_secs: 30,
            max_proof_lifetime_secs: 60,
        }
    }
}

impl Limits {
    /// Most certificate signatures one request may verify while building
    /// signer paths: `2 × max_certs` (a path step per certificate, and one
    /// failed try per certificate for authorities or issuers that share a
    /// name, as during a CA rotation).
    pub fn path_signature_budget(&self) -> usize {
        self.max_certs.saturating_mul(2)
    }
}

/// The three request headers, each as given once. The host must refuse a
/// header that appears more than once with [`Refusal::HeaderRepeated`]
/// (`header_repeated`) before calling the verifier: joining or picking one
/// of the repeats would change what was signed.
#[derive(Clone, Copy, Debug, Default)]
pub struct Headers<'a> {
    /// `workflow-history`
    pub history: Option<&'a str>,
    /// `workflow-history-proof`
    pub proof: Option<&'a str>,
    /// `workflow-history-certs`
    pub certs: Option<&'a str>,
}

/// What one request presents for verification: its history headers, the
/// caller, the audience it must name, its body and the time.
#[derive(Clone, Copy, Debug)]
pub struct Presented<'a> {
    pub headers: Headers<'a>,
    /// The SPIFFE ID of the mTLS peer (from the verified client certificate).
    pub peer: &'a SpiffeId,
    /// This tool server's audience (its SPIFFE ID), from configuration.
    pub audience: &'a str,
    /// The raw request body bytes, exactly as received.
    pub body: &'a [u8],
    /// Unix time, seconds.
    pub now: u64,
}

/// One verified entry.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedEntry {
    pub seq: u64,
    pub step: String,
    pub result: String,
    pub iss: SpiffeId,
    pub nxt: SpiffeId,
    pub iat: u64,
    pub exp: u64,
    /// Always a JSON object (empty when the entry had no claims).
    pub claims: Value,
    /// SHA-256 of the entry's compact JWS (ASCII bytes).
    pub hash: [u8; 32],
    /// The earliest `notAfter` on its signer's certificate path: after it
    /// (plus skew) the entry can no longer be accepted, whatever its `exp`.
    pub signer_not_after: u64,
}

/// The verified proof. The caller checks `jti` for replay (shared memory in
/// the filter, [`crate::ReplayCache`] natively) and keeps it until `exp` + skew.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedProof {
    pub jti: String,
    pub iat: u64,
    pub exp: u64,
    pub iss: SpiffeId,
}

/// A history that passed every check.
#[derive(Clone, Debug, PartialEq)]
pub struct VerifiedHistory {
    pub wid: String,
    pub entries: Vec<VerifiedEntry>,
    pub proof: VerifiedProof,
}

/// Verifies signed histories against a trust bundle.
#[derive(Clone, Copy)]
pub struct Verifier<'a> {
    bundle: &'a TrustBundle,
    limits: &'a Limits,
    ecdsa: &'a dyn EcdsaP256Verifier,
}

/// Certificates of one request, decoded, and the path search over them
/// (created on the first signer that is not cached).
struct Certs<'v> {
    parsed: Vec<Arc<ParsedCert>>,
    search: Option<PathSearch<'v>>,
}

impl Certs<'_> {
    fn index_of(&self, hash: &[u8; 32]) -> Option<usize> {
        self.parsed.iter().position(|c| &c.hash == hash)
    }
    fn has(&self, hash: &[u8; 32]) -> bool {
        self.index_of(hash).is_some()
    }
}

impl<'a> Verifier<'a> {
    /// A verifier using the pure-Rust `p256` ECDSA implementation.
    pub fn new(bundle: &'a TrustBundle, limits: &'a Limits) -> Verifier<'a> {
        Verifier {
            bundle,
            limits,
            ecdsa: &P256Verifier,
        }
    }

    /// Uses another ECDSA P-256 implementation (e.g. the host's BoringSSL).
    pub fn with_ecdsa(self, ecdsa: &'a dyn EcdsaP256Verifier) -> Verifier<'a> {
        Verifier { ecdsa, ..self }
    }

    /// Verifies a request's history, proof and certificates. See
    /// `docs/history-format.md` for the checks and their order.
    pub fn verify(
        &self,
        req: &Presented<'_>,
        mut cache: Option<&mut VerifyCache>,
    ) -> Result<VerifiedHistory, Refusal> {
        let lim = self.limits;
        let h = req.headers;
        // 1. Caps on the raw headers, before any parsing.
        for (header, value) in [
            (Header::History, h.history),
            (Header::Proof, h.proof),
            (Header::Certs, h.certs),
        ] {
            if let Some(v) = value {
                if v.len() > lim.max_header_bytes {
                    return Err(Refusal::HeaderTooLarge {
                        header,
                        len: v.len(),
                        max: lim.max_header_bytes,
                    });
                }
            }
        }
        // 2. Presence.
        let history = h.history.ok_or(Refusal::HistoryMissing)?;
        let proof = h.proof.ok_or(Refusal::ProofMissing)?;
        let certs_header = h.certs.ok_or(Refusal::CertsMissing)?;

        // 3. Entry count.
        let raw_entries: Vec<&str> = history.split('~').collect();
        if raw_entries.len() > lim.max_entries {
            return Err(Refusal::HistoryTooLarge {
                len: raw_entries.len(),
                max: lim.max_entries,
            });
        }

        // 4. Certificates: at most max_certs, canonical base64url, strict DER, each one.
        let count = certs_header.split('~').count();
        if count > lim.max_certs {
            return Err(Refusal::CertsTooMany {
                len: count,
                max: lim.max_certs,
            });
        }
        let mut parsed = Vec::with_capacity(count);
        for (i, b64) in certs_header.split('~').enumerate() {
            let part = Part::Cert(i);
            if b64.is_empty() {
                return Err(Refusal::Malformed {
                    part,
                    what: "empty certificate",
                });
            }
            let known = cache.as_deref().and_then(|c| c.parsed_cert(b64));
            let cert = match known {
                Some(cert) => cert,
                None => {
                    let der = b64url_decode(b64).ok_or(Refusal::Base64Noncanonical { part })?;
                    let cert = Arc::new(
                        parse_cert(&der).map_err(|what| Refusal::Malformed { part, what })?,
                    );
                    if let Some(c) = cache.as_deref_mut() {
                        c.put_parsed_cert(b64, Arc::clone(&cert));
                    }
                    cert
                }
            };
            parsed.push(cert);
        }
        let mut certs = Certs {
            parsed,
            search: None,
        };

        // 5. Each entry: JWS, payload, signer certificate, signature.
        let mut entries: Vec<(EntryPayload, [u8; 32])> = Vec::with_capacity(raw_entries.len());
        let mut signers_not_after = Vec::with_capacity(raw_entries.len());
        for (i, raw) in raw_entries.iter().enumerate() {
            let part = Part::Entry(i);
            if raw.is_empty() {
                return Err(Refusal::Malformed {
                    part,
                    what: "empty entry",
                });
            }
            let cached = cache.as_deref_mut().and_then(|c| c.entry(raw));
            let (payload, hash, x5t, pending_sig) = match cached {
                Some(c) => (c.payload, c.hash, c.x5t, None),
                None => {
                    let jws = parse_jws(raw, ENTRY_TYP, part)?;
                    let payload = entry_payload(&jws.payload, part)?;
                    let hash = entry_hash(raw);
                    (payload, hash, jws.x5t, Some((jws.signing_input, jws.sig)))
                }
            };
            if payload.claims_len > lim.max_claims_bytes {
                return Err(Refusal::ClaimsTooLarge {
                    part,
                    len: payload.claims_len,
                    max: lim.max_claims_bytes,
                });
            }
            let signer = self.signer(&x5t, &mut certs, payload.iat, req.now, &mut cache, part)?;
            if payload.iss != signer.spiffe_id {
                return Err(Refusal::SignerMismatch { part });
            }
            if let Some((input, sig)) = pending_sig {
                if !self.ecdsa.verify(&signer.sec1, input.as_bytes(), &sig) {
                    return Err(Refusal::SignatureInvalid { part });
                }
                if let Some(c) = cache.as_deref_mut() {
                    c.put_entry(
                        raw,
                        CachedEntry {
                            payload: payload.clone(),
                            hash,
                            x5t,
                        },
                    );
                }
            }
            signers_not_after.push(signer.path.not_after());
            entries.push((payload, hash));
        }

        // 6. The proof: JWS, payload, signer certificate, signature.
        let part = Part::Proof;
        let jws = parse_jws(proof, PROOF_TYP, part)?;
        let p = proof_payload(&jws.payload)?;
        let signer = self.signer(&jws.x5t, &mut certs, p.iat, req.now, &mut cache, part)?;
        if p.iss != signer.spiffe_id {
            return Err(Refusal::SignerMismatch { part });
        }
        if !self
            .ecdsa
            .verify(&signer.sec1, jws.signing_input.as_bytes(), &jws.sig)
        {
            return Err(Refusal::SignatureInvalid { part });
        }

        // 7. The chain.
        let skew = lim.skew_secs;
        for (i, (e, _)) in entries.iter().enumerate() {
            let index = i;
            if e.seq != i as u64 {
                return Err(Refusal::ChainSeq { index });
            }
            match (i, e.prev) {
                (0, None) => {}
                (0, Some(_)) | (_, None) => return Err(Refusal::ChainPrev { index }),
                (_, Some(prev)) => {
                    if prev != entries[i - 1].1 {
                        return Err(Refusal::ChainPrev { index });
                    }
                }
            }
            if i > 0 {
                let before = &entries[i - 1].0;
                if e.wid != entries[0].0.wid {
                    return Err(Refusal::ChainWid { index });
                }
                if e.iss != before.nxt {
                    return Err(Refusal::ChainCustody { index });
                }
                if e.iat < before.iat {
                    return Err(Refusal::ChainOrder { index });
                }
            }
            if e.exp < e.iat {
                return Err(Refusal::EntryLifetime { index });
            }
            if e.iat > req.now.saturating_add(skew) {
                return Err(Refusal::EntryFuture { index });
            }
            if e.exp.saturating_add(skew) < req.now {
                return Err(Refusal::EntryExpired { index });
            }
        }

        // 8. The proof's bindings and freshness.
        let (last, last_hash) = entries
            .last()
            .map(|(e, h)| (e, *h))
            .ok_or(Refusal::Malformed {
                part: Part::Entry(0),
                what: "no entry",
            })?;
        if &p.iss != req.peer {
            return Err(Refusal::ProofSigner);
        }
        if req.peer != &last.nxt {
            return Err(Refusal::ProofHolder);
        }
        if p.aud != req.audience {
            return Err(Refusal::ProofAudience);
        }
        if p.wid != entries[0].0.wid {
            return Err(Refusal::ProofWid);
        }
        if p.len != entries.len() as u64 {
            return Err(Refusal::ProofLen);
        }
        if p.head != last_hash {
            return Err(Refusal::ProofHead);
        }
        if p.bdy != sha256(req.body) {
            return Err(Refusal::ProofBody);
        }
        if p.iat > req.now.saturating_add(skew) {
            return Err(Refusal::ProofNotYetValid);
        }
        if p.exp.saturating_add(skew) < req.now {
            return Err(Refusal::ProofExpired);
        }
        if p.exp < p.iat || p.exp - p.iat > lim.max_proof_lifetime_secs {
            return Err(Refusal::ProofLifetime);
        }

        let wid = entries[0].0.wid.clone();
        Ok(VerifiedHistory {
            wid,
            entries: entries
                .into_iter()
                .zip(signers_not_after)
                .map(|((e, hash), signer_not_after)| VerifiedEntry {
                    seq: e.seq,
                    step: e.step,
                    result: e.result,
                    iss: e.iss,
                    nxt: e.nxt,
                    iat: e.iat,
                    exp: e.exp,
                    claims: e.claims,
                    hash,
                    signer_not_after,
                })
                .collect(),
            proof: VerifiedProof {
                jti: p.jti,
                iat: p.iat,
                exp: p.exp,
                iss: p.iss,
            },
        })
    }

    /// The signer certificate named by `x5t`: present in this request,
    /// statically valid (cached or not), valid at now and at `iat`.
    fn signer(
        &self,
        x5t: &[u8; 32],
        certs: &mut Certs<'a>,
        iat: u64,
        now: u64,
        cache: &mut Option<&mut VerifyCache>,
        part: Part,
    ) -> Result<Arc<ValidatedSigner>, Refusal> {
        let index = certs.index_of(x5t).ok_or(Refusal::CertMissing { part })?;
        let fp = self.bundle.fingerprint();
        let cached = cache
            .as_deref_mut()
            .and_then(|c| c.cert(x5t, &fp))
            // The path's intermediates must have been sent with this request too.
            .filter(|s| s.path.intermediates().iter().all(|pc| certs.has(&pc.hash)));
        let signer = match cached {
            Some(s) => s,
            None => {
                let leaf = Arc::clone(&certs.parsed[index]);
                let s = Arc::new(self.validate_signer(&leaf, certs, part)?);
                if let Some(c) = cache.as_deref_mut() {
                    c.put_cert(
                        *x5t,
                        CachedCert {
                            bundle_fingerprint: fp,
                            signer: Arc::clone(&s),
                        },
                    );
                }
                s
            }
        };
        check_path_times(&signer.path, iat, now, self.limits.skew_secs, part)?;
        Ok(signer)
    }

    /// Everything about a signer certificate that does not depend on time:
    /// the leaf X.509-SVID rules, an ECDSA P-256 key, a trust bundle for its
    /// trust domain, and a path to one of that domain's authorities.
    fn validate_signer(
        &self,
        leaf: &ParsedCert,
        certs: &mut Certs<'a>,
        part: Part,
    ) -> Result<ValidatedSigner, Refusal> {
        let spiffe_id = leaf_spiffe_id(leaf).map_err(|rule| Refusal::CertLeaf { part, rule })?;
        let PublicKey::P256(sec1) = &leaf.key else {
            return Err(Refusal::CertKeyType { part });
        };
        let td = spiffe_id.trust_domain();
        if self.bundle.authorities(td).is_none() {
            return Err(Refusal::CertUnknownTrustDomain {
                part,
                trust_domain: td.to_owned(),
            });
        }
        let (parsed, ecdsa, lim) = (&certs.parsed, self.ecdsa, self.limits);
        let search = certs.search.get_or_insert_with(|| {
            PathSearch::new(
                parsed,
                ecdsa,
                lim.max_chain_depth,
                lim.path_signature_budget(),
            )
        });
        let path = search
            .find(leaf, td, self.bundle)
            .map_err(|failure| failure.refusal(part))?;
        Ok(ValidatedSigner {
            spiffe_id,
            sec1: sec1.clone(),
            path,
        })
    }
}

/// SHA-256 of an entry's compact JWS: what the next entry's `prev` and the
/// proof's `head` carry (base64url-encoded).
pub fn entry_hash(compact_jws: &str) -> [u8; 32] {
    sha256(compact_jws.as_bytes())
}
