//! The pure core of Custody: every stage a request passes through, as plain
//! functions over plain data. Nothing here knows about Envoy or proxy-wasm;
//! the filter crate gathers the inputs and applies the [`decision::Decision`].
//!
//! Stages, in request order: [`identity`] → [`transport`] → [`mcp`] →
//! [`proof`] → [`decide`] (over [`policy`], claims settled by [`ledger`]) →
//! [`act`] (with [`reply`] and [`log`]).
//! [`reason`] is the one table of refusal reasons, their HTTP status and JSON-RPC code.

pub mod act;
pub mod bundle_fetch;
pub mod bundles;
pub mod call;
pub mod config;
pub mod decide;
pub mod decision;
pub mod duration;
pub mod explain;
pub mod glob;
pub mod identity;
pub mod input;
pub mod ledger;
pub mod listing;
pub mod lists;
pub mod log;
pub mod mcp;
pub mod peer_chain;
pub mod policy;
pub mod policy_bundle;
pub mod proof;
pub mod reason;
pub mod rego;
pub mod reply;
pub mod sse;
pub mod transport;

pub use custody_json as json;
pub use custody_spiffe::SpiffeId;
