//! Where the token comes from: the `Authorization` header (RFC 6750 §2.1)
//! or, when configured, a cookie. A token in the query string (RFC 6750
//! §2.3) is never read: URLs end up in logs.

use http::{HeaderMap, header};

use crate::error::{AuthError, RequestError};

/// Finds the bearer token of a request. `Ok(None)` means no bearer
/// credentials at all (no header, or another scheme such as `Basic`).
pub(crate) fn extract<'a>(
    headers: &'a HeaderMap,
    cookie: Option<&str>,
) -> Result<Option<&'a str>, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(cookie.and_then(|name| from_cookies(headers, name)));
    };
    if values.next().is_some() {
        return Err(invalid(RequestError::MultipleAuthorizationHeaders));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid(RequestError::MalformedCredentials))?;
    let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
    if !scheme.eq_ignore_ascii_case("Bearer") {
        return Ok(None);
    }
    let token = rest.trim_matches(' ');
    if token.is_empty() {
        return Err(invalid(RequestError::EmptyBearerToken));
    }
    if !is_b64token(token) {
        return Err(invalid(RequestError::MalformedCredentials));
    }
    Ok(Some(token))
}

fn invalid(e: RequestError) -> AuthError {
    AuthError::InvalidRequest(e)
}

/// RFC 6750 §2.1: `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_b64token(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/')
        })
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
        .filter(|v| is_b64token(v))
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
        assert_eq!(extract(&h, None).unwrap(), Some("abc.def.ghi"));
    }

    #[test]
    fn other_schemes_count_as_no_credentials() {
        assert_eq!(
            extract(&headers(&["Basic dXNlcjpwYXNz"]), None).unwrap(),
            None
        );
        assert_eq!(extract(&headers(&["Bearerabc"]), None).unwrap(), None);
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
        ] {
            assert_eq!(
                extract(&headers(&[value]), None),
                Err(AuthError::InvalidRequest(want)),
                "{value}"
            );
        }
    }

    #[test]
    fn two_authorization_headers_are_an_invalid_request() {
        let h = headers(&["Bearer a", "Bearer b"]);
        assert_eq!(
            extract(&h, None),
            Err(AuthError::InvalidRequest(
                RequestError::MultipleAuthorizationHeaders
            ))
        );
    }

    #[test]
    fn cookie_is_read_only_when_configured_and_header_absent() {
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; at=x.y.z"));
        assert_eq!(extract(&h, None).unwrap(), None);
        assert_eq!(extract(&h, Some("at")).unwrap(), Some("x.y.z"));
        h.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer h.h.h"),
        );
        assert_eq!(extract(&h, Some("at")).unwrap(), Some("h.h.h"));
    }
}
