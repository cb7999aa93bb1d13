//! The ApiKey aggregate: a long-lived credential a user makes for scripts and SDKs. The
//! secret is shown once, when it is made; only its SHA-256 is recorded. A key is
//! `brk_<keyId>_<secret>` (the key id as 32 hex digits, the secret 32 random bytes as 64 hex
//! digits): the id finds the key without a search, the prefix tells people (and secret
//! scanners) what it is. A key authenticates as its user until it is
//! revoked or expires.

use chrono::{DateTime, Duration, Utc};
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ids::UserId;
use crate::validation::text_length;
use crate::FieldError;

/// Every key starts with this.
pub const KEY_PREFIX: &str = "brk_";
/// The longest a key may live.
pub const MAX_LIFETIME_DAYS: i64 = 3650;

/// The SHA-256 of a presented key, hex: what is recorded and compared. The secret has 256
/// bits of entropy, so a fast hash is enough (no password stretching needed).
pub fn secret_hash(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key id of something that looks like a key (`brk_<32 hex>_<secret>`), else `None`.
pub fn key_id_of(presented: &str) -> Option<Uuid> {
    let rest = presented.strip_prefix(KEY_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    if id.len() != 32 || secret.len() < 32 {
        return None;
    }
    Uuid::try_parse(id).ok()
}

/// The key as given to its owner, from its id and secret.
pub fn format_key(key_id: Uuid, secret: &str) -> String {
    format!("{KEY_PREFIX}{}_{secret}", key_id.simple())
}

/// What a list shows of a key: enough to recognise it, nothing to use.
pub fn display_prefix(key_id: Uuid) -> String {
    format!("{KEY_PREFIX}{}", &key_id.simple().to_string()[..8])
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CreateApiKey {
    pub key_id: Uuid,
    pub user_id: UserId,
    pub name: String,
    /// The SHA-256 of the whole key (`secret_hash`).
    pub secret_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ApiKeyCommand {
    Create(CreateApiKey),
    /// Revoked by `user_id` (only its owner may).
    Revoke {
        user_id: UserId,
        at: DateTime<Utc>,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyCreated {
    pub key_id: Uuid,
    pub user_id: UserId,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiKeyRevoked {
    pub key_id: Uuid,
    pub user_id: UserId,
    pub revoked_at: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ApiKeyEvent {
    ApiKeyCreated(ApiKeyCreated),
    ApiKeyRevoked(ApiKeyRevoked),
}

impl DomainEvent for ApiKeyEvent {
    fn event_type(&self) -> String {
        match self {
            ApiKeyEvent::ApiKeyCreated(_) => "ApiKeyCreated",
            ApiKeyEvent::ApiKeyRevoked(_) => "ApiKeyRevoked",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ApiKeyError {
    /// No such key for this user (another user's key is not theirs to see).
    #[error("no such API key")]
    NotFound,
    #[error("{}", .0.message)]
    Invalid(FieldError),
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiKey {
    id: Option<Uuid>,
    owner: Option<UserId>,
    secret_hash: String,
    expires_at: Option<DateTime<Utc>>,
    revoked: bool,
}

impl ApiKey {
    pub fn owner(&self) -> Option<UserId> {
        self.owner
    }

    /// The user `presented` authenticates as at `now`: the key's, when its hash matches and
    /// it is neither revoked nor expired.
    pub fn authenticates(&self, presented: &str, now: DateTime<Utc>) -> Option<UserId> {
        let owner = self.owner?;
        let live = !self.revoked && self.expires_at.is_none_or(|e| now < e);
        (live && constant_time_eq(&secret_hash(presented), &self.secret_hash)).then_some(owner)
    }

    pub fn decide(&self, command: ApiKeyCommand) -> Result<Vec<ApiKeyEvent>, ApiKeyError> {
        match command {
            ApiKeyCommand::Create(c) => {
                if self.id.is_some() {
                    return Ok(vec![]);
                }
                let name = c.name.trim().to_string();
                text_length("name", &name, 1, 100).map_err(ApiKeyError::Invalid)?;
                if let Some(expires) = c.expires_at {
                    if expires <= c.at {
                        return Err(ApiKeyError::Invalid(FieldError::new(
                            "expiresAt",
                            "expiresAt must be in the future",
                        )));
                    }
                    if expires > c.at + Duration::days(MAX_LIFETIME_DAYS) {
                        return Err(ApiKeyError::Invalid(FieldError::new(
                            "expiresAt",
                            format!("a key lives at most {MAX_LIFETIME_DAYS} days"),
                        )));
                    }
                }
                Ok(vec![ApiKeyEvent::ApiKeyCreated(ApiKeyCreated {
                    key_id: c.key_id,
                    user_id: c.user_id,
                    name,
                    prefix: display_prefix(c.key_id),
                    secret_hash: c.secret_hash,
                    expires_at: c.expires_at,
                    created_at: c.at,
                })])
            }
            ApiKeyCommand::Revoke { user_id, at } => {
                let (Some(id), Some(owner)) = (self.id, self.owner) else {
                    return Err(ApiKeyError::NotFound);
                };
                if owner != user_id {
                    return Err(ApiKeyError::NotFound);
                }
                if self.revoked {
                    return Ok(vec![]);
                }
                Ok(vec![ApiKeyEvent::ApiKeyRevoked(ApiKeyRevoked {
                    key_id: id,
                    user_id: owner,
                    revoked_at: at,
                })])
            }
        }
    }
}

/// Equal strings, compared in time that does not depend on where they differ.
fn constant_time_eq(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

decided_aggregate!(
    ApiKey,
    "api_key",
    ApiKeyCommand,
    ApiKeyEvent,
    ApiKeyError,
    fn apply(&mut self, event: ApiKeyEvent) {
        match event {
            ApiKeyEvent::ApiKeyCreated(e) => {
                self.id = Some(e.key_id);
                self.owner = Some(e.user_id);
                self.secret_hash = e.secret_hash;
                self.expires_at = e.expires_at;
            }
            ApiKeyEvent::ApiKeyRevoked(_) => self.revoked = true,
        }
    }
);

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;
    use cqrs_es::test::TestFramework;

    fn at(h: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 12, 1, h, 0, 0).unwrap()
    }

    const ADA: UserId = UserId(Uuid::from_u128(1));
    const KEY: Uuid = Uuid::from_u128(0xabc);
    const SECRET: &str = "c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I";

    fn create(expires_at: Option<DateTime<Utc>>) -> ApiKeyCommand {
        ApiKeyCommand::Create(CreateApiKey {
            key_id: KEY,
            user_id: ADA,
            name: "  notebook  ".into(),
            secret_hash: secret_hash(&format_key(KEY, SECRET)),
            expires_at,
            at: at(9),
        })
    }

    fn created(expires_at: Option<DateTime<Utc>>) -> ApiKeyEvent {
        ApiKeyEvent::ApiKeyCreated(ApiKeyCreated {
            key_id: KEY,
            user_id: ADA,
            name: "notebook".into(),
            prefix: "brk_00000000".into(),
            secret_hash: secret_hash(&format_key(KEY, SECRET)),
            expires_at,
            created_at: at(9),
        })
    }

    #[test]
    fn a_key_is_created_with_its_hash_only_and_a_trimmed_name() {
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(create(Some(at(12))))
            .then_expect_events(vec![created(Some(at(12)))]);
        TestFramework::<ApiKey>::with(())
            .given(vec![created(None)])
            .when(create(None))
            .then_expect_events(vec![]);
    }

    #[test]
    fn a_blank_name_or_an_expiry_not_in_the_future_is_refused_naming_the_field() {
        let mut blank = create(None);
        if let ApiKeyCommand::Create(c) = &mut blank {
            c.name = "   ".into();
        }
        let refused = ApiKey::default().decide(blank).unwrap_err();
        assert!(matches!(refused, ApiKeyError::Invalid(ref e) if e.field == "name"));
        for expires in [at(9), at(8), at(9) + Duration::days(MAX_LIFETIME_DAYS + 1)] {
            let refused = ApiKey::default().decide(create(Some(expires))).unwrap_err();
            assert!(
                matches!(refused, ApiKeyError::Invalid(ref e) if e.field == "expiresAt"),
                "{expires}"
            );
        }
    }

    #[test]
    fn only_its_owner_revokes_a_key_and_once() {
        let revoke = |user_id| ApiKeyCommand::Revoke {
            user_id,
            at: at(10),
        };
        TestFramework::<ApiKey>::with(())
            .given(vec![created(None)])
            .when(revoke(ADA))
            .then_expect_events(vec![ApiKeyEvent::ApiKeyRevoked(ApiKeyRevoked {
                key_id: KEY,
                user_id: ADA,
                revoked_at: at(10),
            })]);
        TestFramework::<ApiKey>::with(())
            .given(vec![created(None)])
            .when(revoke(UserId(Uuid::from_u128(2))))
            .then_expect_error(ApiKeyError::NotFound);
        TestFramework::<ApiKey>::with(())
            .given_no_previous_events()
            .when(revoke(ADA))
            .then_expect_error(ApiKeyError::NotFound);
        let revoked = ApiKeyEvent::ApiKeyRevoked(ApiKeyRevoked {
            key_id: KEY,
            user_id: ADA,
            revoked_at: at(10),
        });
        TestFramework::<ApiKey>::with(())
            .given(vec![created(None), revoked])
            .when(revoke(ADA))
            .then_expect_events(vec![]);
    }

    fn key(events: Vec<ApiKeyEvent>) -> ApiKey {
        let mut k = ApiKey::default();
        for e in events {
            cqrs_es::Aggregate::apply(&mut k, e);
        }
        k
    }

    #[test]
    fn a_key_authenticates_as_its_owner_until_revoked_or_expired() {
        let presented = format_key(KEY, SECRET);
        let live = key(vec![created(Some(at(12)))]);
        assert_eq!(live.authenticates(&presented, at(11)), Some(ADA));
        assert_eq!(live.authenticates(&presented, at(12)), None, "expired");
        let mut wrong = presented.clone();
        wrong.pop();
        wrong.push('x');
        assert_eq!(live.authenticates(&wrong, at(11)), None, "another secret");
        let revoked = key(vec![
            created(None),
            ApiKeyEvent::ApiKeyRevoked(ApiKeyRevoked {
                key_id: KEY,
                user_id: ADA,
                revoked_at: at(10),
            }),
        ]);
        assert_eq!(revoked.authenticates(&presented, at(11)), None);
        assert_eq!(ApiKey::default().authenticates(&presented, at(11)), None);
    }

    #[test]
    fn a_key_is_recognised_by_its_shape() {
        let presented = format_key(KEY, SECRET);
        assert!(presented.starts_with("brk_00000000000000000000000000000abc_"));
        assert_eq!(key_id_of(&presented), Some(KEY));
        for not_a_key in [
            "eyJhbGciOiJIUzI1NiJ9.e30.x",
            "brk_nothex_c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3I",
            "brk_00000000000000000000000000000abc_short",
            "brk_",
        ] {
            assert_eq!(key_id_of(not_a_key), None, "{not_a_key}");
        }
        assert_eq!(display_prefix(KEY), "brk_00000000");
    }
}
