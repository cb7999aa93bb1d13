//! Validation throughput and peak memory on a generated file (default 200 MB), beside the
//! floor measured in the same run: tokenizing the same text with the same vocabulary alone,
//! by tiktoken-rs (the reference), and by the validator's own tokenizer (same ids, faster).
//!
//! Run: `cargo bench -p infrastructure --bench validation` (env BENCH_MB, default 200).
//! The file is generated in memory chunk by chunk and fed to the validator in 1 MiB chunks,
//! as the object-store stream will; memory is the process's peak RSS (VmHWM) growth.

use std::time::Instant;

use domain::dataset::validator::{Tokenizer, Validator, ValidatorOptions};
use domain::dataset::DatasetFormat;
use infrastructure::tokenizer::O200k;

const TOPICS: [&str; 4] = ["billing", "shipping", "account", "returns"];

/// One JSONL line, varied so the tokenizer sees a realistic spread of text.
fn conversation(i: u64) -> String {
    let topic = TOPICS[(i % 4) as usize];
    let q = format!("Hello, this is ticket {i}. I have a question about {topic}: my order #{} did not arrive and I was charged {} dollars. What can I do?", i * 7919 % 100_000, i % 300);
    let a = format!("Thanks for reaching out about {topic}. I checked order #{} and issued a refund of {} dollars; you will see it within 5 business days. Anything else?", i * 7919 % 100_000, i % 300);
    serde_json::json!({
        "conversation_id": format!("bench-{i}"),
        "turns": [
            {"role": "system", "content": "You are a concise support agent."},
            {"role": "user", "content": q},
            {"role": "assistant", "content": a},
        ],
        "metadata": {"topic": topic},
    })
    .to_string()
        + "\n"
}

fn peak_rss_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .map(str::to_string)
        })
        .and_then(|l| l.split_whitespace().nth(1).and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// The whole file as 1 MiB chunks, made once so both measurements read the same bytes.
fn chunks(target_bytes: usize) -> (Vec<Vec<u8>>, u64) {
    let mut chunks = Vec::new();
    let mut current = Vec::with_capacity(1 << 20);
    let (mut total, mut i) = (0usize, 0u64);
    while total < target_bytes {
        let line = conversation(i);
        i += 1;
        total += line.len();
        current.extend_from_slice(line.as_bytes());
        if current.len() >= 1 << 20 {
            chunks.push(std::mem::replace(&mut current, Vec::with_capacity(1 << 20)));
        }
    }
    chunks.push(current);
    (chunks, i)
}

fn main() -> anyhow::Result<()> {
    let mb: usize = std::env::var("BENCH_MB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    let tokenizer = O200k::load()?;
    let (file, conversations) = chunks(mb * 1024 * 1024);
    let bytes: usize = file.iter().map(Vec::len).sum();
    let size_mb = bytes as f64 / 1e6;
    println!(
        "validation benchmark: {size_mb:.0} MB, {conversations} conversations, tokenizer {}",
        tokenizer.name()
    );

    // Floor: tiktoken's own encoder on every line's text, nothing else (the reference the
    // validator's tokenizer must equal).
    let reference = tokenizer.reference();
    let started = Instant::now();
    let mut tokens = 0usize;
    for chunk in &file {
        for line in chunk.split(|&b| b == b'\n') {
            tokens += reference.encode_ordinary(std::str::from_utf8(line)?).len();
        }
    }
    let floor = size_mb / started.elapsed().as_secs_f64();
    println!("floor     tiktoken-rs encode_ordinary {floor:>8.1} MB/s  ({tokens} tokens)");

    // The same on two threads, each tokenizing half the chunks: what the machine allows.
    let started = Instant::now();
    let halves: usize = std::thread::scope(|scope| {
        let (a, b) = file.split_at(file.len() / 2);
        let handles: Vec<_> = [a, b]
            .into_iter()
            .map(|part| {
                scope.spawn(move || {
                    part.iter()
                        .flat_map(|chunk| chunk.split(|&b| b == b'\n'))
                        .map(|line| {
                            reference
                                .encode_ordinary(std::str::from_utf8(line).unwrap_or(""))
                                .len()
                        })
                        .sum::<usize>()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap_or(0)).sum()
    });
    let floor2 = size_mb / started.elapsed().as_secs_f64();
    assert_eq!(halves, tokens);
    println!(
        "floor2    tiktoken-rs on 2 threads    {floor2:>8.1} MB/s  ({:.2}x the floor)",
        floor2 / floor
    );

    // The validator's tokenizer alone, one thread: the same ids (checked line by line).
    let started = Instant::now();
    let mut own_tokens = 0usize;
    for chunk in &file {
        for line in chunk.split(|&b| b == b'\n') {
            own_tokens += tokenizer.encode(std::str::from_utf8(line)?).len();
        }
    }
    let own = size_mb / started.elapsed().as_secs_f64();
    assert_eq!(own_tokens, tokens, "the tokenizer disagrees with tiktoken");
    for chunk in file.iter().step_by(16) {
        for line in chunk.split(|&b| b == b'\n') {
            let line = std::str::from_utf8(line)?;
            assert_eq!(
                tokenizer.encode(line),
                reference.encode_ordinary(line),
                "{line}"
            );
        }
    }
    println!(
        "tokenizer {} alone, one thread  {own:>8.1} MB/s  ({:.2}x the floor; same ids)",
        tokenizer.name(),
        own / floor
    );

    let validate = |single: bool| {
        let workers = if single {
            1
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        };
        let mut validator = Validator::new(
            DatasetFormat::BrightrunLoraV4,
            &tokenizer,
            ValidatorOptions {
                workers,
                ..ValidatorOptions::default()
            },
        );
        let started = Instant::now();
        for chunk in &file {
            validator.feed(chunk);
        }
        let report = validator.finish();
        (report, size_mb / started.elapsed().as_secs_f64())
    };
    let (serial, serial_rate) = validate(true);
    println!(
        "validate  on one thread               {serial_rate:>8.1} MB/s  ({:.2}x the floor, {:.2}x its tokenizer alone)",
        serial_rate / floor,
        serial_rate / own
    );
    let before = peak_rss_kib();
    let (report, rate) = validate(false);
    let grown = peak_rss_kib().saturating_sub(before);
    assert!(
        report == serial,
        "the threads' report differs from one thread's"
    );
    println!(
        "validate  on every core (same report) {rate:>8.1} MB/s  ({:.2}x the floor, {:.2}x its tokenizer alone), peak RSS grew {:.1} MiB ({} errors, {} conversations, {} tokens)",
        rate / floor,
        rate / own,
        grown as f64 / 1024.0,
        report.error_count,
        report.statistics.total_conversations,
        report.statistics.total_tokens
    );
    println!(
        "(the generated file itself, {size_mb:.0} MB, was in memory before both measurements)"
    );
    Ok(())
}
