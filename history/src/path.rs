//! Path building: from a leaf X.509-SVID through the certificates a request
//! supplied to an authority of the leaf's own trust domain, with a cost
//! bounded by construction (docs/history-format.md §6):
//!
//! - the candidates are the request's certificates, exact duplicates once;
//! - a certificate signature is verified at most once per (certificate,
//!   issuer key): issuers with the same subject and key are one issuer;
//! - paths are searched by height (certificates from the leaf up to, not
//!   counting, the authority), each height once for all signers of a
//!   request, so the work is at most `max_depth` rounds over the candidates
//!   and never grows with the number of paths (no depth-first enumeration);
//! - at most `budget` signature verifications per request; past it the
//!   request is refused (`cert_path_budget`), never searched further.
//!
//! The path chosen is the shortest valid one; among those of one height, the
//! first by authority order (bundle order) and then by header order.

use std::collections::HashMap;
use std::sync::Arc;

use sha2::{Digest, Sha256, Sha384, Sha512};

use crate::bundle::TrustBundle;
use crate::ecdsa::EcdsaP256Verifier;
use crate::error::{CheckedAt, Part, Refusal};
use crate::svid::{check_signing, path_len, SigningRule};
use crate::x509::{ParsedCert, PublicKey, SigAlg};

/// One certificate of a validated path, with what a later check re-reads.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct PathCert {
    pub hash: [u8; 32],
    pub not_before: u64,
    pub not_after: u64,
}

impl PathCert {
    fn of(c: &ParsedCert) -> PathCert {
        PathCert {
            hash: c.hash,
            not_before: c.not_before,
            not_after: c.not_after,
        }
    }
}

/// A validated path: leaf first, then intermediates, then the authority.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Path(pub Vec<PathCert>);

impl Path {
    /// The earliest notAfter of the path: the last instant it can be valid.
    pub fn not_after(&self) -> u64 {
        self.0.iter().map(|c| c.not_after).min().unwrap_or(0)
    }

    /// The certificates between the leaf and the authority (those that must
    /// come from the request).
    pub fn intermediates(&self) -> &[PathCert] {
        let n = self.0.len();
        if n >= 2 {
            &self.0[1..n - 1]
        } else {
            &[]
        }
    }
}

/// A signer certificate whose time-independent checks passed: its SPIFFE
/// ID, its ECDSA P-256 key and its path.
#[derive(Clone, Debug)]
pub(crate) struct ValidatedSigner {
    pub spiffe_id: crate::spiffe::SpiffeId,
    /// Uncompressed SEC1 point.
    pub sec1: Vec<u8>,
    pub path: Path,
}

/// Why no path was found, in the order of precedence of docs/history-format.md §7.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum PathFailure {
    /// The signature budget ran out (`cert_path_budget`).
    Budget,
    /// A path exists by names and signatures, but an intermediate on the
    /// shortest one breaks a signing-certificate rule.
    Intermediate(SigningRule),
    /// A path exists, but a CA's pathLenConstraint forbids it (`cert_path_len`).
    PathLen,
    /// A path exists only past the depth cap (`cert_chain_depth`).
    Depth,
    /// A certificate on a name-matching edge uses an unsupported algorithm
    /// (`cert_signature_alg`).
    SignatureAlg,
    /// No path at all (`cert_untrusted`).
    Untrusted,
}

impl PathFailure {
    pub fn refusal(self, part: Part) -> Refusal {
        match self {
            PathFailure::Budget => Refusal::CertPathBudget { part },
            PathFailure::Intermediate(SigningRule::CriticalExtension)
            | PathFailure::Intermediate(SigningRule::NameConstraints) => {
                Refusal::CertCriticalExtension { part }
            }
            PathFailure::Intermediate(rule) => Refusal::CertIntermediateNotCa { part, rule },
            PathFailure::PathLen => Refusal::CertPathLen { part },
            PathFailure::Depth => Refusal::CertChainDepth { part },
            PathFailure::SignatureAlg => Refusal::CertSignatureAlg { part },
            PathFailure::Untrusted => Refusal::CertUntrusted { part },
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum SigCheck {
    Valid,
    Invalid,
    Unsupported,
}

/// Where a candidate's best path continues.
#[derive(Clone, Copy, Debug)]
enum Parent {
    Authority(usize),
    Cert(usize),
}

/// A candidate placed at some height: how many intermediates may still
/// follow it (RFC 5280 pathLenConstraint along its path) and its issuer.
#[derive(Clone, Copy, Debug)]
struct Node {
    allowance: usize,
    parent: Parent,
}

/// `levels[h - 1][j]`: candidate `j` placed `h` certificates below an authority.
type Levels = Vec<Vec<Option<Node>>>;

/// The path search of one request: its candidate certificates and what was
/// learnt about them, shared by every signer of the request.
pub(crate) struct PathSearch<'a> {
    candidates: Vec<Arc<ParsedCert>>,
    ecdsa: &'a dyn EcdsaP256Verifier,
    max_depth: usize,
    budget: usize,
    verifications: usize,
    /// SubjectPublicKeyInfo DER → a small id (issuers with one key are one).
    key_ids: HashMap<Vec<u8>, usize>,
    /// (child certificate hash, issuer key id) → verdict.
    checked: HashMap<([u8; 32], usize), SigCheck>,
    /// Signing-certificate rules per candidate (computed once).
    signing: Vec<Result<(), SigningRule>>,
    /// Heights of valid paths, per trust domain.
    strict: HashMap<String, Levels>,
    unsupported: bool,
}

impl<'a> PathSearch<'a> {
    /// `certs` in header order (duplicates are dropped); at most `budget`
    /// signature verifications; paths of at most `max_depth` certificates
    /// below the authority.
    pub fn new(
        certs: &[Arc<ParsedCert>],
        ecdsa: &'a dyn EcdsaP256Verifier,
        max_depth: usize,
        budget: usize,
    ) -> PathSearch<'a> {
        let mut candidates: Vec<Arc<ParsedCert>> = Vec::with_capacity(certs.len());
        for c in certs {
            if !candidates.iter().any(|k| k.hash == c.hash) {
                candidates.push(Arc::clone(c));
            }
        }
        let signing = candidates.iter().map(|c| check_signing(c, false)).collect();
        PathSearch {
            candidates,
            ecdsa,
            max_depth: max_depth.max(1),
            budget,
            verifications: 0,
            key_ids: HashMap::new(),
            checked: HashMap::new(),
            signing,
            strict: HashMap::new(),
            unsupported: false,
        }
    }

    /// The path from `leaf` to an authority of `trust_domain` (which must
    /// have authorities in `bundle`).
    pub fn find(
        &mut self,
        leaf: &ParsedCert,
        trust_domain: &str,
        bundle: &TrustBundle,
    ) -> Result<Path, PathFailure> {
        let auths = bundle.authorities(trust_domain).unwrap_or(&[]);
        for leaf_height in 1..=self.max_depth {
            if let Some(path) = self.leaf_at(leaf, leaf_height, trust_domain, auths)? {
                return Ok(path);
            }
        }
        Err(self.diagnose(leaf, auths)?)
    }

    /// A valid path with the leaf at `height`, if there is one.
    fn leaf_at(
        &mut self,
        leaf: &ParsedCert,
        height: usize,
        td: &str,
        auths: &[ParsedCert],
    ) -> Result<Option<Path>, PathFailure> {
        if height == 1 {
            for auth in auths {
                if auth.subject == leaf.issuer && self.verify(leaf, auth)? == SigCheck::Valid {
                    return Ok(Some(Path(vec![PathCert::of(leaf), PathCert::of(auth)])));
                }
            }
            return Ok(None);
        }
        self.grow_strict(td, auths, height - 1)?;
        let level = height - 2;
        for k in 0..self.candidates.len() {
            let placed = self.strict.get(td).and_then(|l| l[level][k]);
            if placed.is_none() || self.candidates[k].subject != leaf.issuer {
                continue;
            }
            let issuer = Arc::clone(&self.candidates[k]);
            if issuer.hash != leaf.hash && self.verify(leaf, &issuer)? == SigCheck::Valid {
                let mut path = vec![PathCert::of(leaf)];
                self.walk_up(td, level, k, auths, &mut path);
                return Ok(Some(Path(path)));
            }
        }
        Ok(None)
    }

    /// Appends candidate `k` at `level` and its ancestors, then the authority.
    fn walk_up(
        &self,
        td: &str,
        level: usize,
        k: usize,
        auths: &[ParsedCert],
        out: &mut Vec<PathCert>,
    ) {
        let Some(levels) = self.strict.get(td) else {
            return;
        };
        let (mut level, mut k) = (level, k);
        loop {
            out.push(PathCert::of(&self.candidates[k]));
            match levels[level][k].map(|n| n.parent) {
                Some(Parent::Cert(p)) if level > 0 => {
                    level -= 1;
                    k = p;
                }
                Some(Parent::Authority(a)) => {
                    if let Some(auth) = auths.get(a) {
                        out.push(PathCert::of(auth));
                    }
                    return;
                }
                _ => return,
            }
        }
    }

    /// Computes the heights of valid intermediate paths up to `height`.
    fn grow_strict(
        &mut self,
        td: &str,
        auths: &[ParsedCert],
        height: usize,
    ) -> Result<(), PathFailure> {
        let mut levels = self.strict.remove(td).unwrap_or_default();
        let result = self.grow(&mut levels, auths, height, true);
        self.strict.insert(td.to_owned(), levels);
        result
    }

    /// Adds levels until `levels.len() == height`. `strict`: candidates must
    /// pass the signing-certificate rules and pathLenConstraint holds;
    /// otherwise only names and signatures count, each candidate at its
    /// lowest height (for diagnosis).
    fn grow(
        &mut self,
        levels: &mut Levels,
        auths: &[ParsedCert],
        height: usize,
        strict: bool,
    ) -> Result<(), PathFailure> {
        let n = self.candidates.len();
        while levels.len() < height {
            let h = levels.len();
            let mut next: Vec<Option<Node>> = vec![None; n];
            for j in 0..n {
                if strict && self.signing[j].is_err() {
                    continue;
                }
                if !strict && levels.iter().any(|l| l[j].is_some()) {
                    continue; // already placed lower
                }
                let child = Arc::clone(&self.candidates[j]);
                let child_len = if strict { path_len(&child) } else { usize::MAX };
                let mut best: Option<Node> = None;
                let consider = |allowance: usize, parent: Parent, best: &mut Option<Node>| {
                    // The parent lets `allowance` intermediates follow it; the
                    // child is one of them.
                    if strict && allowance == 0 {
                        return;
                    }
                    let left = child_len.min(allowance.saturating_sub(1));
                    if best.is_none_or(|b| left > b.allowance) {
                        *best = Some(Node {
                            allowance: left,
                            parent,
                        });
                    }
                };
                if h == 0 {
                    for (a, auth) in auths.iter().enumerate() {
                        if auth.subject != child.issuer {
                            continue;
                        }
                        let allowance = if strict { path_len(auth) } else { usize::MAX };
                        if (!strict || allowance > 0)
                            && self.verify(&child, auth)? == SigCheck::Valid
                        {
                            consider(allowance, Parent::Authority(a), &mut best);
                        }
                    }
                } else {
                    for (k, placed) in levels[h - 1].iter().enumerate() {
                        let Some(parent) = *placed else {
                            continue;
                        };
                        let issuer = Arc::clone(&self.candidates[k]);
                        if k == j || issuer.subject != child.issuer {
                            continue;
                        }
                        if (!strict || parent.allowance > 0)
                            && self.verify(&child, &issuer)? == SigCheck::Valid
                        {
                            consider(parent.allowance, Parent::Cert(k), &mut best);
                        }
                    }
                }
                next[j] = best;
            }
            let empty = next.iter().all(Option::is_none);
            levels.push(next);
            if empty && !strict {
                break; // nothing new can be reached higher up
            }
        }
        Ok(())
    }

    /// Why `leaf` has no valid path: the shortest path by names and
    /// signatures alone (any height) tells which rule blocked it.
    fn diagnose(
        &mut self,
        leaf: &ParsedCert,
        auths: &[ParsedCert],
    ) -> Result<PathFailure, PathFailure> {
        let mut relaxed: Levels = Vec::new();
        let n = self.candidates.len();
        // Each candidate is placed at its lowest height; at most n heights.
        self.grow(&mut relaxed, auths, n, false)?;
        // The leaf directly under an authority would have been found.
        for (level, placed) in relaxed.iter().enumerate() {
            for (k, node) in placed.iter().enumerate() {
                if node.is_none() || self.candidates[k].subject != leaf.issuer {
                    continue;
                }
                let issuer = Arc::clone(&self.candidates[k]);
                if issuer.hash == leaf.hash || self.verify(leaf, &issuer)? != SigCheck::Valid {
                    continue;
                }
                if level + 2 > self.max_depth {
                    return Ok(PathFailure::Depth);
                }
                // The first intermediate, from the leaf up, that breaks a rule.
                let mut at = (level, k);
                loop {
                    if let Err(rule) = self.signing[at.1] {
                        return Ok(PathFailure::Intermediate(rule));
                    }
                    match relaxed[at.0][at.1].map(|node| node.parent) {
                        Some(Parent::Cert(p)) if at.0 > 0 => at = (at.0 - 1, p),
                        _ => break,
                    }
                }
                return Ok(PathFailure::PathLen);
            }
        }
        Ok(if self.unsupported {
            PathFailure::SignatureAlg
        } else {
            PathFailure::Untrusted
        })
    }

    /// Whether `issuer`'s key signed `child`, verified at most once per
    /// (child, issuer key) and counted against the budget.
    fn verify(&mut self, child: &ParsedCert, issuer: &ParsedCert) -> Result<SigCheck, PathFailure> {
        let next_id = self.key_ids.len();
        let key_id = *self.key_ids.entry(issuer.spki.clone()).or_insert(next_id);
        if let Some(&known) = self.checked.get(&(child.hash, key_id)) {
            return Ok(known);
        }
        let verdict = match (child.sig_alg, &issuer.key) {
            (SigAlg::Unsupported, _) | (_, PublicKey::Unsupported) => SigCheck::Unsupported,
            (SigAlg::EcdsaSha256, PublicKey::Rsa(_))
            | (SigAlg::RsaSha256 | SigAlg::RsaSha384 | SigAlg::RsaSha512, PublicKey::P256(_)) => {
                SigCheck::Invalid
            }
            _ => {
                if self.verifications >= self.budget {
                    return Err(PathFailure::Budget);
                }
                self.verifications += 1;
                check_signature(child, &issuer.key, self.ecdsa)
            }
        };
        if verdict == SigCheck::Unsupported {
            self.unsupported = true;
        }
        self.checked.insert((child.hash, key_id), verdict);
        Ok(verdict)
    }
}

/// One certificate signature under one key (ECDSA P-256 with SHA-256, or
/// RSA PKCS#1 v1.5 with SHA-256/384/512).
fn check_signature(child: &ParsedCert, key: &PublicKey, ecdsa: &dyn EcdsaP256Verifier) -> SigCheck {
    let ok = match (child.sig_alg, key) {
        (SigAlg::EcdsaSha256, PublicKey::P256(sec1)) => {
            // Certificate signatures are DER; any s in range is accepted here.
            match p256::ecdsa::Signature::from_der(&child.signature) {
                Ok(sig) => {
                    let raw: [u8; 64] = sig.to_bytes().into();
                    ecdsa.verify(sec1, &child.tbs_der, &raw)
                }
                Err(_) => false,
            }
        }
        (SigAlg::RsaSha256, PublicKey::Rsa(k)) => k
            .verify(
                rsa::Pkcs1v15Sign::new::<Sha256>(),
                &Sha256::digest(&child.tbs_der),
                &child.signature,
            )
            .is_ok(),
        (SigAlg::RsaSha384, PublicKey::Rsa(k)) => k
            .verify(
                rsa::Pkcs1v15Sign::new::<Sha384>(),
                &Sha384::digest(&child.tbs_der),
                &child.signature,
            )
            .is_ok(),
        (SigAlg::RsaSha512, PublicKey::Rsa(k)) => k
            .verify(
                rsa::Pkcs1v15Sign::new::<Sha512>(),
                &Sha512::digest(&child.tbs_der),
                &child.signature,
            )
            .is_ok(),
        _ => return SigCheck::Unsupported,
    };
    if ok {
        SigCheck::Valid
    } else {
        SigCheck::Invalid
    }
}

/// Time validity of every certificate in the path, at now then at `iat`.
pub(crate) fn check_path_times(
    path: &Path,
    iat: u64,
    now: u64,
    skew: u64,
    part: Part,
) -> Result<(), Refusal> {
    for (t, at) in [(now, CheckedAt::Now), (iat, CheckedAt::Iat)] {
        check_times_at(path, t, skew).map_err(|(depth, expired)| {
            if expired {
                Refusal::CertExpired { part, depth, at }
            } else {
                Refusal::CertNotYetValid { part, depth, at }
            }
        })?;
    }
    Ok(())
}

/// The first certificate (depth from the leaf) not valid at `t` ± `skew`,
/// and whether it is expired (else not yet valid).
pub(crate) fn check_times_at(path: &Path, t: u64, skew: u64) -> Result<(), (usize, bool)> {
    for (depth, c) in path.0.iter().enumerate() {
        if t.saturating_add(skew) < c.not_before {
            return Err((depth, false));
        }
        if t > c.not_after.saturating_add(skew) {
            return Err((depth, true));
        }
    }
    Ok(())
}
