//! What the events of a Security Event Token mean for access tokens: the
//! CAEP and RISC events that end sessions or credentials become
//! revocations, each of the subject it names (RFC 9493 subject
//! identifiers, or SSF's complex subjects).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

use super::SetError;
use crate::revocation::Revoke;

const CAEP: &str = "https://schemas.openid.net/secevent/caep/event-type/";
const RISC: &str = "https://schemas.openid.net/secevent/risc/event-type/";
pub(super) const VERIFICATION: &str =
    "https://schemas.openid.net/secevent/ssf/event-type/verification";

/// What an event type does to access tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// One session ended (CAEP `session-revoked`): the session's tokens,
    /// or when the subject names no session, all of the user's.
    Session,
    /// Every token of the user (a changed, compromised or revoked
    /// credential, a disabled or purged account, all sessions revoked).
    Account,
    /// CAEP `credential-change`: like `Account`, unless a credential was
    /// only created.
    CredentialChange,
    Verification,
    /// Understood by someone else.
    Other,
}

fn kind(uri: &str) -> Kind {
    if uri == VERIFICATION {
        return Kind::Verification;
    }
    match (uri.strip_prefix(CAEP), uri.strip_prefix(RISC)) {
        (Some("session-revoked"), _) => Kind::Session,
        (Some("credential-change"), _) => Kind::CredentialChange,
        (
            _,
            Some(
                "account-disabled"
                | "account-purged"
                | "credential-compromise"
                | "sessions-revoked",
            ),
        ) => Kind::Account,
        _ => Kind::Other,
    }
}

/// The revocations the events of one SET ask for.
#[derive(Debug, Default)]
pub(super) struct Outcome {
    pub revoke: Vec<Revoke>,
    /// Event types that changed nothing, with why.
    pub ignored: Vec<(String, &'static str)>,
    /// A verification event's `state` (`Some(None)`: one without state).
    pub verification: Option<Option<String>>,
}

/// Reads `events`, whose subjects are `sub_id` where an event names none
/// itself. `issued_at` is the SET's `iat`; `token_issuer` the issuer of
/// the access tokens that subjects without an issuer of their own are
/// about.
pub(super) fn read(
    events: &Map<String, Value>,
    sub_id: Option<&Value>,
    issued_at: SystemTime,
    token_issuer: &str,
) -> Result<Outcome, SetError> {
    let mut out = Outcome::default();
    for (uri, payload) in events {
        let kind = kind(uri);
        match kind {
            Kind::Verification => {
                let state = payload.get("state").and_then(Value::as_str);
                out.verification = Some(state.map(str::to_owned));
                continue;
            }
            Kind::Other => {
                out.ignored.push((uri.clone(), "event type not understood"));
                continue;
            }
            Kind::CredentialChange
                if payload.get("change_type").and_then(Value::as_str) == Some("create") =>
            {
                // A credential added takes nothing away from those in use.
                out.ignored.push((uri.clone(), "a credential was created"));
                continue;
            }
            _ => {}
        }
        let subject = payload
            .get("subject")
            .or(sub_id)
            .ok_or(SetError::InvalidRequest("an event names no subject"))?;
        let before = match payload.get("event_timestamp") {
            None => issued_at,
            Some(t) => timestamp(t)
                .ok_or(SetError::InvalidRequest("event_timestamp is not a time"))?
                // Not later than the SET: a transmitter's clock ahead of
                // its own `iat` would stretch the cutoff.
                .min(issued_at),
        };
        let found = revocations(subject, kind == Kind::Session, token_issuer, before)?;
        if found.is_empty() {
            out.ignored
                .push((uri.clone(), "subject format not supported"));
        }
        out.revoke.extend(found);
    }
    Ok(out)
}

/// A NumericDate (seconds since the epoch, maybe with a fraction).
pub(super) fn timestamp(v: &Value) -> Option<SystemTime> {
    let secs = v.as_f64().filter(|s| s.is_finite() && *s >= 0.0)?;
    UNIX_EPOCH.checked_add(Duration::try_from_secs_f64(secs).ok()?)
}

const MALFORMED: SetError = SetError::InvalidRequest("a subject identifier is malformed");

/// What revoking `subject` means; empty for a format that access tokens
/// do not carry (`phone_number`, `account`, `did`, `uri`, …).
fn revocations(
    subject: &Value,
    session_event: bool,
    token_issuer: &str,
    before: SystemTime,
) -> Result<Vec<Revoke>, SetError> {
    let obj = subject.as_object().ok_or(MALFORMED)?;
    let field = |name: &str| -> Result<String, SetError> {
        obj.get(name)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(MALFORMED)
    };
    let format = obj.get("format").and_then(Value::as_str);
    // SSF's complex subject: its members are themselves subjects, and it
    // may leave `format` out.
    let complex = format == Some("complex")
        || (format.is_none() && (obj.contains_key("user") || obj.contains_key("session")));
    if complex {
        return complex_revocations(obj, session_event, token_issuer, before);
    }
    let revoke = match format {
        Some("iss_sub") => Revoke::SubjectBefore {
            issuer: field("iss")?,
            subject: field("sub")?,
            before,
        },
        Some("opaque") => Revoke::SubjectBefore {
            issuer: token_issuer.to_owned(),
            subject: field("id")?,
            before,
        },
        Some("email") => Revoke::EmailBefore {
            issuer: token_issuer.to_owned(),
            email: field("email")?,
            before,
        },
        Some("aliases") => {
            let ids = obj
                .get("identifiers")
                .and_then(Value::as_array)
                .ok_or(MALFORMED)?;
            let mut all = Vec::new();
            for id in ids {
                // RFC 9493 §3.2.2: aliases do not nest.
                if id.get("format").and_then(Value::as_str) == Some("aliases") {
                    return Err(MALFORMED);
                }
                all.extend(revocations(id, session_event, token_issuer, before)?);
            }
            return Ok(all);
        }
        _ => return Ok(Vec::new()),
    };
    Ok(vec![revoke])
}

/// A complex subject: its `session`, for a session event, else its `user`.
/// Its other members (`tenant`, `device`, `application`, …) narrow it
/// further, which tokens cannot be matched by: the broader revocation
/// stands.
fn complex_revocations(
    obj: &Map<String, Value>,
    session_event: bool,
    token_issuer: &str,
    before: SystemTime,
) -> Result<Vec<Revoke>, SetError> {
    let user = obj.get("user");
    // The session's issuer is the user's, when it names one.
    let issuer = user
        .and_then(|u| u.get("iss"))
        .and_then(Value::as_str)
        .unwrap_or(token_issuer);
    if session_event && let Some(session) = obj.get("session") {
        let sid = session
            .get("id")
            .or_else(|| session.get("sub"))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .ok_or(MALFORMED)?;
        return Ok(vec![Revoke::SessionBefore {
            issuer: issuer.to_owned(),
            sid: sid.to_owned(),
            before,
        }]);
    }
    match user {
        Some(user) => revocations(user, false, token_issuer, before),
        None => Ok(Vec::new()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const ISS: &str = "https://idp.example";

    fn at(secs: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn read_one(uri: &str, payload: Value, sub_id: Option<Value>) -> Result<Outcome, SetError> {
        let events = json!({ uri: payload });
        read(events.as_object().unwrap(), sub_id.as_ref(), at(1_000), ISS)
    }

    #[test]
    fn a_revoked_session_names_its_session_or_else_every_session() {
        let uri = format!("{CAEP}session-revoked");
        let complex = json!({
            "format": "complex",
            "user": {"format": "iss_sub", "iss": "https://other", "sub": "alice"},
            "session": {"format": "opaque", "id": "s-1"},
        });
        let out = read_one(&uri, json!({"event_timestamp": 900}), Some(complex)).unwrap();
        assert_eq!(
            out.revoke,
            [Revoke::SessionBefore {
                issuer: "https://other".into(),
                sid: "s-1".into(),
                before: at(900)
            }]
        );
        let user = json!({"format": "opaque", "id": "alice"});
        let out = read_one(&uri, json!({"subject": user}), None).unwrap();
        assert_eq!(
            out.revoke,
            [Revoke::SubjectBefore {
                issuer: ISS.into(),
                subject: "alice".into(),
                before: at(1_000)
            }]
        );
    }

    #[test]
    fn account_events_revoke_the_user_even_of_a_complex_subject() {
        let complex = json!({
            "user": {"format": "email", "email": "Alice@Example.com"},
            "session": {"format": "opaque", "id": "s-1"},
        });
        for event in [
            "account-disabled",
            "account-purged",
            "credential-compromise",
            "sessions-revoked",
        ] {
            let out =
                read_one(&format!("{RISC}{event}"), json!({}), Some(complex.clone())).unwrap();
            assert_eq!(
                out.revoke,
                [Revoke::EmailBefore {
                    issuer: ISS.into(),
                    email: "Alice@Example.com".into(),
                    before: at(1_000)
                }],
                "{event}"
            );
        }
    }

    #[test]
    fn a_created_credential_and_unknown_events_change_nothing() {
        let sub = Some(json!({"format": "opaque", "id": "alice"}));
        let uri = format!("{CAEP}credential-change");
        let out = read_one(&uri, json!({"change_type": "create"}), sub.clone()).unwrap();
        assert!(out.revoke.is_empty());
        assert_eq!(out.ignored.len(), 1);
        let out = read_one(&uri, json!({"change_type": "revoke"}), sub.clone()).unwrap();
        assert_eq!(out.revoke.len(), 1);
        let out = read_one("https://example.com/event/x", json!({}), sub.clone()).unwrap();
        assert!(out.revoke.is_empty());
        assert_eq!(out.ignored[0].0, "https://example.com/event/x");
        let out = read_one(
            &format!("{RISC}account-disabled"),
            json!({}),
            Some(json!({"format": "phone_number", "phone_number": "+1"})),
        )
        .unwrap();
        assert!(out.revoke.is_empty());
        assert_eq!(out.ignored[0].1, "subject format not supported");
    }

    #[test]
    fn the_cutoff_is_never_later_than_the_set() {
        let sub = Some(json!({"format": "opaque", "id": "alice"}));
        let out = read_one(
            &format!("{RISC}account-disabled"),
            json!({"event_timestamp": 5_000}),
            sub,
        )
        .unwrap();
        assert!(
            matches!(&out.revoke[0], Revoke::SubjectBefore { before, .. } if *before == at(1_000))
        );
    }

    #[test]
    fn malformed_subjects_and_missing_subjects_are_refused() {
        let uri = format!("{RISC}account-disabled");
        for bad in [
            json!("alice"),
            json!({"format": "iss_sub", "sub": "alice"}),
            json!({"format": "opaque", "id": ""}),
            json!({"format": "aliases", "identifiers": [{"format": "aliases", "identifiers": []}]}),
            json!({"format": "complex", "session": {"format": "opaque"}}),
        ] {
            let session = format!("{CAEP}session-revoked");
            let a = read_one(&uri, json!({}), Some(bad.clone()));
            let b = read_one(&session, json!({}), Some(bad.clone()));
            assert!(a.is_err() || b.is_err(), "{bad}");
        }
        assert!(read_one(&uri, json!({}), None).is_err());
        assert!(
            read_one(
                &uri,
                json!({"event_timestamp": "soon"}),
                Some(json!({"format": "opaque", "id": "a"}))
            )
            .is_err()
        );
    }

    #[test]
    fn aliases_revoke_each_identifier() {
        let sub = json!({"format": "aliases", "identifiers": [
            {"format": "iss_sub", "iss": ISS, "sub": "alice"},
            {"format": "email", "email": "alice@example.com"},
            {"format": "phone_number", "phone_number": "+1"},
        ]});
        let out = read_one(&format!("{RISC}account-purged"), json!({}), Some(sub)).unwrap();
        assert_eq!(out.revoke.len(), 2);
    }

    #[test]
    fn verification_keeps_its_state() {
        let out = read_one(VERIFICATION, json!({"state": "abc"}), None).unwrap();
        assert_eq!(out.verification, Some(Some("abc".into())));
        assert!(out.revoke.is_empty() && out.ignored.is_empty());
    }
}
