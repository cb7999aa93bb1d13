//! Users and failed-login records in Postgres.

use chrono::{DateTime, Utc};
use domain::identity::{Role, SubscriptionTier};
use domain::ids::UserId;
use sqlx::PgPool;
use uuid::Uuid;

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub name: String,
    pub organization: Option<String>,
    pub role: Role,
    pub subscription_tier: SubscriptionTier,
    /// USD per calendar month, when set.
    pub monthly_budget: Option<rust_decimal::Decimal>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserStoreError {
    #[error("a user with this email already exists")]
    EmailExists,
    #[error(transparent)]
    Database(#[from] sqlx::Error),
}

#[derive(sqlx::FromRow)]
struct Row {
    id: Uuid,
    email: String,
    password_hash: String,
    name: String,
    organization: Option<String>,
    role: String,
    subscription_tier: String,
    monthly_budget: Option<rust_decimal::Decimal>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

fn from_row(r: Row) -> User {
    User {
        id: UserId(r.id),
        email: r.email,
        password_hash: r.password_hash,
        name: r.name,
        organization: r.organization,
        // The columns' CHECK constraints admit only known roles and tiers.
        role: Role::parse(&r.role).unwrap_or(Role::User),
        subscription_tier: SubscriptionTier::parse(&r.subscription_tier).unwrap_or_default(),
        monthly_budget: r.monthly_budget,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

const SELECT: &str = "SELECT id, email, password_hash, name, organization, role, \
     subscription_tier, monthly_budget, created_at, updated_at FROM users";

#[derive(Clone)]
pub struct Users(pub PgPool);

impl Users {
    pub async fn create(&self, user: &User) -> Result<(), UserStoreError> {
        let result = sqlx::query(
            "INSERT INTO users (id, email, password_hash, name, organization, role, subscription_tier, \
               created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)",
        )
        .bind(user.id.0)
        .bind(&user.email)
        .bind(&user.password_hash)
        .bind(&user.name)
        .bind(&user.organization)
        .bind(user.role.as_str())
        .bind(user.subscription_tier.as_str())
        .bind(user.created_at)
        .execute(&self.0)
        .await;
        match result {
            Ok(_) => Ok(()),
            Err(err)
                if err
                    .as_database_error()
                    .is_some_and(|e| e.is_unique_violation()) =>
            {
                Err(UserStoreError::EmailExists)
            }
            Err(err) => Err(err.into()),
        }
    }

    pub async fn by_email(&self, email: &str) -> sqlx::Result<Option<User>> {
        let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE lower(email) = lower($1)"))
            .bind(email)
            .fetch_optional(&self.0)
            .await?;
        Ok(row.map(from_row))
    }

    pub async fn by_id(&self, id: UserId) -> sqlx::Result<Option<User>> {
        let row: Option<Row> = sqlx::query_as(&format!("{SELECT} WHERE id = $1"))
            .bind(id.0)
            .fetch_optional(&self.0)
            .await?;
        Ok(row.map(from_row))
    }

    /// The user's monthly budget (USD), when set.
    pub async fn monthly_budget(&self, id: UserId) -> sqlx::Result<Option<rust_decimal::Decimal>> {
        let budget: Option<Option<rust_decimal::Decimal>> =
            sqlx::query_scalar("SELECT monthly_budget FROM users WHERE id = $1")
                .bind(id.0)
                .fetch_optional(&self.0)
                .await?;
        Ok(budget.flatten())
    }

    pub async fn set_monthly_budget(
        &self,
        id: UserId,
        budget: rust_decimal::Decimal,
    ) -> sqlx::Result<()> {
        let mut tx = self.0.begin().await?;
        sqlx::query("UPDATE users SET monthly_budget = $2, updated_at = now() WHERE id = $1")
            .bind(id.0)
            .bind(budget)
            .execute(&mut *tx)
            .await?;
        // The budget watcher checks the month's spend against the new budget too.
        sqlx::query(
            "INSERT INTO budget_checks (user_id, month) VALUES ($1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM')) \
             ON CONFLICT (user_id, month) DO UPDATE SET version = budget_checks.version + 1",
        )
        .bind(id.0)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    pub async fn set_role(&self, id: UserId, role: Role) -> sqlx::Result<()> {
        sqlx::query("UPDATE users SET role = $2, updated_at = now() WHERE id = $1")
            .bind(id.0)
            .bind(role.as_str())
            .execute(&self.0)
            .await?;
        Ok(())
    }

    /// Records a login attempt before its password is checked, and answers it with the
    /// attempts inside the window (after `since`, this one included) for `email` from
    /// `address`, and from `address` whatever the e-mail. Recorded first, then counted:
    /// attempts sent at the same moment each see the others, so a burst cannot slip past
    /// the limits while none of it has failed yet. The caller forgets the attempt when it is
    /// refused or succeeds; a failure stays.
    pub async fn begin_attempt(
        &self,
        email: &str,
        address: Option<&str>,
        at: DateTime<Utc>,
        since: DateTime<Utc>,
    ) -> sqlx::Result<LoginAttempt> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO login_failures (email, address, failed_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(email)
        .bind(address)
        .bind(at)
        .fetch_one(&self.0)
        .await?;
        let (for_email_from_address, from_address): (i64, i64) = sqlx::query_as(
            "SELECT count(*) FILTER (WHERE email = $1 AND address IS NOT DISTINCT FROM $2), \
                    count(*) FILTER (WHERE address = $2) \
             FROM login_failures WHERE (email = $1 OR address = $2) AND failed_at > $3",
        )
        .bind(email)
        .bind(address)
        .bind(since)
        .fetch_one(&self.0)
        .await?;
        Ok(LoginAttempt {
            id,
            for_email_from_address,
            from_address,
        })
    }

    /// Forgets an attempt that was refused before its password was checked.
    pub async fn forget_attempt(&self, id: i64) -> sqlx::Result<()> {
        sqlx::query("DELETE FROM login_failures WHERE id = $1")
            .bind(id)
            .execute(&self.0)
            .await?;
        Ok(())
    }

    /// Forgets the failures that left the window (at or before `before`) for this e-mail and
    /// this address.
    pub async fn forget_old_failures(
        &self,
        email: &str,
        address: Option<&str>,
        before: DateTime<Utc>,
    ) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM login_failures WHERE (email = $1 OR address = $2) AND failed_at <= $3",
        )
        .bind(email)
        .bind(address)
        .bind(before)
        .execute(&self.0)
        .await?;
        Ok(())
    }

    /// Forgets the failures for `email` from `address` (a successful login there), this
    /// attempt's included. Failures from elsewhere stay: the owner's login does not give an
    /// attacker at another address its guesses back.
    pub async fn clear_failures(&self, email: &str, address: Option<&str>) -> sqlx::Result<()> {
        sqlx::query(
            "DELETE FROM login_failures WHERE email = $1 AND address IS NOT DISTINCT FROM $2",
        )
        .bind(email)
        .bind(address)
        .execute(&self.0)
        .await?;
        Ok(())
    }
}

/// A login attempt as recorded, with the attempts it counts against (itself included).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LoginAttempt {
    pub id: i64,
    /// For this e-mail from this address: what locks the pair, and no one else.
    pub for_email_from_address: i64,
    pub from_address: i64,
}
