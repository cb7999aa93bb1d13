//! Sign-up, login and the current user.

use axum::extract::State;

use axum::response::Response;
use chrono::{DateTime, Utc};
use domain::identity::{normalize_email, validate_signup, LoginThrottle, Role};
use domain::ids::UserId;
use infrastructure::auth::{self, Principal};
use infrastructure::users::{User, UserStoreError};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};

use crate::envelope::{self, Envelope};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiJson, AuthUser};
use crate::rate_limit::ClientAddress;
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(signup))
        .routes(routes!(login))
        .routes(routes!(me, update_me))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SignupRequest {
    /// A valid e-mail address, unique (case-insensitive).
    pub email: String,
    /// At least 8 characters.
    pub password: String,
    /// 2 to 100 characters.
    pub name: String,
    /// At most 200 characters.
    pub organization: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub email: String,
    pub password: String,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct UserView {
    pub id: uuid::Uuid,
    pub email: String,
    pub name: String,
    pub organization: Option<String>,
    /// `user` | `admin` | `billing_admin`
    pub role: String,
    /// `FREE` (every account starts there) | `STARTER` | `PROFESSIONAL` | `ENTERPRISE`
    #[schema(value_type = String)]
    pub subscription_tier: domain::identity::SubscriptionTier,
    /// USD per calendar month (UTC); `null` until set with `PATCH /api/auth/me`.
    pub monthly_budget: Option<f64>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<&User> for UserView {
    fn from(u: &User) -> UserView {
        UserView {
            id: u.id.0,
            email: u.email.clone(),
            name: u.name.clone(),
            organization: u.organization.clone(),
            role: u.role.as_str().to_string(),
            subscription_tier: u.subscription_tier,
            monthly_budget: u
                .monthly_budget
                .and_then(|b| rust_decimal::prelude::ToPrimitive::to_f64(&b)),
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Session {
    pub user: UserView,
    /// Send as `Authorization: Bearer <token>`.
    pub token: String,
    pub expires_at: DateTime<Utc>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Me {
    pub user: UserView,
}

fn session(state: &AppState, user: &User) -> ApiResult<Session> {
    let principal = Principal {
        user_id: user.id,
        role: user.role,
    };
    let (token, expires_at) = state
        .tokens
        .issue(principal, state.clock.now())
        .map_err(ApiError::internal)?;
    Ok(Session {
        user: user.into(),
        token,
        expires_at,
    })
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> ApiResult<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(ApiError::internal)
}

/// Create an account (role `user`) and a session.
#[utoipa::path(post, path = "/api/auth/signup", tag = "auth", request_body(content = SignupRequest, example = json!({"email": "ada@example.com", "password": "correct horse battery", "name": "Ada Lovelace", "organization": "Acme Support"})),
    responses(
        (status = 201, description = "Account created", body = Envelope<Session>),
        (status = 400, description = "A field breaks a rule (`VALIDATION_ERROR`, `field` names it)", body = ErrorEnvelope),
        (status = 409, description = "`EMAIL_EXISTS`", body = ErrorEnvelope),
    ))]
async fn signup(
    State(state): State<AppState>,
    ApiJson(req): ApiJson<SignupRequest>,
) -> ApiResult<Response> {
    let valid = validate_signup(
        &req.email,
        &req.password,
        &req.name,
        req.organization.as_deref(),
    )?;
    let password = req.password;
    let password_hash = blocking(move || auth::hash_password(&password))
        .await?
        .map_err(ApiError::internal)?;
    let user = User {
        id: UserId::new_v7(),
        email: valid.email,
        password_hash,
        name: valid.name,
        organization: valid.organization,
        role: Role::User,
        subscription_tier: Default::default(),
        monthly_budget: None,
        created_at: state.clock.now(),
        updated_at: state.clock.now(),
    };
    match state.users.create(&user).await {
        Ok(()) => {}
        Err(UserStoreError::EmailExists) => {
            return Err(ApiError::conflict(
                ErrorCode::EmailExists,
                "an account with this email already exists; log in instead",
            ))
        }
        Err(UserStoreError::Database(e)) => return Err(ApiError::internal(e)),
    }
    tracing::info!(user_id = %user.id, "user signed up");
    Ok(envelope::created(session(&state, &user)?))
}

/// Exchange e-mail and password for a token. Wrong e-mail and wrong password get the same
/// answer; repeated failures for one e-mail are rate limited.
#[utoipa::path(post, path = "/api/auth/login", tag = "auth", request_body(content = LoginRequest, example = json!({"email": "ada@example.com", "password": "correct horse battery"})),
    responses(
        (status = 200, description = "Logged in", body = Envelope<Session>),
        (status = 401, description = "`INVALID_CREDENTIALS`", body = ErrorEnvelope),
        (status = 400, description = "`VALIDATION_ERROR`: a password longer than sign-up allows (256 characters)", body = ErrorEnvelope),
        (status = 429, description = "`RATE_LIMITED`: too many logins (by default 10 a minute per e-mail, 60 per address, whatever their outcome), or too many failed ones (by default 5 per e-mail, 20 per address in 15 minutes); see Retry-After", body = ErrorEnvelope),
    ))]
async fn login(
    State(state): State<AppState>,
    ClientAddress(address): ClientAddress,
    ApiJson(req): ApiJson<LoginRequest>,
) -> ApiResult<Response> {
    let email = normalize_email(&req.email);
    if email.contains('\0') {
        // No account can have it (and no text column can hold it).
        return Err(invalid_credentials());
    }
    domain::identity::check_password_length(&req.password)?;
    crate::rate_limit::count_login(&state, &email, address).await?;
    let now = state.clock.now();
    let window =
        chrono::Duration::from_std(state.config.login_window).map_err(ApiError::internal)?;
    let address = address.map(|a| a.to_string());
    let window_secs = state.config.login_window.as_secs();
    let throttle = |failures: i64, max_failures: i64, whose: &str| {
        LoginThrottle {
            max_failures,
            window_secs,
        }
        .check(failures)
        .map_err(|retry_after| {
            ApiError::rate_limited(
                format!("too many failed logins {whose}; wait before trying again"),
                retry_after,
            )
        })
    };
    let attempt = state
        .users
        .begin_attempt(&email, address.as_deref(), now, now - window)
        .await
        .map_err(ApiError::internal)?;
    // The attempts before this one, from this address (any e-mail) and for this e-mail
    // from this address: a stranger's failures lock only the stranger out.
    let throttled = match &address {
        Some(_) => throttle(
            attempt.from_address - 1,
            state.config.login_max_failures_per_address,
            "from this address",
        ),
        None => Ok(()),
    }
    .and_then(|()| {
        throttle(
            attempt.for_email_from_address - 1,
            state.config.login_max_failures,
            "for this account from this address",
        )
    });
    if let Err(refused) = throttled {
        state
            .users
            .forget_attempt(attempt.id)
            .await
            .map_err(ApiError::internal)?;
        return Err(refused);
    }
    let user = state
        .users
        .by_email(&email)
        .await
        .map_err(ApiError::internal)?;
    let hash = user
        .as_ref()
        .map(|u| u.password_hash.clone())
        .unwrap_or_else(|| auth::decoy_hash().to_string());
    let password = req.password;
    let verified = blocking(move || auth::verify_password(&password, &hash)).await?;
    match user {
        Some(user) if verified => {
            state
                .users
                .clear_failures(&email, address.as_deref())
                .await
                .map_err(ApiError::internal)?;
            Ok(envelope::ok(session(&state, &user)?))
        }
        _ => {
            // The attempt stays recorded as a failure.
            state
                .users
                .forget_old_failures(&email, address.as_deref(), now - window)
                .await
                .map_err(ApiError::internal)?;
            Err(invalid_credentials())
        }
    }
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct UpdateMeRequest {
    /// USD per calendar month (UTC), > 0: alerts at 80 % and 100 % of it.
    pub monthly_budget: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetView {
    pub user: UserView,
    pub monthly_budget: Option<f64>,
}

/// Set the caller's monthly budget.
#[utoipa::path(patch, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    request_body(content = UpdateMeRequest, example = json!({"monthlyBudget": 500})),
    responses(
        (status = 200, description = "The caller with the budget", body = Envelope<BudgetView>),
        (status = 400, description = "`VALIDATION_ERROR` (monthlyBudget)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn update_me(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    crate::extract::ApiJson(req): crate::extract::ApiJson<UpdateMeRequest>,
) -> ApiResult<Response> {
    let budget = domain::costs::check_budget(req.monthly_budget)?;
    state
        .users
        .set_monthly_budget(principal.user_id, budget)
        .await
        .map_err(ApiError::internal)?;
    let user = state
        .users
        .by_id(principal.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(envelope::ok(BudgetView {
        user: (&user).into(),
        monthly_budget: rust_decimal::prelude::ToPrimitive::to_f64(&budget),
    }))
}

/// The authenticated user.
#[utoipa::path(get, path = "/api/auth/me", tag = "auth", security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = Envelope<Me>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
    ))]
async fn me(State(state): State<AppState>, AuthUser(principal): AuthUser) -> ApiResult<Response> {
    let user = state
        .users
        .by_id(principal.user_id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(envelope::ok(Me {
        user: (&user).into(),
    }))
}

fn invalid_credentials() -> ApiError {
    ApiError::new(
        ErrorCode::InvalidCredentials,
        "email or password is incorrect",
    )
}
