//! Stage 2: the HTTP envelope of an MCP Streamable HTTP request, checked
//! before any body byte is read: method, path, content type, declared size.

use crate::reason::Reason;

/// What kind of MCP transport request this is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HttpKind {
    /// A JSON-RPC message in the body.
    Post,
    /// Opens the server-to-client SSE stream; matched as method `http:GET`.
    Get,
    /// Ends the MCP session; matched as method `http:DELETE`.
    Delete,
}

impl HttpKind {
    /// The pseudo-method that rules name to govern body-less requests.
    pub fn pseudo_method(self) -> Option<&'static str> {
        match self {
            HttpKind::Post => None,
            HttpKind::Get => Some("http:GET"),
            HttpKind::Delete => Some("http:DELETE"),
        }
    }
}

/// The request head as the host reports it.
#[derive(Debug, Clone, Default)]
pub struct Head<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub content_type: Option<&'a str>,
    pub content_length: Option<&'a str>,
}

/// Checks the head. `paths`, if not empty, lists the MCP endpoint paths
/// (compared exactly, without the query string).
pub fn check_head(
    head: &Head,
    paths: &[String],
    max_body_bytes: usize,
) -> Result<HttpKind, Reason> {
    let kind = match head.method {
        "POST" => HttpKind::Post,
        "GET" => HttpKind::Get,
        "DELETE" => HttpKind::Delete,
        _ => return Err(Reason::MethodNotAllowed),
    };
    let path = head.path.split('?').next().unwrap_or_default();
    if !paths.is_empty() && !paths.iter().any(|p| p == path) {
        return Err(Reason::PathNotAllowed);
    }
    if let Some(len) = head.content_length {
        // Envoy has already refused a malformed content-length.
        let too_large = len
            .trim()
            .parse::<u64>()
            .map_or(true, |n| n > max_body_bytes as u64);
        if too_large {
            return Err(Reason::BodyTooLarge);
        }
    }
    if kind == HttpKind::Post && !is_json(head.content_type) {
        return Err(Reason::UnsupportedMediaType);
    }
    Ok(kind)
}

/// `application/json`, case-insensitive, parameters (e.g. charset) allowed.
fn is_json(content_type: Option<&str>) -> bool {
    content_type
        .and_then(|ct| ct.split(';').next())
        .is_some_and(|media| media.trim().eq_ignore_ascii_case("application/json"))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[cfg(target_arch = "wasm32")]
    use wasm_bindgen_test::wasm_bindgen_test as test;

    fn post(ct: Option<&'static str>) -> Head<'static> {
        Head {
            method: "POST",
            path: "/mcp",
            content_type: ct,
            content_length: None,
        }
    }

    #[test]
    fn accepts_json_posts_and_stream_requests() {
        assert_eq!(
            check_head(&post(Some("application/json")), &[], 10),
            Ok(HttpKind::Post)
        );
        assert_eq!(
            check_head(&post(Some("Application/JSON; charset=utf-8")), &[], 10),
            Ok(HttpKind::Post)
        );
        let get = Head {
            method: "GET",
            path: "/mcp",
            ..Default::default()
        };
        assert_eq!(check_head(&get, &[], 10), Ok(HttpKind::Get));
        assert_eq!(HttpKind::Get.pseudo_method(), Some("http:GET"));
        let del = Head {
            method: "DELETE",
            path: "/mcp",
            ..Default::default()
        };
        assert_eq!(check_head(&del, &[], 10), Ok(HttpKind::Delete));
    }

    #[test]
    fn refuses_other_methods_and_media_types() {
        for m in ["PUT", "PATCH", "HEAD", "OPTIONS", "post", "CONNECT"] {
            let h = Head {
                method: m,
                path: "/mcp",
                ..Default::default()
            };
            assert_eq!(
                check_head(&h, &[], 10),
                Err(Reason::MethodNotAllowed),
                "{m}"
            );
        }
        for ct in [
            None,
            Some("text/plain"),
            Some("application/json-seq"),
            Some("application/jsonx"),
            Some(""),
        ] {
            assert_eq!(
                check_head(&post(ct), &[], 10),
                Err(Reason::UnsupportedMediaType),
                "{ct:?}"
            );
        }
    }

    #[test]
    fn refuses_declared_oversize_bodies_early() {
        let mut h = post(Some("application/json"));
        h.content_length = Some("11");
        assert_eq!(check_head(&h, &[], 10), Err(Reason::BodyTooLarge));
        h.content_length = Some("10");
        assert_eq!(check_head(&h, &[], 10), Ok(HttpKind::Post));
        h.content_length = Some("99999999999999999999999");
        assert_eq!(check_head(&h, &[], 10), Err(Reason::BodyTooLarge));
    }

    #[test]
    fn paths_are_exact_when_configured() {
        let paths = vec!["/mcp".to_owned()];
        let mut h = post(Some("application/json"));
        h.path = "/mcp?session=1";
        assert_eq!(check_head(&h, &paths, 10), Ok(HttpKind::Post));
        for p in ["/mcp/", "/MCP", "/other", "/mcpx"] {
            h.path = p;
            assert_eq!(
                check_head(&h, &paths, 10),
                Err(Reason::PathNotAllowed),
                "{p}"
            );
        }
    }
}
