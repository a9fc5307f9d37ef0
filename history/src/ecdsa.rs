//! ECDSA P-256 verification, pluggable so the filter can call Envoy's
//! BoringSSL `verify_signature` foreign function instead of pure Rust.
//!
//! Every format, range and low-S check happens in this crate *before* a
//! verifier is called, so any correct implementation gives the same verdict.

/// Verifies ECDSA P-256 signatures with SHA-256.
///
/// Contract: return true iff `sig_r_s` (big-endian `r || s`) is a valid
/// ECDSA signature over SHA-256(`message`) under `sec1_pubkey` (an encoded
/// SEC1 point, normally uncompressed, 65 bytes). Do not apply a low-S
/// policy: certificate signatures may be high-S; the JWS low-S rule is
/// applied by this crate before calling.
pub trait EcdsaP256Verifier {
    /// See the trait documentation.
    fn verify(&self, sec1_pubkey: &[u8], message: &[u8], sig_r_s: &[u8; 64]) -> bool;
}

/// The default verifier, on the pure-Rust `p256` crate.
#[derive(Clone, Copy, Debug, Default)]
pub struct P256Verifier;

impl EcdsaP256Verifier for P256Verifier {
    fn verify(&self, sec1_pubkey: &[u8], message: &[u8], sig_r_s: &[u8; 64]) -> bool {
        use p256::ecdsa::signature::Verifier;
        let Ok(key) = p256::ecdsa::VerifyingKey::from_sec1_bytes(sec1_pubkey) else {
            return false;
        };
        let Ok(sig) = p256::ecdsa::Signature::from_slice(sig_r_s) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }
}

/// The P-256 group order n, big-endian.
pub const P256_N: [u8; 32] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];

/// floor(n / 2), big-endian: the largest low-S value.
pub const P256_HALF_N: [u8; 32] = [
    0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xDE, 0x73, 0x7D, 0x56, 0xD3, 0x8B, 0xCF, 0x42, 0x79, 0xDC, 0xE5, 0x61, 0x7E, 0x31, 0x92, 0xA8,
];

/// Why a raw JWS signature is refused before verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SigFormat {
    /// Not exactly 64 bytes.
    Length(usize),
    /// r or s is 0 or >= n.
    Range,
    /// s > n/2.
    HighS,
}

/// Checks a JWS ES256 signature's form: 64 bytes, r and s in [1, n-1], s <= n/2.
pub fn check_es256_signature(sig: &[u8]) -> Result<[u8; 64], SigFormat> {
    let raw: [u8; 64] = sig.try_into().map_err(|_| SigFormat::Length(sig.len()))?;
    let (r, s) = raw.split_at(32);
    let zero = [0u8; 32];
    // Equal-length big-endian byte strings compare like the numbers.
    if r == zero || s == zero || r >= &P256_N[..] || s >= &P256_N[..] {
        return Err(SigFormat::Range);
    }
    if s > &P256_HALF_N[..] {
        return Err(SigFormat::HighS);
    }
    Ok(raw)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    use super::*;

    #[test]
    fn constants_match_p256() {
        use p256::elliptic_curve::bigint::ArrayEncoding;
        use p256::elliptic_curve::Curve;
        let n = p256::NistP256::ORDER.to_be_byte_array();
        assert_eq!(&n[..], &P256_N[..]);
        // half = (n - 1) / 2 since n is odd: check 2*half + 1 == n.
        let mut carry = 1u16;
        let mut twice = [0u8; 32];
        for i in (0..32).rev() {
            let v = (P256_HALF_N[i] as u16) * 2 + carry;
            twice[i] = v as u8;
            carry = v >> 8;
        }
        assert_eq!(twice, P256_N);
    }

    #[test]
    fn format_checks() {
        let mut ok = [1u8; 64];
        ok[32] = 0x10;
        assert!(check_es256_signature(&ok).is_ok());
        assert_eq!(check_es256_signature(&ok[..63]), Err(SigFormat::Length(63)));
        let mut z = ok;
        z[..32].fill(0);
        assert_eq!(check_es256_signature(&z), Err(SigFormat::Range));
        let mut z = ok;
        z[32..].fill(0);
        assert_eq!(check_es256_signature(&z), Err(SigFormat::Range));
        let mut big = ok;
        big[..32].copy_from_slice(&P256_N);
        assert_eq!(check_es256_signature(&big), Err(SigFormat::Range));
        let mut big = ok;
        big[32..].copy_from_slice(&P256_N);
        assert_eq!(check_es256_signature(&big), Err(SigFormat::Range));
        let mut half = ok;
        half[32..].copy_from_slice(&P256_HALF_N);
        assert!(check_es256_signature(&half).is_ok());
        half[63] += 1;
        assert_eq!(check_es256_signature(&half), Err(SigFormat::HighS));
    }
}
