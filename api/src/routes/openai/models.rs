//! `/v1/models`: the base models of the catalogue and the caller's fine-tuned models, named
//! as OpenAI names them (`ft:<base>:<suffix>:<model id>`, `ft:<base>:<model id>` without a
//! suffix). Deleting one is `DELETE /api/models/{id}`.

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use domain::ids::ModelId;
use domain::job::config::{BaseModel, BASE_MODELS};
use projections::models::queries::{self as read, ModelOrder, ModelRow};
use projections::Page;
use serde::Serialize;
use utoipa::ToSchema;
use utoipa_axum::{router::OpenApiRouter, routes};
use uuid::Uuid;

use super::{unix, OpenAiErrorBody, OpenAiList};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{viewer, AuthUser};
use crate::routes::datasets::{context, wait_for_projection};
use crate::routes::models::{actor, model_error};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(list_models))
        .routes(routes!(get_model, delete_model))
}

/// The name of a fine-tuned model: `ft:<base>:<suffix>:<id>`, or `ft:<base>:<id>`.
pub(crate) fn fine_tuned_model_name(base: &str, suffix: Option<&str>, id: Uuid) -> String {
    match suffix {
        Some(suffix) => format!("ft:{base}:{suffix}:{id}"),
        None => format!("ft:{base}:{id}"),
    }
}

pub(crate) enum ModelName {
    Base(&'static BaseModel),
    /// The model's id (its name checked against the row by the caller).
    FineTuned(Uuid),
}

/// A model as a request names it: a base model's id, `ft:...:<id>`, or a model's UUID.
pub(crate) fn parse_model(name: &str) -> Option<ModelName> {
    if let Some(base) = BaseModel::find(name) {
        return Some(ModelName::Base(base));
    }
    let id = match name.strip_prefix("ft:") {
        Some(rest) => rest.rsplit(':').next()?,
        None => name,
    };
    Uuid::parse_str(id).ok().map(ModelName::FineTuned)
}

/// Catalogue models have no creation time of their own: this is the catalogue's.
const CATALOGUE_CREATED: i64 = 1_704_067_200;

/// OpenAI's model object.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelObject {
    /// A base model's id, or `ft:<base>:<suffix>:<model id>`.
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: i64,
    /// `brightrun` for the base models, `user-<uuid>` for a fine-tuned one.
    pub owned_by: String,
}

fn base_object(base: &BaseModel) -> ModelObject {
    ModelObject {
        id: base.id.to_string(),
        object: "model",
        created: CATALOGUE_CREATED,
        owned_by: "brightrun".to_string(),
    }
}

async fn fine_tuned_objects(state: &AppState, rows: Vec<ModelRow>) -> ApiResult<Vec<ModelObject>> {
    let jobs: Vec<Uuid> = rows.iter().map(|r| r.job_id).collect();
    let suffixes = projections::jobs::queries::suffixes(&state.pool, &jobs)
        .await
        .map_err(ApiError::internal)?;
    Ok(rows
        .into_iter()
        .map(|row| {
            let suffix = suffixes
                .iter()
                .find(|(job, _)| *job == row.job_id)
                .and_then(|(_, s)| s.as_deref());
            ModelObject {
                id: fine_tuned_model_name(&row.configuration.0.base_model, suffix, row.id),
                object: "model",
                created: unix(row.created_at),
                owned_by: format!("user-{}", row.user_id),
            }
        })
        .collect())
}

/// At most this many fine-tuned models are listed (OpenAI's list has no pages).
const MAX_LISTED: i64 = 10_000;

/// The base models, then the caller's fine-tuned models, newest first.
#[utoipa::path(get, path = "/v1/models", tag = "openai", security(("bearer" = [])),
    responses(
        (status = 200, description = "Every model the caller can fine-tune or use", body = OpenAiList<ModelObject>),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
    ))]
async fn list_models(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
) -> ApiResult<Response> {
    let (_, rows) = read::list(
        &state.pool,
        viewer(principal),
        None,
        ModelOrder::NewestFirst,
        Page {
            limit: MAX_LISTED,
            offset: 0,
        },
    )
    .await
    .map_err(ApiError::internal)?;
    let mut data: Vec<ModelObject> = BASE_MODELS.iter().map(base_object).collect();
    data.extend(fine_tuned_objects(&state, rows).await?);
    Ok(axum::Json(OpenAiList {
        object: "list",
        data,
        has_more: false,
        first_id: None,
        last_id: None,
    })
    .into_response())
}

fn model_not_found(name: &str) -> ApiError {
    ApiError::not_found(
        ErrorCode::ModelNotFound,
        format!("the model {name} does not exist or you do not have access to it"),
    )
}

/// The caller's fine-tuned model that `name` names exactly.
pub(crate) async fn fine_tuned(
    state: &AppState,
    principal: infrastructure::auth::Principal,
    name: &str,
    id: Uuid,
) -> ApiResult<(ModelRow, ModelObject)> {
    let row = read::find(&state.pool, viewer(principal), id)
        .await
        .map_err(ApiError::internal)?
        .ok_or_else(|| model_not_found(name))?;
    let object = fine_tuned_objects(state, vec![row.clone()])
        .await?
        .pop()
        .ok_or_else(|| model_not_found(name))?;
    if name.starts_with("ft:") && object.id != name {
        return Err(model_not_found(name));
    }
    Ok((row, object))
}

/// One model: a base model, or one of the caller's fine-tuned models.
#[utoipa::path(get, path = "/v1/models/{model}", tag = "openai", security(("bearer" = [])),
    params(("model" = String, Path, description = "A base model's id, `ft:<base>:<suffix>:<id>`, or the model's UUID")),
    responses(
        (status = 200, description = "The model", body = ModelObject),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such model (also another user's, or deleted)", body = OpenAiErrorBody),
    ))]
async fn get_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(model): Path<String>,
) -> ApiResult<Response> {
    let object = match parse_model(&model) {
        Some(ModelName::Base(base)) => base_object(base),
        Some(ModelName::FineTuned(id)) => fine_tuned(&state, principal, &model, id).await?.1,
        None => return Err(model_not_found(&model)),
    };
    Ok(axum::Json(object).into_response())
}

/// What `DELETE /v1/models/{model}` answers.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelDeleted {
    pub id: String,
    /// Always `model`.
    pub object: &'static str,
    pub deleted: bool,
}

/// Delete one of the caller's fine-tuned models (`DELETE /api/models/{id}`); base models
/// cannot be deleted.
#[utoipa::path(delete, path = "/v1/models/{model}", tag = "openai", security(("bearer" = [])),
    params(("model" = String, Path, description = "`ft:<base>:<suffix>:<id>`, or the model's UUID")),
    responses(
        (status = 200, description = "Deleted", body = ModelDeleted),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 403, description = "A base model", body = OpenAiErrorBody),
        (status = 404, description = "No such model (also another user's, or already deleted)", body = OpenAiErrorBody),
        (status = 409, description = "`model_deployed`: undeploy it first", body = OpenAiErrorBody),
    ))]
async fn delete_model(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    Path(model): Path<String>,
) -> ApiResult<Response> {
    let id = match parse_model(&model) {
        Some(ModelName::Base(base)) => {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "{} is a base model: only your fine-tuned models can be deleted",
                    base.id
                ),
            ))
        }
        Some(ModelName::FineTuned(id)) => id,
        None => return Err(model_not_found(&model)),
    };
    let (row, object) = fine_tuned(&state, principal, &model, id).await?;
    let receipt = state
        .models
        .delete(&context(principal), ModelId(row.id), actor(principal))
        .await
        .map_err(|e| model_error(&model, e))?;
    wait_for_projection(&state, "models", receipt).await;
    Ok(axum::Json(ModelDeleted {
        id: object.id,
        object: "model",
        deleted: true,
    })
    .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fine_tuned_models_name_carries_its_base_suffix_and_id() {
        let id = Uuid::from_u128(7);
        let named = fine_tuned_model_name("smollm2-135m", Some("support"), id);
        assert_eq!(named, format!("ft:smollm2-135m:support:{id}"));
        assert!(matches!(parse_model(&named), Some(ModelName::FineTuned(i)) if i == id));
        let bare = fine_tuned_model_name("smollm2-135m", None, id);
        assert_eq!(bare, format!("ft:smollm2-135m:{id}"));
        assert!(matches!(parse_model(&bare), Some(ModelName::FineTuned(i)) if i == id));
        assert!(matches!(
            parse_model(&id.to_string()),
            Some(ModelName::FineTuned(_))
        ));
        assert!(
            matches!(parse_model("mistral-7b"), Some(ModelName::Base(b)) if b.id == "mistral-7b")
        );
        assert!(parse_model("gpt-4o-mini").is_none());
        assert!(parse_model("ft:gpt-4o-mini:org:x").is_none());
    }
}
