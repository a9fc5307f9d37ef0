//! Compact JWS parsing for entries and proofs, and their payload schemas.

use serde_json::{Map, Value};

use crate::codec::{b64url_decode, parse_strict, JsonError};
use crate::ecdsa::{check_es256_signature, SigFormat};
use crate::error::{Part, Refusal};
use crate::spiffe::SpiffeId;
use custody_json::jcs;

/// JWS `typ` of a history entry.
pub const ENTRY_TYP: &str = "wfh+jwt";
/// JWS `typ` of a proof.
pub const PROOF_TYP: &str = "wfh-proof+jwt";
/// The only JWS `alg`.
pub const ALG: &str = "ES256";
/// The JWS header member naming the signer certificate.
pub const X5T: &str = "x5t#S256";

/// Payload members of an entry, in the order they are checked.
pub const ENTRY_MEMBERS: &[&str] = &[
    "v", "wid", "seq", "prev", "iss", "nxt", "step", "result", "iat", "exp", "claims",
];
/// Payload members of a proof, in the order they are checked.
pub const PROOF_MEMBERS: &[&str] = &[
    "v", "iss", "aud", "wid", "head", "len", "bdy", "iat", "exp", "jti",
];

/// Longest `jti` accepted, in characters.
pub const MAX_JTI_CHARS: usize = 256;
/// Largest integer member value (2^53 − 1, I-JSON's safe range).
pub const MAX_SAFE_INTEGER: u64 = (1 << 53) - 1;

/// A compact JWS whose shape, header and signature form passed.
#[derive(Debug, Clone)]
pub(crate) struct Jws<'a> {
    pub signing_input: &'a str,
    pub x5t: [u8; 32],
    pub payload: Map<String, Value>,
    pub sig: [u8; 64],
}

fn json_object(
    bytes: &[u8],
    part: Part,
    what: &'static str,
) -> Result<Map<String, Value>, Refusal> {
    match parse_strict(bytes) {
        Ok(Value::Object(m)) => Ok(m),
        Ok(_) => Err(Refusal::Malformed { part, what }),
        Err(JsonError::Malformed | JsonError::TooDeep) => Err(Refusal::Malformed { part, what }),
        Err(JsonError::DuplicateKey(member)) => Err(Refusal::DuplicateMember { part, member }),
    }
}

fn b64(s: &str, part: Part) -> Result<Vec<u8>, Refusal> {
    b64url_decode(s).ok_or(Refusal::Base64Noncanonical { part })
}

fn hash32(v: &Value, part: Part, member: &'static str) -> Result<[u8; 32], Refusal> {
    let s = v.as_str().ok_or(Refusal::MemberType { part, member })?;
    let bytes = b64(s, part)?;
    bytes
        .try_into()
        .map_err(|_| Refusal::MemberType { part, member })
}

/// Splits and checks a compact JWS: segments, header, payload JSON, signature form.
pub(crate) fn parse_jws<'a>(compact: &'a str, typ: &str, part: Part) -> Result<Jws<'a>, Refusal> {
    let mut it = compact.split('.');
    let (Some(h), Some(p), Some(s), None) = (it.next(), it.next(), it.next(), it.next()) else {
        return Err(Refusal::Malformed {
            part,
            what: "not three dot-separated segments",
        });
    };
    let header = json_object(&b64(h, part)?, part, "the JWS header is not a JSON object")?;
    if header.get("alg").and_then(Value::as_str) != Some(ALG) {
        return Err(Refusal::SignatureAlg { part });
    }
    if header.get("typ").and_then(Value::as_str) != Some(typ) {
        return Err(Refusal::HeaderTyp { part });
    }
    if header.len() != 3 || !header.contains_key(X5T) {
        return Err(Refusal::HeaderMembers { part });
    }
    let x5t = hash32(&header[X5T], part, X5T)?;
    let payload = json_object(&b64(p, part)?, part, "the JWS payload is not a JSON object")?;
    let sig = check_es256_signature(&b64(s, part)?).map_err(|e| match e {
        SigFormat::Length(len) => Refusal::SignatureFormat { part, len },
        SigFormat::Range => Refusal::SignatureRange { part },
        SigFormat::HighS => Refusal::SignatureHighS { part },
    })?;
    Ok(Jws {
        signing_input: &compact[..h.len() + 1 + p.len()],
        x5t,
        payload,
        sig,
    })
}

struct Fields<'m> {
    map: &'m Map<String, Value>,
    part: Part,
}

impl<'m> Fields<'m> {
    /// Checks `v` (first, so a future version is named as such), then that
    /// every member is known.
    fn new(map: &'m Map<String, Value>, part: Part, known: &[&str]) -> Result<Self, Refusal> {
        let f = Fields { map, part };
        let v = f.int("v")?;
        if v != 1 {
            return Err(Refusal::VersionUnsupported { part });
        }
        if let Some(k) = map.keys().find(|k| !known.contains(&k.as_str())) {
            return Err(Refusal::UnknownMember {
                part,
                member: k.clone(),
            });
        }
        Ok(f)
    }
    fn get(&self, member: &'static str) -> Result<&'m Value, Refusal> {
        self.map.get(member).ok_or(Refusal::MissingMember {
            part: self.part,
            member,
        })
    }
    /// A JSON integer in 0..=2^53 − 1 written without sign, fraction or
    /// exponent (`-0`, `1.0`, `1e3` and larger values are not integers here:
    /// every JSON reader holds these exactly).
    fn int(&self, member: &'static str) -> Result<u64, Refusal> {
        self.get(member)?
            .as_u64()
            .filter(|&n| n <= MAX_SAFE_INTEGER)
            .ok_or(Refusal::MemberType {
                part: self.part,
                member,
            })
    }
    fn string(&self, member: &'static str) -> Result<&'m str, Refusal> {
        self.get(member)?.as_str().ok_or(Refusal::MemberType {
            part: self.part,
            member,
        })
    }
    fn nonempty(&self, member: &'static str) -> Result<&'m str, Refusal> {
        let s = self.string(member)?;
        if s.is_empty() {
            return Err(Refusal::MemberType {
                part: self.part,
                member,
            });
        }
        Ok(s)
    }
    fn spiffe(&self, member: &'static str) -> Result<SpiffeId, Refusal> {
        SpiffeId::parse(self.string(member)?).map_err(|error| Refusal::MemberSpiffeId {
            part: self.part,
            member,
            error,
        })
    }
    fn hash(&self, member: &'static str) -> Result<[u8; 32], Refusal> {
        hash32(self.get(member)?, self.part, member)
    }
}

/// A history entry's payload, schema-checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct EntryPayload {
    pub wid: String,
    pub seq: u64,
    pub prev: Option<[u8; 32]>,
    pub iss: SpiffeId,
    pub nxt: SpiffeId,
    pub step: String,
    pub result: String,
    pub iat: u64,
    pub exp: u64,
    pub claims: Value,
    /// Length of `claims` re-serialized compactly (the capped size).
    pub claims_len: usize,
}

pub(crate) fn entry_payload(map: &Map<String, Value>, part: Part) -> Result<EntryPayload, Refusal> {
    let f = Fields::new(map, part, ENTRY_MEMBERS)?;
    let wid = f.nonempty("wid")?.to_owned();
    let seq = f.int("seq")?;
    let prev = match f.get("prev")? {
        Value::Null => None,
        _ => Some(f.hash("prev")?),
    };
    let iss = f.spiffe("iss")?;
    let nxt = f.spiffe("nxt")?;
    let step = f.nonempty("step")?.to_owned();
    let result = f.string("result")?.to_owned();
    let iat = f.int("iat")?;
    let exp = f.int("exp")?;
    let claims = match map.get("claims") {
        None => Value::Object(Map::new()),
        Some(c @ Value::Object(_)) => c.clone(),
        Some(_) => {
            return Err(Refusal::MemberType {
                part,
                member: "claims",
            })
        }
    };
    // Every number in range for any reader, and the size of the RFC 8785 (JCS)
    // form: the same bytes whatever number spellings were sent.
    let not_claims = |_| Refusal::MemberType {
        part,
        member: "claims",
    };
    jcs::check_safe_numbers(&claims).map_err(not_claims)?;
    let claims_len = jcs::canonical(&claims).map_err(not_claims)?.len();
    Ok(EntryPayload {
        wid,
        seq,
        prev,
        iss,
        nxt,
        step,
        result,
        iat,
        exp,
        claims,
        claims_len,
    })
}

/// A proof's payload, schema-checked.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ProofPayload {
    pub iss: SpiffeId,
    pub aud: String,
    pub wid: String,
    pub head: [u8; 32],
    pub len: u64,
    pub bdy: [u8; 32],
    pub iat: u64,
    pub exp: u64,
    pub jti: String,
}

pub(crate) fn proof_payload(map: &Map<String, Value>) -> Result<ProofPayload, Refusal> {
    let part = Part::Proof;
    let f = Fields::new(map, part, PROOF_MEMBERS)?;
    let iss = f.spiffe("iss")?;
    let aud = f.nonempty("aud")?.to_owned();
    let wid = f.nonempty("wid")?.to_owned();
    let head = f.hash("head")?;
    let len = f.int("len")?;
    let bdy = f.hash("bdy")?;
    let iat = f.int("iat")?;
    let exp = f.int("exp")?;
    let jti = f.string("jti")?;
    if jti.len() > MAX_JTI_CHARS {
        return Err(Refusal::MemberType {
            part,
            member: "jti",
        });
    }
    if b64(jti, part)?.len() < 16 {
        return Err(Refusal::ProofJti);
    }
    Ok(ProofPayload {
        iss,
        aud,
        wid,
        head,
        len,
        bdy,
        iat,
        exp,
        jti: jti.to_owned(),
    })
}
