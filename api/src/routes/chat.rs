//! Chat completions on a deployed fine-tuned model, for its owner only: the request is
//! checked here, sent to the deployment's engine (an OpenAI-compatible server) under the
//! engine's own model name, and its answer passed back under the model's name. Each
//! completion's tokens are billed to the owner as `api_calls`.
//!
//! Streams pass each engine chunk through as it arrives. The CPU engine reports no usage on
//! a stream, so its tokens are counted here: one per streamed piece, and the prompt by the
//! engine's own tokenizer over the messages in ChatML (the chat template of the models it
//! serves); a caller that asks `stream_options.include_usage` gets them in a last chunk, as
//! OpenAI sends it.

use std::time::Duration;

use application::models::{Lease, Target};
use axum::body::Body;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use domain::ids::ModelId;
use futures::StreamExt;
use infrastructure::auth::Principal;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::error::{ApiError, ApiResult, ErrorCode};
use crate::routes::datasets::context;
use crate::routes::models::model_error;
use crate::state::AppState;

/// The most messages one request may carry.
pub const MAX_MESSAGES: usize = 256;
/// The longest completion one request may ask for (the engine's context is 2,048 tokens).
pub const MAX_COMPLETION_TOKENS: u32 = 1024;
/// How long an engine may take to answer (CPU generation of a long completion).
const ENGINE_TIMEOUT: Duration = Duration::from_secs(300);

/// Who says a message.
#[derive(Debug, Clone, Copy, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    System,
    User,
    Assistant,
}

/// One message of the conversation.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `user` or `assistant`.
    #[schema(value_type = ChatRole)]
    pub role: String,
    pub content: String,
}

/// `stop`: a string, or a list of strings.
#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum Stop {
    One(String),
    Many(Vec<String>),
}

#[derive(Debug, Clone, Deserialize, Serialize, ToSchema)]
pub struct StreamOptions {
    /// Send the completion's token counts in a last chunk.
    #[serde(default)]
    pub include_usage: bool,
}

/// A chat completion request of `/api/models/{id}/chat` (OpenAI's fields the engines take).
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatRequest {
    /// 1 to 256 messages.
    #[schema(min_items = 1, max_items = 256)]
    pub messages: Vec<ChatMessage>,
    /// 1 to 1024 (default: the engine's, up to the context's end).
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub max_tokens: Option<u32>,
    /// The newer name of `max_tokens`.
    #[serde(default)]
    #[schema(minimum = 1, maximum = 1024)]
    pub max_completion_tokens: Option<u32>,
    /// 0 to 2.
    #[serde(default)]
    #[schema(minimum = 0.0, maximum = 2.0)]
    pub temperature: Option<f64>,
    /// Above 0, at most 1.
    #[serde(default)]
    #[schema(exclusive_minimum = 0.0, maximum = 1.0)]
    pub top_p: Option<f64>,
    #[serde(default)]
    pub seed: Option<i64>,
    #[serde(default)]
    pub stop: Option<Stop>,
    /// Answer as server-sent events, one chunk per piece.
    #[serde(default)]
    pub stream: Option<bool>,
    #[serde(default)]
    pub stream_options: Option<StreamOptions>,
}

/// `POST /v1/chat/completions`: the model by name, and the request.
#[derive(Debug, Clone, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The fine-tuned model's name (`ft:<base>:<suffix>:<id>`, as `/v1/models` lists it) or id.
    pub model: String,
    #[serde(flatten)]
    pub chat: ChatRequest,
}

/// The request as the engine gets it; refused field by field.
fn engine_request(req: &ChatRequest, engine_model: &str) -> ApiResult<Value> {
    if req.messages.is_empty() || req.messages.len() > MAX_MESSAGES {
        return Err(ApiError::validation(
            "messages",
            format!("messages must hold 1 to {MAX_MESSAGES} messages"),
        ));
    }
    for (i, m) in req.messages.iter().enumerate() {
        if !matches!(m.role.as_str(), "system" | "user" | "assistant") {
            return Err(ApiError::validation(
                format!("messages[{i}].role"),
                "role must be system, user or assistant",
            ));
        }
    }
    let max_tokens = req.max_completion_tokens.or(req.max_tokens);
    if let Some(n) = max_tokens {
        if !(1..=MAX_COMPLETION_TOKENS).contains(&n) {
            let field = if req.max_completion_tokens.is_some() {
                "max_completion_tokens"
            } else {
                "max_tokens"
            };
            return Err(ApiError::validation(
                field,
                format!("{field} must be between 1 and {MAX_COMPLETION_TOKENS}"),
            ));
        }
    }
    if let Some(t) = req.temperature {
        if !(0.0..=2.0).contains(&t) {
            return Err(ApiError::validation(
                "temperature",
                "temperature must be between 0 and 2",
            ));
        }
    }
    if let Some(p) = req.top_p {
        if !(p > 0.0 && p <= 1.0) {
            return Err(ApiError::validation(
                "top_p",
                "top_p must be above 0 and at most 1",
            ));
        }
    }
    let stop = match &req.stop {
        None => None,
        Some(Stop::One(s)) => Some(json!([s])),
        Some(Stop::Many(list)) => Some(json!(list)),
    };
    let mut body = json!({
        "model": engine_model,
        "messages": req.messages,
        "stream": req.stream.unwrap_or(false),
    });
    let fields = [
        ("max_tokens", max_tokens.map(Value::from)),
        ("temperature", req.temperature.map(Value::from)),
        ("top_p", req.top_p.map(Value::from)),
        ("seed", req.seed.map(Value::from)),
        ("stop", stop),
    ];
    for (name, value) in fields {
        if let Some(value) = value {
            body[name] = value;
        }
    }
    Ok(body)
}

fn not_answering(detail: impl std::fmt::Display) -> ApiError {
    ApiError::conflict(
        ErrorCode::ModelNotServing,
        format!("the model's engine is not answering ({detail}); try again shortly"),
    )
}

/// Sends the engine's refusal on as the caller's error (a 4xx names the request's fault).
async fn engine_refusal(answer: reqwest::Response) -> ApiError {
    let status = answer.status();
    let text = answer.text().await.unwrap_or_default();
    let message = serde_json::from_str::<Value>(&text)
        .ok()
        .and_then(|v| {
            v["error"]["message"]
                .as_str()
                .or(v["detail"].as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| text.chars().take(300).collect());
    if status.is_client_error() {
        ApiError::new(
            ErrorCode::BadRequest,
            format!("the engine refused the request: {message}"),
        )
    } else {
        not_answering(format!("{status}: {message}"))
    }
}

/// A completion, whole or as a stream, from the model's serving deployment; `shown_name`
/// is the name the fine-tuned model's answers carry (the base model's carry its own).
pub(crate) async fn complete(
    state: &AppState,
    principal: Principal,
    model_id: ModelId,
    req: ChatRequest,
    target: Target,
    shown_name: String,
) -> ApiResult<Completion> {
    let id = model_id.0.to_string();
    let (deployment, route) = state
        .models
        .chat_route(model_id, principal.user_id, target)
        .await
        .map_err(|e| model_error(&id, e))?;
    let shown_name = match target {
        Target::Adapter => shown_name,
        Target::Base => deployment.base_model.clone(),
    };
    let mut body = engine_request(&req, &route.model)?;
    let streamed = req.stream.unwrap_or(false);
    // A replica that stopped answering (its process exited, not yet replaced) hands the
    // request to the next one, each tried once; the base model has one engine.
    let engines = match target {
        Target::Adapter => deployment.replicas,
        Target::Base => 1,
    };
    let (mut route, mut tried) = (route, 1);
    let answer = loop {
        let sent = state
            .http
            .post(format!("{}/chat/completions", route.base_url))
            .timeout(ENGINE_TIMEOUT)
            .json(&body)
            .send()
            .await;
        match sent {
            Ok(answer) => break answer,
            Err(err) if !err.is_timeout() && tried < engines => {
                tried += 1;
                route = state
                    .models
                    .chat_route(model_id, principal.user_id, target)
                    .await
                    .map_err(|e| model_error(&id, e))?
                    .1;
                body["model"] = Value::String(route.model.clone());
            }
            Err(err) => return Err(not_answering(err)),
        }
    };
    if !answer.status().is_success() {
        return Err(engine_refusal(answer).await);
    }
    let bill = Bill {
        state: state.clone(),
        principal,
        model_id,
        deployment_id: deployment.deployment_id,
    };
    if streamed {
        let include_usage = req.stream_options.is_some_and(|o| o.include_usage);
        let prompt = Prompt {
            base_url: route.base_url,
            model: route.model,
            messages: req.messages,
            default_system: domain::job::config::BaseModel::find(&deployment.base_model)
                .and_then(|m| m.default_system_prompt),
            _lease: route.lease,
        };
        return Ok(Completion::Stream(stream(
            answer,
            shown_name,
            prompt,
            include_usage,
            bill,
        )));
    }
    let mut whole: Value = answer.json().await.map_err(not_answering)?;
    whole["model"] = Value::String(shown_name);
    let usage = |name: &str| whole["usage"][name].as_u64().unwrap_or(0);
    bill.record(usage("prompt_tokens"), usage("completion_tokens"))
        .await?;
    Ok(Completion::Whole(whole))
}

pub(crate) enum Completion {
    Whole(Value),
    Stream(Response),
}

/// What a completion's bill needs, moved into a stream that ends after the handler.
struct Bill {
    state: AppState,
    principal: Principal,
    model_id: ModelId,
    deployment_id: String,
}

impl Bill {
    async fn record(&self, prompt_tokens: u64, completion_tokens: u64) -> ApiResult<()> {
        self.state
            .models
            .bill_usage(
                &context(self.principal),
                self.model_id,
                self.principal.user_id,
                &self.deployment_id,
                (prompt_tokens, completion_tokens),
                self.state.config.rates.api_calls_per_1k_tokens,
            )
            .await
            .map(|_| ())
            .map_err(|e| model_error(&self.model_id.0.to_string(), e))
    }
}

/// A streamed completion's prompt, counted once the stream ended (the engine takes one
/// request at a time: counting first would delay the first token).
struct Prompt {
    base_url: String,
    model: String,
    messages: Vec<ChatMessage>,
    /// What the model's chat template says first when the conversation has no system
    /// message (the engine counts it).
    default_system: Option<&'static str>,
    /// The request counts in its engine's load until the stream has ended.
    _lease: Lease,
}

/// The prompt's tokens by the engine's tokenizer, the messages laid out in ChatML as the
/// model's template lays them out (with its default system message when there is none).
async fn count_prompt(state: &AppState, prompt: &Prompt) -> u64 {
    let (base_url, model, messages) = (&prompt.base_url, &prompt.model, &prompt.messages);
    let system = match (messages.first(), prompt.default_system) {
        (Some(first), Some(system)) if first.role != "system" => {
            format!("<|im_start|>system\n{system}<|im_end|>\n")
        }
        _ => String::new(),
    };
    let mut prompt: String = std::iter::once(system)
        .chain(
            messages
                .iter()
                .map(|m| format!("<|im_start|>{}\n{}<|im_end|>\n", m.role, m.content)),
        )
        .collect();
    prompt.push_str("<|im_start|>assistant\n");
    let root = base_url.trim_end_matches("/v1");
    let counted = state
        .http
        .post(format!("{root}/extras/tokenize/count"))
        .timeout(Duration::from_secs(10))
        .json(&json!({"model": model, "input": prompt}))
        .send()
        .await;
    match counted {
        Ok(answer) => answer
            .json::<Value>()
            .await
            .ok()
            .and_then(|v| v["count"].as_u64())
            .unwrap_or(0),
        Err(_) => 0,
    }
}

/// The engine's server-sent events passed on, each chunk under `shown_name`; at the end
/// the tokens are billed (also when the caller went away midway: what was generated is
/// billed).
fn stream(
    answer: reqwest::Response,
    shown_name: String,
    prompt: Prompt,
    include_usage: bool,
    bill: Bill,
) -> Response {
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<bytes::Bytes, std::io::Error>>(16);
    tokio::spawn(async move {
        let mut pieces = 0u64;
        let mut buffer = String::new();
        let mut upstream = answer.bytes_stream();
        let mut last_id = Value::Null;
        let mut created = Value::Null;
        let mut caller_gone = false;
        'read: while let Some(chunk) = upstream.next().await {
            let Ok(chunk) = chunk else { break };
            // Events end with a blank line; the engine's lines end with CRLF.
            buffer.push_str(&String::from_utf8_lossy(&chunk).replace('\r', ""));
            while let Some(end) = buffer.find("\n\n") {
                let event: String = buffer.drain(..end + 2).collect();
                let Some(data) = event.trim().strip_prefix("data:").map(str::trim) else {
                    continue;
                };
                if data == "[DONE]" {
                    break 'read;
                }
                let Ok(mut chunk) = serde_json::from_str::<Value>(data) else {
                    continue;
                };
                chunk["model"] = Value::String(shown_name.clone());
                if chunk["choices"][0]["delta"]["content"]
                    .as_str()
                    .is_some_and(|c| !c.is_empty())
                {
                    pieces += 1;
                }
                last_id = chunk["id"].clone();
                created = chunk["created"].clone();
                if include_usage {
                    chunk["usage"] = Value::Null;
                }
                let line = format!("data: {chunk}\n\n");
                if tx.send(Ok(line.into())).await.is_err() {
                    caller_gone = true;
                    break 'read;
                }
            }
        }
        drop(upstream);
        let prompt_tokens = count_prompt(&bill.state, &prompt).await;
        if !caller_gone && include_usage {
            let usage = json!({
                "id": last_id, "object": "chat.completion.chunk", "created": created,
                "model": shown_name, "choices": [],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": pieces,
                          "total_tokens": prompt_tokens + pieces},
            });
            let _ = tx.send(Ok(format!("data: {usage}\n\n").into())).await;
        }
        if !caller_gone {
            let _ = tx.send(Ok("data: [DONE]\n\n".into())).await;
        }
        // The caller has the whole answer before the bill is recorded.
        drop(tx);
        if let Err(err) = bill.record(prompt_tokens, pieces).await {
            tracing::warn!(error = %err.body.message, "a streamed completion was not billed");
        }
    });
    let chunks = futures::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    });
    let body = Body::from_stream(chunks);
    (
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, "text/event-stream"),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}
