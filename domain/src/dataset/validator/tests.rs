use super::*;
use serde_json::json;

/// Whitespace tokenizer: a token per word, the id a hash of the word (hand-computable).
struct Words;

impl Tokenizer for Words {
    fn name(&self) -> &str {
        "words"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        text.split_whitespace()
            .map(|w| {
                w.bytes().fold(2_166_136_261u32, |h, b| {
                    (h ^ u32::from(b)).wrapping_mul(16_777_619)
                })
            })
            .collect()
    }
}

const V4: DatasetFormat = DatasetFormat::BrightrunLoraV4;
const V3: DatasetFormat = DatasetFormat::BrightrunLoraV3;

fn jsonl(lines: &[serde_json::Value]) -> Vec<u8> {
    lines
        .iter()
        .map(|l| l.to_string() + "\n")
        .collect::<String>()
        .into_bytes()
}

fn validate(format: DatasetFormat, bytes: &[u8]) -> ValidationReport {
    validate_bytes(format, bytes, &Words, ValidatorOptions::default())
}

fn codes(issues: &[Issue]) -> Vec<(u64, Option<&str>, &str)> {
    issues
        .iter()
        .map(|i| (i.line, i.field.as_deref(), i.code.as_str()))
        .collect()
}

fn turn(role: &str, content: &str) -> serde_json::Value {
    json!({"role": role, "content": content})
}

fn three_conversations() -> Vec<u8> {
    jsonl(&[
        json!({"conversation_id": "c1", "turns": [turn("system", "be kind"), turn("user", "hi there"), turn("assistant", "hello")],
               "metadata": {"topic": "greeting"}, "split": "train"}),
        json!({"conversation_id": "c2", "turns": [turn("user", "a b c"), turn("assistant", "d"), turn("user", "e"), turn("assistant", "f g")],
               "metadata": {"topic": "letters"}, "split": "validation"}),
        json!({"conversation_id": "c3", "turns": [turn("user", "x"), turn("user", "y"), turn("assistant", "z")],
               "metadata": {"topic": "greeting"}, "split": "train"}),
    ])
}

#[test]
fn statistics_of_a_hand_computed_v4_file() {
    let report = validate(V4, &three_conversations());
    assert!(report.is_valid, "{:?}", report.errors);
    assert_eq!(report.warning_count, 0, "{:?}", report.warnings);
    let s = &report.statistics;
    assert_eq!(s.total_conversations, 3);
    assert_eq!(
        s.total_training_pairs, 2,
        "c1 has one pair, c3 one (user, user, assistant)"
    );
    assert_eq!(s.total_validation_pairs, 2);
    assert_eq!(s.estimated_pairs, 4);
    assert_eq!(s.total_tokens, 15, "system tokens count in the total");
    assert_eq!(
        s.avg_turns_per_conversation, 3.0,
        "9 user/assistant turns over 3 conversations"
    );
    assert_eq!(
        s.avg_tokens_per_turn,
        13.0 / 9.0,
        "system messages are not turns"
    );
    assert_eq!(s.tokenizer, "words");
    let f = &report.full_statistics;
    assert_eq!(f.vocabulary_size, 15);
    assert_eq!(f.unique_speakers, 3);
    assert_eq!(
        f.topic_distribution,
        vec![
            TopicCount {
                topic: "greeting".into(),
                count: 2
            },
            TopicCount {
                topic: "letters".into(),
                count: 1
            }
        ]
    );
    assert_eq!(
        f.length_distribution,
        LengthDistribution {
            min: 3,
            max: 7,
            mean: 5.0,
            median: 5.0,
            p95: 7
        }
    );
    assert!(
        !report.training_ready,
        "4 pairs is under the 10 a training needs"
    );
}

#[test]
fn the_sample_is_the_first_three_conversations() {
    let mut lines = Vec::new();
    for i in 0..5 {
        lines.push(json!({"conversation_id": format!("c{i}"), "turns": [turn("user", "q"), turn("assistant", "a")]}));
    }
    let report = validate(V4, &jsonl(&lines));
    let ids: Vec<&str> = report
        .sample_conversations
        .iter()
        .map(|c| c.conversation_id.as_str())
        .collect();
    assert_eq!(ids, ["c0", "c1", "c2"]);
    assert_eq!(
        report.sample_conversations[0].turns[1],
        SampleTurn {
            role: "assistant".into(),
            content: "a".into()
        }
    );
}

#[test]
fn ten_training_pairs_and_no_error_make_a_dataset_training_ready() {
    let lines: Vec<_> = (0..10)
        .map(|i| json!({"conversation_id": format!("c{i}"), "turns": [turn("user", "q"), turn("assistant", "a")], "split": "train"}))
        .collect();
    assert!(validate(V4, &jsonl(&lines)).training_ready);
    let mut broken = jsonl(&lines);
    broken.extend_from_slice(b"{oops}\n");
    let report = validate(V4, &broken);
    assert!(!report.training_ready && !report.is_valid);
    assert_eq!(
        report.statistics.total_training_pairs, 10,
        "valid lines still count"
    );
}

#[test]
fn each_error_names_its_line_field_and_code() {
    let mut bytes = Vec::new();
    bytes.extend_from_slice(b"\xff\xfe not utf-8\n");
    bytes.extend_from_slice(b"{\"conversation_id\": \n");
    bytes.extend_from_slice(b"[1, 2]\n");
    bytes.extend_from_slice(&jsonl(&[
        json!({"turns": [turn("user", "q")]}),
        json!({"conversation_id": 7, "turns": [turn("user", "q")]}),
        json!({"conversation_id": "c", "turns": "hello"}),
        json!({"conversation_id": "c", "turns": []}),
        json!({"conversation_id": "c"}),
        json!({"conversation_id": "c", "turns": [{"role": "user"}]}),
        json!({"conversation_id": "c", "turns": ["hi"]}),
        json!({"conversation_id": "c", "turns": [turn("user", "q")], "split": "test"}),
        json!({"conversation_id": "c", "turns": [turn("user", "q")], "metadata": "x"}),
    ]));
    let report = validate(V4, &bytes);
    assert_eq!(
        codes(&report.errors),
        vec![
            (1, None, "INVALID_UTF8"),
            (2, None, "INVALID_JSON"),
            (3, None, "INVALID_JSON"),
            (4, Some("conversation_id"), "MISSING_FIELD"),
            (5, Some("conversation_id"), "INVALID_TYPE"),
            (6, Some("turns"), "INVALID_TYPE"),
            (7, Some("turns"), "EMPTY_TURNS"),
            (8, Some("turns"), "MISSING_FIELD"),
            (9, Some("turns[0].content"), "MISSING_FIELD"),
            (10, Some("turns[0]"), "INVALID_TYPE"),
            (11, Some("split"), "INVALID_VALUE"),
            (12, Some("metadata"), "INVALID_TYPE"),
        ]
    );
    assert_eq!(report.statistics.total_conversations, 0);
    assert!(report.errors.iter().all(|e| !e.message.is_empty()));
}

#[test]
fn a_ten_megabyte_line_is_one_error_and_the_next_line_still_counts() {
    let mut bytes = jsonl(&[
        json!({"conversation_id": "a", "turns": [turn("user", "q"), turn("assistant", "a")]}),
    ]);
    let huge = format!("{{\"conversation_id\": \"big\", \"turns\": [{{\"role\": \"user\", \"content\": \"{}\"}}]}}\n", "x".repeat(10 * 1024 * 1024));
    bytes.extend_from_slice(huge.as_bytes());
    bytes.extend_from_slice(&jsonl(&[
        json!({"conversation_id": "b", "turns": [turn("user", "q"), turn("assistant", "a")]}),
    ]));
    let report = validate(V4, &bytes);
    assert_eq!(codes(&report.errors), vec![(2, None, "LINE_TOO_LONG")]);
    assert_eq!(report.statistics.total_conversations, 2);
}

#[test]
fn an_empty_file_is_an_error() {
    let report = validate(V4, b"");
    assert_eq!(codes(&report.errors), vec![(0, None, "EMPTY_FILE")]);
    assert!(!report.is_valid && !report.training_ready);
    let blank = validate(V4, b"\n\n");
    assert_eq!(codes(&blank.errors), vec![(0, None, "NO_CONVERSATIONS")]);
    assert_eq!(
        codes(&blank.warnings),
        vec![(1, None, "EMPTY_LINE"), (2, None, "EMPTY_LINE")]
    );
}

#[test]
fn warnings_flag_duplicates_empty_messages_long_conversations_and_unknown_roles() {
    let bytes = jsonl(&[
        json!({"conversation_id": "same", "turns": [turn("user", "q"), turn("assistant", "a")]}),
        json!({"conversation_id": "same", "turns": [turn("user", "  "), turn("assistant", "a")]}),
        json!({"conversation_id": "long", "turns": [turn("user", "w w w w w w"), turn("assistant", "a")]}),
        json!({"conversation_id": "odd", "turns": [turn("narrator", "once"), turn("User", "q"), turn("user", "q"), turn("assistant", "a")]}),
    ]);
    let options = ValidatorOptions {
        long_conversation_tokens: 5,
        ..ValidatorOptions::default()
    };
    let report = validate_bytes(V4, &bytes, &Words, options);
    assert!(
        report.is_valid,
        "warnings are not errors: {:?}",
        report.errors
    );
    assert_eq!(
        codes(&report.warnings),
        vec![
            (2, Some("conversation_id"), "DUPLICATE_ID"),
            (2, Some("turns[0].content"), "EMPTY_CONTENT"),
            (3, None, "CONVERSATION_TOO_LONG"),
            (4, Some("turns[0].role"), "UNKNOWN_ROLE"),
            (4, Some("turns[1].role"), "UNKNOWN_ROLE"),
        ]
    );
    assert_eq!(report.statistics.total_conversations, 4);
}

#[test]
fn v3_speakers_map_to_roles_by_order_unless_named() {
    let bytes = jsonl(&[
        json!({"id": "a", "turns": [{"speaker": "Alice", "text": "q r"}, {"speaker": "Bot", "text": "s"},
                                     {"speaker": "Carol", "text": "t"}, {"speaker": "Alice", "text": "u"}]}),
        json!({"id": "b", "turns": [{"speaker": "system", "text": "rules"}, {"speaker": "assistant", "text": "hello"},
                                     {"speaker": "Dan", "text": "hi"}, {"speaker": "Eve", "text": "yo"}]}),
    ]);
    let report = validate(V3, &bytes);
    assert!(report.is_valid, "{:?}", report.errors);
    assert_eq!(
        codes(&report.warnings),
        vec![(1, Some("turns[2].speaker"), "UNKNOWN_ROLE")]
    );
    let roles: Vec<&str> = report.sample_conversations[0]
        .turns
        .iter()
        .map(|t| t.role.as_str())
        .collect();
    assert_eq!(roles, ["user", "assistant", "user"]);
    let roles: Vec<&str> = report.sample_conversations[1]
        .turns
        .iter()
        .map(|t| t.role.as_str())
        .collect();
    assert_eq!(
        roles,
        ["system", "assistant", "user", "assistant"],
        "Dan is the first unnamed speaker, Eve the second"
    );
    let s = &report.statistics;
    assert_eq!(
        s.total_training_pairs + s.total_validation_pairs,
        2,
        "a: (user, assistant); b: (user, assistant)"
    );
    assert_eq!(
        report.full_statistics.unique_speakers, 6,
        "Alice, Bot, system, assistant, Dan, Eve"
    );
    assert_eq!(
        s.total_tokens, 8,
        "a: 2+1+1 (Carol's ignored message has no tokens), b: 1+1+1+1"
    );
}

#[test]
fn v3_field_errors_name_v3_fields() {
    let report = validate(V3, &jsonl(&[json!({"turns": [{"speaker": "a"}]})]));
    assert_eq!(
        codes(&report.errors),
        vec![
            (1, Some("id"), "MISSING_FIELD"),
            (1, Some("turns[0].text"), "MISSING_FIELD")
        ]
    );
}

/// The trainer (trainer/src/brightrun_trainer/formats.py) computes the same split: its tests
/// pin the same ids.
#[test]
fn the_split_of_these_ids_is_pinned_for_the_trainer() {
    let validation: Vec<u32> = (0..60)
        .filter(|i| split_of(&format!("conv-{i}"), 0.1) == Split::Validation)
        .collect();
    assert_eq!(validation, [8, 14, 24, 31, 39, 46, 55]);
}

#[test]
fn the_split_is_stable_and_follows_the_ratio() {
    assert_eq!(
        split_of("conversation-42", 0.1),
        split_of("conversation-42", 0.1)
    );
    assert_eq!(split_of("anything", 0.0), Split::Train);
    assert_eq!(split_of("anything", 1.0), Split::Validation);
    let validation = (0..10_000)
        .filter(|i| split_of(&format!("conv-{i}"), 0.1) == Split::Validation)
        .count();
    assert!(
        (800..=1200).contains(&validation),
        "{validation} of 10000 went to validation"
    );
    // An explicit split wins over the hash.
    let bytes = jsonl(&[
        json!({"conversation_id": "x", "turns": [turn("user", "q"), turn("assistant", "a")], "split": "validation"}),
    ]);
    let options = ValidatorOptions {
        validation_split_ratio: 0.0,
        ..ValidatorOptions::default()
    };
    assert_eq!(
        validate_bytes(V4, &bytes, &Words, options)
            .statistics
            .total_validation_pairs,
        1
    );
}

#[test]
fn at_most_one_hundred_errors_are_kept_but_all_are_counted() {
    let bytes = "not json\n".repeat(150);
    let report = validate(V4, bytes.as_bytes());
    assert_eq!(report.errors.len(), 100);
    assert_eq!(report.error_count, 150);
    assert_eq!(report.errors[99].line, 100);
}

#[test]
fn feeding_in_small_chunks_gives_the_same_report() {
    let bytes = three_conversations();
    let mut validator = Validator::new(V4, &Words, ValidatorOptions::default());
    for chunk in bytes.chunks(7) {
        validator.feed(chunk);
    }
    assert_eq!(validator.finish(), validate(V4, &bytes));
}

#[test]
fn the_median_of_an_even_count_is_the_mean_of_the_middle_two() {
    assert_eq!(LengthDistribution::of_sorted(&[1, 2, 3, 10]).median, 2.5);
    let hundred: Vec<u64> = (1..=100).collect();
    assert_eq!(LengthDistribution::of_sorted(&hundred).p95, 95);
    assert_eq!(LengthDistribution::of_sorted(&[]).max, 0);
}

#[test]
fn a_preview_cut_mid_line_drops_the_last_line_with_a_warning() {
    let whole = String::from_utf8(three_conversations()).unwrap();
    let cut = &whole[..whole.len() - 20];
    let report = validate_preview(V4, cut, &Words, ValidatorOptions::default());
    assert!(report.is_valid, "{:?}", report.errors);
    assert_eq!(codes(&report.warnings), vec![(3, None, "TRUNCATED_LINE")]);
    assert_eq!(report.statistics.total_conversations, 2);
    // A complete last line without its newline is checked as usual.
    let report = validate_preview(V4, whole.trim_end(), &Words, ValidatorOptions::default());
    assert_eq!(
        (report.statistics.total_conversations, report.warning_count),
        (3, 0)
    );
    // Garbage that ends with a newline is an error, not a truncation.
    let report = validate_preview(V4, "not json\n", &Words, ValidatorOptions::default());
    assert_eq!(codes(&report.errors), vec![(1, None, "INVALID_JSON")]);
}

#[test]
fn past_the_exact_id_limit_duplicates_are_still_reported_as_probable() {
    let lines: Vec<_> = (0..50)
        .map(|i| json!({"conversation_id": format!("c{i}"), "turns": [turn("user", "hi"), turn("assistant", "hello")]}))
        .chain([json!({"conversation_id": "c7", "turns": [turn("user", "hi"), turn("assistant", "again")]})])
        .collect();
    let options = ValidatorOptions {
        exact_id_limit: 10,
        ..ValidatorOptions::default()
    };
    let report = validate_bytes(V4, &jsonl(&lines), &Words, options);
    assert_eq!(
        codes(&report.warnings),
        vec![(51, Some("conversation_id"), "DUPLICATE_ID")]
    );
    assert!(report.warnings[0].message.contains("probably appeared"));
    assert_eq!(report.statistics.total_conversations, 51);
}

#[test]
fn sample_turns_are_cut_to_two_thousand_characters() {
    let long = "é".repeat(SAMPLE_CONTENT_CHARS + 10);
    let bytes = jsonl(&[
        json!({"conversation_id": "a", "turns": [turn("user", &long), turn("assistant", "ok")]}),
    ]);
    let report = validate(V4, &bytes);
    let content = &report.sample_conversations[0].turns[0].content;
    assert_eq!(content.chars().count(), SAMPLE_CONTENT_CHARS + 1);
    assert!(content.ends_with('…'));
    assert_eq!(report.sample_conversations[0].turns[1].content, "ok");
}

#[test]
fn topics_beyond_the_limit_are_counted_together() {
    let lines: Vec<_> = (0..MAX_TOPICS + 5)
        .map(|i| json!({"conversation_id": format!("c{i}"), "turns": [turn("user", "hi"), turn("assistant", "hello")], "metadata": {"topic": format!("t{i:05}")}}))
        .collect();
    let report = validate(V4, &jsonl(&lines));
    let topics = &report.full_statistics.topic_distribution;
    assert_eq!(topics.len(), MAX_TOPICS + 1);
    assert_eq!(topics[0].topic, OTHER_TOPICS);
    assert_eq!(topics[0].count, 5);
}

const OPENAI: DatasetFormat = DatasetFormat::OpenaiChat;
const SHAREGPT: DatasetFormat = DatasetFormat::Sharegpt;
const ALPACA: DatasetFormat = DatasetFormat::Alpaca;

fn message(role: &str, content: &str) -> serde_json::Value {
    json!({"role": role, "content": content})
}

#[test]
fn openai_chat_counts_text_parts_and_leaves_weight_zero_answers_out_of_the_pairs() {
    let report = validate(
        OPENAI,
        &jsonl(&[
            json!({"messages": [message("system", "be kind"), message("user", "hi there"), message("assistant", "hello")]}),
            json!({"messages": [
                {"role": "user", "content": [{"type": "text", "text": "a b "}, {"type": "text", "text": "c"}]},
                {"role": "assistant", "content": "d", "weight": 0},
                message("user", "e"),
                {"role": "assistant", "content": "f g", "weight": 1},
            ]}),
        ]),
    );
    assert!(report.is_valid, "{:?}", report.errors);
    assert_eq!(report.warning_count, 0, "{:?}", report.warnings);
    let s = &report.statistics;
    assert_eq!(s.total_conversations, 2);
    assert_eq!(
        s.total_training_pairs + s.total_validation_pairs,
        2,
        "one pair in the first, one in the second: its weight-0 answer is context"
    );
    assert_eq!(
        s.total_tokens, 12,
        "5 + 7: the two text parts join into 'a b c'"
    );
    assert_eq!(s.avg_turns_per_conversation, 3.0);
    let sample = &report.sample_conversations[1];
    assert_eq!(
        sample.conversation_id, "2",
        "a conversation is named by its line"
    );
    assert_eq!(sample.turns[0].content, "a b c");
}

#[test]
fn openai_chat_errors_name_their_line_and_field() {
    let ok = || vec![message("user", "q"), message("assistant", "a")];
    let report = validate(
        OPENAI,
        &jsonl(&[
            json!({"messages": ok()}),
            json!({"messages": ok(), "tools": [{"type": "function"}]}),
            json!({"messages": [message("user", "q"), {"role": "assistant", "content": null, "tool_calls": [{"id": "1"}]}]}),
            json!({"messages": [message("user", "q"), message("tool", "42")]}),
            json!({"messages": [message("User", "q"), message("assistant", "a")]}),
            json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
            json!({"messages": [message("user", "q"), {"role": "assistant", "content": "a", "weight": 2}]}),
            json!({"messages": [{"role": "user", "content": "q", "weight": 0}]}),
            json!({"messages": [{"role": "user"}]}),
            json!({"messages": []}),
            json!({"turns": ok()}),
            json!({"messages": [{"role": "user", "content": 3}]}),
        ]),
    );
    assert_eq!(
        codes(&report.errors),
        vec![
            (2, Some("tools"), "UNSUPPORTED_FEATURE"),
            (3, Some("messages[1].tool_calls"), "UNSUPPORTED_FEATURE"),
            (3, Some("messages[1].content"), "MISSING_FIELD"),
            (4, Some("messages[1].role"), "UNSUPPORTED_FEATURE"),
            (5, Some("messages[0].role"), "INVALID_VALUE"),
            (
                6,
                Some("messages[0].content[0].type"),
                "UNSUPPORTED_FEATURE"
            ),
            (7, Some("messages[1].weight"), "INVALID_VALUE"),
            (8, Some("messages[0].weight"), "INVALID_VALUE"),
            (9, Some("messages[0].content"), "MISSING_FIELD"),
            (10, Some("messages"), "EMPTY_TURNS"),
            (11, Some("messages"), "MISSING_FIELD"),
            (12, Some("messages[0].content"), "INVALID_TYPE"),
        ]
    );
    assert_eq!(
        report.statistics.total_conversations, 1,
        "only line 1 counts"
    );
    assert!(report.errors[0].message.contains("not supported"));
}

#[test]
fn sharegpt_maps_human_and_gpt_and_refuses_tool_turns() {
    let turn = |from: &str, value: &str| json!({"from": from, "value": value});
    let report = validate(
        SHAREGPT,
        &jsonl(&[
            json!({"conversations": [turn("system", "be kind"), turn("human", "hi there"), turn("gpt", "hello")]}),
            json!({"conversations": [turn("human", "q"), turn("narrator", "aside"), turn("gpt", "")]}),
            json!({"conversations": [turn("human", "q"), turn("function_call", "{}")]}),
            json!({"conversations": [{"from": "human"}]}),
            json!({"conversations": "hi"}),
        ]),
    );
    assert_eq!(
        codes(&report.errors),
        vec![
            (3, Some("conversations[1].from"), "UNSUPPORTED_FEATURE"),
            (4, Some("conversations[0].value"), "MISSING_FIELD"),
            (5, Some("conversations"), "INVALID_TYPE"),
        ]
    );
    assert_eq!(
        codes(&report.warnings),
        vec![
            (2, Some("conversations[1].from"), "UNKNOWN_ROLE"),
            (2, Some("conversations[2].value"), "EMPTY_CONTENT"),
        ]
    );
    let s = &report.statistics;
    assert_eq!(s.total_conversations, 2);
    assert_eq!(s.total_training_pairs + s.total_validation_pairs, 2);
    assert_eq!(
        s.total_tokens, 6,
        "be kind, hi there, hello, q; the aside is ignored"
    );
    assert_eq!(
        report.full_statistics.unique_speakers, 3,
        "system, human, gpt"
    );
}

#[test]
fn alpaca_is_one_pair_with_the_input_after_the_instruction() {
    let report = validate(
        ALPACA,
        &jsonl(&[
            json!({"instruction": "translate", "input": "bonjour le monde", "output": "hello world"}),
            json!({"instruction": "say hi", "output": "hi"}),
            json!({"instruction": "say hi", "input": null, "output": "hi"}),
            json!({"input": "x", "output": "y"}),
            json!({"instruction": "a", "input": 5}),
        ]),
    );
    assert_eq!(
        codes(&report.errors),
        vec![
            (4, Some("instruction"), "MISSING_FIELD"),
            (5, Some("input"), "INVALID_TYPE"),
            (5, Some("output"), "MISSING_FIELD"),
        ]
    );
    assert_eq!(
        report.warning_count, 0,
        "identical lines are not duplicates: without ids, each line is its own conversation"
    );
    let s = &report.statistics;
    assert_eq!(s.total_conversations, 3);
    assert_eq!(s.total_training_pairs + s.total_validation_pairs, 3);
    assert_eq!(s.total_tokens, 12, "6 + 3 + 3");
    assert_eq!(
        report.sample_conversations[0].turns[0].content,
        "translate\n\nbonjour le monde"
    );
}

/// The examples the SDK test uploads; the trainer's tests count the same pairs in them
/// (trainer/tests/test_formats.py).
#[test]
fn the_example_files_of_each_new_format_are_training_ready() {
    let examples = [
        (
            OPENAI,
            &include_bytes!("../../../../examples/support-chats-openai.jsonl")[..],
            23,
        ),
        (
            SHAREGPT,
            &include_bytes!("../../../../examples/support-chats-sharegpt.jsonl")[..],
            24,
        ),
        (
            ALPACA,
            &include_bytes!("../../../../examples/support-faq-alpaca.jsonl")[..],
            18,
        ),
    ];
    for (format, bytes, pairs) in examples {
        let report = validate(format, bytes);
        assert!(report.training_ready, "{format:?}: {:?}", report.errors);
        assert_eq!(report.warning_count, 0, "{format:?}: {:?}", report.warnings);
        let s = &report.statistics;
        assert_eq!(s.total_conversations, 18, "{format:?}");
        assert_eq!(
            s.total_training_pairs + s.total_validation_pairs,
            pairs,
            "{format:?}"
        );
    }
}

#[test]
fn a_format_file_read_as_another_format_is_refused_line_by_line() {
    let report = validate(
        ALPACA,
        include_bytes!("../../../../examples/support-chats-openai.jsonl"),
    );
    assert_eq!(
        report.error_count, 36,
        "instruction and output missing on each of 18 lines"
    );
    assert_eq!(report.errors[0].line, 1);
    assert!(!report.training_ready);
}

#[test]
fn a_files_format_is_recognised_by_its_first_line() {
    let examples: [(&[u8], DatasetFormat); 5] = [
        (
            include_bytes!("../../../../examples/support-chats-v4.jsonl"),
            DatasetFormat::BrightrunLoraV4,
        ),
        (
            include_bytes!("../../../../examples/legacy-chats-v3.jsonl"),
            DatasetFormat::BrightrunLoraV3,
        ),
        (
            include_bytes!("../../../../examples/support-chats-openai.jsonl"),
            DatasetFormat::OpenaiChat,
        ),
        (
            include_bytes!("../../../../examples/support-chats-sharegpt.jsonl"),
            DatasetFormat::Sharegpt,
        ),
        (
            include_bytes!("../../../../examples/support-faq-alpaca.jsonl"),
            DatasetFormat::Alpaca,
        ),
    ];
    for (bytes, format) in examples {
        assert_eq!(DatasetFormat::detect(bytes), Some(format));
    }
    assert_eq!(
        DatasetFormat::detect(b"\n  \n{\"instruction\": \"hi\", \"output\": \"ho\"}\n"),
        Some(DatasetFormat::Alpaca),
        "blank lines before the first conversation are skipped"
    );
    assert_eq!(DatasetFormat::detect(b"not json\n"), None);
    assert_eq!(DatasetFormat::detect(b"{\"text\": \"plain\"}\n"), None);
    assert_eq!(DatasetFormat::detect(b""), None);
}

/// A file with a bit of everything, line by line: valid conversations (some with topics,
/// explicit splits, system turns), repeated ids, empty messages, unknown roles, bad JSON,
/// missing fields, blank lines, long conversations.
fn assorted_file(lines: usize) -> Vec<u8> {
    let mut out = String::new();
    for i in 0..lines {
        let line = match i % 11 {
            0 => "not json".to_string(),
            1 => String::new(),
            2 => json!({"conversation_id": format!("c{}", i / 3), "turns": [
                {"role": "user", "content": format!("question {i}")},
                {"role": "assistant", "content": "answer"}]}).to_string(),
            3 => json!({"conversation_id": format!("e{i}"), "turns": [
                {"role": "user", "content": ""},
                {"role": "assistant", "content": "an answer to nothing"}]}).to_string(),
            4 => json!({"conversation_id": format!("r{i}"), "turns": [
                {"role": "User", "content": "hi"}, {"role": "wizard", "content": "boo"},
                {"role": "assistant", "content": "hello"}, {"role": "user", "content": " "}]}).to_string(),
            5 => json!({"turns": []}).to_string(),
            6 => json!({"conversation_id": format!("l{i}"), "turns": [
                {"role": "user", "content": "word ".repeat(40)},
                {"role": "assistant", "content": "ok"}]}).to_string(),
            7 => json!({"conversation_id": format!("t{i}"), "metadata": {"topic": format!("topic {}", i % 5)},
                "split": if i % 2 == 0 { "train" } else { "validation" }, "turns": [
                {"role": "system", "content": "be brief"},
                {"role": "user", "content": format!("q {i}")},
                {"role": "assistant", "content": format!("a {i}")}]}).to_string(),
            _ => json!({"conversation_id": format!("v{i}"), "turns": [
                {"role": "user", "content": format!("hello number {i}")},
                {"role": "assistant", "content": format!("hi {}", i * 7)},
                {"role": "user", "content": "thanks"},
                {"role": "assistant", "content": "welcome"}]}).to_string(),
        };
        out.push_str(&line);
        out.push('\n');
    }
    out.into_bytes()
}

#[test]
fn spread_over_threads_the_report_is_exactly_the_single_threads() {
    let file = assorted_file(6000);
    for max_reported in [3, 100, 10_000] {
        let options = ValidatorOptions {
            max_reported,
            long_conversation_tokens: 30,
            ..ValidatorOptions::default()
        };
        let run = |workers: usize, batch_bytes: usize, chunk: usize| {
            let options = ValidatorOptions { workers, ..options };
            let mut v = Validator::new(V4, &Words, options).in_batches_of(batch_bytes);
            for part in file.chunks(chunk) {
                v.feed(part);
            }
            v.finish()
        };
        let serial = run(1, usize::MAX, file.len());
        assert!(serial.error_count > 0 && serial.warning_count > 0);
        for (workers, batch_bytes, chunk) in [
            (2, usize::MAX, file.len()),
            (3, 60_000, 7_777),
            (8, 1, 100_000),
        ] {
            assert_eq!(
                run(workers, batch_bytes, chunk),
                serial,
                "{workers} workers, batches of {batch_bytes} bytes, chunks of {chunk}, max_reported {max_reported}"
            );
        }
    }
}

#[test]
fn nul_characters_from_the_file_never_reach_the_report() {
    // JSON may escape NUL; Postgres stores it in no text or jsonb value, so an event holding
    // one could not be recorded (and would stop the validation worker on that dataset).
    let lines: Vec<serde_json::Value> = (0..12)
        .map(|i| {
            json!({"conversation_id": format!("c\u{0}{}", i % 11), "metadata": {"topic": "t\u{0}"},
                "turns": [{"role": "user", "content": format!("hi\u{0} {i}")},
                          {"role": "wiz\u{0}ard", "content": "boo"},
                          {"role": "assistant", "content": "ho\u{0}"}]})
        })
        .collect();
    let report = validate(V4, &jsonl(&lines));
    let text = serde_json::to_string(&report).unwrap();
    assert!(!text.contains("\\u0000"), "{text}");
    assert!(
        report.warning_count > 0,
        "the unknown role and the repeated id are reported"
    );
    assert_eq!(
        report.sample_conversations[0].turns[0].content,
        "hi\u{FFFD} 0"
    );
    assert_eq!(
        report.full_statistics.topic_distribution[0].topic,
        "t\u{FFFD}"
    );
    assert_eq!(report.statistics.total_conversations, 12);
}
