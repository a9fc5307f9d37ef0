//! Custody's Envoy filter. Everything that decides lives in `custody-core`;
//! this crate only gathers what the host knows (properties, headers, body,
//! time) and applies the decision. Host calls go through [`host`], which
//! turns every host error into a value: a panic would kill the worker's VM.

mod bundles;
mod ecdsa;
mod host;
mod http;
mod ledger;
mod metrics;
mod replay;
mod response;
mod root;
mod shared;

use proxy_wasm::types::LogLevel;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Trace);
    std::panic::set_hook(Box::new(|info| {
        host::log(LogLevel::Critical, &format!("panic: {info}"));
    }));
    proxy_wasm::set_root_context(|_| -> Box<dyn proxy_wasm::traits::RootContext> {
        Box::new(root::Root::default())
    });
}}
