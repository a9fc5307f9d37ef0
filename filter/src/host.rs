//! Thin, non-panicking wrappers over `proxy_wasm::hostcalls`. The SDK's
//! `Context` methods unwrap host results (and decode maps as UTF-8 with
//! `unwrap`); these return `Option`/`Result` instead.

use proxy_wasm::hostcalls;
use proxy_wasm::types::{BufferType, LogLevel, MapType};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

pub fn log(level: LogLevel, message: &str) {
    let _ = hostcalls::log(level, message);
}

/// Whether the host writes lines of `level` (Envoy's `wasm` log level; it
/// can change at runtime through the admin `/logging` endpoint).
pub fn logs(level: LogLevel) -> bool {
    hostcalls::get_log_level().map_or(true, |host| host as u32 <= level as u32)
}

pub fn property(path: &[&str]) -> Option<Vec<u8>> {
    hostcalls::get_property(path.to_vec()).ok().flatten()
}

/// Sets a filter state value (`wasm.<name>` for the access log); best effort.
pub fn set_property(path: &[&str], value: &[u8]) {
    let _ = hostcalls::set_property(path.to_vec(), Some(value));
}

pub fn property_bool(path: &[&str]) -> bool {
    property(path).is_some_and(|v| v.first() == Some(&1))
}

pub fn plugin_configuration() -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::PluginConfiguration, 0, usize::MAX)
        .ok()
        .flatten()
}

pub fn request_body(size: usize) -> Option<Vec<u8>> {
    hostcalls::get_buffer(BufferType::HttpRequestBody, 0, size)
        .ok()
        .flatten()
}

/// All request headers; values as bytes (they may be non-UTF-8).
pub fn request_headers() -> Vec<(String, Vec<u8>)> {
    hostcalls::get_map_bytes(MapType::HttpRequestHeaders).unwrap_or_default()
}

pub fn set_request_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

/// Adds a request header (cheaper than replacing; for a name known absent).
pub fn add_request_header(name: &str, value: &str) -> bool {
    hostcalls::add_map_value(MapType::HttpRequestHeaders, name, value).is_ok()
}

/// Lets a request paused in a callback (waiting for a callout) go on.
pub fn resume_request() -> bool {
    hostcalls::resume_http_request().is_ok()
}

/// Calls `on_tick` of the current root context every `period`.
pub fn set_tick_period(period: Duration) -> bool {
    hostcalls::set_tick_period(period).is_ok()
}

/// POSTs a JSON `body` to `path` on the Envoy cluster `cluster`; the answer
/// comes to the calling context's `on_http_call_response` with the token.
/// Connection failures are retried (nothing was sent); nothing else is.
pub fn post_json(cluster: &str, path: &str, body: &[u8], timeout: Duration) -> Result<u32, String> {
    let headers = [
        (":method", "POST"),
        (":path", path),
        (":authority", cluster),
        ("content-type", "application/json"),
    ];
    call(cluster, &headers, Some(body), timeout)
}

/// GETs `path` from the Envoy cluster `cluster`, as `post_json` does.
pub fn get(cluster: &str, authority: &str, path: &str, timeout: Duration) -> Result<u32, String> {
    let headers = [
        (":method", "GET"),
        (":path", path),
        (":authority", authority),
        ("accept", "application/json"),
    ];
    call(cluster, &headers, None, timeout)
}

fn call(
    cluster: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
    timeout: Duration,
) -> Result<u32, String> {
    let mut headers = headers.to_vec();
    headers.extend([
        ("x-envoy-retry-on", "connect-failure,refused-stream"),
        ("x-envoy-max-retries", "2"),
    ]);
    hostcalls::dispatch_http_call(cluster, headers, body, Vec::new(), timeout)
        .map_err(|status| format!("cannot call Envoy cluster '{cluster}': {status:?}"))
}

/// The answer to a callout: its HTTP status (none when the call failed:
/// connection refused or reset) and at most `max` bytes of its body (more
/// is an error: `None`).
pub fn call_response(body_size: usize, max: usize) -> (Option<u32>, Option<Vec<u8>>) {
    let status = hostcalls::get_map_value_bytes(MapType::HttpCallResponseHeaders, ":status")
        .ok()
        .flatten()
        .and_then(|s| std::str::from_utf8(&s).ok()?.parse().ok());
    let body = if body_size > max {
        None
    } else if body_size == 0 {
        Some(Vec::new())
    } else {
        hostcalls::get_buffer(BufferType::HttpCallResponseBody, 0, body_size)
            .ok()
            .flatten()
    };
    (status, body)
}

/// One response header, if present and UTF-8.
pub fn response_header(name: &str) -> Option<String> {
    hostcalls::get_map_value(MapType::HttpResponseHeaders, name)
        .ok()
        .flatten()
}

/// Sets (or with `None` removes) a response header; best effort.
pub fn set_response_header(name: &str, value: Option<&str>) -> bool {
    hostcalls::set_map_value(MapType::HttpResponseHeaders, name, value).is_ok()
}

/// The response body Envoy holds for this callback (the whole buffered
/// body after earlier `Pause`s, else this chunk).
pub fn response_body(size: usize) -> Vec<u8> {
    hostcalls::get_buffer(BufferType::HttpResponseBody, 0, size)
        .ok()
        .flatten()
        .unwrap_or_default()
}

/// Replaces the first `size` bytes of that body with `data`.
pub fn set_response_body(size: usize, data: &[u8]) -> bool {
    hostcalls::set_buffer(BufferType::HttpResponseBody, 0, size, data).is_ok()
}

pub fn send_reply(status: u32, headers: &[(&str, &str)], body: &[u8]) -> bool {
    hostcalls::send_http_response(status, headers.to_vec(), Some(body)).is_ok()
}

/// Microseconds since the Unix epoch, or 0 if the host cannot say.
pub fn now_micros() -> u64 {
    hostcalls::get_current_time()
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_micros() as u64)
}

/// A 128-bit random id, hex; falls back to time and a counter if the host
/// has no randomness (ids then stay unique per VM, not unpredictable).
pub fn random_id() -> String {
    let mut bytes = [0u8; 16];
    if getrandom::fill(&mut bytes).is_err() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        bytes[..8].copy_from_slice(&now_micros().to_be_bytes());
        bytes[8..].copy_from_slice(&COUNTER.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    }
    custody_history::hex(&bytes)
}
