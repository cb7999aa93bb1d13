//! `POST /v1/chat/completions`: a chat completion from one of the caller's deployed
//! fine-tuned models, named as `/v1/models` names it, whole or streamed.

use application::models::Target;
use axum::extract::State;
use axum::response::{IntoResponse, Response};
use domain::ids::ModelId;
use utoipa_axum::{router::OpenApiRouter, routes};

use super::models::{fine_tuned, parse_model, ModelName};
use super::{with_param, OpenAiErrorBody};
use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::extract::{ApiJson, AuthUser};
use crate::routes::chat::{complete, ChatCompletionRequest, Completion};
use crate::state::AppState;

pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(chat_completions))
}

/// A chat completion from a deployed fine-tuned model of the caller's (`stream: true`:
/// server-sent `chat.completion.chunk` events, then `[DONE]`). Its tokens are billed as
/// `api_calls`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai", security(("bearer" = [])),
    request_body(content = ChatCompletionRequest, example = json!({"model": "ft:smollm2-135m:support:0193c1a2-0000-7000-8000-000000000000", "messages": [{"role": "user", "content": "Hello"}], "max_tokens": 32})),
    responses(
        (status = 200, description = "OpenAI's `chat.completion` object, or a stream of `chat.completion.chunk` events (`text/event-stream`)", body = serde_json::Value),
        (status = 400, description = "A parameter broke a rule (`param` names it)", body = OpenAiErrorBody),
        (status = 401, description = "No valid API key or token", body = OpenAiErrorBody),
        (status = 404, description = "No such fine-tuned model of the caller's (base models are not served)", body = OpenAiErrorBody),
        (status = 409, description = "`model_not_deployed`, or `model_not_serving` while its engine starts", body = OpenAiErrorBody),
    ))]
async fn chat_completions(
    State(state): State<AppState>,
    AuthUser(principal): AuthUser,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> ApiResult<Response> {
    let name = req.model;
    let id = match parse_model(&name) {
        Some(ModelName::FineTuned(id)) => id,
        Some(ModelName::Base(_)) => {
            return Err(with_param(
                ApiError::not_found(
                    ErrorCode::ModelNotFound,
                    format!(
                    "{name} is a base model: chat is served for your deployed fine-tuned models"
                ),
                ),
                "model",
            ))
        }
        None => {
            return Err(with_param(
                ApiError::not_found(
                    ErrorCode::ModelNotFound,
                    format!("the model {name} does not exist or you do not have access to it"),
                ),
                "model",
            ))
        }
    };
    let (_, object) = fine_tuned(&state, principal, &name, id)
        .await
        .map_err(|e| with_param(e, "model"))?;
    match complete(
        &state,
        principal,
        ModelId(id),
        req.chat,
        Target::Adapter,
        object.id,
    )
    .await?
    {
        Completion::Whole(answer) => Ok(axum::Json(answer).into_response()),
        Completion::Stream(response) => Ok(response),
    }
}
