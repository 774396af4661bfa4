//! Header policy of the proxy: what goes upstream and what comes back.
//!
//! Owns: dropping hop-by-hop headers (RFC 9110 7.6.1) and those that
//! `Connection` names, `X-Forwarded-For`/`-Proto`, the request target in
//! origin form, and recognising an upgrade request. Must not: send
//! anything or decide answers.

use std::net::IpAddr;
use std::sync::Mutex;

use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::Uri;

use crate::http::lock;

/// Headers that describe one connection, not the message (RFC 9110 7.6.1),
/// plus the non-standard ones proxies also drop.
const HOP_BY_HOP: [HeaderName; 8] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::PROXY_AUTHENTICATE,
];

/// Headers a request must not take upstream beyond the hop-by-hop ones:
/// `Expect` (hyper's server has already answered `100 Continue`; its
/// client does not implement it) and `Proxy-Authorization` (meant for us).
const REQUEST_ONLY: [HeaderName; 2] = [header::EXPECT, header::PROXY_AUTHORIZATION];

/// Where `name` is in `HOP_BY_HOP` followed by `REQUEST_ONLY`, if it is:
/// a match on the name's text, cheaper than hashing it.
fn dropped_index(name: &HeaderName) -> Option<usize> {
    Some(match name.as_str() {
        "connection" => 0,
        "keep-alive" => 1,
        "proxy-connection" => 2,
        "te" => 3,
        "trailer" => 4,
        "transfer-encoding" => 5,
        "upgrade" => 6,
        "proxy-authenticate" => 7,
        "expect" => 8,
        "proxy-authorization" => 9,
        _ => return None,
    })
}

/// Removes hop-by-hop headers and those that `Connection` names, and for a
/// request (`request`) also [`REQUEST_ONLY`]. For an upgrade, `upgrade` is
/// the `Upgrade` value to keep, and `Connection: upgrade` is put back.
///
/// On the hot path: one pass over the names finds which of these are
/// there (usually none in a request, `Connection: keep-alive` in a
/// response), and only those are removed; each removal costs a hash.
pub(super) fn strip_hop_by_hop(
    headers: &mut HeaderMap,
    request: bool,
    upgrade: Option<HeaderValue>,
) {
    let mut found = 0u16;
    for name in headers.keys() {
        if let Some(i) = dropped_index(name) {
            found |= 1 << i;
        }
    }
    if !request {
        found &= (1 << HOP_BY_HOP.len()) - 1;
    }
    if found & 1 != 0 {
        remove_named(headers);
    }
    for (i, name) in HOP_BY_HOP.iter().chain(&REQUEST_ONLY).enumerate() {
        if found & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if let Some(protocol) = upgrade {
        headers.insert(header::UPGRADE, protocol);
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the headers that `Connection` names. `close` and `keep-alive`,
/// the usual tokens, name nothing beyond `HOP_BY_HOP`: nothing to parse
/// when they are all there is.
fn remove_named(headers: &mut HeaderMap) {
    let usual = |v: &HeaderValue| {
        let v = v.as_bytes();
        v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
    };
    let connection = headers.get_all(header::CONNECTION);
    if connection.iter().all(usual) {
        return;
    }
    let named: Vec<HeaderName> = connection
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .filter(|t| {
            !t.eq_ignore_ascii_case("close")
                && !HOP_BY_HOP
                    .iter()
                    .any(|h| t.eq_ignore_ascii_case(h.as_str()))
        })
        .filter_map(|t| HeaderName::try_from(t).ok())
        .collect();
    for name in &named {
        headers.remove(name);
    }
}

/// Whether the request asks for a WebSocket upgrade (`Connection:
/// upgrade` and `Upgrade: websocket`). Any other upgrade (h2c above all:
/// the h2c-smuggling vector, a tunnel to the upstream past every check
/// here) is not one: its headers are dropped as hop-by-hop and the request
/// goes on as a plain one.
pub(super) fn wants_websocket(headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .collect::<Vec<_>>()
    };
    headers.contains_key(header::UPGRADE)
        && tokens(header::CONNECTION)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("upgrade"))
        && tokens(header::UPGRADE)
            .iter()
            .any(|t| t.eq_ignore_ascii_case("websocket"))
}

/// Puts the request target in origin form (path and query), as sent to a
/// server that is not a proxy. Already the case for nearly every request;
/// an absolute-form target's authority becomes the `Host` (RFC 9112
/// §3.2.2: it wins over any Host header). False if that leaves no valid
/// target.
pub(super) fn origin_form(uri: &mut Uri, headers: &mut HeaderMap) -> bool {
    if uri.scheme().is_none() && uri.authority().is_none() {
        return true;
    }
    if let Some(host) = uri
        .authority()
        .and_then(|a| HeaderValue::try_from(a.as_str()).ok())
    {
        headers.insert(header::HOST, host);
    }
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    match Uri::try_from(path) {
        Ok(origin) => {
            *uri = origin;
            true
        }
        Err(_) => false,
    }
}

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// `X-Forwarded-For` and `X-Forwarded-Proto`.
#[derive(Debug, Default)]
pub(super) struct Forwarded {
    /// The last client address and its `X-Forwarded-For` value: clients
    /// behind a balancer come from a few addresses, so this saves building
    /// the value for nearly every request.
    last: Mutex<Option<(IpAddr, HeaderValue)>>,
}

impl Forwarded {
    /// Appends the client to `X-Forwarded-For` and sets `X-Forwarded-Proto`
    /// (`proto`: how the client reached us) unless a proxy in front of us
    /// already did.
    pub(super) fn add(&self, headers: &mut HeaderMap, peer: IpAddr, proto: &'static str) {
        let value = match headers.get(X_FORWARDED_FOR).and_then(|v| v.to_str().ok()) {
            Some(before) => HeaderValue::try_from(format!("{before}, {peer}")).ok(),
            None => Some(self.for_client(peer)),
        };
        if let Some(v) = value {
            headers.insert(X_FORWARDED_FOR, v);
        }
        headers
            .entry(X_FORWARDED_PROTO)
            .or_insert(HeaderValue::from_static(proto));
    }

    /// The `X-Forwarded-For` value for a client at `ip` with no earlier
    /// proxy.
    fn for_client(&self, ip: IpAddr) -> HeaderValue {
        let mut last = lock(&self.last);
        match &*last {
            Some((cached, value)) if *cached == ip => value.clone(),
            _ => {
                let value = HeaderValue::try_from(ip.to_string())
                    .expect("an IP address is a valid header value");
                *last = Some((ip, value.clone()));
                value
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_and_named_headers_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert(header::TE, HeaderValue::from_static("trailers"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h, false, None);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn requests_lose_expect_and_proxy_credentials() {
        let mut h = HeaderMap::new();
        h.insert(header::EXPECT, HeaderValue::from_static("100-continue"));
        h.insert(
            header::PROXY_AUTHORIZATION,
            HeaderValue::from_static("Basic eA=="),
        );
        h.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        h.insert("x-kept", HeaderValue::from_static("1"));
        let mut response = h.clone();
        strip_hop_by_hop(&mut h, true, None);
        assert_eq!(h.keys().collect::<Vec<_>>(), ["x-kept"]);
        // A response keeps what only a request must lose.
        strip_hop_by_hop(&mut response, false, None);
        assert_eq!(response.len(), 3);
        assert!(!response.contains_key(header::TRANSFER_ENCODING));
    }

    #[test]
    fn the_index_follows_the_lists() {
        for (i, name) in HOP_BY_HOP.iter().chain(&REQUEST_ONLY).enumerate() {
            assert_eq!(dropped_index(name), Some(i), "{name}");
        }
        assert_eq!(dropped_index(&header::HOST), None);
    }

    #[test]
    fn messages_without_hop_by_hop_headers_are_untouched() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("a"));
        h.append("x-many", HeaderValue::from_static("1"));
        h.append("x-many", HeaderValue::from_static("2"));
        let before = h.clone();
        strip_hop_by_hop(&mut h, true, None);
        assert_eq!(h, before);
    }

    #[test]
    fn upgrade_is_kept_for_websockets() {
        let mut h = HeaderMap::new();
        h.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        assert!(wants_websocket(&h));
        let proto = h.get(header::UPGRADE).cloned();
        strip_hop_by_hop(&mut h, true, proto);
        assert_eq!(h[header::UPGRADE], "websocket");
        assert_eq!(h[header::CONNECTION], "upgrade");
    }

    #[test]
    fn forwarded_for_appends() {
        let f = Forwarded::default();
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", HeaderValue::from_static("10.0.0.1"));
        f.add(&mut h, "127.0.0.1".parse().unwrap(), "https");
        assert_eq!(h["x-forwarded-for"], "10.0.0.1, 127.0.0.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        // The cached value follows the client's address.
        for ip in ["10.1.1.1", "10.1.1.1", "10.2.2.2"] {
            let mut h = HeaderMap::new();
            f.add(&mut h, ip.parse().unwrap(), "http");
            assert_eq!(h["x-forwarded-for"], ip);
        }
    }

    #[test]
    fn only_websocket_upgrades() {
        let with = |upgrade: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(
                header::CONNECTION,
                HeaderValue::from_static("keep-alive, Upgrade"),
            );
            h.insert(header::UPGRADE, HeaderValue::from_static(upgrade));
            wants_websocket(&h)
        };
        assert!(with("websocket"));
        assert!(with("WebSocket"));
        assert!(!with("h2c"));
        assert!(!with("TLS/1.2"));
    }

    #[test]
    fn targets_go_upstream_in_origin_form() {
        for (from, to, host) in [
            ("/a/b?c=d", "/a/b?c=d", "client.example"),
            ("http://example.com/a?b", "/a?b", "example.com"),
            ("http://example.com:81", "/", "example.com:81"),
            ("*", "*", "client.example"),
        ] {
            let mut uri: Uri = from.parse().unwrap();
            let mut h = HeaderMap::new();
            h.insert(header::HOST, HeaderValue::from_static("client.example"));
            assert!(origin_form(&mut uri, &mut h), "{from}");
            assert_eq!(uri.to_string(), to, "{from}");
            assert_eq!(h[header::HOST], host, "{from}");
        }
    }
}
