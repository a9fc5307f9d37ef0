//! The signer-certificate rules of docs/history-format.md §6 that need
//! certificates the committed fixtures do not have: an unknown critical
//! extension, a keyUsage without digitalSignature, a non-P-256 leaf key, a
//! non-CA intermediate and an unsupported certificate signature algorithm.
//!
//! Every certificate is built here with rcgen (feature `dev-ca`, native
//! only), and every refusal is paired with the same certificate with the
//! offending property fixed, which must verify: the refusal is caused by
//! that property and nothing else.
//!
//! ```text
//! cargo test -p custody-history --features dev-ca --test cert_rules
//! ```
#![cfg(all(feature = "dev-ca", not(target_arch = "wasm32")))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use custody_history::sign::{append_entry, certs_header, make_proof, EntryFields, ProofFields};
use custody_history::sign::{SignError, Signer};
use custody_history::{
    b64url, b64url_decode, sha256, Headers, Limits, Refusal, Request, SpiffeId, TrustBundle,
    VerifiedHistory, Verifier, VerifyCache, ALG, ENTRY_TYP, PROOF_TYP, X5T,
};
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, Certificate, CertificateParams, CustomExtension, DistinguishedName, DnType,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, SignatureAlgorithm,
    PKCS_ECDSA_P256_SHA256, PKCS_ECDSA_P384_SHA384, PKCS_ED25519,
};
use serde_json::json;
use time::OffsetDateTime;

const TD: &str = "example.org";
// 2026-01-01 .. 2031-01-01 for authorities and intermediates.
const CA_NB: u64 = 1_767_225_600;
const CA_NA: u64 = 1_924_992_000;
// 2026-04-01 .. 2026-06-01 for leaves.
const NB: u64 = 1_775_001_600;
const NA: u64 = 1_780_272_000;
// 2026-04-18T14:20:00Z: inside every validity window above.
const NOW: u64 = 1_776_522_000;
const AUD: &str = "spiffe://example.org/ns/payments/sa/refund-tool";
const WID: &str = "wf-cert-rules";
const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;
const JTI: [u8; 16] = [9; 16];
/// An RSA-2048 PKCS#8 key (the committed RSA authority's), for an RSA leaf:
/// ring cannot generate RSA keys.
const RSA_KEY_PEM: &str = include_str!("../testdata/rsa-ca-key.pem");
/// A private-enterprise OID no verifier knows.
const UNKNOWN_EXT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 99999, 1];

fn sa(n: &str) -> String {
    format!("spiffe://{TD}/ns/payments/sa/{n}")
}

fn at(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap()).unwrap()
}

fn p256_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

fn key_for(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

/// A certificate that can issue others (its DN and key).
struct Issuer {
    cert: Certificate,
    key: KeyPair,
}

impl Issuer {
    fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }
}

/// CA parameters like dev_ca's: cA true, keyCertSign + cRLSign + digitalSignature.
fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Custody cert_rules tests");
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = at(CA_NB);
    params.not_after = at(CA_NA);
    params
}

/// The trust domain authority: self-signed ECDSA P-256.
fn root() -> Issuer {
    let key = p256_key();
    let cert = ca_params("cert-rules root").self_signed(&key).unwrap();
    Issuer { cert, key }
}

fn bundle(root: &Issuer) -> TrustBundle {
    let mut b = TrustBundle::new();
    assert_eq!(b.add_pem(TD, &root.cert.pem()).unwrap(), 1);
    b
}

/// An intermediate with these parameters and key, signed by `by`.
fn intermediate(params: CertificateParams, key: KeyPair, by: &Issuer) -> Issuer {
    let mut params = params;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &by.cert, &by.key).unwrap();
    Issuer { cert, key }
}

/// A well-formed X.509-SVID leaf for `id` (what dev_ca::issue writes,
/// minus the explicit empty basicConstraints): not a CA, digitalSignature,
/// serverAuth + clientAuth, one SPIFFE URI SAN.
fn leaf_params(id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, "Custody cert_rules SVID");
    dn.push(DnType::CommonName, id);
    params.distinguished_name = dn;
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = at(NB);
    params.not_after = at(NA);
    params
}

fn issue(params: CertificateParams, key: &KeyPair, by: &Issuer) -> Vec<u8> {
    params
        .signed_by(key, &by.cert, &by.key)
        .unwrap()
        .der()
        .to_vec()
}

/// The custody_history signer for a P-256 leaf.
fn signer(key: &KeyPair, cert_der: &[u8]) -> Signer {
    Signer::from_pkcs8_der(&key.serialize_der(), cert_der).unwrap()
}

/// Re-signs a compact JWS (same payload) with a header whose `x5t#S256`
/// names `named` instead of the signer's own certificate.
fn renamed(signer: &Signer, jws: &str, typ: &str, named: &[u8]) -> String {
    let payload = b64url_decode(jws.split('.').nth(1).unwrap()).unwrap();
    let header = json!({"alg": ALG, "typ": typ, X5T: b64url(&sha256(named))}).to_string();
    signer.sign_raw(&header, core::str::from_utf8(&payload).unwrap())
}

/// Verifies a one-entry history plus proof, both signed by `signer` (whose
/// SPIFFE ID is the entry's `iss`, its own `nxt`, the proof's `iss` and the
/// mTLS peer), with the JWS headers naming the certificate `named` and the
/// certs header holding `named` then `intermediates`.
///
/// `named` is normally `signer.cert_der()`. When the offending leaf holds a
/// key the sign API refuses (not P-256), `named` is that leaf and `signer`
/// a P-256 twin with the same SPIFFE ID: the JWS are signed by hand with the
/// twin's key under a header whose `x5t#S256` is the offending leaf's hash.
/// The verifier refuses on the certificate before it checks the signature.
fn verify(
    bundle: &TrustBundle,
    signer: &Signer,
    named: &[u8],
    intermediates: &[&[u8]],
) -> Result<VerifiedHistory, Refusal> {
    let id = signer.spiffe_id().as_str().to_owned();
    let mut history = append_entry(
        None,
        signer,
        &EntryFields {
            wid: WID,
            step: "cert_rules",
            result: "ok",
            nxt: &id,
            iat: NOW - 10,
            exp: NOW + 3600,
            claims: None,
        },
    )
    .unwrap();
    if named != signer.cert_der() {
        history = renamed(signer, &history, ENTRY_TYP, named);
    }
    let mut proof = make_proof(
        &history,
        signer,
        BODY,
        &ProofFields {
            aud: AUD,
            iat: NOW - 5,
            exp: NOW + 55,
            jti: &JTI,
        },
    )
    .unwrap();
    if named != signer.cert_der() {
        proof = renamed(signer, &proof, PROOF_TYP, named);
    }
    let certs = certs_header(core::iter::once(named).chain(intermediates.iter().copied()));
    let peer = SpiffeId::parse(&id).unwrap();
    let limits = Limits::default();
    let req = Request {
        headers: Headers {
            history: Some(&history),
            proof: Some(&proof),
            certs: Some(&certs),
        },
        peer: &peer,
        audience: AUD,
        body: BODY,
        now: NOW,
    };
    let uncached = Verifier::new(bundle, &limits).verify(&req, None);
    // A cache miss then a hit give the same verdict as no cache.
    let mut cache = VerifyCache::new(8, 8);
    for _ in 0..2 {
        let cached = Verifier::new(bundle, &limits).verify(&req, Some(&mut cache));
        assert_eq!(
            cached.as_ref().map(|_| ()).map_err(Refusal::reason),
            uncached.as_ref().map(|_| ()).map_err(Refusal::reason),
        );
    }
    uncached
}

#[track_caller]
fn assert_ok(r: Result<VerifiedHistory, Refusal>) {
    match r {
        Ok(v) => assert_eq!(v.entries.len(), 1),
        Err(e) => panic!("expected success, got {e}"),
    }
}

#[track_caller]
fn assert_refused(r: Result<VerifiedHistory, Refusal>, reason: &str) {
    match r {
        Ok(_) => panic!("expected {reason}, got success"),
        Err(e) => {
            assert_eq!(e.reason(), reason, "{e}");
            assert!(!e.detail().is_empty());
        }
    }
}

/// Verifies a one-entry history by a fresh P-256 leaf with `params`,
/// issued by `by` and sent with `intermediates`.
fn verify_leaf(
    bundle: &TrustBundle,
    params: CertificateParams,
    by: &Issuer,
    intermediates: &[&[u8]],
) -> Result<VerifiedHistory, Refusal> {
    let key = p256_key();
    let der = issue(params, &key, by);
    let s = signer(&key, &der);
    verify(bundle, &s, &der, intermediates)
}

// ---------------------------------------------------------------- tests

#[test]
fn leaf_with_unknown_critical_extension_refused() {
    let root = root();
    let b = bundle(&root);
    let id = sa("critical-ext");
    let with_ext = |critical: bool| {
        let mut p = leaf_params(&id);
        let mut ext = CustomExtension::from_oid_content(UNKNOWN_EXT_OID, vec![0x05, 0x00]);
        ext.set_criticality(critical);
        p.custom_extensions.push(ext);
        p
    };
    assert_refused(
        verify_leaf(&b, with_ext(true), &root, &[]),
        "cert_critical_extension",
    );
    // The same extension, not critical, is ignored.
    assert_ok(verify_leaf(&b, with_ext(false), &root, &[]));
    // Critical basicConstraints/keyUsage/extKeyUsage/subjectAltName are processed
    // (dev_ca writes basicConstraints critical).
    let mut p = leaf_params(&id);
    let mut bc = CustomExtension::from_oid_content(&[2, 5, 29, 19], vec![0x30, 0x00]);
    bc.set_criticality(true);
    p.custom_extensions.push(bc);
    assert_ok(verify_leaf(&b, p, &root, &[]));
}

#[test]
fn intermediate_with_unknown_critical_extension_refused() {
    let root = root();
    let b = bundle(&root);
    for (critical, reason) in [(true, Some("cert_critical_extension")), (false, None)] {
        let mut p = ca_params("cert-rules intermediate");
        let mut ext = CustomExtension::from_oid_content(UNKNOWN_EXT_OID, vec![0x05, 0x00]);
        ext.set_criticality(critical);
        p.custom_extensions.push(ext);
        let inter = intermediate(p, p256_key(), &root);
        let r = verify_leaf(&b, leaf_params(&sa("via-crit")), &inter, &[&inter.der()]);
        match reason {
            Some(reason) => assert_refused(r, reason),
            None => assert_ok(r),
        }
    }
}

#[test]
fn leaf_key_usage_without_digital_signature_refused() {
    let root = root();
    let b = bundle(&root);
    let id = sa("key-usage");
    let with_ku = |ku: Vec<KeyUsagePurpose>| {
        let mut p = leaf_params(&id);
        p.key_usages = ku;
        p
    };
    assert_refused(
        verify_leaf(
            &b,
            with_ku(vec![KeyUsagePurpose::KeyEncipherment]),
            &root,
            &[],
        ),
        "cert_key_usage",
    );
    // keyCertSign or cRLSign next to digitalSignature are refused too.
    for extra in [KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign] {
        let ku = vec![KeyUsagePurpose::DigitalSignature, extra];
        assert_refused(verify_leaf(&b, with_ku(ku), &root, &[]), "cert_key_usage");
    }
    // Fixed: digitalSignature (with or without keyEncipherment), or no keyUsage at all.
    assert_ok(verify_leaf(
        &b,
        with_ku(vec![KeyUsagePurpose::DigitalSignature]),
        &root,
        &[],
    ));
    assert_ok(verify_leaf(
        &b,
        with_ku(vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ]),
        &root,
        &[],
    ));
    assert_ok(verify_leaf(&b, with_ku(vec![]), &root, &[]));
}

#[test]
fn leaf_key_not_p256_refused() {
    let root = root();
    let b = bundle(&root);
    let id = sa("key-type");
    // The P-256 twin: same parameters, same issuer, verifies.
    let twin_key = p256_key();
    let twin = issue(leaf_params(&id), &twin_key, &root);
    let twin_signer = signer(&twin_key, &twin);
    assert_ok(verify(&b, &twin_signer, &twin, &[]));

    let rsa = KeyPair::from_pem(RSA_KEY_PEM).unwrap();
    for (name, key) in [
        ("P-384", key_for(&PKCS_ECDSA_P384_SHA384)),
        ("Ed25519", key_for(&PKCS_ED25519)),
        ("RSA-2048", rsa),
    ] {
        let der = issue(leaf_params(&id), &key, &root);
        // The sign API only takes P-256 keys, so this leaf cannot sign
        // through it: the JWS are signed with the twin's P-256 key and name
        // this leaf in x5t#S256 (see `verify`).
        assert_eq!(
            Signer::from_pkcs8_der(&key.serialize_der(), &der).unwrap_err(),
            SignError::Key,
            "{name}"
        );
        assert_refused(verify(&b, &twin_signer, &der, &[]), "cert_key_type");
    }
}

#[test]
fn intermediate_not_ca_refused() {
    let root = root();
    let b = bundle(&root);
    let id = sa("via-not-ca");

    // cA absent (no basicConstraints) although keyCertSign is set.
    let mut p = ca_params("cert-rules not-ca");
    p.is_ca = IsCa::NoCa;
    let inter = intermediate(p, p256_key(), &root);
    assert_refused(
        verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()]),
        "cert_intermediate_not_ca",
    );
    // Fixed: the same intermediate as a CA.
    let inter = intermediate(ca_params("cert-rules not-ca"), p256_key(), &root);
    assert_ok(verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()]));

    // A CA whose keyUsage lacks keyCertSign.
    let mut p = ca_params("cert-rules no-keycertsign");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature, KeyUsagePurpose::CrlSign];
    let inter = intermediate(p, p256_key(), &root);
    assert_refused(
        verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()]),
        "cert_intermediate_not_ca",
    );

    // pathLenConstraint 0 with an intermediate below it; 1 covers it.
    for (path_len, reason) in [(0, Some("cert_intermediate_not_ca")), (1, None)] {
        let mut p = ca_params("cert-rules upper");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        let upper = intermediate(p, p256_key(), &root);
        let lower = intermediate(ca_params("cert-rules lower"), p256_key(), &upper);
        let r = verify_leaf(&b, leaf_params(&id), &lower, &[&lower.der(), &upper.der()]);
        match reason {
            Some(reason) => assert_refused(r, reason),
            None => assert_ok(r),
        }
    }
}

/// `leaf` re-signed by `by` (an ECDSA P-256 key) with ecdsa-with-SHA384,
/// which the verifier does not support, in both signature AlgorithmIdentifiers.
fn resigned_ecdsa_sha384(leaf: &[u8], by: &KeyPair) -> Vec<u8> {
    use p256::ecdsa::signature::hazmat::PrehashSigner;
    use p256::pkcs8::DecodePrivateKey;
    use sha2::{Digest, Sha384};
    const ECDSA_SHA384: der::asn1::ObjectIdentifier =
        der::asn1::ObjectIdentifier::new_unwrap("1.2.840.10045.4.3.3");
    let mut cert = x509_cert::Certificate::from_der(leaf).unwrap();
    let alg = x509_cert::spki::AlgorithmIdentifierOwned {
        oid: ECDSA_SHA384,
        parameters: None,
    };
    cert.tbs_certificate.signature = alg.clone();
    cert.signature_algorithm = alg;
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(&by.serialize_der()).unwrap();
    let sig: p256::ecdsa::DerSignature = key.sign_prehash(&Sha384::digest(&tbs)).unwrap();
    cert.signature = der::asn1::BitString::from_bytes(sig.as_bytes()).unwrap();
    cert.to_der().unwrap()
}

#[test]
fn unsupported_certificate_signature_algorithm_refused() {
    let root = root();
    let b = bundle(&root);
    let id = sa("sig-alg");

    // An intermediate with a P-384 (or Ed25519) key, itself signed ES256 by
    // the P-256 authority, signs the leaf with ecdsa-with-SHA384 (Ed25519).
    for alg in [&PKCS_ECDSA_P384_SHA384, &PKCS_ED25519] {
        let inter = intermediate(ca_params("cert-rules sig-alg"), key_for(alg), &root);
        assert_refused(
            verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()]),
            "cert_signature_alg",
        );
    }
    // Fixed: the same intermediate with a P-256 key (ecdsa-with-SHA256).
    let inter = intermediate(ca_params("cert-rules sig-alg"), p256_key(), &root);
    assert_ok(verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()]));

    // The P-256 authority itself signing the leaf with ecdsa-with-SHA384.
    let key = p256_key();
    let good = issue(leaf_params(&id), &key, &root);
    assert_ok(verify(&b, &signer(&key, &good), &good, &[]));
    let bad = resigned_ecdsa_sha384(&good, &root.key);
    assert_refused(
        verify(&b, &signer(&key, &bad), &bad, &[]),
        "cert_signature_alg",
    );
}
