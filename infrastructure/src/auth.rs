//! Passwords (argon2id) and access tokens (JWT HS256 with `sub`, `role`, `exp`).

use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use chrono::{DateTime, Utc};
use domain::identity::Role;
use domain::ids::UserId;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use uuid::Uuid;

/// Hashes with argon2id (the crate's default algorithm) and a fresh random salt. CPU-heavy:
/// call from a blocking task.
pub fn hash_password(password: &str) -> anyhow::Result<String> {
    Argon2::default()
        .hash_password(password.as_bytes())
        .map(|h| h.to_string())
        .map_err(|e| anyhow::anyhow!("cannot hash password: {e}"))
}

/// False for a wrong password and for a hash that cannot be read.
pub fn verify_password(password: &str, hash: &str) -> bool {
    match PasswordHash::new(hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// A valid hash of a password nobody has, so a login for an unknown e-mail costs the same
/// time as one with a wrong password (no existence leak through timing).
pub fn decoy_hash() -> &'static str {
    static DECOY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    DECOY.get_or_init(|| hash_password(&Uuid::new_v4().to_string()).unwrap_or_default())
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct Claims {
    pub sub: Uuid,
    pub role: String,
    pub iat: i64,
    pub exp: i64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Principal {
    pub user_id: UserId,
    pub role: Role,
}

#[derive(Clone)]
pub struct TokenKeys {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    ttl: Duration,
}

#[derive(Debug, thiserror::Error, PartialEq)]
#[error("invalid or expired token")]
pub struct InvalidToken;

impl TokenKeys {
    pub fn new(secret: &str, ttl: Duration) -> TokenKeys {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        TokenKeys {
            encoding: EncodingKey::from_secret(secret.as_bytes()),
            decoding: DecodingKey::from_secret(secret.as_bytes()),
            validation,
            ttl,
        }
    }

    pub fn issue(
        &self,
        principal: Principal,
        now: DateTime<Utc>,
    ) -> anyhow::Result<(String, DateTime<Utc>)> {
        let expires_at = now + chrono::Duration::from_std(self.ttl)?;
        let claims = Claims {
            sub: principal.user_id.0,
            role: principal.role.as_str().to_string(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)?;
        Ok((token, expires_at))
    }

    pub fn verify(&self, token: &str) -> Result<Principal, InvalidToken> {
        let data = jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map_err(|_| InvalidToken)?;
        let role = Role::parse(&data.claims.role).ok_or(InvalidToken)?;
        Ok(Principal {
            user_id: UserId(data.claims.sub),
            role,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new("test-secret", Duration::from_secs(3600))
    }

    fn principal() -> Principal {
        Principal {
            user_id: UserId(Uuid::now_v7()),
            role: Role::BillingAdmin,
        }
    }

    #[test]
    fn passwords_verify_only_against_their_own_hash() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert!(!verify_password("correct horse", "not a hash"));
    }

    #[test]
    fn a_token_carries_its_subject_and_role() {
        let p = principal();
        let (token, _) = keys().issue(p, Utc::now()).unwrap();
        assert_eq!(keys().verify(&token), Ok(p));
    }

    #[test]
    fn expired_tampered_and_foreign_tokens_are_refused() {
        let p = principal();
        let (expired, _) = keys()
            .issue(p, Utc::now() - chrono::Duration::hours(2))
            .unwrap();
        assert_eq!(keys().verify(&expired), Err(InvalidToken));
        let (token, _) = keys().issue(p, Utc::now()).unwrap();
        let other = TokenKeys::new("other-secret", Duration::from_secs(3600));
        assert_eq!(other.verify(&token), Err(InvalidToken));
        let mut tampered = token.clone();
        tampered.insert(token.len() / 2, 'x');
        assert_eq!(keys().verify(&tampered), Err(InvalidToken));
        assert_eq!(keys().verify("not.a.token"), Err(InvalidToken));
    }
}
