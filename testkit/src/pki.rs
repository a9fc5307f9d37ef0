//! Certificates of any shape, built with rcgen (native only): authorities,
//! intermediates and X.509-SVID leaves with fixed validity windows around
//! [`crate::NOW`], the one-entry history a leaf signs, and a pool of hostile
//! shapes (issuer mazes, forged issuers, rotating authorities) for the
//! cost-bound tests and the `cert_paths` fuzz target.

use custody_history::dev_ca;
use custody_history::sign::{
    append_entry, certs_header, make_proof, EntryFields, ProofFields, Signer,
};
use custody_history::{
    b64url, b64url_decode, sha256, EcdsaP256Verifier, Headers, Limits, Presented, Refusal,
    SpiffeId, TrustBundle, VerifiedHistory, Verifier, VerifyCache, ALG, ENTRY_TYP, PROOF_TYP, X5T,
};
use rcgen::{
    Certificate, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyPair, KeyUsagePurpose,
    SanType, SignatureAlgorithm, PKCS_ECDSA_P256_SHA256,
};
use time::OffsetDateTime;

use crate::{sa, AUD, NOW, TD};

/// 2026-01-01 .. 2031-01-01 for authorities and intermediates.
pub const CA_NOT_BEFORE: u64 = 1_767_225_600;
pub const CA_NOT_AFTER: u64 = 1_924_992_000;
/// 2026-04-01 .. 2026-06-01 for leaves.
pub const NOT_BEFORE: u64 = 1_775_001_600;
pub const NOT_AFTER: u64 = 1_780_272_000;

pub fn at(secs: u64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).unwrap()).unwrap()
}

pub fn p256_key() -> KeyPair {
    KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).unwrap()
}

pub fn key_for(alg: &'static SignatureAlgorithm) -> KeyPair {
    KeyPair::generate_for(alg).unwrap()
}

/// A certificate that can issue others: its parameters, certificate and key.
pub struct Issuer {
    pub params: CertificateParams,
    pub cert: Certificate,
    pub key: KeyPair,
}

impl Issuer {
    /// A self-signed CA with these parameters and key.
    pub fn self_signed(params: CertificateParams, key: KeyPair) -> Issuer {
        let cert = params.self_signed(&key).unwrap();
        Issuer { params, cert, key }
    }

    /// What rcgen signs with.
    pub fn signs(&self) -> rcgen::Issuer<'_, &KeyPair> {
        rcgen::Issuer::from_params(&self.params, &self.key)
    }

    pub fn der(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// A trust bundle holding this CA for the fixtures' trust domain.
    pub fn bundle(&self) -> TrustBundle {
        let mut b = TrustBundle::new();
        assert_eq!(b.add_pem(TD, &self.pem()).unwrap(), 1);
        b
    }
}

/// CA parameters like dev_ca's: cA true, keyCertSign + cRLSign + digitalSignature.
pub fn ca_params(cn: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dev_ca::subject("Custody test CA", Some(cn));
    dev_ca::make_authority(&mut params);
    params.not_before = at(CA_NOT_BEFORE);
    params.not_after = at(CA_NOT_AFTER);
    params
}

/// [`ca_params`] with an explicit serial (otherwise equal certificates
/// would be exact duplicates).
pub fn ca_params_serial(cn: &str, serial: u64) -> CertificateParams {
    let mut p = ca_params(cn);
    p.serial_number = Some(serial.into());
    p
}

/// A trust domain authority: self-signed ECDSA P-256.
pub fn root() -> Issuer {
    Issuer::self_signed(ca_params("test root"), p256_key())
}

/// An intermediate with these parameters and key, signed by `by`.
pub fn intermediate(params: CertificateParams, key: KeyPair, by: &Issuer) -> Issuer {
    let mut params = params;
    params.use_authority_key_identifier_extension = true;
    let cert = params.signed_by(&key, &by.signs()).unwrap();
    Issuer { params, cert, key }
}

/// A well-formed X.509-SVID leaf for `id`: not a CA, digitalSignature
/// (critical keyUsage), serverAuth + clientAuth, one SPIFFE URI SAN.
pub fn leaf_params(id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = dev_ca::subject("Custody test SVID", Some(id));
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.is_ca = IsCa::NoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    params.not_before = at(NOT_BEFORE);
    params.not_after = at(NOT_AFTER);
    params
}

/// A certificate with `params` and `key`'s public key, signed by `by`.
pub fn issue(params: CertificateParams, key: &KeyPair, by: &Issuer) -> Vec<u8> {
    params.signed_by(key, &by.signs()).unwrap().der().to_vec()
}

/// A certificate with `params`, claiming `issuer_params`' subject as its
/// issuer but signed with `signing_key` (which need not be that issuer's).
pub fn claimed(
    params: CertificateParams,
    issuer_params: &CertificateParams,
    signing_key: &KeyPair,
) -> Vec<u8> {
    let key = p256_key();
    params
        .signed_by(
            &key,
            &rcgen::Issuer::from_params(issuer_params, signing_key),
        )
        .unwrap()
        .der()
        .to_vec()
}

/// The history signer for a P-256 leaf.
pub fn leaf_signer(key: &KeyPair, cert_der: &[u8]) -> Signer {
    Signer::from_pkcs8_der(&key.serialize_der(), cert_der).unwrap()
}

/// The three headers of a one-entry history by `signer` (who is also the
/// next holder, the prover and the mTLS peer), naming the certificate
/// `named` and sending it followed by `intermediates`. When `named` is not
/// the signer's own certificate, the JWS are re-signed under a header whose
/// `x5t#S256` names it (for leaves the sign API refuses): the verifier judges
/// the certificate before the signature.
pub struct OneEntry {
    pub history: String,
    pub proof: String,
    pub certs: String,
    pub peer: SpiffeId,
}

/// The body the one-entry proof is bound to.
pub const BODY: &[u8] = br#"{"jsonrpc":"2.0","id":1,"method":"tools/call"}"#;

impl OneEntry {
    pub fn new(signer: &Signer, named: &[u8], intermediates: &[&[u8]]) -> OneEntry {
        let id = signer.spiffe_id().as_str().to_owned();
        let mut history = append_entry(
            None,
            signer,
            &EntryFields {
                wid: "wf-testkit",
                step: "checked",
                result: "ok",
                nxt: &id,
                iat: NOW - 10,
                exp: NOW + 3600,
                claims: None,
            },
        )
        .unwrap();
        let mut proof = make_proof(
            &history,
            signer,
            BODY,
            &ProofFields {
                aud: AUD,
                iat: NOW - 5,
                exp: NOW + 55,
                jti: &[9; 16],
            },
        )
        .unwrap();
        if named != signer.cert_der() {
            history = renamed(signer, &history, ENTRY_TYP, named);
            proof = renamed(signer, &proof, PROOF_TYP, named);
        }
        OneEntry {
            history,
            proof,
            certs: certs_header(core::iter::once(named).chain(intermediates.iter().copied())),
            peer: SpiffeId::parse(&id).unwrap(),
        }
    }

    /// Verifies at [`NOW`] under `bundle` and `limits` with `ecdsa`.
    pub fn verify(
        &self,
        bundle: &TrustBundle,
        limits: &Limits,
        ecdsa: &dyn EcdsaP256Verifier,
        cache: Option<&mut VerifyCache>,
    ) -> Result<VerifiedHistory, Refusal> {
        let req = Presented {
            headers: Headers {
                history: Some(&self.history),
                proof: Some(&self.proof),
                certs: Some(&self.certs),
            },
            peer: &self.peer,
            audience: AUD,
            body: BODY,
            now: NOW,
        };
        Verifier::new(bundle, limits)
            .with_ecdsa(ecdsa)
            .verify(&req, cache)
    }
}

/// `jws` (same payload) re-signed by `signer` under a header whose
/// `x5t#S256` names `named`.
pub fn renamed(signer: &Signer, jws: &str, typ: &str, named: &[u8]) -> String {
    let payload = b64url_decode(jws.split('.').nth(1).unwrap()).unwrap();
    let header =
        serde_json::json!({"alg": ALG, "typ": typ, X5T: b64url(&sha256(named))}).to_string();
    signer.sign_raw(&header, core::str::from_utf8(&payload).unwrap())
}

/// A pool of certificates for sampled and fuzzed shapes: two authorities
/// named "root" (a rotation), CAs named A, B and C issued by every name
/// with the right key or a stranger's, a self-issued copy of each, and a
/// leaf under each name.
pub struct Pool {
    pub bundle: TrustBundle,
    pub cas: Vec<Vec<u8>>,
    /// (leaf DER, its key)
    pub leaves: Vec<(Vec<u8>, KeyPair)>,
}

pub fn pool() -> Pool {
    let names = ["root", "A", "B", "C"];
    let keys: Vec<KeyPair> = names.iter().map(|_| p256_key()).collect();
    let second_root = p256_key();
    let stranger = p256_key();
    let params = |name: &str, serial: u64| ca_params_serial(name, serial);
    let mut bundle = TrustBundle::new();
    for (k, serial) in [(&keys[0], 1000), (&second_root, 1001)] {
        bundle
            .add_pem(TD, &params("root", serial).self_signed(k).unwrap().pem())
            .unwrap();
    }
    let mut cas = Vec::new();
    let mut serial = 1;
    for s in 1..names.len() {
        for (i, issuer) in names.iter().enumerate() {
            for signer in [&keys[i], &stranger] {
                serial += 1;
                let issuer_params = params(issuer, 0);
                let cert = params(names[s], serial)
                    .signed_by(
                        &keys[s],
                        &rcgen::Issuer::from_params(&issuer_params, signer),
                    )
                    .unwrap();
                cas.push(cert.der().to_vec());
            }
        }
        serial += 1;
        cas.push(
            params(names[s], serial)
                .self_signed(&keys[s])
                .unwrap()
                .der()
                .to_vec(),
        );
    }
    let leaves = names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            let key = p256_key();
            let issuer_params = params(name, 0);
            let der = leaf_params(&sa("sampled"))
                .signed_by(&key, &rcgen::Issuer::from_params(&issuer_params, &keys[i]))
                .unwrap()
                .der()
                .to_vec();
            (der, key)
        })
        .collect();
    Pool {
        bundle,
        cas,
        leaves,
    }
}
