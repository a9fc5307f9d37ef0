//! Reading certificates, keys and trust bundles from files.

use crate::fail::{error, Failure, Result};
use base64::Engine;
use custody_history::sign::Signer;
use custody_history::{SpiffeId, TrustBundle};
use std::path::Path;
use x509_parser::extensions::GeneralName;

/// The DER of every `CERTIFICATE` block of a PEM text, in order.
pub fn pem_certs(text: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    let blocks = pem::parse_many(text).map_err(|e| format!("not PEM: {e}"))?;
    let ders: Vec<Vec<u8>> = blocks
        .into_iter()
        .filter(|b| b.tag() == "CERTIFICATE")
        .map(|b| b.into_contents())
        .collect();
    if ders.is_empty() {
        return Err("no CERTIFICATE block".into());
    }
    Ok(ders)
}

/// The certificates of a PEM file (leaf first for an SVID).
pub fn read_certs(path: &Path) -> Result<Vec<Vec<u8>>> {
    pem_certs(&crate::util::read_text(path)?).map_err(|e| error(format!("{}: {e}", path.display())))
}

/// A PKCS#8 private key (`PRIVATE KEY` block) as DER.
pub fn read_pkcs8_key(path: &Path) -> Result<Vec<u8>> {
    let text = crate::util::read_text(path)?;
    let fail = |m: &str| error(format!("{}: {m}", path.display()));
    let blocks = pem::parse_many(&text).map_err(|e| fail(&format!("not PEM: {e}")))?;
    if let Some(b) = blocks.iter().find(|b| b.tag() == "PRIVATE KEY") {
        return Ok(b.contents().to_vec());
    }
    if blocks.iter().any(|b| b.tag() == "EC PRIVATE KEY") {
        return Err(fail(
            "a SEC1 key; convert it with `openssl pkcs8 -topk8 -nocrypt` (PKCS#8 PEM is needed)",
        ));
    }
    Err(fail("no PKCS#8 PRIVATE KEY block"))
}

/// The signer for an X.509-SVID (`cert` leaf first, then any intermediates)
/// and its key; also returns every certificate of `cert` (DER).
pub fn load_signer(cert: &Path, key: &Path) -> Result<(Signer, Vec<Vec<u8>>)> {
    let chain = read_certs(cert)?;
    let key_der = read_pkcs8_key(key)?;
    let leaf = chain.first().ok_or_else(|| error("no certificate"))?;
    let signer = Signer::from_pkcs8_der(&key_der, leaf)
        .map_err(|e| error(format!("{} with {}: {e}", cert.display(), key.display())))?;
    Ok((signer, chain))
}

/// What the commands need to know about one certificate.
#[derive(Clone, Debug)]
pub struct CertInfo {
    pub uris: Vec<String>,
    pub not_after: u64,
    pub self_signed: bool,
}

pub fn cert_info(der: &[u8]) -> std::result::Result<CertInfo, String> {
    let (_, c) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("not an X.509 certificate: {e}"))?;
    let mut uris = Vec::new();
    if let Some(san) = c
        .subject_alternative_name()
        .map_err(|e| format!("bad subjectAltName: {e}"))?
    {
        for n in &san.value.general_names {
            if let GeneralName::URI(u) = n {
                uris.push((*u).to_owned());
            }
        }
    }
    Ok(CertInfo {
        uris,
        not_after: u64::try_from(c.validity().not_after.timestamp()).unwrap_or(0),
        self_signed: c.subject().as_raw() == c.issuer().as_raw(),
    })
}

/// The trust domain an authority certificate names with its one URI SAN
/// `spiffe://<trust domain>` (how SPIRE and `custody ca init` write them).
pub fn authority_trust_domain(der: &[u8]) -> Option<String> {
    let info = cert_info(der).ok()?;
    let [uri] = info.uris.as_slice() else {
        return None;
    };
    SpiffeId::parse(uri)
        .ok()
        .map(|id| id.trust_domain().to_owned())
}

/// The authorities of a bundle file: PEM, or a SPIFFE bundle (JSON; the
/// `x5c` of its `x509-svid` keys).
fn bundle_authorities(text: &str) -> std::result::Result<Vec<Vec<u8>>, String> {
    if !is_json(text) {
        return pem_certs(text);
    }
    let doc: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("not a SPIFFE bundle: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(serde_json::Value::as_array)
        .ok_or("not a SPIFFE bundle: no keys array")?;
    let mut ders = Vec::new();
    for k in keys {
        if k.get("use").and_then(serde_json::Value::as_str) != Some("x509-svid") {
            continue;
        }
        for c in k
            .get("x5c")
            .and_then(serde_json::Value::as_array)
            .into_iter()
            .flatten()
        {
            let der = c
                .as_str()
                .and_then(|s| base64::engine::general_purpose::STANDARD.decode(s).ok())
                .ok_or("an x5c entry is not base64")?;
            ders.push(der);
        }
    }
    Ok(ders)
}

/// The trust domains of a SPIFFE bundle map, if `text` is one.
fn bundle_map(
    text: &str,
) -> std::result::Result<Option<serde_json::Map<String, serde_json::Value>>, String> {
    if !is_json(text) {
        return Ok(None);
    }
    let doc = custody_core::json::parse_strict(text.as_bytes(), 32)
        .map_err(|e| format!("not a SPIFFE bundle or bundle map: {e:?}"))?;
    match doc.get("trust_domains") {
        None => Ok(None),
        Some(serde_json::Value::Object(map)) if !map.is_empty() => Ok(Some(map.clone())),
        Some(_) => Err("trust_domains must map trust domains to SPIFFE bundles or PEM".into()),
    }
}

fn is_json(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

/// Loads a trust bundle file for `trust_domain`, or for the trust domain its
/// authorities name: PEM certificates, a SPIFFE bundle (JSON), or a SPIFFE
/// bundle map naming several trust domains, as Envoy's SPIFFE validator
/// reads it (`{"trust_domains": {"<td>": <SPIFFE bundle> | "<PEM>", …}}`).
pub fn load_bundle(path: &Path, trust_domain: Option<&str>) -> Result<(TrustBundle, String)> {
    let text = crate::util::read_text(path)?;
    let at = |m: String| error(format!("{}: {m}", path.display()));
    if let Some(map) = bundle_map(&text).map_err(at)? {
        if trust_domain.is_some() {
            return Err(at(
                "a bundle map names its trust domains: drop --trust-domain".into(),
            ));
        }
        let mut bundle = TrustBundle::new();
        for (td, source) in &map {
            let loaded = match source {
                serde_json::Value::String(pem) => bundle.add_pem(td, pem),
                other => bundle.load_spiffe_bundle(td, &other.to_string()),
            };
            loaded.map_err(|r| at(format!("trust domain {td}: {}: {}", r.reason(), r.detail())))?;
        }
        let names: Vec<&str> = map.keys().map(String::as_str).collect();
        return Ok((bundle, names.join(", ")));
    }
    let td = match trust_domain {
        Some(td) => td.to_owned(),
        None => {
            let ders = bundle_authorities(&text).map_err(at)?;
            let mut tds: Vec<String> = ders
                .iter()
                .filter_map(|d| authority_trust_domain(d))
                .collect();
            tds.sort();
            tds.dedup();
            match tds.as_slice() {
                [td] => td.clone(),
                [] => {
                    return Err(at(
                        "its authorities name no trust domain (URI SAN spiffe://<trust domain>): give --trust-domain".into(),
                    ))
                }
                _ => {
                    return Err(at(format!(
                        "its authorities name several trust domains ({}): give --trust-domain",
                        tds.join(", ")
                    )))
                }
            }
        }
    };
    let mut bundle = TrustBundle::new();
    let loaded = if is_json(&text) {
        bundle.load_spiffe_bundle(&td, &text)
    } else {
        bundle.add_pem(&td, &text)
    };
    loaded.map_err(|r| at(format!("{}: {}", r.reason(), r.detail())))?;
    Ok((bundle, td))
}

/// Parses a SPIFFE ID argument (clap value parser).
pub fn parse_spiffe_id(s: &str) -> std::result::Result<SpiffeId, String> {
    SpiffeId::parse(s).map_err(|e| format!("{e}"))
}

/// Parses a trust domain argument (clap value parser).
pub fn parse_trust_domain(s: &str) -> std::result::Result<String, String> {
    custody_history::spiffe::check_trust_domain(s)
        .map(|()| s.to_owned())
        .map_err(|e| format!("{e}"))
}

impl From<custody_history::dev_ca::DevCaError> for Failure {
    fn from(e: custody_history::dev_ca::DevCaError) -> Failure {
        error(e.0)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use custody_history::dev_ca;

    #[test]
    fn a_bundle_map_loads_every_trust_domain_it_names() {
        let a = dev_ca::init("example.org").unwrap();
        let b = dev_ca::init("other.org").unwrap();
        let dir = std::env::temp_dir().join(format!("custody-map-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let map = dir.join("map.json");
        let spiffe: serde_json::Value = serde_json::from_str(&a.bundle_spiffe_json).unwrap();
        let doc = serde_json::json!({"trust_domains": {"example.org": spiffe, "other.org": b.bundle_pem}});
        std::fs::write(&map, doc.to_string()).unwrap();
        let (bundle, names) = load_bundle(&map, None).unwrap();
        assert_eq!(names, "example.org, other.org");
        assert_eq!(bundle.trust_domains().count(), 2);
        assert!(load_bundle(&map, Some("example.org")).is_err());
        std::fs::write(&map, r#"{"trust_domains": {"Example.org": "x"}}"#).unwrap();
        assert!(load_bundle(&map, None).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn bundles_in_both_formats_name_their_trust_domain() {
        let ca = dev_ca::init("example.org").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let pem = dir.path().join("b.pem");
        let json = dir.path().join("b.json");
        std::fs::write(&pem, &ca.bundle_pem).unwrap();
        std::fs::write(&json, &ca.bundle_spiffe_json).unwrap();
        for p in [&pem, &json] {
            let (b, td) = load_bundle(p, None).unwrap();
            assert_eq!(td, "example.org");
            assert_eq!(b.trust_domains().collect::<Vec<_>>(), ["example.org"]);
            let (_, td) = load_bundle(p, Some("other.org")).unwrap();
            assert_eq!(td, "other.org");
        }
        let (b, _) = load_bundle(&json, None).unwrap();
        assert_eq!(b.sequence("example.org"), Some(1));
        std::fs::write(&pem, "junk").unwrap();
        assert!(load_bundle(&pem, None).is_err());
    }

    #[test]
    fn argument_parsers() {
        assert!(parse_spiffe_id("spiffe://example.org/a").is_ok());
        assert!(parse_spiffe_id("spiffe://Example.org/a").is_err());
        assert!(parse_spiffe_id("https://example.org/a").is_err());
        assert_eq!(parse_trust_domain("example.org").unwrap(), "example.org");
        assert!(parse_trust_domain("example.org:443").is_err());
        assert!(parse_trust_domain("").is_err());
    }

    #[test]
    fn keys_must_be_pkcs8() {
        let dir = tempfile::tempdir().unwrap();
        let k = dir.path().join("k");
        std::fs::write(
            &k,
            "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
        )
        .unwrap();
        assert!(read_pkcs8_key(&k)
            .unwrap_err()
            .to_string()
            .contains("openssl pkcs8"));
    }
}
