//! SPIFFE IDs: the workspace's one strict parser, `custody-spiffe`.

pub use custody_spiffe::{check_trust_domain, SpiffeId, SpiffeIdError, MAX_LEN};
