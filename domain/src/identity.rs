//! Sign-up rules: e-mail format, password length, name and organization lengths.

use crate::validation::{text_length, FieldError};
use serde::{Deserialize, Serialize};

pub const MIN_PASSWORD_LENGTH: usize = 8;
/// Argon2 hashes whatever it is given; a cap keeps a request from buying seconds of CPU.
pub const MAX_PASSWORD_LENGTH: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    User,
    Admin,
    BillingAdmin,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::User => "user",
            Role::Admin => "admin",
            Role::BillingAdmin => "billing_admin",
        }
    }

    pub fn parse(value: &str) -> Option<Role> {
        match value {
            "user" => Some(Role::User),
            "admin" => Some(Role::Admin),
            "billing_admin" => Some(Role::BillingAdmin),
            _ => None,
        }
    }

    /// Admins see every user's resources; others only their own.
    pub fn sees_all_resources(self) -> bool {
        matches!(self, Role::Admin)
    }
}

/// The user's plan. Every account starts on `FREE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SubscriptionTier {
    #[default]
    Free,
    Starter,
    Professional,
    Enterprise,
}

impl SubscriptionTier {
    pub const ALL: [SubscriptionTier; 4] = [
        SubscriptionTier::Free,
        SubscriptionTier::Starter,
        SubscriptionTier::Professional,
        SubscriptionTier::Enterprise,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SubscriptionTier::Free => "FREE",
            SubscriptionTier::Starter => "STARTER",
            SubscriptionTier::Professional => "PROFESSIONAL",
            SubscriptionTier::Enterprise => "ENTERPRISE",
        }
    }

    pub fn parse(value: &str) -> Option<SubscriptionTier> {
        Self::ALL.into_iter().find(|t| t.as_str() == value)
    }
}

/// A sign-up request whose fields passed every rule; e-mail normalised to lower case.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSignup {
    pub email: String,
    pub name: String,
    pub organization: Option<String>,
}

/// No password is longer than `MAX_PASSWORD_LENGTH` characters: sign-up refuses one, and
/// a login refuses one before hashing it (a longer one could only cost a longer hash).
pub fn check_password_length(password: &str) -> Result<(), FieldError> {
    if password.chars().count() > MAX_PASSWORD_LENGTH {
        return Err(FieldError::new(
            "password",
            format!("password must be at most {MAX_PASSWORD_LENGTH} characters"),
        ));
    }
    Ok(())
}

pub fn validate_signup(
    email: &str,
    password: &str,
    name: &str,
    organization: Option<&str>,
) -> Result<ValidSignup, FieldError> {
    let email = normalize_email(email);
    if !is_plausible_email(&email) {
        return Err(FieldError::new(
            "email",
            "email must be a valid email address",
        ));
    }
    let password_len = password.chars().count();
    if password_len < MIN_PASSWORD_LENGTH {
        return Err(FieldError::new(
            "password",
            format!("password must be at least {MIN_PASSWORD_LENGTH} characters"),
        ));
    }
    check_password_length(password)?;
    text_length("name", name, 2, 100)?;
    let organization = organization.map(str::trim).filter(|o| !o.is_empty());
    if let Some(org) = organization {
        text_length("organization", org, 0, 200)?;
    }
    Ok(ValidSignup {
        email,
        name: name.trim().to_string(),
        organization: organization.map(str::to_string),
    })
}

/// Failed logins per e-mail within a window: at `max_failures`, further attempts are refused
/// (even with the right password) until old failures leave the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginThrottle {
    pub max_failures: i64,
    pub window_secs: u64,
}

impl LoginThrottle {
    /// `Err(retry_after_secs)` when a login with `recent_failures` inside the window must wait.
    pub fn check(self, recent_failures: i64) -> Result<(), u64> {
        if recent_failures >= self.max_failures {
            Err(self.window_secs)
        } else {
            Ok(())
        }
    }
}

pub fn normalize_email(email: &str) -> String {
    email.trim().to_lowercase()
}

/// local@domain.tld with no spaces, one `@`, a dot inside the domain, at most 254 characters.
fn is_plausible_email(email: &str) -> bool {
    if email.len() > 254 || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return false;
    }
    let Some((local, domain)) = email.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && !domain.contains('@')
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains("..")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_start_on_the_free_tier_and_tiers_read_back() {
        assert_eq!(SubscriptionTier::default(), SubscriptionTier::Free);
        for tier in SubscriptionTier::ALL {
            assert_eq!(SubscriptionTier::parse(tier.as_str()), Some(tier));
        }
        assert_eq!(SubscriptionTier::parse("free"), None);
    }

    fn signup(
        email: &str,
        password: &str,
        name: &str,
        org: Option<&str>,
    ) -> Result<ValidSignup, FieldError> {
        validate_signup(email, password, name, org)
    }

    #[test]
    fn a_valid_signup_is_normalised() {
        let ok = signup(" Ada@Example.COM ", "longenough", " Ada ", Some("  ")).unwrap();
        assert_eq!(ok.email, "ada@example.com");
        assert_eq!(ok.name, "Ada");
        assert_eq!(ok.organization, None);
    }

    #[test]
    fn email_must_look_like_an_address() {
        for bad in [
            "",
            "ada",
            "ada@",
            "@example.com",
            "ada@example",
            "a b@example.com",
            "a@b@c.com",
            "ada@.com",
        ] {
            assert_eq!(
                signup(bad, "longenough", "Ada", None).unwrap_err().field,
                "email",
                "{bad}"
            );
        }
    }

    #[test]
    fn password_needs_eight_characters() {
        assert_eq!(
            signup("a@b.co", "short12", "Ada", None).unwrap_err().field,
            "password"
        );
        assert!(signup("a@b.co", "exactly8", "Ada", None).is_ok());
    }

    #[test]
    fn name_is_two_to_one_hundred_characters() {
        assert_eq!(
            signup("a@b.co", "longenough", "A", None).unwrap_err().field,
            "name"
        );
        assert!(signup("a@b.co", "longenough", &"n".repeat(100), None).is_ok());
        assert_eq!(
            signup("a@b.co", "longenough", &"n".repeat(101), None)
                .unwrap_err()
                .field,
            "name"
        );
    }

    #[test]
    fn organization_is_at_most_two_hundred_characters() {
        assert!(signup("a@b.co", "longenough", "Ada", Some(&"o".repeat(200))).is_ok());
        let err = signup("a@b.co", "longenough", "Ada", Some(&"o".repeat(201))).unwrap_err();
        assert_eq!(err.field, "organization");
    }

    #[test]
    fn logins_are_refused_once_failures_reach_the_limit() {
        let throttle = LoginThrottle {
            max_failures: 5,
            window_secs: 900,
        };
        assert_eq!(throttle.check(0), Ok(()));
        assert_eq!(throttle.check(4), Ok(()));
        assert_eq!(throttle.check(5), Err(900));
        assert_eq!(throttle.check(50), Err(900));
    }

    #[test]
    fn roles_round_trip_their_wire_names() {
        for role in [Role::User, Role::Admin, Role::BillingAdmin] {
            assert_eq!(Role::parse(role.as_str()), Some(role));
        }
        assert_eq!(Role::parse("root"), None);
    }
}
