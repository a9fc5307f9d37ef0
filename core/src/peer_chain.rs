//! The caller's certificate chain as Envoy forwards it in
//! `x-forwarded-client-cert` (XFCC), for the intermediates between the
//! caller's leaf and its trust domain's authority. Envoy's wasm properties
//! expose only the leaf; with `forward_client_cert_details: SANITIZE_SET`
//! and `set_current_client_cert_details: {chain: true}` the connection
//! manager writes the whole presented chain into this header before any
//! HTTP filter runs.
//!
//! Nothing here is trusted: the element is picked by the SHA-256 of the very
//! leaf Envoy reports, and every certificate taken from it must still verify
//! as part of a path to an authority. A client that forges the header can
//! at most offer intermediates that fail to verify.

use custody_history::x509::{parse_cert, ParsedCert};
use std::sync::Arc;

pub const XFCC_HEADER: &str = "x-forwarded-client-cert";

/// The chain holds more certificates than the cap (this many, at least).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooMany(pub usize);

/// The certificates of the XFCC element whose `Hash` is `leaf_sha256`,
/// other than the leaf itself (at most `max` of them), or none when the
/// header has no such element or it has no `Chain`. Blocks that are not
/// strict DER certificates are skipped: they could not be part of a path.
pub fn intermediates(
    xfcc: &str,
    leaf_sha256: &[u8; 32],
    max: usize,
) -> Result<Vec<Arc<ParsedCert>>, TooMany> {
    let want = hex(leaf_sha256);
    let Some(chain) = elements(xfcc)
        .filter(|fields| {
            fields
                .iter()
                .any(|(k, v)| k.eq_ignore_ascii_case("Hash") && v.eq_ignore_ascii_case(&want))
        })
        .find_map(|fields| {
            fields
                .into_iter()
                .find(|(k, _)| k.eq_ignore_ascii_case("Chain"))
                .map(|(_, v)| v)
        })
    else {
        return Ok(Vec::new());
    };
    let pem = percent_decode(&chain);
    let ders = pem_certificates(&pem);
    let mut out = Vec::new();
    for der in ders {
        let Ok(cert) = parse_cert(&der) else {
            continue;
        };
        if &cert.sha256() == leaf_sha256 {
            continue;
        }
        if out.len() == max {
            return Err(TooMany(max + 1));
        }
        out.push(Arc::new(cert));
    }
    Ok(out)
}

/// XFCC elements (comma-separated), each a list of `key=value` fields
/// (semicolon-separated); a value may be double-quoted with `\"` escapes.
fn elements(header: &str) -> impl Iterator<Item = Vec<(String, String)>> + '_ {
    split_unquoted(header, ',').into_iter().map(|element| {
        split_unquoted(&element, ';')
            .into_iter()
            .filter_map(|field| {
                let (k, v) = field.split_once('=')?;
                Some((k.trim().to_owned(), unquote(v.trim())))
            })
            .collect()
    })
}

/// Splits on `sep` outside double quotes (one pass over the header).
fn split_unquoted(s: &str, sep: char) -> Vec<String> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let (mut quoted, mut escaped) = (false, false);
    for c in s.chars() {
        if escaped {
            escaped = false;
        } else if c == '\\' && quoted {
            escaped = true;
        } else if c == '"' {
            quoted = !quoted;
        } else if c == sep && !quoted {
            parts.push(std::mem::take(&mut cur));
            continue;
        }
        cur.push(c);
    }
    parts.push(cur);
    parts
}

fn unquote(v: &str) -> String {
    let Some(inner) = v.strip_prefix('"').and_then(|v| v.strip_suffix('"')) else {
        return v.to_owned();
    };
    let mut out = String::with_capacity(inner.len());
    let mut escaped = false;
    for c in inner.chars() {
        if escaped || c != '\\' {
            out.push(c);
            escaped = false;
        } else {
            escaped = true;
        }
    }
    out
}

/// `%XX` decoded; anything else kept (a bad escape is kept as written).
fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = |c: u8| (c as char).to_digit(16);
        if b[i] == b'%' && i + 2 < b.len() {
            if let (Some(h), Some(l)) = (hex(b[i + 1]), hex(b[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The DER of every `CERTIFICATE` block of a PEM text, in order; blocks
/// that do not decode are skipped (they cannot be part of a path).
fn pem_certificates(pem: &str) -> Vec<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let mut out = Vec::new();
    let mut rest = pem;
    while let Some(start) = rest.find(BEGIN) {
        let Some(len) = rest[start..].find(END) else {
            break;
        };
        let block = &rest[start..start + len + END.len()];
        if let Ok((label, der)) = der::pem::decode_vec(block.as_bytes()) {
            if label == "CERTIFICATE" {
                out.push(der);
            }
        }
        rest = &rest[start + len + END.len()..];
    }
    out
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    bytes
        .iter()
        .flat_map(|b| [HEX[usize::from(b >> 4)], HEX[usize::from(b & 15)]])
        .map(char::from)
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    #[test]
    fn elements_and_quoted_values() {
        let h = r#"By=spiffe://a/b;Hash=ab12;Subject="CN=x,O=y;z";URI=spiffe://c/d,Hash=cd34;Chain="%41\"B""#;
        let e: Vec<_> = elements(h).collect();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0][2], ("Subject".into(), "CN=x,O=y;z".into()));
        assert_eq!(e[1][1], ("Chain".into(), "%41\"B".into()));
        assert_eq!(percent_decode("%41%0a%zz%4"), "A\n%zz%4");
    }

    #[test]
    fn no_matching_element_gives_no_intermediates() {
        let leaf = [7u8; 32];
        assert!(intermediates("Hash=00;Chain=x", &leaf, 4)
            .unwrap()
            .is_empty());
        assert!(intermediates("", &leaf, 4).unwrap().is_empty());
        // Matching element without a Chain.
        let h = format!("Hash={};URI=spiffe://a/b", hex(&leaf));
        assert!(intermediates(&h, &leaf, 4).unwrap().is_empty());
        // A chain of garbage blocks yields nothing to verify.
        let h = format!(
            "Hash={};Chain=\"-----BEGIN%20CERTIFICATE-----%0AAAAA%0A-----END%20CERTIFICATE-----\"",
            hex(&leaf)
        );
        assert!(intermediates(&h, &leaf, 4).unwrap().is_empty());
    }
}
