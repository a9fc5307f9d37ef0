//! An in-memory development PKI for decision cases: one CA per trust domain
//! and one X.509-SVID per SPIFFE ID, made on first use.

use custody_core::SpiffeId;
use custody_history::dev_ca::{self, CaFiles, CaOptions, SvidOptions};
use custody_history::sign::Signer;
use std::collections::{BTreeMap, HashMap};

const DAY: u64 = 86_400;

/// Development CAs (one per trust domain) and SVIDs (one per SPIFFE ID),
/// generated in memory on first use, valid around `now`.
pub struct Pki {
    now: u64,
    cas: BTreeMap<String, CaFiles>,
    signers: HashMap<String, Signer>,
}

impl Pki {
    pub fn new(now: u64) -> Pki {
        Pki {
            now,
            cas: BTreeMap::new(),
            signers: HashMap::new(),
        }
    }

    pub fn ca(&mut self, td: &str) -> Result<CaFiles, String> {
        if let Some(ca) = self.cas.get(td) {
            return Ok(ca.clone());
        }
        let ca = dev_ca::init_with(
            td,
            &CaOptions {
                not_before: self.now.saturating_sub(30 * DAY),
                not_after: self.now + 365 * DAY,
                key_pem: None,
                sequence: 1,
            },
        )
        .map_err(|e| format!("development CA for {td}: {e}"))?;
        self.cas.insert(td.to_owned(), ca.clone());
        Ok(ca)
    }

    pub fn signer(&mut self, id: &str) -> Result<Signer, String> {
        if let Some(s) = self.signers.get(id) {
            return Ok(s.clone());
        }
        let parsed = SpiffeId::parse(id).map_err(|e| format!("'{id}': {e}"))?;
        let ca = self.ca(parsed.trust_domain())?;
        let svid = dev_ca::issue_with(
            &ca.bundle_pem,
            &ca.ca_key_pem,
            &SvidOptions {
                dns: Vec::new(),
                uris: vec![id.to_owned()],
                not_before: self.now.saturating_sub(30 * DAY),
                not_after: self.now + 30 * DAY,
                ca: false,
                key_pem: None,
            },
        )
        .map_err(|e| format!("SVID for {id}: {e}"))?;
        let signer = Signer::from_pkcs8_der(&svid.key_pkcs8_der, &svid.cert_der)
            .map_err(|e| format!("SVID for {id}: {e}"))?;
        self.signers.insert(id.to_owned(), signer.clone());
        Ok(signer)
    }
}
