//! Certificate-bound access tokens (RFC 8705 §3): a token whose
//! `cnf["x5t#S256"]` names the SHA-256 thumbprint of the client's TLS
//! certificate is accepted only from a connection that showed that
//! certificate.
//!
//! The certificate comes from the TLS connection, as a
//! [`ClientCertificate`] the server puts into each request's extensions,
//! or, when configured, from a header a TLS-terminating proxy sets
//! ([`CertificateHeader`]).

use std::fmt;

use aws_lc_rs::digest;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use bytes::Bytes;
use http::HeaderMap;

/// The client's TLS certificate (DER), as the server's TLS handshake saw
/// it. Insert it into the request's extensions (tokio-rustls:
/// `ServerConnection::peer_certificates()`, the first entry) and
/// certificate-bound tokens are checked against it.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientCertificate(Bytes);

impl ClientCertificate {
    /// A certificate from its DER encoding.
    pub fn from_der(der: impl Into<Bytes>) -> Self {
        Self(der.into())
    }

    /// The DER encoding.
    pub fn der(&self) -> &[u8] {
        &self.0
    }

    /// Its RFC 8705 thumbprint: base64url SHA-256 of the DER, as
    /// `cnf["x5t#S256"]` names it.
    pub fn thumbprint(&self) -> String {
        URL_SAFE_NO_PAD.encode(digest::digest(&digest::SHA256, &self.0))
    }
}

impl fmt::Debug for ClientCertificate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientCertificate")
            .field(&self.thumbprint())
            .finish()
    }
}

/// How a trusted TLS-terminating proxy passes the client certificate on
/// to the application: the header's name and format. Only configure it
/// when every request comes through that proxy, which must overwrite the
/// header a client sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateHeader {
    name: http::HeaderName,
    format: CertificateFormat,
}

/// The format of a [`CertificateHeader`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum CertificateFormat {
    /// The PEM certificate, URL-encoded: nginx's `$ssl_client_escaped_cert`.
    UrlEncodedPem,
    /// The PEM certificate with its line breaks replaced by spaces or tabs,
    /// as some proxies send it.
    Pem,
    /// Envoy's `x-forwarded-client-cert`: the URL-encoded PEM of its
    /// `Cert` key. A header of several elements (several proxies) carries
    /// none: which one saw the client would be a guess.
    EnvoyXfcc,
}

impl CertificateHeader {
    /// The certificate in header `name`, in `format`. `None` when `name`
    /// is not a valid header name.
    pub fn new(name: &str, format: CertificateFormat) -> Option<Self> {
        let name = http::HeaderName::from_bytes(name.as_bytes()).ok()?;
        Some(Self { name, format })
    }

    /// The certificate the request's header carries, if it carries one
    /// that decodes. A header given twice carries none.
    pub(crate) fn certificate(&self, headers: &HeaderMap) -> Option<ClientCertificate> {
        let mut values = headers.get_all(&self.name).iter();
        let (Some(value), None) = (values.next(), values.next()) else {
            return None;
        };
        let text = value.to_str().ok()?;
        let pem = match self.format {
            CertificateFormat::UrlEncodedPem => percent_decode(text)?,
            CertificateFormat::Pem => text.to_owned(),
            CertificateFormat::EnvoyXfcc => percent_decode(&xfcc_cert(text)?)?,
        };
        pem_to_der(&pem).map(ClientCertificate::from_der)
    }
}

/// The `Cert` value of an `x-forwarded-client-cert` of one element:
/// `By=…;Hash=…;Cert="…";Subject="…"`. Values may be quoted, and a quoted
/// value may hold `,`, `;` and `\"`. `None` for several elements, or for
/// `Cert` given twice.
fn xfcc_cert(header: &str) -> Option<String> {
    let mut cert = None;
    let mut rest = header;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, after) = match after.strip_prefix('"') {
            Some(quoted) => {
                let mut value = String::new();
                let mut chars = quoted.char_indices();
                let end = loop {
                    match chars.next()? {
                        (_, '\\') => value.push(chars.next()?.1),
                        (i, '"') => break i,
                        (_, c) => value.push(c),
                    }
                };
                (value, &quoted[end + 1..])
            }
            None => {
                let end = after.find([';', ',']).unwrap_or(after.len());
                (after[..end].to_owned(), &after[end..])
            }
        };
        if key.trim().eq_ignore_ascii_case("cert") && cert.replace(value).is_some() {
            return None;
        }
        rest = match after.strip_prefix(';') {
            Some(next) => next,
            None if after.is_empty() => "",
            // A second element: more than one proxy.
            None => return None,
        };
    }
    cert
}

/// `%XX` decoded; `None` if an escape is malformed or the result is not
/// UTF-8. (`+` stays `+`: it is part of base64.)
fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let digit = |k: usize| char::from(*b.get(i + k)?).to_digit(16);
            out.push(u8::try_from(digit(1)? * 16 + digit(2)?).ok()?);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The DER of the one certificate in `pem`, whitespace in its base64
/// allowed.
fn pem_to_der(pem: &str) -> Option<Vec<u8>> {
    const BEGIN: &str = "-----BEGIN CERTIFICATE-----";
    const END: &str = "-----END CERTIFICATE-----";
    let body = pem.trim().strip_prefix(BEGIN)?.strip_suffix(END)?;
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).ok()?;
    // A DER certificate is a SEQUENCE.
    (der.first() == Some(&0x30)).then_some(der)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMAMCAQA=\n-----END CERTIFICATE-----\n";

    fn headers(name: &str, values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(
                http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_proxy_header_carries_the_certificate_in_either_format() {
        let url =
            CertificateHeader::new("x-client-cert", CertificateFormat::UrlEncodedPem).unwrap();
        let encoded = PEM.replace('\n', "%0A").replace('=', "%3D");
        let cert = url
            .certificate(&headers("x-client-cert", &[&encoded]))
            .unwrap();
        assert_eq!(cert.der(), [0x30, 0x03, 0x02, 0x01, 0x00]);

        let pem = CertificateHeader::new("x-client-cert", CertificateFormat::Pem).unwrap();
        let spaced = PEM.replace('\n', " ");
        assert_eq!(
            pem.certificate(&headers("x-client-cert", &[&spaced])),
            Some(cert)
        );
        for bad in [
            "",
            "garbage",
            "%ZZ",
            "-----BEGIN CERTIFICATE-----AAAA-----END CERTIFICATE-----",
        ] {
            assert_eq!(
                url.certificate(&headers("x-client-cert", &[bad])),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            url.certificate(&headers("x-client-cert", &[&encoded, &encoded])),
            None,
            "given twice"
        );
        assert_eq!(url.certificate(&HeaderMap::new()), None);
        assert!(CertificateHeader::new("bad header", CertificateFormat::Pem).is_none());
    }

    #[test]
    fn envoy_s_header_carries_the_certificate_in_its_one_element() {
        let xfcc = CertificateHeader::new("x-forwarded-client-cert", CertificateFormat::EnvoyXfcc)
            .unwrap();
        let encoded = PEM.replace('\n', "%0A").replace('=', "%3D");
        let one = format!(
            "By=spiffe://api.test;Hash=ab12;Cert=\"{encoded}\";Subject=\"CN=a,O=b;c\";URI=spiffe://client"
        );
        let got = xfcc.certificate(&headers("x-forwarded-client-cert", &[&one]));
        assert_eq!(got.unwrap().der(), [0x30, 0x03, 0x02, 0x01, 0x00]);
        for bad in [
            format!("{one},By=spiffe://other;Cert=\"{encoded}\""),
            format!("Cert=\"{encoded}\";Cert=\"{encoded}\""),
            format!("Subject=\"CN=x\\\";Cert=\\\"{encoded}\""),
            "By=spiffe://api.test;Hash=ab12".to_owned(),
            "Cert=\"unterminated".to_owned(),
        ] {
            assert_eq!(
                xfcc.certificate(&headers("x-forwarded-client-cert", &[&bad])),
                None,
                "{bad}"
            );
        }
    }

    #[test]
    fn the_thumbprint_is_base64url_sha256_of_the_der() {
        let cert = ClientCertificate::from_der(&b"abc"[..]);
        // SHA-256("abc"), RFC 6234's test vector, in base64url.
        assert_eq!(
            cert.thumbprint(),
            "ungWv48Bz-pBQUDeXa4iI7ADYaOWF3qctBD_YfIAFa0"
        );
    }
}
