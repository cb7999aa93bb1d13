//! What the OpenAPI document says beyond what the types carry: the closed sets and bounds the
//! domain enforces (read from the domain's own tables, never restated), the answers every
//! operation can give (400, 401, 413, 415), the multipart upload's shape, and the links from
//! each create to its reads and actions, so a schema-driven client (or schemathesis) sends
//! what the service accepts and can follow an id from the answer that made it.

use domain::dataset::{
    DatasetFormat, MAX_DESCRIPTION_LENGTH, MAX_FILE_NAME_LENGTH, MAX_NAME_LENGTH,
};
use domain::identity::{MAX_PASSWORD_LENGTH, MIN_PASSWORD_LENGTH};
use domain::job::config::{
    bounds, GpuType, NumericBound, Preset, TargetModule, BASE_MODELS, GPU_COUNTS,
};
use domain::model::{DeployEnvironment, ModelStatus, MAX_REPLICAS};
use serde_json::{json, Map, Value};

use crate::error::ErrorCode;

/// Applies every statement below to the generated document.
pub fn apply(mut doc: Value) -> Value {
    constrain_schemas(&mut doc);
    constrain_parameters(&mut doc);
    document_common_answers(&mut doc);
    describe_upload(&mut doc);
    describe_stream(&mut doc);
    link_creates_to_reads(&mut doc);
    doc
}

fn strings(values: impl IntoIterator<Item = &'static str>) -> Value {
    Value::Array(values.into_iter().map(Value::from).collect())
}

/// Characters no text may hold (`domain::validation::is_refused_control`), as a regex class.
const CONTROL: &str = r"\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f";
/// Every control character, line breaks and tabs included, as a regex class.
const ANY_CONTROL: &str = r"\x00-\x1f\x7f-\x9f";

/// Text of at most `max` characters, without control characters, with at least `min` of them
/// from the first to the last that is not white space (the domain trims, then counts).
fn text(min: usize, max: usize) -> Value {
    let any = format!("[^{CONTROL}]*");
    let solid = format!("[^{CONTROL}\\s]");
    let pattern = match min {
        0 => format!("^{any}$"),
        1 => format!("^{any}{solid}{any}$"),
        // Two or more: two that are not white space (only 2 is used; more would need more).
        _ => format!("^{any}{solid}{any}{solid}{any}$"),
    };
    json!({"type": "string", "minLength": min, "maxLength": max, "pattern": pattern})
}

fn set_property(schemas: &mut Map<String, Value>, schema: &str, property: &str, patch: Value) {
    let Some(target) = schemas
        .get_mut(schema)
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut(property))
    else {
        return;
    };
    let nullable = target["type"]
        .as_array()
        .is_some_and(|t| t.iter().any(|t| t == "null"));
    let mut patch = patch;
    if nullable {
        if let Some(t) = patch.get("type").cloned() {
            patch["type"] = json!([t, "null"]);
        }
        if let Some(values) = patch.get_mut("enum").and_then(Value::as_array_mut) {
            values.push(Value::Null);
        }
    }
    if let (Value::Object(target), Value::Object(patch)) = (target, patch) {
        for key in ["oneOf", "anyOf", "allOf", "$ref", "format"] {
            if patch.contains_key("enum") {
                target.remove(key);
            }
        }
        target.extend(patch);
    }
}

fn set_schema(schemas: &mut Map<String, Value>, schema: &str, key: &str, value: Value) {
    if let Some(Value::Object(s)) = schemas.get_mut(schema) {
        s.insert(key.to_string(), value);
    }
}

fn bound(b: &NumericBound, integer: bool) -> Value {
    let mut schema = json!({"type": if integer { "integer" } else { "number" }, "maximum": b.max});
    if b.min_exclusive {
        schema["exclusiveMinimum"] = json!(b.min);
    } else {
        schema["minimum"] = json!(b.min);
    }
    if integer {
        schema["maximum"] = json!(b.max as i64);
        if let Some(min) = schema.get("minimum").and_then(Value::as_f64) {
            schema["minimum"] = json!(min as i64);
        }
    }
    schema
}

fn constrain_schemas(doc: &mut Value) {
    let Some(schemas) = doc
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    else {
        return;
    };
    // Hyperparameters and options: the domain's bounds table, by wire name.
    for b in bounds::ALL.iter() {
        let (schema, property) = match b.field.strip_prefix("hyperparameters.") {
            Some(p) => ("HyperparametersInput", p),
            None => ("JobRequestBody", b.field),
        };
        let integer = schemas[schema]["properties"][property]["type"]
            .as_array()
            .map_or(
                schemas[schema]["properties"][property]["type"] == "integer",
                |t| t.iter().any(|t| t == "integer"),
            );
        set_property(schemas, schema, property, bound(b, integer));
    }
    set_property(
        schemas,
        "HyperparametersInput",
        "targetModules",
        json!({"type": "array", "minItems": 1, "uniqueItems": true,
               "items": {"type": "string", "enum": strings(TargetModule::ALL.iter().map(|m| m.as_str()))}}),
    );
    set_property(
        schemas,
        "HyperparametersInput",
        "optimizerType",
        json!({"type": "string", "enum": ["adamw", "sgd", "adafactor"]}),
    );
    set_property(
        schemas,
        "HyperparametersInput",
        "scheduler",
        json!({"type": "string", "enum": ["linear", "cosine", "constant"]}),
    );
    set_property(
        schemas,
        "GpuConfigInput",
        "instanceType",
        json!({"type": "string", "enum": strings(GpuType::ALL.iter().map(|g| g.as_str()))}),
    );
    set_property(
        schemas,
        "GpuConfigInput",
        "numGPUs",
        json!({"type": "integer", "enum": GPU_COUNTS}),
    );
    set_property(
        schemas,
        "JobRequestBody",
        "presetId",
        json!({"type": "string", "enum": strings(Preset::ALL.iter().map(|p| p.as_str()))}),
    );
    set_property(
        schemas,
        "JobRequestBody",
        "baseModel",
        json!({"type": "string", "enum": strings(BASE_MODELS.iter().map(|m| m.id))}),
    );
    // Accounts.
    set_property(
        schemas,
        "SignupRequest",
        "password",
        json!({"type": "string", "minLength": MIN_PASSWORD_LENGTH, "maxLength": MAX_PASSWORD_LENGTH}),
    );
    set_property(schemas, "SignupRequest", "name", text(2, 100));
    set_property(
        schemas,
        "LoginRequest",
        "password",
        json!({"type": "string", "maxLength": MAX_PASSWORD_LENGTH}),
    );
    set_property(schemas, "SignupRequest", "organization", text(0, 200));
    set_property(
        schemas,
        "SignupRequest",
        "email",
        json!({"type": "string", "format": "email", "maxLength": 254}),
    );
    set_property(
        schemas,
        "UpdateMeRequest",
        "monthlyBudget",
        json!({"type": "number", "exclusiveMinimum": 0, "maximum": 1_000_000_000, "multipleOf": 0.01}),
    );
    // Datasets.
    for schema in ["RegisterDatasetRequest", "UpdateDatasetRequest"] {
        set_property(schemas, schema, "name", text(1, MAX_NAME_LENGTH));
        set_property(
            schemas,
            schema,
            "description",
            text(0, MAX_DESCRIPTION_LENGTH),
        );
    }
    set_property(
        schemas,
        "RegisterDatasetRequest",
        "fileName",
        // One line: no control character at all (`domain::validation::one_line`).
        json!({"type": "string", "minLength": 1, "maxLength": MAX_FILE_NAME_LENGTH, "pattern": format!(r"^[^/\\{ANY_CONTROL}]*[^/\\\s{ANY_CONTROL}][^/\\{ANY_CONTROL}]*$")}),
    );
    set_property(
        schemas,
        "RegisterDatasetRequest",
        "fileSize",
        json!({"type": "integer", "minimum": 1, "maximum": domain::dataset::DEFAULT_UPLOAD_LIMIT_BYTES}),
    );
    for schema in ["RegisterDatasetRequest", "ValidateRequest"] {
        set_property(
            schemas,
            schema,
            "format",
            json!({"type": "string", "enum": strings(DatasetFormat::ALL.iter().map(|f| f.as_str()))}),
        );
    }
    // Jobs' and models' metadata.
    for schema in ["UpdateJobRequest", "UpdateModelRequest"] {
        set_property(schemas, schema, "name", text(1, 100));
        set_property(schemas, schema, "description", text(0, 2000));
    }
    set_property(
        schemas,
        "JobRequestBody",
        "name",
        text(1, domain::job::MAX_NAME_CHARS),
    );
    set_property(schemas, "UpdateJobRequest", "notes", text(0, 2000));
    set_property(
        schemas,
        "UpdateJobRequest",
        "tags",
        json!({"type": "array", "maxItems": 20, "items": text(1, 50)}),
    );
    set_property(
        schemas,
        "UpdateModelRequest",
        "status",
        json!({"type": "string", "enum": [ModelStatus::Stored.as_str(), ModelStatus::Archived.as_str()]}),
    );
    set_property(
        schemas,
        "DeployModelRequest",
        "environment",
        json!({"type": "string", "enum": strings(DeployEnvironment::ALL.iter().map(|e| e.as_str()))}),
    );
    set_property(
        schemas,
        "DeployModelRequest",
        "endpointName",
        json!({"type": "string", "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$"}),
    );
    set_property(schemas, "DeployModelRequest", "instanceType", text(1, 64));
    for property in ["minReplicas", "maxReplicas"] {
        set_property(
            schemas,
            "DeployModelRequest",
            property,
            json!({"type": "integer", "minimum": 1, "maximum": MAX_REPLICAS}),
        );
    }
    // A dataset's PATCH must change something (an empty job or model PATCH changes nothing
    // and answers the resource); no PATCH takes other fields, or nulls.
    set_schema(schemas, "UpdateDatasetRequest", "minProperties", json!(1));
    for schema in [
        "UpdateDatasetRequest",
        "UpdateModelRequest",
        "UpdateJobRequest",
    ] {
        set_schema(schemas, schema, "additionalProperties", json!(false));
        if let Some(props) = schemas
            .get_mut(schema)
            .and_then(|s| s.get_mut("properties"))
            .and_then(Value::as_object_mut)
        {
            for property in props.values_mut() {
                if let Some(types) = property["type"].as_array() {
                    let types: Vec<Value> =
                        types.iter().filter(|t| *t != "null").cloned().collect();
                    property["type"] = types.first().cloned().unwrap_or(Value::Null);
                }
                if let Some(values) = property.get_mut("enum").and_then(Value::as_array_mut) {
                    values.retain(|v| !v.is_null());
                }
            }
        }
    }
    constrain_openai_create(schemas);
    set_property(schemas, "CreateApiKeyRequest", "name", text(1, 100));
    // Left out, a key never expires; null is refused (not a time).
    replace_property(
        schemas,
        "CreateApiKeyRequest",
        "expiresAt",
        json!({"type": "string", "format": "date-time"}),
    );
    // The multipart forms take their named fields only (others are read and set aside, but
    // none is documented), and `/v1/files` takes one purpose.
    set_schema(schemas, "FileUpload", "additionalProperties", json!(false));
    set_property(
        schemas,
        "FileUpload",
        "purpose",
        json!({"type": "string", "enum": ["fine-tune"]}),
    );
    // The error codes, each with its status.
    set_property(
        schemas,
        "ErrorBody",
        "code",
        json!({
            "type": "string",
            "enum": strings(ErrorCode::ALL.iter().map(|c| c.as_str())),
            "description": format!(
                "The code a client can act on; each always comes with the same status: {}.",
                ErrorCode::ALL
                    .iter()
                    .map(|c| format!("`{}` {}", c.as_str(), c.status().as_u16()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }),
    );
}

/// Puts `schema` in place of a property's whole schema (where merging would keep a
/// contradicting `type`).
fn replace_property(
    schemas: &mut Map<String, Value>,
    schema: &str,
    property: &str,
    schema_of: Value,
) {
    if let Some(target) = schemas
        .get_mut(schema)
        .and_then(|s| s.get_mut("properties"))
        .and_then(|p| p.get_mut(property))
    {
        let description = target.get("description").cloned();
        *target = schema_of;
        if let Some(d) = description {
            target["description"] = d;
        }
    }
}

/// `"auto"`, `null` or a value of `schema`.
fn auto_or(schema: Value) -> Value {
    json!({"oneOf": [{"type": "string", "enum": ["auto"]}, schema, {"type": "null"}]})
}

/// `POST /v1/fine_tuning/jobs`: the bounds the translation and the domain hold it to.
fn constrain_openai_create(schemas: &mut Map<String, Value>) {
    let h = "SupervisedHyperparameters";
    replace_property(
        schemas,
        h,
        "n_epochs",
        auto_or(bound(&bounds::NUM_EPOCHS, true)),
    );
    replace_property(
        schemas,
        h,
        "batch_size",
        auto_or(bound(&bounds::BATCH_SIZE, true)),
    );
    // The rate is the multiplier times the preset's rate on the model, within the domain's
    // bound: this range is within it for every model and preset (at most 3e-3 each).
    let highest_rate = Preset::ALL
        .iter()
        .flat_map(|p| {
            BASE_MODELS
                .iter()
                .map(|m| p.hyperparameters_for(m).learning_rate)
        })
        .fold(0.0_f64, f64::max);
    replace_property(
        schemas,
        h,
        "learning_rate_multiplier",
        auto_or(json!({"type": "number", "minimum": 0.000001,
                       "maximum": (bounds::LEARNING_RATE.max / highest_rate).floor()})),
    );
    if let Some(Value::Object(method)) = schemas.get_mut("Method") {
        let description = method.get("description").cloned();
        *method = json!({
            "type": "object",
            "additionalProperties": false,
            "required": ["type"],
            "properties": {
                "type": {"type": "string", "enum": ["supervised"]},
                "supervised": {"oneOf": [{"$ref": "#/components/schemas/SupervisedMethod"}, {"type": "null"}]},
            },
        })
        .as_object()
        .cloned()
        .unwrap_or_default();
        if let Some(d) = description {
            method.insert("description".into(), d);
        }
    }
    let c = "CreateFineTuningJob";
    set_property(
        schemas,
        c,
        "model",
        json!({"type": "string", "minLength": 1}),
    );
    set_property(
        schemas,
        c,
        "training_file",
        json!({"type": "string", "pattern": format!("^file-{UUID}$")}),
    );
    replace_property(schemas, c, "validation_file", json!({"type": "null"}));
    replace_property(
        schemas,
        c,
        "integrations",
        json!({"type": ["array", "null"], "maxItems": 0}),
    );
    set_property(
        schemas,
        c,
        "suffix",
        json!({"type": "string", "pattern": format!("^[A-Za-z0-9_-]{{1,{}}}$", domain::job::labels::MAX_SUFFIX_CHARS)}),
    );
    set_property(
        schemas,
        c,
        "seed",
        json!({"type": "integer", "minimum": 0, "maximum": domain::job::config::MAX_SEED}),
    );
    let value = format!(
        "^[^{CONTROL}]{{0,{}}}$",
        domain::job::labels::MAX_METADATA_VALUE_CHARS
    );
    replace_property(
        schemas,
        c,
        "metadata",
        json!({
            "type": ["object", "null"],
            "maxProperties": domain::job::labels::MAX_METADATA_PAIRS,
            "propertyNames": {"type": "string", "pattern": format!("^[^{CONTROL}]{{1,{}}}$", domain::job::labels::MAX_METADATA_KEY_CHARS)},
            "additionalProperties": {"type": "string", "pattern": value},
            "properties": {
                // /v1 offers the named presets, not `custom`.
                "preset": {"type": "string", "enum": strings(Preset::ALL.iter().filter(|p| **p != Preset::Custom).map(|p| p.as_str()))},
                "gpu_type": {"type": "string", "enum": strings(GpuType::ALL.iter().map(|g| g.as_str()))},
                "gpu_count": {"type": "string", "enum": GPU_COUNTS.iter().map(|n| n.to_string()).collect::<Vec<_>>()},
                "lora_rank": {"type": "string", "pattern": "^([1-9]|[1-9][0-9]|1[0-9][0-9]|2[0-4][0-9]|25[0-6])$"},
            },
        }),
    );
    // The hyperparameters once: top-level (deprecated) or under the method, not both.
    set_schema(
        schemas,
        c,
        "not",
        json!({
            "type": "object",
            "required": ["hyperparameters", "method"],
            "properties": {
                "hyperparameters": {"type": "object"},
                "method": {
                    "type": "object",
                    "required": ["supervised"],
                    "properties": {"supervised": {
                        "type": "object",
                        "required": ["hyperparameters"],
                        "properties": {"hyperparameters": {"type": "object"}},
                    }},
                },
            },
        }),
    );
}

/// Every operation of the document.
pub(crate) fn operations(doc: &mut Value) -> impl Iterator<Item = &mut Value> {
    doc.get_mut("paths")
        .and_then(Value::as_object_mut)
        .into_iter()
        .flat_map(|paths| paths.values_mut())
        .filter_map(Value::as_object_mut)
        .flat_map(|item| item.values_mut())
}

/// An id behind its `/v1` prefix (`file-`, `ftjob-`, `ftevent-`).
const UUID: &str = "[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}";

fn constrain_parameters(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let ops = paths.iter_mut().flat_map(|(path, item)| {
        let path = path.clone();
        item.as_object_mut()
            .into_iter()
            .flat_map(|item| item.values_mut())
            .map(move |op| (path.clone(), op))
    });
    for (path, op) in ops {
        let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) else {
            continue;
        };
        for p in params {
            let patch = match (p["name"].as_str(), p["in"].as_str()) {
                (Some("page"), Some("query")) => {
                    json!({"type": "integer", "minimum": 1, "maximum": u32::MAX})
                }
                (Some("pageSize"), Some("query")) => {
                    json!({"type": "integer", "minimum": 1, "maximum": crate::envelope::MAX_PAGE_SIZE})
                }
                (Some("points"), Some("query")) => {
                    json!({"type": "integer", "minimum": 2, "maximum": 10_000})
                }
                (Some("startDate" | "endDate" | "from" | "to"), Some("query")) => {
                    json!({"type": "string", "format": "date"})
                }
                (Some("groupBy"), Some("query")) => {
                    json!({"type": "string", "enum": ["day", "week", "month"]})
                }
                (Some("id"), Some("path")) => json!({"type": "string", "format": "uuid"}),
                // `/v1/files`' order (the page sizes are bounded where they are declared).
                (Some("order"), Some("query")) => {
                    json!({"type": "string", "enum": ["asc", "desc"]})
                }
                (Some("search"), Some("query")) => {
                    json!({"type": "string", "pattern": r"^[^\x00-\x1f\x7f-\x9f]*$"})
                }
                // `/v1` cursors: the id of the last item of the previous page.
                (Some("after"), Some("query")) => {
                    let pattern = if path.ends_with("/events") {
                        format!("^ftevent-{UUID}$")
                    } else if path.ends_with("/checkpoints") {
                        // The job's id, then the cluster's name of the checkpoint.
                        format!("^ftckpt-{UUID}-[^{CONTROL}]+$")
                    } else if path.starts_with("/v1/files") {
                        format!("^file-{UUID}$")
                    } else {
                        format!("^ftjob-{UUID}$")
                    };
                    json!({"type": "string", "pattern": pattern})
                }
                (Some("checkpointId"), Some("query")) => {
                    json!({"type": "string", "minLength": 1})
                }
                (Some("Last-Event-ID"), Some("header")) => {
                    // An id this stream sent, two 64-bit signed numbers (18 digits always
                    // fit); an empty header is no id at all.
                    json!({"type": "string", "pattern": r"^([0-9]{1,18}\.[0-9]{1,18})?$"})
                }
                _ => continue,
            };
            p["schema"] = patch;
        }
    }
}

fn error_answer(schema: &str, description: &str) -> Value {
    json!({
        "description": description,
        "content": {"application/json": {"schema": {"$ref": format!("#/components/schemas/{schema}")}}}
    })
}

/// An error answer that carries a `Retry-After` header (seconds).
fn retry_after_answer(schema: &str, description: &str, header: &str) -> Value {
    let mut answer = error_answer(schema, description);
    answer["headers"] = json!({"Retry-After": {
        "description": header,
        "schema": {"type": "integer", "minimum": 1}
    }});
    answer
}

/// The answers every operation can give; `/v1` answers them in OpenAI's error shape.
fn document_common_answers(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let schema = if path.starts_with("/v1/") {
            "OpenAiErrorBody"
        } else {
            "ErrorEnvelope"
        };
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        for (method, op) in item.iter_mut() {
            let limited = domain::rate_limit::classify(method, path).is_some();
            let has_body = op.get("requestBody").is_some();
            let has_params = op
                .get("parameters")
                .and_then(Value::as_array)
                .is_some_and(|p| !p.is_empty());
            let secured = op.get("security").is_some();
            let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) else {
                continue;
            };
            if has_body || has_params {
                responses.entry("400").or_insert_with(|| {
                    error_answer(
                        schema,
                        "`VALIDATION_ERROR` naming the field, or `BAD_REQUEST` for a malformed request",
                    )
                });
            }
            if has_body {
                responses.entry("413").or_insert_with(|| {
                    error_answer(
                        schema,
                        "`PAYLOAD_TOO_LARGE`: the body passed the request size limit",
                    )
                });
                responses.entry("415").or_insert_with(|| {
                    error_answer(
                        schema,
                        "`UNSUPPORTED_MEDIA_TYPE`: send the body as the operation's content type",
                    )
                });
            }
            if secured {
                responses.entry("401").or_insert_with(|| {
                    error_answer(schema, "`UNAUTHORIZED`: a valid bearer token is required")
                });
            }
            if path.starts_with("/api/") || path.starts_with("/v1/") {
                responses.entry("503").or_insert_with(|| {
                    retry_after_answer(
                        schema,
                        "`NOT_READY`: the database is unavailable at the moment; retry after `Retry-After` seconds",
                        "Seconds to wait before retrying",
                    )
                });
            }
            if limited {
                responses.entry("429").or_insert_with(|| {
                    retry_after_answer(
                        schema,
                        "`RATE_LIMITED`: too many such requests from this caller or address in the window (RATE_LIMIT_*); retry after `Retry-After` seconds",
                        "Seconds until the window ends",
                    )
                });
            }
        }
    }
}

/// Each event of a job's stream: its name, its JSON data and (after the opening ones) its id.
fn describe_stream(doc: &mut Value) {
    if let Some(content) = doc.pointer_mut(
        "/paths/~1api~1jobs~1{id}~1stream/get/responses/200/content/text~1event-stream",
    ) {
        content["schema"] = json!({
            "type": "object",
            "required": ["event", "data"],
            "properties": {
                "event": {"type": "string", "enum": [
                    "stage", "progress", "metrics", "cost", "checkpoint", "log",
                    "complete", "error", "cancelled"
                ]},
                "data": {"type": "string", "description": "The event's JSON object"},
                "id": {"type": "string", "pattern": r"^[0-9]+\.[0-9]+$"}
            }
        });
    }
}

/// The upload takes the raw file, or a form whose `file` field is the file.
fn describe_upload(doc: &mut Value) {
    if let Some(content) =
        doc.pointer_mut("/paths/~1api~1datasets~1{id}~1upload/post/requestBody/content")
    {
        content["application/octet-stream"]["schema"] =
            json!({"type": "string", "format": "binary"});
        content["multipart/form-data"]["schema"] = json!({
            "type": "object",
            "required": ["file"],
            "additionalProperties": false,
            "properties": {"file": {"type": "string", "format": "binary"}}
        });
    }
}

/// An operation an id leads to: the link's name, the method and the path.
type Target = (&'static str, &'static str, &'static str);

/// Links from each answer that carries an id to the operations that take it.
fn link_creates_to_reads(doc: &mut Value) {
    let dataset_reads: [Target; 5] = [
        ("GetDataset", "get", "/api/datasets/{id}"),
        ("UpdateDataset", "patch", "/api/datasets/{id}"),
        ("ConfirmUpload", "post", "/api/datasets/{id}/confirm"),
        ("UploadFile", "post", "/api/datasets/{id}/upload"),
        ("DeleteDataset", "delete", "/api/datasets/{id}"),
    ];
    let job_reads: [Target; 4] = [
        ("GetJob", "get", "/api/jobs/{id}"),
        ("UpdateJob", "patch", "/api/jobs/{id}"),
        ("JobMetrics", "get", "/api/jobs/{id}/metrics"),
        ("CancelJob", "post", "/api/jobs/{id}/cancel"),
    ];
    let model_reads: [Target; 5] = [
        ("GetModel", "get", "/api/models/{id}"),
        ("UpdateModel", "patch", "/api/models/{id}"),
        ("DownloadModel", "get", "/api/models/{id}/download"),
        ("DeployModel", "post", "/api/models/{id}/deploy"),
        ("DeleteModel", "delete", "/api/models/{id}"),
    ];
    let notification_reads: [Target; 1] = [("MarkRead", "patch", "/api/notifications/{id}/read")];
    let api_key_reads: [Target; 1] = [("RevokeApiKey", "delete", "/api/auth/api-keys/{id}")];
    let sources: [(&str, &str, &str, &str, &[Target]); 9] = [
        (
            "post",
            "/api/auth/api-keys",
            "201",
            "/data/apiKey/id",
            &api_key_reads,
        ),
        (
            "get",
            "/api/auth/api-keys",
            "200",
            "/data/apiKeys/0/id",
            &api_key_reads,
        ),
        (
            "post",
            "/api/datasets",
            "201",
            "/data/datasetId",
            &dataset_reads,
        ),
        (
            "get",
            "/api/datasets",
            "200",
            "/data/datasets/0/id",
            &dataset_reads,
        ),
        ("post", "/api/jobs", "201", "/data/jobId", &job_reads),
        ("get", "/api/jobs", "200", "/data/jobs/0/id", &job_reads),
        (
            "get",
            "/api/models",
            "200",
            "/data/models/0/id",
            &model_reads,
        ),
        (
            "get",
            "/api/models/artifacts",
            "200",
            "/data/artifacts/0/modelId",
            &model_reads,
        ),
        (
            "get",
            "/api/notifications",
            "200",
            "/data/notifications/0/id",
            &notification_reads,
        ),
    ];
    for (method, path, status, pointer, targets) in sources {
        link(doc, (method, path, status), pointer, "id", targets);
    }
    // `/v1` names its ids as OpenAI does, and answers without the envelope.
    let file_reads: [Target; 3] = [
        ("RetrieveFile", "get", "/v1/files/{file_id}"),
        ("FileContent", "get", "/v1/files/{file_id}/content"),
        ("DeleteFile", "delete", "/v1/files/{file_id}"),
    ];
    let fine_tuning_reads: [Target; 4] = [
        (
            "RetrieveJob",
            "get",
            "/v1/fine_tuning/jobs/{fine_tuning_job_id}",
        ),
        (
            "ListEvents",
            "get",
            "/v1/fine_tuning/jobs/{fine_tuning_job_id}/events",
        ),
        (
            "ListCheckpoints",
            "get",
            "/v1/fine_tuning/jobs/{fine_tuning_job_id}/checkpoints",
        ),
        (
            "CancelJob",
            "post",
            "/v1/fine_tuning/jobs/{fine_tuning_job_id}/cancel",
        ),
    ];
    let v1_model_reads: [Target; 2] = [
        ("RetrieveModel", "get", "/v1/models/{model}"),
        ("DeleteModel", "delete", "/v1/models/{model}"),
    ];
    let v1_sources: [(Source, &str, &str, &[Target]); 5] = [
        (("post", "/v1/files", "200"), "/id", "file_id", &file_reads),
        (
            ("get", "/v1/files", "200"),
            "/data/0/id",
            "file_id",
            &file_reads,
        ),
        (
            ("post", "/v1/fine_tuning/jobs", "200"),
            "/id",
            "fine_tuning_job_id",
            &fine_tuning_reads,
        ),
        (
            ("get", "/v1/fine_tuning/jobs", "200"),
            "/data/0/id",
            "fine_tuning_job_id",
            &fine_tuning_reads,
        ),
        (
            ("get", "/v1/models", "200"),
            "/data/0/id",
            "model",
            &v1_model_reads,
        ),
    ];
    for (source, pointer, parameter, targets) in v1_sources {
        link(doc, source, pointer, parameter, targets);
    }
}

/// An operation's answer: method, path, status.
type Source<'a> = (&'a str, &'a str, &'a str);

/// Links `source`'s answer to each of `targets`, its `parameter` read at `pointer` in the body.
fn link(doc: &mut Value, source: Source, pointer: &str, parameter: &str, targets: &[Target]) {
    let (method, path, status) = source;
    let escaped = path.replace('/', "~1");
    let Some(response) = doc.pointer_mut(&format!("/paths/{escaped}/{method}/responses/{status}"))
    else {
        return;
    };
    let links: Map<String, Value> = targets
        .iter()
        .map(|(name, target_method, target_path)| {
            (
                name.to_string(),
                json!({
                    "operationRef": format!("#/paths/{}/{target_method}", target_path.replace('/', "~1")),
                    "parameters": {parameter: format!("$response.body#{pointer}")}
                }),
            )
        })
        .collect();
    response["links"] = Value::Object(links);
}
