//! The protected header: one pass that reads what validation needs and
//! refuses duplicate members, so that no two JSON parsers could read the
//! same header differently (RFC 7515 §4: names must be unique).

use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

use crate::error::TokenError;

/// What validation reads from the header. A member that is present counts
/// even when its value is `null`.
#[derive(Debug, Default)]
pub(crate) struct Header<'a> {
    pub alg: Cow<'a, str>,
    pub kid: Option<Cow<'a, str>>,
    pub typ: Option<Cow<'a, str>>,
    /// `crit` is present.
    pub crit: bool,
    /// `b64` as given.
    pub b64: Option<bool>,
    /// The first of `jwk`, `jku`, `x5u` present: key sources never trusted.
    pub untrusted: Option<&'static str>,
}

/// Parses the decoded header JSON, which may hold at most `max_members`
/// members.
pub(crate) fn parse(json: &[u8], max_members: usize) -> Result<Header<'_>, TokenError> {
    let mut de = serde_json::Deserializer::from_slice(json);
    let mut too_many = false;
    let header = HeaderSeed {
        max_members,
        too_many: &mut too_many,
    }
    .deserialize(&mut de);
    if too_many {
        return Err(TokenError::LimitExceeded("header members"));
    }
    let header = header.map_err(|_| TokenError::Malformed)?;
    de.end().map_err(|_| TokenError::Malformed)?;
    Ok(header)
}

struct HeaderSeed<'f> {
    max_members: usize,
    /// Set when the header holds more than `max_members` members.
    too_many: &'f mut bool,
}

impl<'de> DeserializeSeed<'de> for HeaderSeed<'_> {
    type Value = Header<'de>;
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Header<'de>, D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for HeaderSeed<'_> {
    type Value = Header<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JOSE header object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Header<'de>, A::Error> {
        let mut header = Header::default();
        let mut alg = None;
        let mut names = Names::default();
        let mut count = 0usize;
        while let Some(Str(name)) = map.next_key::<Str<'de>>()? {
            // Real headers hold a handful of members; parsing each costs
            // more than its bytes, so their number is bounded too.
            count += 1;
            if count > self.max_members {
                *self.too_many = true;
                return Err(de::Error::custom("too many header members"));
            }
            match &*name {
                "alg" => alg = Some(map.next_value::<Str<'de>>()?.0),
                "kid" => header.kid = Some(map.next_value::<Str<'de>>()?.0),
                "typ" => header.typ = Some(map.next_value::<Str<'de>>()?.0),
                "b64" => header.b64 = Some(map.next_value::<bool>()?),
                "crit" => {
                    map.next_value::<IgnoredAny>()?;
                    header.crit = true;
                }
                "jwk" | "jku" | "x5u" => {
                    map.next_value::<IgnoredAny>()?;
                    header.untrusted = header.untrusted.or(match &*name {
                        "jwk" => Some("jwk"),
                        "jku" => Some("jku"),
                        _ => Some("x5u"),
                    });
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
            if !names.insert(name) {
                return Err(de::Error::custom("duplicate header member"));
            }
        }
        header.alg = alg.ok_or_else(|| de::Error::missing_field("alg"))?;
        Ok(header)
    }
}

/// The member names of one JSON object, to refuse a repeated one in time
/// linear in the object's size: a header of 1,700 short members, well
/// within the size limit, cost 5 ms per request with a list compare.
/// The few members of an ordinary object are compared in a list (no
/// hashing); past that, a randomly keyed hash set takes over.
#[derive(Default)]
pub(super) struct Names<'de> {
    few: Vec<Cow<'de, str>>,
    many: HashSet<Cow<'de, str>>,
}

impl<'de> Names<'de> {
    pub(super) const FEW: usize = 16;

    /// Records `name`; `false` if it was seen before.
    pub(super) fn insert(&mut self, name: Cow<'de, str>) -> bool {
        if self.many.is_empty() {
            if self.few.contains(&name) {
                return false;
            }
            if self.few.len() < Self::FEW {
                self.few.push(name);
                return true;
            }
            self.many.extend(self.few.drain(..));
        }
        self.many.insert(name)
    }
}

/// A JSON string, borrowed from the input when it has no escapes.
pub(super) struct Str<'de>(pub(super) Cow<'de, str>);

impl<'de> de::Deserialize<'de> for Str<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Str<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Str<'de>, E> {
                Ok(Str(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_(json: &[u8]) -> Result<Header<'_>, TokenError> {
        parse(json, 64)
    }

    #[test]
    fn more_members_than_the_limit_are_refused_as_a_limit() {
        let members = |n: usize| -> String { (0..n).map(|i| format!(r#","m{i}":0"#)).collect() };
        let json = |n| format!(r#"{{"alg":"RS256"{}}}"#, members(n));
        assert!(parse(json(31).as_bytes(), 32).is_ok());
        assert_eq!(
            parse(json(32).as_bytes(), 32).unwrap_err(),
            TokenError::LimitExceeded("header members")
        );
        assert_eq!(
            parse(json(1700).as_bytes(), 32).unwrap_err(),
            TokenError::LimitExceeded("header members")
        );
    }

    #[test]
    fn reads_members_and_borrows_plain_strings() {
        let h = parse_(br#"{"alg":"RS256","kid":"k\u0031","typ":"at+jwt","x5t":"a"}"#).unwrap();
        assert!(matches!(h.alg, Cow::Borrowed("RS256")));
        assert_eq!(h.kid.as_deref(), Some("k1"));
        assert_eq!(h.typ.as_deref(), Some("at+jwt"));
        assert!(!h.crit && h.untrusted.is_none() && h.b64.is_none());
    }

    #[test]
    fn null_members_still_count_as_present() {
        assert!(parse_(br#"{"alg":"RS256","crit":null}"#).unwrap().crit);
        assert_eq!(
            parse_(br#"{"alg":"RS256","jku":null}"#).unwrap().untrusted,
            Some("jku")
        );
        assert_eq!(
            parse_(br#"{"alg":"RS256","x5u":null,"jwk":{}}"#)
                .unwrap()
                .untrusted,
            Some("x5u")
        );
    }

    #[test]
    fn repeats_are_found_among_few_and_many_names() {
        let mut names = Names::default();
        for i in 0..100 {
            assert!(names.insert(Cow::Owned(format!("m{i}"))), "{i}");
        }
        for i in [0, 15, 16, 17, 99] {
            assert!(!names.insert(Cow::Owned(format!("m{i}"))), "{i}");
        }
        let mut few = Names::default();
        assert!(few.insert(Cow::Borrowed("a")) && few.insert(Cow::Borrowed("b")));
        assert!(!few.insert(Cow::Borrowed("a")));
        let many: String = (0..40).map(|i| format!(r#","m{i}":0"#)).collect();
        assert!(parse_(format!(r#"{{"alg":"RS256"{many}}}"#).as_bytes()).is_ok());
        assert_eq!(
            parse_(format!(r#"{{"alg":"RS256"{many},"m39":1}}"#).as_bytes()).unwrap_err(),
            TokenError::Malformed
        );
    }

    #[test]
    fn duplicates_wrong_types_and_missing_alg_are_malformed() {
        for bad in [
            &br#"{"alg":"RS256","alg":"none"}"#[..],
            br#"{"alg":"RS256","x5c":[],"x5c":[]}"#,
            br#"{"alg":"RS256","kid":5}"#,
            br#"{"alg":"RS256","b64":"false"}"#,
            br#"{"alg":null}"#,
            br#"{"kid":"a"}"#,
            br#"["alg"]"#,
            br#"{"alg":"RS256"} {}"#,
        ] {
            assert_eq!(
                parse_(bad).unwrap_err(),
                TokenError::Malformed,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }
}
