//! Costs: the ledger grouped by day, ISO week or month (the grouping and the summary are
//! `domain::costs::report`), from the cost ledger read model. Sums are exact (6 fractional digits) and rounded half-even to
//! cents only in the answer.

use axum::extract::State;
use axum::response::Response;
use chrono::NaiveDate;
use domain::costs::{
    days_remaining, may_read_costs_of, period_label, period_start, projected_total,
    thresholds_reached, AlertLevel, GroupBy,
};
use domain::ids::UserId;
use projections::costs::queries as read;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use crate::envelope::{self, money, Envelope};
use crate::error::{ApiError, ApiResult, ErrorCode, ErrorEnvelope};
use crate::extract::{ApiQuery, AuthUser};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_costs))
        .routes(routes!(cost_summary))
        .routes(routes!(audit_costs))
}

/// Whose costs to read: the caller's, or `requested` for admins and billing admins
/// (anyone else is told there is no such user).
fn cost_owner(
    principal: infrastructure::auth::Principal,
    requested: Option<Uuid>,
) -> ApiResult<Uuid> {
    let target = requested.unwrap_or(principal.user_id.0);
    if !may_read_costs_of(principal.role, principal.user_id.0, target) {
        return Err(ApiError::not_found(
            ErrorCode::UserNotFound,
            format!("no user {target}"),
        ));
    }
    Ok(target)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct CostParams {
    /// First day (UTC, `YYYY-MM-DD`), inclusive.
    #[param(value_type = Option<String>)]
    pub start_date: Option<NaiveDate>,
    /// Last day (UTC, `YYYY-MM-DD`), inclusive.
    #[param(value_type = Option<String>)]
    pub end_date: Option<NaiveDate>,
    /// `day` (default) | `week` (ISO, from Monday) | `month`
    #[param(value_type = Option<String>)]
    pub group_by: Option<GroupBy>,
    /// Only this job's entries.
    pub job_id: Option<Uuid>,
    /// Another user's costs (`admin` and `billing_admin` only).
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostPeriod {
    /// The period's first day.
    pub date: NaiveDate,
    /// `2026-11-23`, `2026-W48` or `2026-11`.
    pub period: String,
    pub compute: f64,
    pub storage: f64,
    pub data_transfer: f64,
    /// Chat completions on deployed models.
    pub api_calls: f64,
    pub total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExpensiveJob {
    pub id: Uuid,
    /// `Training on <dataset name>`
    pub name: String,
    pub cost: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CostSummary {
    pub total_spend: f64,
    /// Total spend over the jobs with entries in the range.
    pub average_job_cost: f64,
    pub most_expensive_job: Option<ExpensiveJob>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Costs {
    pub costs: Vec<CostPeriod>,
    pub summary: CostSummary,
}

/// The caller's ledger (or a user's, for admins), grouped by period, with a summary.
#[utoipa::path(get, path = "/api/costs", tag = "costs", security(("bearer" = [])),
    params(CostParams),
    responses(
        (status = 200, description = "Costs per period (only periods with entries) and a summary", body = Envelope<Costs>),
        (status = 400, description = "`VALIDATION_ERROR` (startDate, endDate, groupBy, jobId, userId)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`USER_NOT_FOUND`: another user's costs without the billing_admin or admin role", body = ErrorEnvelope),
    ))]
async fn list_costs(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<CostParams>,
) -> ApiResult<Response> {
    let target = cost_owner(principal, params.user_id)?;
    if let (Some(start), Some(end)) = (params.start_date, params.end_date) {
        if start > end {
            return Err(ApiError::validation(
                "startDate",
                "startDate must not be after endDate",
            ));
        }
    }
    let group = params.group_by.unwrap_or_default();
    let sums = read::daily_sums(
        &state.pool,
        target,
        params.start_date,
        params.end_date,
        params.job_id,
    )
    .await
    .map_err(ApiError::internal)?;
    let report = domain::costs::report(&sums, group);
    let most_expensive_job = match report.most_expensive_job {
        Some((id, cost)) => {
            let dataset = projections::jobs::queries::dataset_name(&state.pool, id)
                .await
                .map_err(ApiError::internal)?;
            Some(ExpensiveJob {
                id,
                name: format!("Training on {}", dataset.unwrap_or_default()),
                cost: money(cost),
            })
        }
        None => None,
    };
    Ok(envelope::ok(Costs {
        costs: report
            .periods
            .iter()
            .map(|p| CostPeriod {
                date: p.start,
                period: period_label(p.start, group),
                compute: money(p.compute),
                storage: money(p.storage),
                data_transfer: money(p.data_transfer),
                api_calls: money(p.api_calls),
                total: money(p.total()),
            })
            .collect(),
        summary: CostSummary {
            total_spend: money(report.total),
            average_job_cost: money(report.average_job_cost),
            most_expensive_job,
        },
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct SummaryParams {
    /// Another user's summary (`admin` and `billing_admin` only).
    pub user_id: Option<Uuid>,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentMonth {
    /// `2026-11` (UTC).
    pub month: String,
    pub spent: f64,
    /// `null` until a budget is set (`PATCH /api/auth/me`).
    pub budget: Option<f64>,
    pub remaining: Option<f64>,
    pub days_remaining: u32,
    /// The month's spend at the pace so far.
    pub projected_total: f64,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct BudgetAlert {
    /// `warning` (80 %) | `critical` (100 %)
    #[serde(rename = "type")]
    pub kind: String,
    pub message: String,
    /// Percent of the budget.
    pub threshold: u32,
}

#[derive(Debug, Serialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub current_month: CurrentMonth,
    pub alerts: Vec<BudgetAlert>,
}

/// This month's spend against the budget, with the thresholds reached.
#[utoipa::path(get, path = "/api/costs/summary", tag = "costs", security(("bearer" = [])),
    params(SummaryParams),
    responses(
        (status = 200, description = "The current month (UTC)", body = Envelope<Summary>),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 404, description = "`USER_NOT_FOUND`: another user's summary without the billing_admin or admin role", body = ErrorEnvelope),
    ))]
async fn cost_summary(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<SummaryParams>,
) -> ApiResult<Response> {
    let target = cost_owner(principal, params.user_id)?;
    let today = state.clock.now().date_naive();
    let first = period_start(today, GroupBy::Month);
    let spent = read::spent(&state.pool, target, first, today)
        .await
        .map_err(ApiError::internal)?;
    let budget = state
        .users
        .monthly_budget(UserId(target))
        .await
        .map_err(ApiError::internal)?;
    let alerts = budget
        .map(|b| thresholds_reached(spent, b))
        .unwrap_or_default()
        .into_iter()
        .map(|(threshold, level)| BudgetAlert {
            kind: match level {
                AlertLevel::Warning => "warning",
                AlertLevel::Critical => "critical",
            }
            .to_string(),
            message: format!(
                "this month's spend {} USD has reached {threshold} % of the {} USD budget",
                money(spent),
                budget.map(money).unwrap_or_default()
            ),
            threshold,
        })
        .collect();
    Ok(envelope::ok(Summary {
        current_month: CurrentMonth {
            month: period_label(today, GroupBy::Month),
            spent: money(spent),
            budget: budget.map(money),
            remaining: budget.map(|b| money((b - spent).max(Decimal::ZERO))),
            days_remaining: days_remaining(today),
            projected_total: money(projected_total(spent, today)),
        },
        alerts,
    }))
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct AuditParams {
    /// Only this user's entries.
    pub user_id: Option<Uuid>,
    /// From this billing day (UTC, `YYYY-MM-DD`), inclusive.
    #[param(value_type = Option<String>)]
    pub from: Option<NaiveDate>,
    /// Up to this billing day, inclusive: the ledger as it stood at the end of it.
    #[param(value_type = Option<String>)]
    pub to: Option<NaiveDate>,
}

/// The cost audit (as `brightrun audit costs`): every ledger entry recomputed from the event
/// store, with totals per job, user, day and month, and every difference from the ledger read
/// model, the jobs' recorded costs and the cluster's own bills. `billing_admin` and `admin`
/// only.
#[utoipa::path(get, path = "/api/admin/audit/costs", tag = "costs", security(("bearer" = [])),
    params(AuditParams),
    responses(
        (status = 200, description = "The report; `clean` is true when nothing differs", body = Envelope<AuditAnswer>,
            example = json!({"success": true, "data": {"clean": true, "entries": 12, "total": "0.412345", "byJob": {}, "byUser": {}, "byDay": {"2026-11-23": "0.412345"}, "byMonth": {"2026-11": "0.412345"}, "drifts": []}})),
        (status = 400, description = "`VALIDATION_ERROR` (userId, from, to)", body = ErrorEnvelope),
        (status = 401, description = "`UNAUTHORIZED`", body = ErrorEnvelope),
        (status = 403, description = "`FORBIDDEN`: billing_admin or admin only", body = ErrorEnvelope),
    ))]
async fn audit_costs(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiQuery(params): ApiQuery<AuditParams>,
) -> ApiResult<Response> {
    if !matches!(
        principal.role,
        domain::identity::Role::Admin | domain::identity::Role::BillingAdmin
    ) {
        return Err(ApiError::new(
            ErrorCode::Forbidden,
            "the cost audit is for billing_admin and admin",
        ));
    }
    let filter = infrastructure::audit::AuditFilter {
        user: params.user_id,
        from: params.from,
        to: params.to,
    };
    let report = infrastructure::audit::audit_costs(&state.pool, &filter)
        .await
        .map_err(ApiError::internal)?;
    Ok(envelope::ok(AuditAnswer {
        clean: report.clean(),
        report,
    }))
}

/// The cost audit's answer: the report, and whether it found nothing.
#[derive(Debug, Serialize, ToSchema)]
pub struct AuditAnswer {
    /// True when nothing differs (`drifts` is empty).
    pub clean: bool,
    #[serde(flatten)]
    pub report: domain::audit::AuditReport,
}
