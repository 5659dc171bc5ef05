//! Where the token comes from: the `Authorization` header (RFC 6750 §2.1)
//! or, when configured, a cookie. A token in the query string (RFC 6750
//! §2.3) is never read: URLs end up in logs.

use http::{HeaderMap, header};

use crate::error::{AuthError, RequestError};
use crate::sender::Scheme;

/// Finds the token of a request (`DPoP` credentials too when `dpop` is
/// on). `Ok(None)` means no credentials of ours at all (no header, or
/// another scheme such as `Basic`).
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    cookie: Option<&str>,
    dpop: bool,
) -> Result<Option<&'a str>, AuthError> {
    locate(headers, cookie, dpop)?
        .map(|(_, t)| check(t))
        .transpose()
}

/// The credentials as sent, with their scheme (`Bearer`, or `DPoP` when
/// `dpop` is on), not yet checked against the token syntax: the layer
/// first looks them up among verified tokens, which are well-formed, and
/// runs [`check`] only on a miss.
pub(crate) fn locate<'a>(
    headers: &'a HeaderMap,
    cookie: Option<&str>,
    dpop: bool,
) -> Result<Option<(Scheme, &'a [u8])>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        let cookie = cookie.and_then(|name| from_cookies(headers, name));
        return Ok(cookie.map(|c| (Scheme::Bearer, c.as_bytes())));
    };
    if values.next().is_some() {
        return Err(invalid(RequestError::MultipleAuthorizationHeaders));
    }
    let bytes = value.as_bytes();
    let (scheme, rest) = match bytes.iter().position(|&b| b == b' ') {
        Some(i) => (&bytes[..i], &bytes[i + 1..]),
        None => (bytes, &[][..]),
    };
    let scheme = if scheme.eq_ignore_ascii_case(b"Bearer") {
        Scheme::Bearer
    } else if dpop && scheme.eq_ignore_ascii_case(b"DPoP") {
        Scheme::Dpop
    } else {
        // Not ours; still a malformed header is the client's mistake.
        value
            .to_str()
            .map_err(|_| invalid(RequestError::MalformedCredentials))?;
        return Ok(None);
    };
    // `1*SP` between scheme and token; spaces only, not other whitespace.
    let start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let end = rest
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |i| i + 1);
    match &rest[start..end] {
        [] => Err(invalid(RequestError::EmptyBearerToken)),
        token => Ok(Some((scheme, token))),
    }
}

/// The token, if it has the `b64token` syntax (which also makes it ASCII).
pub(crate) fn check(token: &[u8]) -> Result<&str, AuthError> {
    if !is_b64token(token) {
        return Err(invalid(RequestError::MalformedCredentials));
    }
    std::str::from_utf8(token).map_err(|_| invalid(RequestError::MalformedCredentials))
}

fn invalid(e: RequestError) -> AuthError {
    AuthError::InvalidRequest(e)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
///
/// Every byte is checked without an early exit, which lets the compiler
/// check many at once: a cached token costs little more than this scan.
fn is_b64token(s: &[u8]) -> bool {
    let end = s.iter().rposition(|&b| b != b'=').map_or(0, |i| i + 1);
    let body = &s[..end];
    !body.is_empty() && body.iter().fold(true, |ok, &b| ok & is_b64char(b))
}

fn is_b64char(b: u8) -> bool {
    // `|`, not `||`: no branches, so the loop above vectorises.
    ((b | 0x20).wrapping_sub(b'a') < 26)
        | (b.wrapping_sub(b'0') < 10)
        | (b == b'-')
        | (b == b'.')
        | (b == b'_')
        | (b == b'~')
        | (b == b'+')
        | (b == b'/')
}

fn from_cookies<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
        .filter(|v| is_b64token(v.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn headers(auth: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for a in auth {
            h.append(header::AUTHORIZATION, HeaderValue::from_str(a).unwrap());
        }
        h
    }

    #[test]
    fn scheme_is_case_insensitive_and_token_is_trimmed() {
        let h = headers(&["bEaReR   abc.def.ghi"]);
        assert_eq!(extract(&h, None, false).unwrap(), Some("abc.def.ghi"));
    }

    #[test]
    fn other_schemes_count_as_no_credentials() {
        assert_eq!(
            extract(&headers(&["Basic dXNlcjpwYXNz"]), None, false).unwrap(),
            None
        );
        assert_eq!(
            extract(&headers(&["Bearerabc"]), None, false).unwrap(),
            None
        );
    }

    #[test]
    fn empty_and_malformed_bearer_credentials_are_invalid_requests() {
        for (value, want) in [
            ("Bearer", RequestError::EmptyBearerToken),
            ("Bearer    ", RequestError::EmptyBearerToken),
            ("Bearer a b", RequestError::MalformedCredentials),
            ("Bearer a,b", RequestError::MalformedCredentials),
            ("Bearer ===", RequestError::MalformedCredentials),
            ("Bearer a=b", RequestError::MalformedCredentials),
            ("Bearer \tabc", RequestError::MalformedCredentials),
            ("Bearer abc\u{e9}", RequestError::MalformedCredentials),
        ] {
            assert_eq!(
                extract(&headers(&[value]), None, false),
                Err(AuthError::InvalidRequest(want)),
                "{value}"
            );
        }
    }

    #[test]
    fn b64token_alphabet_is_exactly_rfc_6750() {
        for b in 0..=u8::MAX {
            let want = b.is_ascii_alphanumeric() || b"-._~+/".contains(&b);
            assert_eq!(is_b64char(b), want, "byte {b:#04x}");
            assert_eq!(is_b64token(&[b'a', b, b'a']), want, "byte {b:#04x}");
        }
        assert!(is_b64token(b"abc=="));
        assert!(!is_b64token(b"=="));
        assert!(!is_b64token(b"a=b"));
    }

    #[test]
    fn two_authorization_headers_are_an_invalid_request() {
        let h = headers(&["Bearer a", "Bearer b"]);
        assert_eq!(
            extract(&h, None, false),
            Err(AuthError::InvalidRequest(
                RequestError::MultipleAuthorizationHeaders
            ))
        );
    }

    #[test]
    fn cookie_is_read_only_when_configured_and_header_absent() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; at=x.y.z"));
        assert_eq!(extract(&h, None, false).unwrap(), None);
        assert_eq!(extract(&h, Some("at"), false).unwrap(), Some("x.y.z"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer h.h.h"),
        );
        assert_eq!(extract(&h, Some("at"), false).unwrap(), Some("h.h.h"));
    }
}
