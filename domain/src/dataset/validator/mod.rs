//! The dataset validator: pure and streaming. Bytes go in by chunks (`feed`), a report comes
//! out (`finish`). It keeps per-conversation figures only (token counts, ids for duplicate
//! detection, the vocabulary set), never the file, and a line is at most `max_line_bytes`.
//!
//! Formats:
//! - `brightrun-lora-v4`: `{"conversation_id", "turns": [{"role", "content"}], "metadata"?: {"topic"?}, "split"?}`
//! - `brightrun-lora-v3`: `{"id", "turns": [{"speaker", "text"}]}`; speakers named
//!   user/assistant/system keep that role, others map by order of appearance: first user,
//!   second assistant, any further one is an unknown role (warning, turn ignored).
//!
//! - `openai-chat`: `{"messages": [{"role", "content", "weight"?}]}` as OpenAI's fine-tuning
//!   documents it: content a string or text parts; an assistant message with `weight: 0` is
//!   context (its pair is not a training pair); tools and function calls are refused.
//! - `sharegpt`: `{"conversations": [{"from": "system|human|gpt", "value"}]}`.
//! - `alpaca`: `{"instruction", "input"?, "output"}`: one user turn (instruction, then the input
//!   after a blank line) and its answer.
//!
//! The last three carry no ids: a conversation is named by its line number (`"7"`), which
//! decides its split, exactly as the trainer reads it (`trainer/src/brightrun_trainer/formats.py`).
//!
//! A turn is a user or assistant message; system messages are context (their tokens count in
//! `totalTokens`, not in the per-turn averages). A training pair is a user turn followed by an
//! assistant turn. Conversations without an explicit split go to validation when a stable
//! hash of their id falls below `validation_split_ratio`.

mod formats;
mod lines;
mod report;
mod seen;

pub use lines::{Line, LineSplitter};
pub use report::{
    FullStatistics, Issue, LengthDistribution, SampleConversation, SampleTurn, Statistics,
    TopicCount, ValidationReport,
};

use std::collections::BTreeMap;

use seen::{LengthCounts, SeenSet, TokenSet};

use serde_json::Value;

use super::DatasetFormat;
use crate::validation::storable;

/// The preview (`POST /api/datasets/validate`) takes the first 100 KB of a file.
pub const PREVIEW_LIMIT_BYTES: usize = 100 * 1024;
/// A sample turn keeps this many characters (the sample travels in events and answers).
pub const SAMPLE_CONTENT_CHARS: usize = 2000;
/// Distinct topics counted one by one; the rest are counted together as `OTHER_TOPICS`.
pub const MAX_TOPICS: usize = 1000;
pub const OTHER_TOPICS: &str = "(other)";
const MAX_TOPIC_CHARS: usize = 100;

/// The first `max` characters of `text`, with an ellipsis when cut.
fn truncate_chars(text: &str, max: usize) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(max) {
        None => std::borrow::Cow::Borrowed(text),
        Some((end, _)) => std::borrow::Cow::Owned(format!("{}…", &text[..end])),
    }
}

/// Counts tokens. Implemented over a real BPE vocabulary outside the domain; shared by the
/// threads a batch of lines is validated on.
pub trait Tokenizer: Sync {
    /// The vocabulary's name, reported in the statistics (`cl100k_base`, `o200k_base`).
    fn name(&self) -> &str;
    fn encode(&self, text: &str) -> Vec<u32>;
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidatorOptions {
    pub validation_split_ratio: f64,
    pub max_line_bytes: usize,
    /// Conversations over this many tokens get a warning.
    pub long_conversation_tokens: u64,
    /// Errors and warnings kept in the report (each list); the counts cover them all.
    pub max_reported: usize,
    pub sample_size: usize,
    pub min_training_pairs: u64,
    /// Conversation ids and speakers are remembered exactly up to this many, then in a
    /// fixed-size Bloom filter (memory stays bounded; duplicates become "probable").
    pub exact_id_limit: usize,
    /// Threads a batch of lines is spread over (1: the calling thread only). The caller
    /// knows the machine; the report is the same whatever the number.
    pub workers: usize,
}

impl Default for ValidatorOptions {
    fn default() -> Self {
        ValidatorOptions {
            validation_split_ratio: 0.1,
            max_line_bytes: 4 * 1024 * 1024,
            long_conversation_tokens: 8192,
            max_reported: 100,
            sample_size: 3,
            min_training_pairs: 10,
            exact_id_limit: 1_000_000,
            workers: 1,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    System,
    User,
    Assistant,
}

impl Role {
    fn named(name: &str) -> Option<Role> {
        match name.to_ascii_lowercase().as_str() {
            "system" => Some(Role::System),
            "user" => Some(Role::User),
            "assistant" => Some(Role::Assistant),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::System => "system",
            Role::User => "user",
            Role::Assistant => "assistant",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Split {
    Train,
    Validation,
}

/// Validation when the id's FNV-1a hash falls in the first `ratio` of the buckets: the same
/// id always lands on the same side, whatever else the file holds.
pub fn split_of(id: &str, ratio: f64) -> Split {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in id.as_bytes() {
        hash ^= u64::from(*byte);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    if ((hash % 1_000_000) as f64) < ratio * 1_000_000.0 {
        Split::Validation
    } else {
        Split::Train
    }
}

struct Turn {
    /// The message's position in the line (ignored messages keep their numbers).
    index: usize,
    role: Role,
    speaker: String,
    content: String,
    /// False for an assistant message that is context only (openai-chat `weight: 0`).
    trained: bool,
}

impl Turn {
    fn new(index: usize, role: Role, speaker: String, content: String) -> Turn {
        Turn {
            index,
            role,
            speaker,
            content,
            trained: true,
        }
    }
}

struct Conversation {
    id: String,
    turns: Vec<Turn>,
    topic: Option<String>,
    split: Option<Split>,
}

pub struct Validator<'t> {
    format: DatasetFormat,
    tokenizer: &'t dyn Tokenizer,
    options: ValidatorOptions,
    splitter: LineSplitter,
    report: ReportBuilder,
    /// Lines split but not validated yet: validated a batch at a time.
    pending: Vec<Line>,
    pending_bytes: usize,
    batch_bytes: usize,
}

/// Lines are validated in batches of about this many bytes, spread over the cores.
const BATCH_BYTES: usize = 4 * 1024 * 1024;
/// A batch of fewer lines is validated on the calling thread.
const PARALLEL_MIN_LINES: usize = 256;

/// What a worker thread made of its share of a batch: the issues of its lines (all of them,
/// in line order), its conversations with each turn's token count, and the token ids seen.
struct Parsed {
    errors: Vec<Issue>,
    warnings: Vec<Issue>,
    conversations: Vec<(u64, Conversation, Vec<u64>)>,
    vocabulary: TokenSet,
}

struct ReportBuilder {
    errors: Vec<Issue>,
    error_count: u64,
    warnings: Vec<Issue>,
    warning_count: u64,
    ids: SeenSet,
    conversations: u64,
    turns: u64,
    turn_tokens: u64,
    total_tokens: u64,
    training_pairs: u64,
    validation_pairs: u64,
    vocabulary: TokenSet,
    speakers: SeenSet,
    topics: BTreeMap<String, u64>,
    lengths: LengthCounts,
    sample: Vec<SampleConversation>,
}

impl<'t> Validator<'t> {
    pub fn new(
        format: DatasetFormat,
        tokenizer: &'t dyn Tokenizer,
        options: ValidatorOptions,
    ) -> Validator<'t> {
        Validator {
            format,
            tokenizer,
            options,
            splitter: LineSplitter::new(options.max_line_bytes),
            report: ReportBuilder::new(options.exact_id_limit),
            pending: Vec::new(),
            pending_bytes: 0,
            batch_bytes: BATCH_BYTES,
        }
    }

    /// Batches of `batch_bytes` (the tests' way to reach every path).
    #[cfg(test)]
    fn in_batches_of(mut self, batch_bytes: usize) -> Self {
        self.batch_bytes = batch_bytes;
        self
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        let (pending, pending_bytes) = (&mut self.pending, &mut self.pending_bytes);
        self.splitter.feed(chunk, &mut |line| {
            if let Line::Complete { bytes, .. } = &line {
                *pending_bytes += bytes.len();
            }
            pending.push(line);
        });
        if self.pending_bytes >= self.batch_bytes {
            self.run_pending();
        }
    }

    pub fn finish(mut self) -> ValidationReport {
        let pending = &mut self.pending;
        self.splitter.finish(&mut |line| pending.push(line));
        self.run_pending();
        if self.splitter.bytes_seen() == 0 {
            self.error(0, None, "EMPTY_FILE", "the file is empty".to_string());
        } else if self.report.conversations == 0 && self.report.error_count == 0 {
            self.error(
                0,
                None,
                "NO_CONVERSATIONS",
                "the file holds no conversations".to_string(),
            );
        }
        self.report.build(self.tokenizer.name(), &self.options)
    }

    fn error(&mut self, line: u64, field: Option<String>, code: &str, message: String) {
        let r = &mut self.report;
        push_capped(
            &mut r.errors,
            &mut r.error_count,
            self.options.max_reported,
            line,
            field,
            code,
            message,
        );
    }

    fn warning(&mut self, line: u64, field: Option<String>, code: &str, message: String) {
        let r = &mut self.report;
        push_capped(
            &mut r.warnings,
            &mut r.warning_count,
            self.options.max_reported,
            line,
            field,
            code,
            message,
        );
    }

    /// Validates the pending lines: on this thread when they are few, else each worker
    /// parses and tokenizes a contiguous share and the shares are counted here in line
    /// order, so every figure, issue and its order is what one thread would have found.
    fn run_pending(&mut self) {
        let lines = std::mem::take(&mut self.pending);
        self.pending_bytes = 0;
        let workers = self.options.workers.max(1);
        if workers < 2 || lines.len() < PARALLEL_MIN_LINES {
            for line in lines {
                self.line(line);
            }
            return;
        }
        let per_worker = lines.len().div_ceil(workers);
        let mut shares: Vec<Vec<Line>> = Vec::with_capacity(workers);
        let mut lines = lines.into_iter();
        loop {
            let share: Vec<Line> = lines.by_ref().take(per_worker).collect();
            if share.is_empty() {
                break;
            }
            shares.push(share);
        }
        let (format, tokenizer) = (self.format, self.tokenizer);
        let options = ValidatorOptions {
            max_reported: usize::MAX,
            workers: 1,
            ..self.options
        };
        let work = move |share: Vec<Line>| {
            let mut worker = Validator::new(format, tokenizer, options);
            let mut conversations = Vec::new();
            for line in share {
                if let Some((number, conversation)) = worker.parse_line(line) {
                    let tokens = worker.tokenize(&conversation);
                    conversations.push((number, conversation, tokens));
                }
            }
            let report = worker.report;
            Parsed {
                errors: report.errors,
                warnings: report.warnings,
                conversations,
                vocabulary: report.vocabulary,
            }
        };
        // The first share is done on this thread, which would otherwise only wait (and is
        // the one a tokenizer's per-thread state may already belong to).
        let mut shares = shares.into_iter();
        let first = shares.next().unwrap_or_default();
        let parsed: Vec<Parsed> = std::thread::scope(|scope| {
            let handles: Vec<_> = shares
                .map(|share| scope.spawn(move || work(share)))
                .collect();
            let mut parsed = vec![work(first)];
            parsed.extend(handles.into_iter().map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            }));
            parsed
        });
        for part in parsed {
            self.merge(part);
        }
    }

    /// Counts a worker's share as if its lines had been read here.
    fn merge(&mut self, part: Parsed) {
        let max = self.options.max_reported;
        for issue in part.errors {
            let r = &mut self.report;
            push_issue(&mut r.errors, &mut r.error_count, max, issue);
        }
        let mut warnings = part.warnings.into_iter().peekable();
        for (number, conversation, tokens) in part.conversations {
            while let Some(issue) = warnings.next_if(|w| w.line <= number) {
                let r = &mut self.report;
                push_issue(&mut r.warnings, &mut r.warning_count, max, issue);
            }
            self.count(number, conversation, &tokens);
        }
        for issue in warnings {
            let r = &mut self.report;
            push_issue(&mut r.warnings, &mut r.warning_count, max, issue);
        }
        self.report.vocabulary.union(part.vocabulary);
    }

    fn line(&mut self, line: Line) {
        if let Some((number, conversation)) = self.parse_line(line) {
            let tokens = self.tokenize(&conversation);
            self.count(number, conversation, &tokens);
        }
    }

    /// Each turn's token count; the ids join the vocabulary.
    fn tokenize(&mut self, conversation: &Conversation) -> Vec<u64> {
        conversation
            .turns
            .iter()
            .map(|turn| {
                let ids = self.tokenizer.encode(&turn.content);
                let n = ids.len() as u64;
                self.report.vocabulary.extend(ids);
                n
            })
            .collect()
    }

    /// The line's conversation in the validator's format, its problems recorded.
    fn parse_line(&mut self, line: Line) -> Option<(u64, Conversation)> {
        let (number, bytes) = match line {
            Line::TooLong { number, length } => {
                let max = self.options.max_line_bytes;
                self.error(
                    number,
                    None,
                    "LINE_TOO_LONG",
                    format!("the line is {length} bytes; at most {max} are accepted"),
                );
                return None;
            }
            Line::Complete { number, bytes } => (number, bytes),
        };
        let Ok(text) = std::str::from_utf8(&bytes) else {
            self.error(
                number,
                None,
                "INVALID_UTF8",
                "the line is not valid UTF-8".to_string(),
            );
            return None;
        };
        if text.trim().is_empty() {
            self.warning(number, None, "EMPTY_LINE", "blank line ignored".to_string());
            return None;
        }
        let value: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => {
                self.error(
                    number,
                    None,
                    "INVALID_JSON",
                    format!("the line is not valid JSON: {e}"),
                );
                return None;
            }
        };
        let Value::Object(object) = value else {
            self.error(
                number,
                None,
                "INVALID_JSON",
                "each line must be a JSON object".to_string(),
            );
            return None;
        };
        let parsed = match self.format {
            DatasetFormat::BrightrunLoraV4 => self.parse_v4(number, object),
            DatasetFormat::BrightrunLoraV3 => self.parse_v3(number, object),
            DatasetFormat::OpenaiChat => self.parse_openai_chat(number, object),
            DatasetFormat::Sharegpt => self.parse_sharegpt(number, object),
            DatasetFormat::Alpaca => self.parse_alpaca(number, object),
        };
        parsed.map(|conversation| (number, conversation))
    }

    /// Counts a parsed conversation whose turns have `tokens` tokens each.
    fn count(&mut self, line: u64, conversation: Conversation, tokens: &[u64]) {
        if let Some(id_field) = self.id_field() {
            if self.report.ids.seen_before(&conversation.id) {
                let certainty = if self.report.ids.is_exact() {
                    "appeared"
                } else {
                    "probably appeared"
                };
                self.warning(
                    line,
                    Some(id_field.to_string()),
                    "DUPLICATE_ID",
                    format!(
                        "conversation id '{}' {certainty} on an earlier line",
                        truncate_chars(&conversation.id, 200)
                    ),
                );
            }
        }
        let turn_tokens = tokens;
        let mut tokens = 0u64;
        let mut dialogue: Vec<(Role, bool)> = Vec::new();
        for (turn, &n) in conversation.turns.iter().zip(turn_tokens) {
            if turn.content.trim().is_empty() {
                let field = self.content_field(turn.index);
                self.warning(
                    line,
                    Some(field),
                    "EMPTY_CONTENT",
                    "the message is empty".into(),
                );
            }
            self.report.speakers.seen_before(&turn.speaker);
            tokens += n;
            if turn.role != Role::System {
                dialogue.push((turn.role, turn.trained));
                self.report.turns += 1;
                self.report.turn_tokens += n;
            }
        }
        if tokens > self.options.long_conversation_tokens {
            self.warning(
                line,
                None,
                "CONVERSATION_TOO_LONG",
                format!(
                    "the conversation has {tokens} tokens (over {})",
                    self.options.long_conversation_tokens
                ),
            );
        }
        let pairs = dialogue
            .windows(2)
            .filter(|w| w[0].0 == Role::User && w[1] == (Role::Assistant, true))
            .count() as u64;
        let split = conversation
            .split
            .unwrap_or_else(|| split_of(&conversation.id, self.options.validation_split_ratio));
        match split {
            Split::Train => self.report.training_pairs += pairs,
            Split::Validation => self.report.validation_pairs += pairs,
        }
        let r = &mut self.report;
        r.conversations += 1;
        r.total_tokens += tokens;
        r.lengths.push(tokens);
        if let Some(topic) = &conversation.topic {
            let topic = truncate_chars(topic, MAX_TOPIC_CHARS);
            if let Some(count) = r.topics.get_mut(topic.as_ref()) {
                *count += 1;
            } else if r.topics.len() < MAX_TOPICS {
                r.topics.insert(topic.into_owned(), 1);
            } else {
                *r.topics.entry(OTHER_TOPICS.to_string()).or_default() += 1;
            }
        }
        if r.sample.len() < self.options.sample_size {
            r.sample.push(SampleConversation {
                conversation_id: conversation.id,
                turns: conversation
                    .turns
                    .into_iter()
                    .map(|t| SampleTurn {
                        role: t.role.as_str().to_string(),
                        content: truncate_chars(&t.content, SAMPLE_CONTENT_CHARS).into_owned(),
                    })
                    .collect(),
            });
        }
    }

    /// The field naming a conversation; `None` for the formats without ids (a conversation is
    /// named by its line number, so it never repeats).
    fn id_field(&self) -> Option<&'static str> {
        match self.format {
            DatasetFormat::BrightrunLoraV4 => Some("conversation_id"),
            DatasetFormat::BrightrunLoraV3 => Some("id"),
            DatasetFormat::OpenaiChat | DatasetFormat::Sharegpt | DatasetFormat::Alpaca => None,
        }
    }

    /// Where the text of the message at `index` sits in the line.
    fn content_field(&self, index: usize) -> String {
        match self.format {
            DatasetFormat::BrightrunLoraV4 => format!("turns[{index}].content"),
            DatasetFormat::BrightrunLoraV3 => format!("turns[{index}].text"),
            DatasetFormat::OpenaiChat => format!("messages[{index}].content"),
            DatasetFormat::Sharegpt => format!("conversations[{index}].value"),
            DatasetFormat::Alpaca if index == 0 => "instruction".to_string(),
            DatasetFormat::Alpaca => "output".to_string(),
        }
    }
}

/// `push_capped` for an issue already made.
fn push_issue(list: &mut Vec<Issue>, count: &mut u64, max: usize, issue: Issue) {
    *count += 1;
    if list.len() < max {
        list.push(issue);
    }
}

/// Counts every issue; keeps only the first `max` (the report stays small on a broken file).
fn push_capped(
    list: &mut Vec<Issue>,
    count: &mut u64,
    max: usize,
    line: u64,
    field: Option<String>,
    code: &str,
    message: String,
) {
    *count += 1;
    if list.len() < max {
        list.push(Issue {
            line,
            field,
            code: code.to_string(),
            message,
        });
    }
}

impl ReportBuilder {
    fn new(exact_id_limit: usize) -> ReportBuilder {
        ReportBuilder {
            errors: Vec::new(),
            error_count: 0,
            warnings: Vec::new(),
            warning_count: 0,
            ids: SeenSet::new(exact_id_limit),
            conversations: 0,
            turns: 0,
            turn_tokens: 0,
            total_tokens: 0,
            training_pairs: 0,
            validation_pairs: 0,
            vocabulary: TokenSet::default(),
            speakers: SeenSet::new(exact_id_limit),
            topics: BTreeMap::new(),
            lengths: LengthCounts::default(),
            sample: Vec::new(),
        }
    }

    fn build(self, tokenizer: &str, options: &ValidatorOptions) -> ValidationReport {
        let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
        let mut topics: Vec<TopicCount> = self
            .topics
            .into_iter()
            .map(|(topic, count)| TopicCount {
                topic: storable(topic),
                count,
            })
            .collect();
        let issues = |list: Vec<Issue>| -> Vec<Issue> {
            list.into_iter()
                .map(|issue| Issue {
                    field: issue.field.map(storable),
                    message: storable(issue.message),
                    ..issue
                })
                .collect()
        };
        let sample = self
            .sample
            .into_iter()
            .map(|c| SampleConversation {
                conversation_id: storable(c.conversation_id),
                turns: c
                    .turns
                    .into_iter()
                    .map(|t| SampleTurn {
                        role: t.role,
                        content: storable(t.content),
                    })
                    .collect(),
            })
            .collect();
        topics.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.topic.cmp(&b.topic)));
        let training_ready =
            self.error_count == 0 && self.training_pairs >= options.min_training_pairs;
        ValidationReport {
            is_valid: self.error_count == 0,
            training_ready,
            errors: issues(self.errors),
            error_count: self.error_count,
            warnings: issues(self.warnings),
            warning_count: self.warning_count,
            statistics: Statistics {
                total_conversations: self.conversations,
                total_training_pairs: self.training_pairs,
                total_validation_pairs: self.validation_pairs,
                estimated_pairs: self.training_pairs + self.validation_pairs,
                total_tokens: self.total_tokens,
                avg_turns_per_conversation: ratio(self.turns, self.conversations),
                avg_tokens_per_turn: ratio(self.turn_tokens, self.turns),
                tokenizer: tokenizer.to_string(),
            },
            full_statistics: FullStatistics {
                vocabulary_size: self.vocabulary.len(),
                unique_speakers: self.speakers.distinct(),
                topic_distribution: topics,
                length_distribution: self.lengths.distribution(),
            },
            sample_conversations: sample,
        }
    }
}

/// Validates a whole buffer (previews, tests).
pub fn validate_bytes(
    format: DatasetFormat,
    bytes: &[u8],
    tokenizer: &dyn Tokenizer,
    options: ValidatorOptions,
) -> ValidationReport {
    let mut validator = Validator::new(format, tokenizer, options);
    validator.feed(bytes);
    validator.finish()
}

/// Validates the first part of a file (`POST /api/datasets/validate` sends the first 100 KB):
/// when `content` does not end with a newline, its last line is probably cut short, so a last
/// line that is not valid JSON is dropped with a `TRUNCATED_LINE` warning instead of an error.
pub fn validate_preview(
    format: DatasetFormat,
    content: &str,
    tokenizer: &dyn Tokenizer,
    options: ValidatorOptions,
) -> ValidationReport {
    let mut body = content;
    let mut truncated = None;
    if !content.ends_with('\n') {
        let start = content.rfind('\n').map_or(0, |i| i + 1);
        let last = &content[start..];
        if !last.trim().is_empty() && serde_json::from_str::<Value>(last).is_err() {
            truncated = Some(content[..start].matches('\n').count() as u64 + 1);
            body = &content[..start];
        }
    }
    let mut validator = Validator::new(format, tokenizer, options);
    validator.feed(body.as_bytes());
    // The warning about the cut line comes after those of the lines before it.
    validator.run_pending();
    if let Some(line) = truncated {
        validator.warning(
            line,
            None,
            "TRUNCATED_LINE",
            "the last line is incomplete (the preview was cut); it is not checked".into(),
        );
    }
    validator.finish()
}

#[cfg(test)]
mod tests;
