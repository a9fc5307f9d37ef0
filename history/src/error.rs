//! The one place that defines every refusal and its stable reason code.

use core::fmt;

use crate::spiffe::SpiffeIdError;
use crate::svid::{LeafRule, SigningRule};

/// Which of the three request headers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    /// `workflow-history`
    History,
    /// `workflow-history-proof`
    Proof,
    /// `workflow-history-certs`
    Certs,
}

impl Header {
    /// The HTTP header name (the one place it is spelled).
    pub const fn name(&self) -> &'static str {
        match self {
            Header::History => "workflow-history",
            Header::Proof => "workflow-history-proof",
            Header::Certs => "workflow-history-certs",
        }
    }
}

/// Which artefact a refusal is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The history entry at this index (0-based position in the header).
    Entry(usize),
    /// The proof.
    Proof,
    /// The certificate at this index of `workflow-history-certs`.
    Cert(usize),
    /// A trust bundle being loaded.
    Bundle,
    /// The mTLS caller's certificate (its path to the trust bundle).
    Peer,
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Part::Entry(i) => write!(f, "history entry {i}"),
            Part::Proof => f.write_str("the proof"),
            Part::Cert(i) => write!(f, "certificate {i}"),
            Part::Bundle => f.write_str("the trust bundle"),
            Part::Peer => f.write_str("the caller's certificate"),
        }
    }
}

/// The instant a certificate was checked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckedAt {
    /// The verifier's `now`.
    Now,
    /// The `iat` of the entry or proof the certificate signed.
    Iat,
}

impl fmt::Display for CheckedAt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CheckedAt::Now => "now",
            CheckedAt::Iat => "at the signed iat",
        })
    }
}

/// Every way a signed history, a proof, a certificate or a trust bundle is
/// refused. [`Refusal::reason`] gives the stable code.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Refusal {
    /// The same history header was given more than once (detected by the host).
    HeaderRepeated(Header),
    /// A header is over its byte cap.
    HeaderTooLarge {
        header: Header,
        len: usize,
        max: usize,
    },
    /// `workflow-history-proof` or `workflow-history-certs` was given without `workflow-history`.
    HistoryMissing,
    /// A history was given without a proof.
    ProofMissing,
    /// A history was given without `workflow-history-certs`.
    CertsMissing,
    /// More entries than the cap.
    HistoryTooLarge { len: usize, max: usize },
    /// More certificates in `workflow-history-certs` than the cap.
    CertsTooMany { len: usize, max: usize },
    /// The artefact is not well-formed (JWS shape, JSON syntax, DER).
    Malformed { part: Part, what: &'static str },
    /// A base64url segment (or certificate) is not canonical: padding,
    /// non-zero trailing bits or a character outside the url-safe alphabet.
    Base64Noncanonical { part: Part },
    /// A JSON object has the same member twice.
    DuplicateMember { part: Part, member: String },
    /// A payload member outside the v1 set.
    UnknownMember { part: Part, member: String },
    /// A required payload member is absent.
    MissingMember { part: Part, member: &'static str },
    /// A member has the wrong JSON type (e.g. a non-integer `seq`).
    MemberType { part: Part, member: &'static str },
    /// A member that must be a SPIFFE ID is not one.
    MemberSpiffeId {
        part: Part,
        member: &'static str,
        error: SpiffeIdError,
    },
    /// `v` is not 1.
    VersionUnsupported { part: Part },
    /// `claims` serializes to more bytes than the cap.
    ClaimsTooLarge { part: Part, len: usize, max: usize },
    /// The JWS `alg` is absent or not `ES256`.
    SignatureAlg { part: Part },
    /// The JWS `typ` is absent or not the one for this artefact.
    HeaderTyp { part: Part },
    /// The JWS protected header is not exactly `alg`, `typ`, `x5t#S256`.
    HeaderMembers { part: Part },
    /// The signature is not 64 bytes (DER, truncated, …).
    SignatureFormat { part: Part, len: usize },
    /// `r` or `s` is zero or not below the group order.
    SignatureRange { part: Part },
    /// `s` is above n/2 (signers must normalise to low-S).
    SignatureHighS { part: Part },
    /// The ECDSA signature does not verify under the signer's certificate key.
    SignatureInvalid { part: Part },
    /// No certificate in `workflow-history-certs` has the header's `x5t#S256`.
    CertMissing { part: Part },
    /// The signer's SPIFFE ID differs from the payload's `iss`.
    SignerMismatch { part: Part },
    /// The signer's certificate breaks a leaf X.509-SVID rule ([`LeafRule`]).
    CertLeaf { part: Part, rule: LeafRule },
    /// The signer's certificate key is not an ECDSA P-256 key.
    CertKeyType { part: Part },
    /// A certificate in the path has a critical extension this verifier does not process.
    CertCriticalExtension { part: Part },
    /// No trust bundle is loaded for the signer's trust domain.
    CertUnknownTrustDomain { part: Part, trust_domain: String },
    /// No path by name and signature to an authority of the signer's trust domain.
    CertUntrusted { part: Part },
    /// The path would be longer than the depth cap.
    CertChainDepth { part: Part },
    /// An intermediate on the shortest path breaks a signing-certificate rule.
    CertIntermediateNotCa { part: Part, rule: SigningRule },
    /// A CA's pathLenConstraint (an intermediate's or the authority's) forbids the path.
    CertPathLen { part: Part },
    /// The request used up its budget of certificate signature verifications.
    CertPathBudget { part: Part },
    /// A certificate in the path uses an unsupported signature algorithm.
    CertSignatureAlg { part: Part },
    /// A certificate in the path (depth 0 = leaf) is past its notAfter.
    CertExpired {
        part: Part,
        depth: usize,
        at: CheckedAt,
    },
    /// A certificate in the path (depth 0 = leaf) is before its notBefore.
    CertNotYetValid {
        part: Part,
        depth: usize,
        at: CheckedAt,
    },
    /// Entry `index` does not have `seq` = index.
    ChainSeq { index: usize },
    /// Entry `index`'s `prev` is not the hash of the previous entry (or not null at seq 0).
    ChainPrev { index: usize },
    /// Entry `index` has another `wid` than entry 0.
    ChainWid { index: usize },
    /// Entry `index`'s `iss` is not the previous entry's `nxt`.
    ChainCustody { index: usize },
    /// Entry `index`'s `iat` is earlier than the previous entry's.
    ChainOrder { index: usize },
    /// Entry `index`'s `iat` is later than now + skew.
    EntryFuture { index: usize },
    /// Entry `index`'s `exp` is before now - skew.
    EntryExpired { index: usize },
    /// Entry `index`'s `exp` is before its `iat`.
    EntryLifetime { index: usize },
    /// The proof's `iss` is not the mTLS peer.
    ProofSigner,
    /// The mTLS peer is not the last entry's `nxt`.
    ProofHolder,
    /// The proof's `aud` is not this server's audience.
    ProofAudience,
    /// The proof's `wid` is not the chain's.
    ProofWid,
    /// The proof's `len` is not the number of entries.
    ProofLen,
    /// The proof's `head` is not the hash of the last entry.
    ProofHead,
    /// The proof's `bdy` is not the hash of the request body.
    ProofBody,
    /// The proof's `iat` is later than now + skew.
    ProofNotYetValid,
    /// The proof's `exp` is before now - skew.
    ProofExpired,
    /// The proof's `exp - iat` is over the cap (60 s) or negative.
    ProofLifetime,
    /// The proof's `jti` carries fewer than 128 bits.
    ProofJti,
    /// The proof's `jti` was seen before within its lifetime.
    ProofReplayed,
    /// The replay cache is full of live entries; refused rather than forgetting one.
    ReplayCacheFull,
    /// A trust bundle could not be read.
    BundleMalformed { what: &'static str },
    /// A trust bundle names an invalid trust domain.
    BundleTrustDomain,
    /// A SPIFFE bundle's `spiffe_sequence` is lower than the loaded one.
    BundleSequence { loaded: u64, offered: u64 },
}

/// Declares every reason code once: the variant, its stable wire code and its
/// group (the sections of docs/history-format.md §7). Everything else (the
/// list of codes, `as_str`, the group) is generated, so a code cannot be
/// renamed in one place and not in another, and every `match` on a [`Code`]
/// is checked by the compiler.
macro_rules! declare_codes {
    ($( $(#[$gmeta:meta])* $group:ident { $( $(#[$meta:meta])* $variant:ident => $code:literal, )* } )*) => {
        /// Which family of checks a [`Code`] belongs to (docs/history-format.md §7).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Group { $( $(#[$gmeta])* $group, )* }

        /// A stable reason code: what a refusal is called on the wire, in
        /// logs, counters and docs. `Copy`, so hosts can carry and match it.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $( $( $(#[$meta])* $variant, )* )* }

        impl Code {
            /// Every code, in documentation order.
            pub const ALL: &'static [Code] = &[ $( $( Code::$variant, )* )* ];

            /// The stable snake_case code.
            pub const fn as_str(self) -> &'static str {
                match self { $( $( Code::$variant => $code, )* )* }
            }

            /// The family of checks this code belongs to.
            pub const fn group(self) -> Group {
                match self { $( $( Code::$variant => Group::$group, )* )* }
            }

            /// The code spelled `code`, if there is one.
            pub fn parse(code: &str) -> Option<Code> {
                Code::ALL.iter().copied().find(|c| c.as_str() == code)
            }
        }
    };
}

declare_codes! {
    /// §7 steps 1-3: the three headers, their presence and caps.
    Headers {
        HeaderRepeated => "header_repeated",
        HeaderTooLarge => "header_too_large",
        HistoryMissing => "history_missing",
        ProofMissing => "proof_missing",
        CertsMissing => "certs_missing",
        HistoryTooLarge => "history_too_large",
        CertsTooMany => "certs_too_many",
    }
    /// §2 and §7 steps 4-5.6: the shape and encoding of entries, proof and certificates.
    Encoding {
        HistoryMalformed => "history_malformed",
        ProofMalformed => "proof_malformed",
        CertMalformed => "cert_malformed",
        BundleMalformed => "bundle_malformed",
        Base64Noncanonical => "base64_noncanonical",
        DuplicateMember => "duplicate_member",
        UnknownMember => "unknown_member",
        MissingMember => "missing_member",
        MemberType => "member_type",
        MemberSpiffeId => "member_spiffe_id",
        VersionUnsupported => "version_unsupported",
        ClaimsTooLarge => "claims_too_large",
    }
    /// §7 steps 5.3, 5.5 and 5.10: the JWS header and the ES256 signature.
    Signature {
        SignatureAlg => "signature_alg",
        HeaderTyp => "header_typ",
        HeaderMembers => "header_members",
        SignatureFormat => "signature_format",
        SignatureRange => "signature_range",
        SignatureHighS => "signature_high_s",
        SignatureInvalid => "signature_invalid",
    }
    /// §6 and §7 step 5.8-5.9: the signer's X.509-SVID and its path to the trust bundle.
    Certificate {
        CertMissing => "cert_missing",
        CertSpiffeId => "cert_spiffe_id",
        SignerMismatch => "signer_mismatch",
        CertIsCa => "cert_is_ca",
        CertKeyUsage => "cert_key_usage",
        CertExtKeyUsage => "cert_ext_key_usage",
        CertKeyType => "cert_key_type",
        CertCriticalExtension => "cert_critical_extension",
        CertUnknownTrustDomain => "cert_unknown_trust_domain",
        CertUntrusted => "cert_untrusted",
        CertChainDepth => "cert_chain_depth",
        CertIntermediateNotCa => "cert_intermediate_not_ca",
        CertPathLen => "cert_path_len",
        CertPathBudget => "cert_path_budget",
        CertSignatureAlg => "cert_signature_alg",
        CertExpired => "cert_expired",
        CertNotYetValid => "cert_not_yet_valid",
    }
    /// §7 step 7: the chain of entries.
    Chain {
        ChainSeq => "chain_seq",
        ChainPrev => "chain_prev",
        ChainWid => "chain_wid",
        ChainCustody => "chain_custody",
        ChainOrder => "chain_order",
        EntryFuture => "entry_future",
        EntryExpired => "entry_expired",
        EntryLifetime => "entry_lifetime",
    }
    /// §7 step 8: the proof's bindings to this request.
    Proof {
        ProofSigner => "proof_signer",
        ProofHolder => "proof_holder",
        ProofAudience => "proof_audience",
        ProofWid => "proof_wid",
        ProofLen => "proof_len",
        ProofHead => "proof_head",
        ProofBody => "proof_body",
        ProofNotYetValid => "proof_not_yet_valid",
        ProofExpired => "proof_expired",
        ProofLifetime => "proof_lifetime",
        ProofJti => "proof_jti",
    }
    /// §7 step 9: replay, checked by the host after success.
    Replay {
        ProofReplayed => "proof_replayed",
        ReplayCacheFull => "replay_cache_full",
    }
    /// §6: loading a trust bundle.
    Bundle {
        BundleTrustDomain => "bundle_trust_domain",
        BundleSequence => "bundle_sequence",
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Refusal {
    /// The stable reason code of this refusal.
    pub fn code(&self) -> Code {
        use Refusal::*;
        match self {
            HeaderRepeated(_) => Code::HeaderRepeated,
            HeaderTooLarge { .. } => Code::HeaderTooLarge,
            HistoryMissing => Code::HistoryMissing,
            ProofMissing => Code::ProofMissing,
            CertsMissing => Code::CertsMissing,
            HistoryTooLarge { .. } => Code::HistoryTooLarge,
            CertsTooMany { .. } => Code::CertsTooMany,
            Malformed { part, .. } => match part {
                Part::Entry(_) => Code::HistoryMalformed,
                Part::Proof => Code::ProofMalformed,
                Part::Cert(_) => Code::CertMalformed,
                Part::Bundle => Code::BundleMalformed,
                Part::Peer => Code::CertMalformed,
            },
            Base64Noncanonical { .. } => Code::Base64Noncanonical,
            DuplicateMember { .. } => Code::DuplicateMember,
            UnknownMember { .. } => Code::UnknownMember,
            MissingMember { .. } => Code::MissingMember,
            MemberType { .. } => Code::MemberType,
            MemberSpiffeId { .. } => Code::MemberSpiffeId,
            VersionUnsupported { .. } => Code::VersionUnsupported,
            ClaimsTooLarge { .. } => Code::ClaimsTooLarge,
            SignatureAlg { .. } => Code::SignatureAlg,
            HeaderTyp { .. } => Code::HeaderTyp,
            HeaderMembers { .. } => Code::HeaderMembers,
            SignatureFormat { .. } => Code::SignatureFormat,
            SignatureRange { .. } => Code::SignatureRange,
            SignatureHighS { .. } => Code::SignatureHighS,
            SignatureInvalid { .. } => Code::SignatureInvalid,
            CertMissing { .. } => Code::CertMissing,
            SignerMismatch { .. } => Code::SignerMismatch,
            CertLeaf { rule, .. } => match rule {
                LeafRule::CriticalExtension => Code::CertCriticalExtension,
                LeafRule::IsCa => Code::CertIsCa,
                LeafRule::KeyUsageMissing
                | LeafRule::KeyUsageNotCritical
                | LeafRule::NoDigitalSignature
                | LeafRule::SignsCertificates => Code::CertKeyUsage,
                LeafRule::ExtKeyUsage => Code::CertExtKeyUsage,
                LeafRule::UriSanCount(_)
                | LeafRule::NotSpiffeId(_)
                | LeafRule::RootId
                | LeafRule::SanNotCritical => Code::CertSpiffeId,
            },
            CertKeyType { .. } => Code::CertKeyType,
            CertCriticalExtension { .. } => Code::CertCriticalExtension,
            CertUnknownTrustDomain { .. } => Code::CertUnknownTrustDomain,
            CertUntrusted { .. } => Code::CertUntrusted,
            CertChainDepth { .. } => Code::CertChainDepth,
            CertIntermediateNotCa { .. } => Code::CertIntermediateNotCa,
            CertPathLen { .. } => Code::CertPathLen,
            CertPathBudget { .. } => Code::CertPathBudget,
            CertSignatureAlg { .. } => Code::CertSignatureAlg,
            CertExpired { .. } => Code::CertExpired,
            CertNotYetValid { .. } => Code::CertNotYetValid,
            ChainSeq { .. } => Code::ChainSeq,
            ChainPrev { .. } => Code::ChainPrev,
            ChainWid { .. } => Code::ChainWid,
            ChainCustody { .. } => Code::ChainCustody,
            ChainOrder { .. } => Code::ChainOrder,
            EntryFuture { .. } => Code::EntryFuture,
            EntryExpired { .. } => Code::EntryExpired,
            EntryLifetime { .. } => Code::EntryLifetime,
            ProofSigner => Code::ProofSigner,
            ProofHolder => Code::ProofHolder,
            ProofAudience => Code::ProofAudience,
            ProofWid => Code::ProofWid,
            ProofLen => Code::ProofLen,
            ProofHead => Code::ProofHead,
            ProofBody => Code::ProofBody,
            ProofNotYetValid => Code::ProofNotYetValid,
            ProofExpired => Code::ProofExpired,
            ProofLifetime => Code::ProofLifetime,
            ProofJti => Code::ProofJti,
            ProofReplayed => Code::ProofReplayed,
            ReplayCacheFull => Code::ReplayCacheFull,
            BundleMalformed { .. } => Code::BundleMalformed,
            BundleTrustDomain => Code::BundleTrustDomain,
            BundleSequence { .. } => Code::BundleSequence,
        }
    }

    /// The stable snake_case reason code (`self.code().as_str()`).
    pub fn reason(&self) -> &'static str {
        self.code().as_str()
    }

    /// A short human sentence saying what failed.
    pub fn detail(&self) -> String {
        use Refusal::*;
        match self {
            HeaderRepeated(h) => format!("the {} header was given more than once", h.name()),
            HeaderTooLarge { header, len, max } => {
                format!(
                    "the {} header is {len} bytes, over the cap of {max}",
                    header.name()
                )
            }
            HistoryMissing => "a proof or certificates were sent without a workflow history".into(),
            ProofMissing => "the workflow history has no proof".into(),
            CertsMissing => "the workflow history has no certificates header".into(),
            HistoryTooLarge { len, max } => {
                format!("the workflow history has {len} entries, over the cap of {max}")
            }
            CertsTooMany { len, max } => {
                format!("workflow-history-certs has {len} certificates, over the cap of {max}")
            }
            Malformed { part, what } => format!("{part} is malformed: {what}"),
            Base64Noncanonical { part } => format!("{part} has non-canonical base64url"),
            DuplicateMember { part, member } => {
                format!("{part} has the JSON member {member:?} more than once")
            }
            UnknownMember { part, member } => format!("{part} has an unknown member {member:?}"),
            MissingMember { part, member } => format!("{part} lacks the member {member:?}"),
            MemberType { part, member } => format!("{part} has a wrongly typed member {member:?}"),
            MemberSpiffeId {
                part,
                member,
                error,
            } => format!("{part}: {member:?} is not a SPIFFE ID ({error})"),
            VersionUnsupported { part } => format!("{part} has an unsupported version v"),
            ClaimsTooLarge { part, len, max } => {
                format!("{part} has claims of {len} bytes, over the cap of {max}")
            }
            SignatureAlg { part } => format!("{part} is not signed with ES256"),
            HeaderTyp { part } => format!("{part} has the wrong JWS typ"),
            HeaderMembers { part } => {
                format!("{part} has a JWS header that is not exactly alg, typ, x5t#S256")
            }
            SignatureFormat { part, len } => {
                format!("{part} has a {len}-byte signature, not a 64-byte r||s")
            }
            SignatureRange { part } => format!("{part} has a signature r or s out of range"),
            SignatureHighS { part } => format!("{part} has a high-S signature"),
            SignatureInvalid { part } => format!("{part} has a signature that does not verify"),
            CertMissing { part } => {
                format!("{part} names a signer certificate (x5t#S256) that was not sent")
            }
            SignerMismatch { part } => {
                format!("{part}: iss differs from the signer certificate's SPIFFE ID")
            }
            CertLeaf { part, rule } => format!("{part}: the signer certificate {rule}"),
            CertKeyType { part } => format!("{part}: the signer certificate key is not P-256"),
            CertCriticalExtension { part } => {
                format!("{part}: a certificate has an unsupported critical extension")
            }
            CertUnknownTrustDomain { part, trust_domain } => {
                format!("{part}: no trust bundle for trust domain {trust_domain:?}")
            }
            CertUntrusted { part } => {
                format!("{part}: the signer certificate does not chain to its trust domain")
            }
            CertChainDepth { part } => format!("{part}: the certificate chain is too deep"),
            CertIntermediateNotCa { part, rule } => {
                format!("{part}: an intermediate certificate {rule}")
            }
            CertPathLen { part } => {
                format!("{part}: a pathLenConstraint forbids the path to the authority")
            }
            CertPathBudget { part } => {
                format!("{part}: the request used up its budget of certificate signature checks")
            }
            CertSignatureAlg { part } => {
                format!("{part}: a certificate uses an unsupported signature algorithm")
            }
            CertExpired { part, depth, at } => {
                format!("{part}: the certificate at depth {depth} is expired {at}")
            }
            CertNotYetValid { part, depth, at } => {
                format!("{part}: the certificate at depth {depth} is not yet valid {at}")
            }
            ChainSeq { index } => format!("history entry {index} has the wrong seq"),
            ChainPrev { index } => {
                format!("history entry {index} does not link to the previous entry")
            }
            ChainWid { index } => format!("history entry {index} is from another workflow"),
            ChainCustody { index } => {
                format!(
                    "history entry {index} was not signed by the holder the previous entry named"
                )
            }
            ChainOrder { index } => format!("history entry {index} is older than the previous one"),
            EntryFuture { index } => format!("history entry {index} is issued in the future"),
            EntryExpired { index } => format!("history entry {index} is expired"),
            EntryLifetime { index } => format!("history entry {index} expires before it is issued"),
            ProofSigner => "the proof was not signed by the mTLS peer".into(),
            ProofHolder => "the mTLS peer is not the holder the last entry named".into(),
            ProofAudience => "the proof is for another audience".into(),
            ProofWid => "the proof is for another workflow".into(),
            ProofLen => "the proof covers a different number of entries".into(),
            ProofHead => "the proof covers a different last entry".into(),
            ProofBody => "the proof covers a different request body".into(),
            ProofNotYetValid => "the proof is issued in the future".into(),
            ProofExpired => "the proof is expired".into(),
            ProofLifetime => "the proof lives longer than allowed".into(),
            ProofJti => "the proof's jti is shorter than 128 bits".into(),
            ProofReplayed => "the proof was already used".into(),
            ReplayCacheFull => "the replay cache is full".into(),
            BundleMalformed { what } => format!("the trust bundle is malformed: {what}"),
            BundleTrustDomain => "the trust bundle names an invalid trust domain".into(),
            BundleSequence { loaded, offered } => {
                format!("the SPIFFE bundle's sequence {offered} is lower than the loaded {loaded}")
            }
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.reason(), self.detail())
    }
}

impl std::error::Error for Refusal {}
