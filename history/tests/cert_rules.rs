//! The X.509-SVID rules of docs/history-format.md §6 for history signers,
//! intermediates and authorities, and the cost bound of path building:
//! every refusal is paired with the same certificate with the offending
//! property fixed, which must verify (the refusal is caused by that property
//! and nothing else), and every hostile shape's ECDSA verifications are
//! counted. Certificates are built with rcgen (`custody_testkit::pki`,
//! native only).
//!
//! ```text
//! cargo test -p custody-history --test cert_rules
//! ```
#![cfg(not(target_arch = "wasm32"))]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use custody_history::sign::{SignError, Signer};
use custody_history::{Limits, P256Verifier, Refusal, TrustBundle, VerifiedHistory, VerifyCache};
use custody_testkit::pki::{
    ca_params, ca_params_serial as maze_params, claimed, intermediate, issue, key_for, leaf_params,
    leaf_signer as signer, p256_key, pool, root, Issuer, OneEntry,
};
use custody_testkit::{sa, Counting, TD};
use der::{Decode, Encode};
use rcgen::{
    BasicConstraints, CertificateParams, CustomExtension, DistinguishedName,
    ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose, SanType, PKCS_ECDSA_P384_SHA384,
    PKCS_ED25519,
};

/// An RSA-2048 PKCS#8 key (the committed RSA authority's), for an RSA leaf:
/// ring cannot generate RSA keys.
const RSA_KEY_PEM: &str = include_str!("../testdata/rsa-ca-key.pem");
/// A private-enterprise OID no verifier knows.
const UNKNOWN_EXT_OID: &[u64] = &[1, 3, 6, 1, 4, 1, 99999, 1];

fn bundle(root: &Issuer) -> TrustBundle {
    root.bundle()
}

/// Verifies a one-entry history by `signer`, whose JWS name the certificate
/// `named`, sent with `intermediates` (see `OneEntry`).
fn verify(
    bundle: &TrustBundle,
    signer: &Signer,
    named: &[u8],
    intermediates: &[&[u8]],
) -> Result<VerifiedHistory, Refusal> {
    verify_counted(bundle, signer, named, intermediates, &Limits::default()).0
}

/// [`verify`] with these limits; also returns how many ECDSA verifications
/// the uncached run made (certificate paths, entry and proof). A cache miss
/// then a hit must give the same verdict as no cache.
fn verify_counted(
    bundle: &TrustBundle,
    signer: &Signer,
    named: &[u8],
    intermediates: &[&[u8]],
    limits: &Limits,
) -> (Result<VerifiedHistory, Refusal>, usize) {
    let request = OneEntry::new(signer, named, intermediates);
    let counter = Counting::default();
    let uncached = request.verify(bundle, limits, &counter, None);
    let mut cache = VerifyCache::new(8, 8);
    for _ in 0..2 {
        let cached = request.verify(bundle, limits, &P256Verifier, Some(&mut cache));
        assert_eq!(
            cached.as_ref().map(|_| ()).map_err(Refusal::reason),
            uncached.as_ref().map(|_| ()).map_err(Refusal::reason),
        );
    }
    (uncached, counter.calls())
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
    // No keyUsage at all: X509-SVID §4.3 says it MUST be there.
    assert_refused(
        verify_leaf(&b, with_ku(vec![]), &root, &[]),
        "cert_key_usage",
    );
    // Fixed: digitalSignature (with or without keyEncipherment).
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
    for (path_len, reason) in [(0, Some("cert_path_len")), (1, None)] {
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

// ------------------------------------------- the leaf X.509-SVID rulebook

/// A leaf with `params` (a fresh P-256 key) issued by the root: its verdict.
/// A leaf the sign API will not take (it checks the certificate too) is
/// named by JWS signed with a well-formed twin's key: the verifier refuses
/// the certificate before it looks at the signature.
fn leaf_verdict(params: CertificateParams) -> Result<VerifiedHistory, Refusal> {
    let root = root();
    let b = bundle(&root);
    let key = p256_key();
    let der = issue(params, &key, &root);
    match Signer::from_pkcs8_der(&key.serialize_der(), &der) {
        Ok(s) => verify(&b, &s, &der, &[]),
        Err(_) => {
            let twin = issue(leaf_params(&sa("twin")), &key, &root);
            verify(&b, &signer(&key, &twin), &der, &[])
        }
    }
}

/// A custom extension with this OID, DER content and criticality.
fn ext(oid: &[u64], content: &[u8], critical: bool) -> CustomExtension {
    let mut e = CustomExtension::from_oid_content(oid, content.to_vec());
    e.set_criticality(critical);
    e
}

const BASIC_CONSTRAINTS: &[u64] = &[2, 5, 29, 19];
const KEY_USAGE: &[u64] = &[2, 5, 29, 15];
const SUBJECT_ALT_NAME: &[u64] = &[2, 5, 29, 17];
const NAME_CONSTRAINTS: &[u64] = &[2, 5, 29, 30];

#[test]
fn leaf_that_is_a_ca_is_refused() {
    // X509-SVID §4.1: cA true.
    let mut p = leaf_params(&sa("is-ca"));
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    assert_refused(leaf_verdict(p), "cert_is_ca");
    // cA false but a pathLenConstraint (RFC 5280 §4.2.1.9 forbids it): `30 03 02 01 00`.
    let mut p = leaf_params(&sa("is-ca"));
    p.custom_extensions.push(ext(
        BASIC_CONSTRAINTS,
        &[0x30, 0x03, 0x02, 0x01, 0x00],
        true,
    ));
    assert_refused(leaf_verdict(p), "cert_is_ca");
    // Fixed: `30 00` (cA at its default), or no basicConstraints at all (Vault's default).
    let mut p = leaf_params(&sa("is-ca"));
    p.is_ca = IsCa::ExplicitNoCa;
    assert_ok(leaf_verdict(p));
    assert_ok(leaf_verdict(leaf_params(&sa("is-ca"))));
}

#[test]
fn leaf_key_usage_must_be_critical() {
    // X509-SVID §4.3: keyUsage MUST be marked critical. digitalSignature is `03 02 07 80`.
    let with = |critical: bool| {
        let mut p = leaf_params(&sa("ku-critical"));
        p.key_usages = vec![];
        p.custom_extensions
            .push(ext(KEY_USAGE, &[0x03, 0x02, 0x07, 0x80], critical));
        p
    };
    assert_refused(leaf_verdict(with(false)), "cert_key_usage");
    assert_ok(leaf_verdict(with(true)));
}

#[test]
fn leaf_ext_key_usage_needs_server_and_client_auth() {
    // X509-SVID §4.4: when present, id-kp-serverAuth and id-kp-clientAuth MUST be set.
    let with = |eku: Vec<ExtendedKeyUsagePurpose>| {
        let mut p = leaf_params(&sa("eku"));
        p.extended_key_usages = eku;
        p
    };
    use ExtendedKeyUsagePurpose::{ClientAuth, CodeSigning, ServerAuth};
    for bad in [vec![ServerAuth], vec![ClientAuth], vec![CodeSigning]] {
        assert_refused(leaf_verdict(with(bad)), "cert_ext_key_usage");
    }
    assert_ok(leaf_verdict(with(vec![ServerAuth, ClientAuth])));
    assert_ok(leaf_verdict(with(vec![
        ClientAuth,
        CodeSigning,
        ServerAuth,
    ])));
    // SHOULD, not MUST: no extKeyUsage at all is accepted.
    assert_ok(leaf_verdict(with(vec![])));
}

#[test]
fn leaf_spiffe_id_rules() {
    let with_uris = |uris: &[&str]| {
        let mut p = leaf_params(&sa("uris"));
        p.subject_alt_names = uris
            .iter()
            .map(|u| SanType::URI((*u).try_into().unwrap()))
            .collect();
        p
    };
    // X509-SVID §2, §5.2: exactly one URI SAN.
    assert_refused(leaf_verdict(with_uris(&[])), "cert_spiffe_id");
    assert_refused(
        leaf_verdict(with_uris(&[&sa("uris"), &sa("other")])),
        "cert_spiffe_id",
    );
    assert_refused(
        leaf_verdict(with_uris(&[&sa("uris"), "https://example.org/x"])),
        "cert_spiffe_id",
    );
    // X509-SVID §2: a SPIFFE ID, strictly parsed.
    for bad in [
        "https://example.org/ns/payments/sa/uris",
        "spiffe://Example.org/ns/payments/sa/uris",
        "spiffe://example.org/ns/payments/sa/uris/",
        "spiffe://example.org/ns/../sa/uris",
        "spiffe://example.org:443/ns/payments/sa/uris",
    ] {
        assert_refused(leaf_verdict(with_uris(&[bad])), "cert_spiffe_id");
    }
    // X509-SVID §3.1, §5.2: a leaf's SPIFFE ID has a path.
    assert_refused(
        leaf_verdict(with_uris(&["spiffe://example.org"])),
        "cert_spiffe_id",
    );
    // DNS SANs beside the one URI SAN are fine (§2).
    let mut p = with_uris(&[&sa("uris")]);
    p.subject_alt_names
        .push(SanType::DnsName("uris.example.org".try_into().unwrap()));
    assert_ok(leaf_verdict(p));
}

#[test]
fn leaf_without_subject_needs_a_critical_san() {
    // X509-SVID §3.1 (RFC 5280 §4.1.2.6): as Istio and csi-driver-spiffe issue them.
    let id = sa("no-subject");
    let with = |critical: bool| {
        let mut p = leaf_params(&id);
        p.distinguished_name = DistinguishedName::new();
        p.subject_alt_names = vec![];
        // GeneralNames { [6] IA5String id }
        let mut san = vec![0x30, (id.len() + 2) as u8, 0x86, id.len() as u8];
        san.extend_from_slice(id.as_bytes());
        p.custom_extensions
            .push(ext(SUBJECT_ALT_NAME, &san, critical));
        p
    };
    assert_refused(leaf_verdict(with(false)), "cert_spiffe_id");
    assert_ok(leaf_verdict(with(true)));
}

#[test]
fn leaf_with_critical_name_constraints_is_refused() {
    // nameConstraints belong on CAs (RFC 5280 §4.2.1.10); a critical one on a
    // leaf is a critical extension this verifier does not process. Permitted
    // subtree: URI "example.org".
    let nc = [
        0x30, 0x0f, 0xa0, 0x0d, 0x30, 0x0b, 0x86, 0x09, b'e', b'x', b'a', b'm', b'p', b'l', b'e',
        b'.', b'o',
    ];
    let mut nc = nc.to_vec();
    nc.extend_from_slice(b"rg");
    nc[1] = (nc.len() - 2) as u8;
    nc[3] = (nc.len() - 4) as u8;
    nc[5] = (nc.len() - 6) as u8;
    let with = |critical: bool| {
        let mut p = leaf_params(&sa("nc-leaf"));
        p.custom_extensions
            .push(ext(NAME_CONSTRAINTS, &nc, critical));
        p
    };
    assert_refused(leaf_verdict(with(true)), "cert_critical_extension");
    assert_ok(leaf_verdict(with(false)));
}

#[test]
fn compressed_p256_leaf_key_is_refused_everywhere() {
    // Go's crypto/x509 and BoringSSL's verify_signature take only
    // uncompressed points; accepting a compressed one here would give the
    // filter (BoringSSL) and the CLI (p256) different verdicts.
    let root = root();
    let b = bundle(&root);
    let key = p256_key();
    let good = issue(leaf_params(&sa("compressed")), &key, &root);
    let s = signer(&key, &good);
    assert_ok(verify(&b, &s, &good, &[]));
    let compressed = with_compressed_key(&good, &root.key);
    assert_refused(verify(&b, &s, &compressed, &[]), "cert_key_type");
}

/// `der` with its P-256 public key compressed, re-signed by `by`.
fn with_compressed_key(der: &[u8], by: &KeyPair) -> Vec<u8> {
    use p256::ecdsa::signature::Signer as _;
    use p256::elliptic_curve::sec1::ToEncodedPoint;
    use p256::pkcs8::DecodePrivateKey;
    let mut cert = x509_cert::Certificate::from_der(der).unwrap();
    let spki = &mut cert.tbs_certificate.subject_public_key_info;
    let point = p256::PublicKey::from_sec1_bytes(spki.subject_public_key.raw_bytes()).unwrap();
    let compressed = point.to_encoded_point(true);
    spki.subject_public_key = der::asn1::BitString::from_bytes(compressed.as_bytes()).unwrap();
    let tbs = cert.tbs_certificate.to_der().unwrap();
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(&by.serialize_der()).unwrap();
    let sig: p256::ecdsa::DerSignature = key.sign(&tbs);
    cert.signature = der::asn1::BitString::from_bytes(sig.as_bytes()).unwrap();
    cert.to_der().unwrap()
}

// -------------------------------------------------------- strict DER

/// The leaf's DER (re-encoded field by field) with an unknown extension
/// appended whose `critical` is always written out: `01 01 ff` is DER, an
/// explicit FALSE (`01 01 00`) is not (DER omits a DEFAULT value).
fn with_explicit_critical(der: &[u8], critical: bool) -> Vec<u8> {
    use der::asn1::{ObjectIdentifier, OctetString};
    use x509_cert::name::Name;
    use x509_cert::serial_number::SerialNumber;
    use x509_cert::spki::{AlgorithmIdentifierOwned, SubjectPublicKeyInfoOwned};
    use x509_cert::time::Validity;
    #[derive(der::Sequence)]
    struct RawExtension {
        id: ObjectIdentifier,
        #[asn1(optional = "true")]
        critical: Option<bool>,
        value: OctetString,
    }
    #[derive(der::Sequence)]
    struct RawTbs {
        #[asn1(context_specific = "0", tag_mode = "EXPLICIT")]
        version: u8,
        serial: SerialNumber,
        signature: AlgorithmIdentifierOwned,
        issuer: Name,
        validity: Validity,
        subject: Name,
        spki: SubjectPublicKeyInfoOwned,
        #[asn1(context_specific = "3", tag_mode = "EXPLICIT")]
        extensions: Vec<RawExtension>,
    }
    #[derive(der::Sequence)]
    struct RawCert {
        tbs: RawTbs,
        alg: AlgorithmIdentifierOwned,
        sig: der::asn1::BitString,
    }
    let cert = x509_cert::Certificate::from_der(der).unwrap();
    let t = cert.tbs_certificate;
    let mut extensions: Vec<RawExtension> = Vec::new();
    for e in t.extensions.unwrap_or_default() {
        extensions.push(RawExtension {
            id: e.extn_id,
            critical: e.critical.then_some(true),
            value: e.extn_value,
        });
    }
    extensions.push(RawExtension {
        id: ObjectIdentifier::new_unwrap("1.3.6.1.4.1.99999.2"),
        critical: Some(critical),
        value: OctetString::new(vec![0x05, 0x00]).unwrap(),
    });
    RawCert {
        tbs: RawTbs {
            version: 2,
            serial: t.serial_number,
            signature: t.signature,
            issuer: t.issuer,
            validity: t.validity,
            subject: t.subject,
            spki: t.subject_public_key_info,
            extensions,
        },
        alg: cert.signature_algorithm,
        sig: cert.signature,
    }
    .to_der()
    .unwrap()
}

#[test]
fn non_der_certificates_are_malformed() {
    let id = sa("non-der");
    // basicConstraints with an explicit `cA FALSE` (`30 03 01 01 00`): what
    // rcgen before 0.14.9 wrote; DER omits a DEFAULT value.
    let mut p = leaf_params(&id);
    p.custom_extensions.push(ext(
        BASIC_CONSTRAINTS,
        &[0x30, 0x03, 0x01, 0x01, 0x00],
        true,
    ));
    assert_refused(leaf_verdict(p), "cert_malformed");
    // keyUsage digitalSignature with a trailing zero byte (`03 03 07 80 00`):
    // what rcgen 0.13 wrote; DER drops trailing zero bits of a named bit list.
    let mut p = leaf_params(&id);
    p.key_usages = vec![];
    p.custom_extensions
        .push(ext(KEY_USAGE, &[0x03, 0x03, 0x07, 0x80, 0x00], true));
    assert_refused(leaf_verdict(p), "cert_malformed");
    // An extension's `critical` written as an explicit FALSE.
    let root = root();
    let b = bundle(&root);
    let key = p256_key();
    let good = issue(leaf_params(&id), &key, &root);
    assert_ok(verify(&b, &signer(&key, &good), &good, &[]));
    // The rebuilt certificate parses when the flag is TRUE (and is refused
    // for its unknown critical extension): only the explicit FALSE is malformed.
    let s = signer(&key, &good);
    let flagged = with_explicit_critical(&good, true);
    assert_refused(verify(&b, &s, &flagged, &[]), "cert_critical_extension");
    let bad = with_explicit_critical(&good, false);
    assert_refused(verify(&b, &s, &bad, &[]), "cert_malformed");
}

// -------------------------------------------- intermediates and authorities

/// A CA whose URI SAN is `uri`.
fn ca_with_uri(cn: &str, uri: &str) -> CertificateParams {
    let mut p = ca_params(cn);
    p.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    p
}

#[test]
fn intermediate_signing_rules() {
    let root = root();
    let b = bundle(&root);
    let id = sa("via-rules");
    let via = |p: CertificateParams| {
        let inter = intermediate(p, p256_key(), &root);
        verify_leaf(&b, leaf_params(&id), &inter, &[&inter.der()])
    };
    // X509-SVID §3.2, §4.3: no keyUsage at all on a request intermediate.
    let mut p = ca_params("no-ku");
    p.key_usages = vec![];
    assert_refused(via(p), "cert_intermediate_not_ca");
    // X509-SVID §3.2: a signing certificate's SPIFFE ID has no path.
    assert_refused(
        via(ca_with_uri("path-id", "spiffe://example.org/ns/ca")),
        "cert_intermediate_not_ca",
    );
    // Fixed: the trust domain's own ID, or none.
    assert_ok(via(ca_with_uri("td-id", "spiffe://example.org")));
    assert_ok(via(ca_params("no-id")));
    // nameConstraints, critical or not, are not processed: refused.
    for critical in [true, false] {
        let mut p = ca_params("nc");
        p.custom_extensions.push(ext(
            NAME_CONSTRAINTS,
            &[0x30, 0x06, 0xa0, 0x04, 0x30, 0x02, 0x86, 0x00],
            critical,
        ));
        assert_refused(via(p), "cert_critical_extension");
    }
}

#[test]
fn authority_path_len_is_honoured() {
    // RFC 5280 §6.1.4 (m): the trust anchor's pathLenConstraint counts too.
    for (path_len, reason) in [(0u8, Some("cert_path_len")), (1, None)] {
        let key = p256_key();
        let mut params = ca_params("constrained root");
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(path_len));
        let root = Issuer::self_signed(params, key);
        let b = bundle(&root);
        let inter = intermediate(ca_params("under constrained root"), p256_key(), &root);
        let r = verify_leaf(&b, leaf_params(&sa("under-root")), &inter, &[&inter.der()]);
        match reason {
            Some(reason) => assert_refused(r, reason),
            None => assert_ok(r),
        }
        // A leaf straight under the root needs no intermediate allowance.
        assert_ok(verify_leaf(&b, leaf_params(&sa("direct")), &root, &[]));
    }
}

#[test]
fn authorities_must_be_signing_certificates() {
    let key = p256_key();
    let load = |p: CertificateParams| {
        let mut b = TrustBundle::new();
        b.add_pem(TD, &p.self_signed(&key).unwrap().pem())
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert!(load(ca_params("fine")).is_ok());
    // Missing keyUsage is tolerated on a trust anchor (RFC 5280 roots predating it).
    let mut p = ca_params("no-ku root");
    p.key_usages = vec![];
    assert!(load(p).is_ok());
    let mut bad = Vec::new();
    let mut p = ca_params("leaf as root");
    p.is_ca = IsCa::ExplicitNoCa;
    bad.push(("not a CA", p));
    let mut p = ca_params("no keyCertSign");
    p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    bad.push(("keyCertSign", p));
    bad.push((
        "has a path",
        ca_with_uri("path root", "spiffe://example.org/ns/root"),
    ));
    let mut p = ca_params("critical root");
    p.custom_extensions
        .push(ext(UNKNOWN_EXT_OID, &[0x05, 0x00], true));
    bad.push(("critical extension", p));
    let mut p = ca_params("nc root");
    p.custom_extensions.push(ext(
        NAME_CONSTRAINTS,
        &[0x30, 0x06, 0xa0, 0x04, 0x30, 0x02, 0x86, 0x00],
        true,
    ));
    bad.push(("nameConstraints", p));
    for (what, p) in bad {
        let err = load(p).unwrap_err();
        assert!(err.starts_with("bundle_malformed"), "{what}: {err}");
        assert!(err.contains(what), "{what}: {err}");
    }
}

// ------------------------------------------------ path search cost bounds
//
// Every shape below is refused, and the number of ECDSA verifications it
// costs is counted: never more than `Limits::path_signature_budget()`
// (2 × max_certs = 64) for certificate paths, whatever the shape.

/// Verifies a one-entry history by a fresh leaf issued by `by`, sending
/// `extra` after the leaf; returns the verdict and the ECDSA calls.
fn counted(
    bundle: &TrustBundle,
    by: &Issuer,
    extra: &[Vec<u8>],
    limits: &Limits,
) -> (Result<VerifiedHistory, Refusal>, usize) {
    let key = p256_key();
    let der = issue(leaf_params(&sa("maze-runner")), &key, by);
    let extra: Vec<&[u8]> = extra.iter().map(Vec::as_slice).collect();
    verify_counted(bundle, &signer(&key, &der), &der, &extra, limits)
}

#[test]
fn self_issued_maze_costs_nothing() {
    // 31 self-signed CAs sharing one subject and one key: each can "issue"
    // every other (the shape that made a depth-first search try every path).
    let root = root();
    let b = bundle(&root);
    let maze_key = p256_key();
    let maze: Vec<Vec<u8>> = (0..31)
        .map(|i| {
            maze_params("maze", i + 1)
                .self_signed(&maze_key)
                .unwrap()
                .der()
                .to_vec()
        })
        .collect();
    let by = Issuer::self_signed(maze_params("maze", 1), maze_key);
    let (r, calls) = counted(&b, &by, &maze, &Limits::default());
    assert_refused(r, "cert_untrusted");
    // Nothing in the maze names an authority as its issuer: no signature is checked.
    assert_eq!(calls, 0);
}

/// 31 certificates that claim `authority` as their issuer, all signed by
/// one forger's key, and the forger as an issuer (of the leaf).
fn forged_maze(authority: &CertificateParams) -> (Vec<Vec<u8>>, Issuer) {
    let forger = p256_key();
    let maze = (0..31)
        .map(|i| claimed(maze_params("forged", i + 1), authority, &forger))
        .collect();
    (maze, Issuer::self_signed(maze_params("forged", 1), forger))
}

#[test]
fn certificates_claiming_the_authority_cost_one_check_each() {
    let root = root();
    let b = bundle(&root);
    let (maze, by) = forged_maze(&root.params);
    let (r, calls) = counted(&b, &by, &maze, &Limits::default());
    assert_refused(r, "cert_untrusted");
    // Each forged certificate is checked once against the one authority key.
    assert_eq!(calls, 31);
}

#[test]
fn the_signature_budget_stops_a_search_that_would_cost_more() {
    // Three authorities with one name (as in a key rotation, times three) and
    // 31 certificates claiming that name: 93 checks without a budget.
    let roots: Vec<Issuer> = (0..3)
        .map(|i| Issuer::self_signed(maze_params("rotating root", 100 + i), p256_key()))
        .collect();
    let mut b = TrustBundle::new();
    for r in &roots {
        b.add_pem(TD, &r.cert.pem()).unwrap();
    }
    let (maze, by) = forged_maze(&roots[0].params);
    let limits = Limits::default();
    let (r, calls) = counted(&b, &by, &maze, &limits);
    assert_refused(r, "cert_path_budget");
    assert_eq!(calls, limits.path_signature_budget());
    assert_eq!(limits.path_signature_budget(), 64);
    // A smaller cap shrinks the budget with it: 12 certificates, 24 checks.
    let small = Limits {
        max_certs: 12,
        ..Limits::default()
    };
    let (r, calls) = counted(&b, &by, &maze[..11], &small);
    assert_refused(r, "cert_path_budget");
    assert_eq!(calls, 24);
}

#[test]
fn a_chain_past_the_depth_cap_costs_one_check_per_link() {
    let root = root();
    let b = bundle(&root);
    let mut chain = vec![intermediate(maze_params("link 1", 1), p256_key(), &root)];
    for i in 2..=6 {
        let up = chain.last().unwrap();
        let next = intermediate(maze_params(&format!("link {i}"), i), p256_key(), up);
        chain.push(next);
    }
    let ders: Vec<Vec<u8>> = chain.iter().map(Issuer::der).collect();
    let (r, calls) = counted(&b, chain.last().unwrap(), &ders, &Limits::default());
    assert_refused(r, "cert_chain_depth");
    // Six links and the leaf's own signature, each verified once.
    assert_eq!(calls, 7);
    // Within the cap (leaf + 3 intermediates) it verifies: 4 path checks,
    // then the entry and the proof.
    let (r, calls) = counted(&b, &chain[2], &ders[..3], &Limits::default());
    assert_ok(r);
    assert_eq!(calls, 4 + 2);
}

#[test]
fn duplicates_and_other_trust_domains_add_no_work() {
    let root = root();
    let mut b = bundle(&root);
    // Ten other trust domains whose authorities share the intermediate's issuer name.
    for i in 0..10 {
        let k = p256_key();
        let params = ca_params("cert-rules root");
        let cert = params.self_signed(&k).unwrap();
        b.add_pem(&format!("td{i}.example"), &cert.pem()).unwrap();
    }
    let inter = intermediate(ca_params("shared intermediate"), p256_key(), &root);
    let copies: Vec<Vec<u8>> = (0..8).map(|_| inter.der()).collect();
    let (r, calls) = counted(&b, &inter, &copies, &Limits::default());
    assert_ok(r);
    // One check for the intermediate, one for the leaf, then entry and proof.
    assert_eq!(calls, 2 + 2);
}

#[test]
fn more_certificates_than_the_cap_are_refused_before_any_work() {
    let root = root();
    let b = bundle(&root);
    let inter = intermediate(ca_params("cap"), p256_key(), &root);
    let many: Vec<Vec<u8>> = (0..32).map(|_| inter.der()).collect();
    let (r, calls) = counted(&b, &inter, &many, &Limits::default());
    assert_refused(r, "certs_too_many");
    assert_eq!(calls, 0);
    let (r, _) = counted(&b, &inter, &many[..31], &Limits::default());
    assert_ok(r);
}

#[test]
fn sampled_shapes_never_cost_more_than_the_budget() {
    let pool = pool();
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = |n: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        (state % n as u64) as usize
    };
    let (mut verified, mut refused) = (0, 0);
    for _ in 0..150 {
        let (leaf, key) = &pool.leaves[next(pool.leaves.len())];
        let limits = Limits {
            max_chain_depth: 1 + next(6),
            max_certs: 4 + next(60),
            ..Limits::default()
        };
        let extra: Vec<&[u8]> = (0..next(40))
            .map(|_| pool.cas[next(pool.cas.len())].as_slice())
            .collect();
        let (r, calls) = verify_counted(&pool.bundle, &signer(key, leaf), leaf, &extra, &limits);
        // Certificate paths within the budget, then at most the entry and the proof.
        assert!(
            calls <= limits.path_signature_budget() + 2,
            "{calls} checks with {} certificates, depth {}: {r:?}",
            extra.len() + 1,
            limits.max_chain_depth
        );
        if r.is_ok() {
            verified += 1;
        } else {
            refused += 1;
        }
    }
    // The pool makes both outcomes common.
    assert!(
        verified > 15 && refused > 15,
        "{verified} verified, {refused} refused"
    );
}
