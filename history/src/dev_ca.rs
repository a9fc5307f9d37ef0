//! Development trust domain CA and X.509-SVID issuance (feature `dev-ca`,
//! native only; uses `rcgen`). Not for production: keys are written as
//! plain PEM and there is no revocation.

use core::fmt;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};
use serde_json::json;
use time::OffsetDateTime;

use crate::codec::b64url;
use crate::spiffe::{check_trust_domain, SpiffeId};
use crate::x509::{parse_cert, PublicKey};

/// Why a development CA operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DevCaError(pub String);

impl fmt::Display for DevCaError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DevCaError {}

fn err(e: impl fmt::Display) -> DevCaError {
    DevCaError(e.to_string())
}

/// The files of a development trust domain.
#[derive(Debug, Clone)]
pub struct CaFiles {
    /// The CA certificate, PEM: the trust bundle as PEM.
    pub bundle_pem: String,
    /// The same authority as a SPIFFE bundle (JWKS, `spiffe_sequence` 1).
    pub bundle_spiffe_json: String,
    /// The CA private key, PKCS#8 PEM. Keep it secret.
    pub ca_key_pem: String,
}

/// Options for [`init_with`].
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// A PKCS#8 PEM key to use (ECDSA P-256 or RSA); `None` generates P-256.
    pub key_pem: Option<String>,
    /// `spiffe_sequence` written in the SPIFFE bundle.
    pub sequence: u64,
}

/// An issued X.509-SVID.
#[derive(Debug, Clone)]
pub struct Svid {
    pub cert_pem: String,
    pub cert_der: Vec<u8>,
    /// PKCS#8 PEM P-256 key.
    pub key_pkcs8_pem: String,
    pub key_pkcs8_der: Vec<u8>,
}

/// Options for [`issue_with`].
#[derive(Debug, Clone)]
pub struct SvidOptions {
    /// URI SANs: normally exactly one SPIFFE ID (more only to build bad test certificates).
    pub uris: Vec<String>,
    /// Unix seconds.
    pub not_before: u64,
    /// Unix seconds.
    pub not_after: u64,
    /// Issue a CA (an intermediate) instead of a leaf.
    pub ca: bool,
    /// A PKCS#8 PEM key to certify; `None` generates P-256.
    pub key_pem: Option<String>,
    /// DNS name SANs, for server certificates (e.g. `localhost`).
    pub dns: Vec<String>,
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

fn at(secs: u64) -> Result<OffsetDateTime, DevCaError> {
    OffsetDateTime::from_unix_timestamp(i64::try_from(secs).map_err(err)?).map_err(err)
}

fn uri(s: &str) -> Result<SanType, DevCaError> {
    Ok(SanType::URI(s.try_into().map_err(err)?))
}

/// The key in `pem` (PKCS#8), or a fresh P-256 key.
fn key_pair(pem: Option<&str>) -> Result<KeyPair, DevCaError> {
    match pem {
        Some(pem) => KeyPair::from_pem(pem).map_err(err),
        None => KeyPair::generate().map_err(err),
    }
}

/// A subject `O=<organization>`, with `CN=<common_name>` when given.
pub fn subject(organization: &str, common_name: Option<&str>) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::OrganizationName, organization);
    if let Some(cn) = common_name {
        dn.push(DnType::CommonName, cn);
    }
    dn
}

/// Makes `params` an authority: cA true with no path length limit,
/// keyCertSign + cRLSign + digitalSignature.
pub fn make_authority(params: &mut CertificateParams) {
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
}

/// A self-signed ECDSA P-256 CA for `trust_domain` (e.g. `example.org`),
/// with URI SAN `spiffe://<trust_domain>`, valid from a minute ago for a year.
pub fn init(trust_domain: &str) -> Result<CaFiles, DevCaError> {
    let now = unix_now();
    init_with(
        trust_domain,
        &CaOptions {
            not_before: now.saturating_sub(60),
            not_after: now + 365 * 24 * 3600,
            key_pem: None,
            sequence: 1,
        },
    )
}

/// [`init`] with explicit validity, key and bundle sequence.
pub fn init_with(trust_domain: &str, opts: &CaOptions) -> Result<CaFiles, DevCaError> {
    check_trust_domain(trust_domain).map_err(err)?;
    let key = key_pair(opts.key_pem.as_deref())?;
    let mut params = CertificateParams::default();
    params.distinguished_name = subject("Custody development CA", Some(trust_domain));
    make_authority(&mut params);
    params.subject_alt_names = vec![uri(&format!("spiffe://{trust_domain}"))?];
    params.not_before = at(opts.not_before)?;
    params.not_after = at(opts.not_after)?;
    let cert = params.self_signed(&key).map_err(err)?;
    Ok(CaFiles {
        bundle_pem: cert.pem(),
        bundle_spiffe_json: spiffe_bundle_json(&[cert.der().as_ref()], opts.sequence)?,
        ca_key_pem: key.serialize_pem(),
    })
}

/// A SPIFFE bundle (JWKS) holding these DER authorities as `x509-svid` keys.
pub fn spiffe_bundle_json(authorities: &[&[u8]], sequence: u64) -> Result<String, DevCaError> {
    use base64::Engine;
    let std_b64 = base64::engine::general_purpose::STANDARD;
    let mut keys = Vec::new();
    for der in authorities {
        let c = parse_cert(der).map_err(err)?;
        let x5c = vec![std_b64.encode(der)];
        let key = match &c.key {
            PublicKey::P256(sec1) if sec1.len() == 65 => json!({
                "use": "x509-svid", "kty": "EC", "crv": "P-256",
                "x": b64url(&sec1[1..33]), "y": b64url(&sec1[33..65]), "x5c": x5c,
            }),
            PublicKey::Rsa(k) => {
                use rsa::traits::PublicKeyParts;
                json!({
                    "use": "x509-svid", "kty": "RSA",
                    "n": b64url(&k.n().to_bytes_be()), "e": b64url(&k.e().to_bytes_be()),
                    "x5c": x5c,
                })
            }
            _ => return Err(DevCaError("unsupported authority key".into())),
        };
        keys.push(key);
    }
    Ok(json!({"keys": keys, "spiffe_sequence": sequence}).to_string())
}

/// Issues an X.509-SVID for `spiffe_id` from the CA, valid from a minute
/// ago for `ttl_secs`: P-256 key, one SPIFFE URI SAN, not a CA,
/// digitalSignature, serverAuth + clientAuth.
pub fn issue(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    spiffe_id: &str,
    ttl_secs: u64,
) -> Result<Svid, DevCaError> {
    let id = SpiffeId::parse(spiffe_id).map_err(err)?;
    if id.path().is_empty() {
        return Err(DevCaError(
            "an X.509-SVID needs a SPIFFE ID with a path".into(),
        ));
    }
    let now = unix_now();
    issue_with(
        ca_cert_pem,
        ca_key_pem,
        &SvidOptions {
            dns: Vec::new(),
            uris: vec![spiffe_id.to_owned()],
            not_before: now.saturating_sub(60),
            not_after: now + ttl_secs,
            ca: false,
            key_pem: None,
        },
    )
}

/// [`issue`] with every option explicit (used to build test fixtures,
/// including deliberately bad certificates).
pub fn issue_with(
    ca_cert_pem: &str,
    ca_key_pem: &str,
    opts: &SvidOptions,
) -> Result<Svid, DevCaError> {
    let ca_key = KeyPair::from_pem(ca_key_pem).map_err(err)?;
    // The issuer's name and key identifier come from the CA's own certificate.
    let issuer = rcgen::Issuer::from_ca_cert_pem(ca_cert_pem, &ca_key).map_err(err)?;
    let key = key_pair(opts.key_pem.as_deref())?;
    let mut params = CertificateParams::default();
    let first_uri = opts.uris.first().map(String::as_str);
    params.distinguished_name = subject("Custody development SVID", first_uri);
    params.subject_alt_names = opts.uris.iter().map(|u| uri(u)).collect::<Result<_, _>>()?;
    for name in &opts.dns {
        params
            .subject_alt_names
            .push(SanType::DnsName(name.as_str().try_into().map_err(err)?));
    }
    params.not_before = at(opts.not_before)?;
    params.not_after = at(opts.not_after)?;
    params.use_authority_key_identifier_extension = true;
    if opts.ca {
        make_authority(&mut params);
    } else {
        // basicConstraints `30 00` (cA at its DEFAULT false, omitted as DER
        // requires; rcgen before 0.14.9 wrote an explicit FALSE).
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    }
    let cert = params.signed_by(&key, &issuer).map_err(err)?;
    Ok(Svid {
        cert_pem: cert.pem(),
        cert_der: cert.der().to_vec(),
        key_pkcs8_pem: key.serialize_pem(),
        key_pkcs8_der: key.serialize_der(),
    })
}
