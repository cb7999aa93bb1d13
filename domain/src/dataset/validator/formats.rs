//! Each format's reading of one JSON line into a `Conversation`, every broken field reported
//! with its line and path. A conversation with an error is not counted.

use serde_json::{Map, Value};

use super::{Conversation, Role, Split, Turn, Validator};

/// What OpenAI's chat format may carry that BrightRun does not train on.
const OPENAI_TOOL_FIELDS: [&str; 2] = ["tools", "functions"];
const OPENAI_TOOL_MESSAGE_FIELDS: [&str; 2] = ["tool_calls", "function_call"];
const SHAREGPT_TOOL_SPEAKERS: [&str; 4] = ["function_call", "observation", "tool", "function"];

fn unsupported_tools(path: &str) -> String {
    format!(
        "{path}: tool and function calls are not supported; BrightRun trains on text conversations"
    )
}

impl Validator<'_> {
    pub(super) fn string_field(
        &mut self,
        line: u64,
        object: &Map<String, Value>,
        field: &str,
        path: &str,
    ) -> Option<String> {
        match object.get(field) {
            None | Some(Value::Null) => {
                self.error(
                    line,
                    Some(path.to_string()),
                    "MISSING_FIELD",
                    format!("{path} is required"),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(
                    line,
                    Some(path.to_string()),
                    "INVALID_TYPE",
                    format!("{path} must be a string"),
                );
                None
            }
        }
    }

    /// The non-empty array of messages under `key`.
    fn turns_array(
        &mut self,
        line: u64,
        object: &mut Map<String, Value>,
        key: &str,
    ) -> Option<Vec<Value>> {
        match object.remove(key) {
            None | Some(Value::Null) => {
                self.error(
                    line,
                    Some(key.into()),
                    "MISSING_FIELD",
                    format!("{key} is required"),
                );
                None
            }
            Some(Value::Array(turns)) if turns.is_empty() => {
                self.error(
                    line,
                    Some(key.into()),
                    "EMPTY_TURNS",
                    format!("{key} must hold at least one message"),
                );
                None
            }
            Some(Value::Array(turns)) => Some(turns),
            Some(_) => {
                self.error(
                    line,
                    Some(key.into()),
                    "INVALID_TYPE",
                    format!("{key} must be an array"),
                );
                None
            }
        }
    }

    /// Each message's index and two string fields (`who`, `what`); every broken message is
    /// reported, and then `None`: a conversation with a broken message is not counted.
    fn turn_fields(
        &mut self,
        line: u64,
        turns: &[Value],
        key: &str,
        who: &str,
        what: &str,
    ) -> Option<Vec<(usize, String, String)>> {
        let mut fields = Vec::with_capacity(turns.len());
        let mut valid = true;
        for (i, turn) in turns.iter().enumerate() {
            let path = format!("{key}[{i}]");
            let Value::Object(turn) = turn else {
                self.error(
                    line,
                    Some(path.clone()),
                    "INVALID_TYPE",
                    format!("{path} must be an object"),
                );
                valid = false;
                continue;
            };
            let a = self.string_field(line, turn, who, &format!("{path}.{who}"));
            let b = self.string_field(line, turn, what, &format!("{path}.{what}"));
            match (a, b) {
                (Some(a), Some(b)) => fields.push((i, a, b)),
                _ => valid = false,
            }
        }
        valid.then_some(fields)
    }

    pub(super) fn parse_v4(
        &mut self,
        line: u64,
        mut object: Map<String, Value>,
    ) -> Option<Conversation> {
        let id = self.string_field(line, &object, "conversation_id", "conversation_id");
        let raw_turns = self.turns_array(line, &mut object, "turns");
        let split = match object.get("split") {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) if s == "train" => Some(Some(Split::Train)),
            Some(Value::String(s)) if s == "validation" => Some(Some(Split::Validation)),
            Some(_) => {
                self.error(
                    line,
                    Some("split".into()),
                    "INVALID_VALUE",
                    "split must be \"train\" or \"validation\"".into(),
                );
                None
            }
        };
        let topic = match object.get("metadata") {
            None | Some(Value::Null) => Some(None),
            Some(Value::Object(m)) => match m.get("topic") {
                None | Some(Value::Null) => Some(None),
                Some(Value::String(t)) => Some(Some(t.clone())),
                Some(_) => {
                    self.error(
                        line,
                        Some("metadata.topic".into()),
                        "INVALID_TYPE",
                        "metadata.topic must be a string".into(),
                    );
                    None
                }
            },
            Some(_) => {
                self.error(
                    line,
                    Some("metadata".into()),
                    "INVALID_TYPE",
                    "metadata must be an object".into(),
                );
                None
            }
        };
        let fields = raw_turns
            .as_deref()
            .and_then(|t| self.turn_fields(line, t, "turns", "role", "content"));
        let mut turns = Vec::new();
        for (i, role_name, content) in fields.iter().flatten().cloned() {
            match Role::named(&role_name).filter(|_| role_name == role_name.to_ascii_lowercase()) {
                Some(role) => turns.push(Turn::new(i, role, role.as_str().to_string(), content)),
                None => self.warning(
                    line,
                    Some(format!("turns[{i}].role")),
                    "UNKNOWN_ROLE",
                    format!("role '{role_name}' is not system, user or assistant; the message is ignored"),
                ),
            }
        }
        match (id, fields, split, topic) {
            (Some(id), Some(_), Some(split), Some(topic)) => Some(Conversation {
                id,
                turns,
                topic,
                split,
            }),
            _ => None,
        }
    }

    pub(super) fn parse_v3(
        &mut self,
        line: u64,
        mut object: Map<String, Value>,
    ) -> Option<Conversation> {
        let id = self.string_field(line, &object, "id", "id");
        let raw_turns = self.turns_array(line, &mut object, "turns");
        let fields = raw_turns
            .as_deref()
            .and_then(|t| self.turn_fields(line, t, "turns", "speaker", "text"));
        let mut turns = Vec::new();
        // Unnamed speakers take roles by order of appearance.
        let mut by_order: Vec<String> = Vec::new();
        for (i, speaker, text) in fields.iter().flatten().cloned() {
            let role = Role::named(&speaker).or_else(|| {
                let position = by_order
                    .iter()
                    .position(|s| *s == speaker)
                    .unwrap_or_else(|| {
                        by_order.push(speaker.clone());
                        by_order.len() - 1
                    });
                [Role::User, Role::Assistant].get(position).copied()
            });
            match role {
                Some(role) => turns.push(Turn::new(i, role, speaker, text)),
                None => self.warning(
                    line,
                    Some(format!("turns[{i}].speaker")),
                    "UNKNOWN_ROLE",
                    format!("speaker '{speaker}' is a third participant; the message is ignored"),
                ),
            }
        }
        match (id, fields) {
            (Some(id), Some(_)) => Some(Conversation {
                id,
                turns,
                topic: None,
                split: None,
            }),
            _ => None,
        }
    }

    /// OpenAI's fine-tuning chat format: `{"messages": [{"role", "content", "weight"?}]}`.
    /// Content is a string or an array of text parts; an assistant message with `weight: 0` is
    /// context, not trained on. Tools and function calls are refused.
    pub(super) fn parse_openai_chat(
        &mut self,
        line: u64,
        mut object: Map<String, Value>,
    ) -> Option<Conversation> {
        let mut valid = true;
        for key in OPENAI_TOOL_FIELDS {
            if object.get(key).is_some_and(|v| !v.is_null()) {
                self.error(
                    line,
                    Some(key.into()),
                    "UNSUPPORTED_FEATURE",
                    unsupported_tools(key),
                );
                valid = false;
            }
        }
        let messages = self.turns_array(line, &mut object, "messages");
        let mut turns = Vec::new();
        for (i, message) in messages.iter().flatten().enumerate() {
            match self.openai_message(line, i, message) {
                Some(turn) => turns.push(turn),
                None => valid = false,
            }
        }
        (valid && messages.is_some()).then(|| Conversation {
            id: line.to_string(),
            turns,
            topic: None,
            split: None,
        })
    }

    fn openai_message(&mut self, line: u64, i: usize, message: &Value) -> Option<Turn> {
        let path = format!("messages[{i}]");
        let Value::Object(message) = message else {
            self.error(
                line,
                Some(path.clone()),
                "INVALID_TYPE",
                format!("{path} must be an object"),
            );
            return None;
        };
        let mut valid = true;
        for key in OPENAI_TOOL_MESSAGE_FIELDS {
            if message.get(key).is_some_and(|v| !v.is_null()) {
                let field = format!("{path}.{key}");
                self.error(
                    line,
                    Some(field.clone()),
                    "UNSUPPORTED_FEATURE",
                    unsupported_tools(&field),
                );
                valid = false;
            }
        }
        let role_path = format!("{path}.role");
        let role = match self.string_field(line, message, "role", &role_path) {
            Some(name) if name == "tool" || name == "function" => {
                self.error(
                    line,
                    Some(role_path.clone()),
                    "UNSUPPORTED_FEATURE",
                    unsupported_tools(&role_path),
                );
                None
            }
            Some(name) => {
                let role = Role::named(&name).filter(|_| name == name.to_ascii_lowercase());
                if role.is_none() {
                    self.error(
                        line,
                        Some(role_path.clone()),
                        "INVALID_VALUE",
                        format!("{role_path} must be \"system\", \"user\" or \"assistant\", not '{name}'"),
                    );
                }
                role
            }
            None => None,
        };
        let content = self.openai_content(line, &path, message.get("content"));
        let trained = match message.get("weight") {
            None | Some(Value::Null) => Some(true),
            Some(w) if role.is_some() && role != Some(Role::Assistant) => {
                self.error(
                    line,
                    Some(format!("{path}.weight")),
                    "INVALID_VALUE",
                    format!("{path}.weight applies to assistant messages only (got {w})"),
                );
                None
            }
            Some(w) if w.as_u64() == Some(0) => Some(false),
            Some(w) if w.as_u64() == Some(1) => Some(true),
            Some(w) => {
                self.error(
                    line,
                    Some(format!("{path}.weight")),
                    "INVALID_VALUE",
                    format!("{path}.weight must be 0 or 1 (got {w})"),
                );
                None
            }
        };
        match (valid, role, content, trained) {
            (true, Some(role), Some(content), Some(trained)) => {
                let mut turn = Turn::new(i, role, role.as_str().to_string(), content);
                turn.trained = trained;
                Some(turn)
            }
            _ => None,
        }
    }

    /// A message's text: a string, or text parts joined in order.
    fn openai_content(&mut self, line: u64, path: &str, content: Option<&Value>) -> Option<String> {
        let field = format!("{path}.content");
        match content {
            None | Some(Value::Null) => {
                self.error(
                    line,
                    Some(field.clone()),
                    "MISSING_FIELD",
                    format!("{field} is required"),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Array(parts)) => {
                let mut text = String::new();
                let mut valid = true;
                for (j, part) in parts.iter().enumerate() {
                    let part_path = format!("{field}[{j}]");
                    match (part.get("type").and_then(Value::as_str), part.get("text")) {
                        (Some("text"), Some(Value::String(t))) => text.push_str(t),
                        (Some("text"), _) => {
                            self.error(
                                line,
                                Some(format!("{part_path}.text")),
                                "INVALID_TYPE",
                                format!("{part_path}.text must be a string"),
                            );
                            valid = false;
                        }
                        (Some(other), _) => {
                            self.error(
                                line,
                                Some(format!("{part_path}.type")),
                                "UNSUPPORTED_FEATURE",
                                format!("{part_path} is a '{other}' part; only text parts are supported"),
                            );
                            valid = false;
                        }
                        (None, _) => {
                            self.error(
                                line,
                                Some(format!("{part_path}.type")),
                                "MISSING_FIELD",
                                format!("{part_path}.type is required (\"text\")"),
                            );
                            valid = false;
                        }
                    }
                }
                valid.then_some(text)
            }
            Some(_) => {
                self.error(
                    line,
                    Some(field.clone()),
                    "INVALID_TYPE",
                    format!("{field} must be a string or an array of text parts"),
                );
                None
            }
        }
    }

    /// ShareGPT: `{"conversations": [{"from": "system|human|gpt", "value"}]}`. Tool turns are
    /// refused; any other speaker is ignored with a warning.
    pub(super) fn parse_sharegpt(
        &mut self,
        line: u64,
        mut object: Map<String, Value>,
    ) -> Option<Conversation> {
        let raw_turns = self.turns_array(line, &mut object, "conversations");
        let fields = raw_turns
            .as_deref()
            .and_then(|t| self.turn_fields(line, t, "conversations", "from", "value"));
        let mut turns = Vec::new();
        let mut valid = fields.is_some();
        for (i, from, value) in fields.into_iter().flatten() {
            let path = format!("conversations[{i}].from");
            let role = match from.as_str() {
                "system" => Role::System,
                "human" => Role::User,
                "gpt" => Role::Assistant,
                tool if SHAREGPT_TOOL_SPEAKERS.contains(&tool) => {
                    self.error(
                        line,
                        Some(path.clone()),
                        "UNSUPPORTED_FEATURE",
                        unsupported_tools(&path),
                    );
                    valid = false;
                    continue;
                }
                other => {
                    self.warning(
                        line,
                        Some(path),
                        "UNKNOWN_ROLE",
                        format!(
                            "from '{other}' is not system, human or gpt; the message is ignored"
                        ),
                    );
                    continue;
                }
            };
            turns.push(Turn::new(i, role, from, value));
        }
        valid.then(|| Conversation {
            id: line.to_string(),
            turns,
            topic: None,
            split: None,
        })
    }

    /// Alpaca: `{"instruction", "input"?, "output"}`, one training pair: the instruction (and
    /// the input after a blank line, when there is one) answered by the output.
    pub(super) fn parse_alpaca(
        &mut self,
        line: u64,
        object: Map<String, Value>,
    ) -> Option<Conversation> {
        let instruction = self.string_field(line, &object, "instruction", "instruction");
        let input = match object.get("input") {
            None | Some(Value::Null) => Some(String::new()),
            Some(Value::String(s)) => Some(s.clone()),
            Some(_) => {
                self.error(
                    line,
                    Some("input".into()),
                    "INVALID_TYPE",
                    "input must be a string".into(),
                );
                None
            }
        };
        let output = self.string_field(line, &object, "output", "output");
        let (instruction, input, output) = (instruction?, input?, output?);
        let prompt = if input.is_empty() {
            instruction
        } else {
            format!("{instruction}\n\n{input}")
        };
        Some(Conversation {
            id: line.to_string(),
            turns: vec![
                Turn::new(0, Role::User, "user".into(), prompt),
                Turn::new(1, Role::Assistant, "assistant".into(), output),
            ],
            topic: None,
            split: None,
        })
    }
}
