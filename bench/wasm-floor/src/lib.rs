//! What any body-inspecting proxy-wasm filter costs before it decides
//! anything: the V8 VM, one HTTP context per request, headers held until the
//! body is complete, the body copied into the VM. `./build.sh bench` runs it
//! as case w, so Custody's own cost can be told apart from the runtime's.
//!
//! Its plugin configuration is a number N (empty: 0): N ECDSA P-256
//! verifications through Envoy's `verify_signature` foreign function per
//! request, once the body is in (cases w4e: 1, the proof's, which no filter
//! can skip; w16e17: 17, a cold 16-entry history and its proof). Each call is
//! encoded as filter/src/ecdsa.rs encodes it, over a proof-sized message; any
//! answer but "verified" gets a 500 with no upstream marker, so the load
//! generator fails the run: a floor that skipped its calls cannot pass.

use std::rc::Rc;

use proxy_wasm::hostcalls;
use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root::default()) });
}}

/// Verifications per request are bounded: 17 is the most any case needs.
const MAX_VERIFICATIONS: u32 = 64;

/// A P-256 key, a low-S signature by it and the message it signed (512
/// bytes, about a proof's JWS signing input), made once for this floor;
/// `tests::the_vector_verifies` checks them natively.
const SPKI_HEX: &str = "3059301306072a8648ce3d020106082a8648ce3d0301070342000431f9f511f6486e810171566fb91f9c2473df4484ab4afce9548b67ccbdca391475ee9228d7a136b61e382aa24804584fa83c31ffdc6f5fff4e21ce04349ff9ce";
const SIG_DER_HEX: &str = "304402201a71deab4f7ded585c040856713e7a9b9207eff7f1744d3575c62c1ab97aaba802202461669286410009066d77f6135e539f5f2cbadce82806c41d8ae9e1f77c9a35";
const MESSAGE_PART: &[u8] =
    b"custody-bench floor: one P-256 verification of a proof-sized message. ";
const MESSAGE_LEN: usize = 512;

#[derive(Default)]
struct Root {
    verifications: u32,
    /// The `verify_signature` arguments, built once.
    args: Rc<Vec<u8>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _plugin_configuration_size: usize) -> bool {
        let text = self.get_plugin_configuration().unwrap_or_default();
        let Some(n) = verifications(&text) else {
            hostcalls::log(
                LogLevel::Error,
                "floor: the configuration must be a number of verifications, 0..=64",
            )
            .ok();
            return false;
        };
        self.verifications = n;
        self.args = Rc::new(verify_args().unwrap_or_default());
        true
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Floor {
            verifications: self.verifications,
            args: self.args.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Floor {
    verifications: u32,
    args: Rc<Vec<u8>>,
}

impl Context for Floor {}

impl HttpContext for Floor {
    fn on_http_request_headers(&mut self, _num_headers: usize, end_of_stream: bool) -> Action {
        if end_of_stream {
            Action::Continue
        } else {
            Action::Pause
        }
    }

    fn on_http_request_body(&mut self, body_size: usize, end_of_stream: bool) -> Action {
        if !end_of_stream {
            return Action::Pause;
        }
        let body = self.get_http_request_body(0, body_size);
        std::hint::black_box(body);
        for _ in 0..self.verifications {
            let answer = hostcalls::call_foreign_function("verify_signature", Some(&self.args));
            if !matches!(answer, Ok(Some(ref r)) if r.starts_with(&[0x08, 0x01])) {
                self.send_http_response(500, vec![], Some(b"floor: verify_signature failed"));
                return Action::Pause;
            }
        }
        Action::Continue
    }
}

/// The configuration's number of verifications per request.
fn verifications(config: &[u8]) -> Option<u32> {
    let text = std::str::from_utf8(config).ok()?.trim();
    if text.is_empty() {
        return Some(0);
    }
    text.parse().ok().filter(|n| *n <= MAX_VERIFICATIONS)
}

fn message() -> Vec<u8> {
    MESSAGE_PART
        .iter()
        .copied()
        .cycle()
        .take(MESSAGE_LEN)
        .collect()
}

/// `VerifySignatureArguments { hash_function = 1, public_key = 2 (SPKI DER),
/// signature = 3 (DER), text = 4 }`, as filter/src/ecdsa.rs sends it.
fn verify_args() -> Option<Vec<u8>> {
    let mut out = Vec::new();
    for (number, bytes) in [
        (1, b"sha256".to_vec()),
        (2, hex(SPKI_HEX)?),
        (3, hex(SIG_DER_HEX)?),
        (4, message()),
    ] {
        out.push(number << 3 | 2);
        let mut len = bytes.len();
        while len >= 0x80 {
            out.push((len & 0x7f) as u8 | 0x80);
            len >>= 7;
        }
        out.push(len as u8);
        out.extend_from_slice(&bytes);
    }
    Some(out)
}

fn hex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Verifier;
    use p256::ecdsa::{Signature, VerifyingKey};
    use p256::pkcs8::DecodePublicKey;

    fn key() -> VerifyingKey {
        let spki = hex(SPKI_HEX).unwrap_or_default();
        VerifyingKey::from_public_key_der(&spki).unwrap_or_else(|e| unreachable!("{e}"))
    }

    fn signature() -> Signature {
        let der = hex(SIG_DER_HEX).unwrap_or_default();
        Signature::from_der(&der).unwrap_or_else(|e| unreachable!("{e}"))
    }

    #[test]
    fn the_vector_verifies() {
        assert_eq!(message().len(), 512);
        assert!(key().verify(&message(), &signature()).is_ok());
        // Low S, as every signature Custody accepts.
        assert!(signature().normalize_s().is_none());
    }

    #[test]
    fn a_changed_message_does_not_verify() {
        let mut m = message();
        m[511] ^= 1;
        assert!(key().verify(&m, &signature()).is_err());
    }

    #[test]
    fn the_arguments_are_four_length_delimited_fields() {
        let args = verify_args().unwrap_or_default();
        let mut rest = args.as_slice();
        let mut fields = Vec::new();
        while let [tag, tail @ ..] = rest {
            let (mut len, mut shift, mut i) = (0usize, 0, 0);
            loop {
                let b = tail[i];
                len |= usize::from(b & 0x7f) << shift;
                shift += 7;
                i += 1;
                if b & 0x80 == 0 {
                    break;
                }
            }
            fields.push((tag >> 3, tail[i..i + len].to_vec()));
            rest = &tail[i + len..];
        }
        let numbers: Vec<u8> = fields.iter().map(|(n, _)| *n).collect();
        assert_eq!(numbers, [1, 2, 3, 4]);
        assert_eq!(fields[0].1, b"sha256");
        assert_eq!(fields[1].1.len(), 91);
        assert_eq!(fields[3].1, message());
    }

    #[test]
    fn the_configuration_is_a_bounded_count() {
        assert_eq!(verifications(b""), Some(0));
        assert_eq!(verifications(b" 17\n"), Some(17));
        assert_eq!(verifications(b"64"), Some(64));
        assert_eq!(verifications(b"65"), None);
        assert_eq!(verifications(b"-1"), None);
        assert_eq!(verifications(b"{\"n\":1}"), None);
        assert_eq!(verifications(&[0xff]), None);
    }
}
