//! The BPE tokenizer behind the domain's `Tokenizer` port: tiktoken's o200k_base vocabulary,
//! compiled into the binary (no download), loaded once per process on first use.
//!
//! The ids are tiktoken's (`CoreBPE::encode_ordinary`), found faster. tiktoken splits text
//! into pieces with a regex whose one lookahead (`\s+(?!\S)`) makes it a backtracking
//! `fancy_regex`; here the pattern without that branch runs as an anchored lazy DFA
//! (regex-automata, a cache per thread), and what the lookahead does is done by hand: a run
//! of spaces followed by a word leaves its last space to the word. Each piece is then looked
//! up in the vocabulary, or merged by tiktoken's own byte-pair code.

use std::cell::RefCell;
use std::sync::OnceLock;

use domain::dataset::validator::Tokenizer;
use regex_automata::meta::{Cache, Regex};
use regex_automata::{Anchored, Input};
use rustc_hash::FxHashMap;
use tiktoken_rs::CoreBPE;

/// The branch of o200k's pattern that needs a lookahead.
const LOOKAHEAD_BRANCH: &str = r"|\s+(?!\S)";
/// The pattern's last branch; as a pattern of its own, so a match says it came from there.
const SPACES: &str = r"\s+";
/// Pieces this long or longer go to tiktoken whole (its merge of long pieces is not
/// quadratic; `byte_pair_split` is).
const LONG_PIECE: usize = 100;

struct Vocabulary {
    /// tiktoken's: the reference, and the encoder of long pieces.
    core: CoreBPE,
    ranks: FxHashMap<Vec<u8>, u32>,
    /// Pattern 0: o200k's branches before the lookahead; pattern 1: `\s+`.
    split: Regex,
}

pub struct O200k {
    vocabulary: &'static Vocabulary,
}

impl O200k {
    /// Loads the vocabulary (about a second in a debug build) the first time.
    pub fn load() -> anyhow::Result<O200k> {
        static VOCABULARY: OnceLock<Result<Vocabulary, String>> = OnceLock::new();
        match VOCABULARY.get_or_init(|| Vocabulary::load().map_err(|e| format!("{e:#}"))) {
            Ok(vocabulary) => Ok(O200k { vocabulary }),
            Err(e) => Err(anyhow::anyhow!(
                "cannot load the o200k_base vocabulary: {e}"
            )),
        }
    }

    /// tiktoken's own encoding of `text`: what `encode` must equal.
    pub fn reference(&self) -> &CoreBPE {
        &self.vocabulary.core
    }
}

impl Vocabulary {
    fn load() -> anyhow::Result<Vocabulary> {
        let core = tiktoken_rs::o200k_base()?;
        let special = core.special_tokens();
        let mut ranks = FxHashMap::default();
        // Every ordinary token's bytes, read back through the public decoder (o200k's ranks
        // are below 2^18).
        for rank in 0..1 << 18 {
            let Ok(bytes) = core.decode_bytes(&[rank]) else {
                continue;
            };
            if std::str::from_utf8(&bytes).is_ok_and(|s| special.contains(s)) {
                continue;
            }
            ranks.insert(bytes, rank);
        }
        anyhow::ensure!(
            ranks.len() > 199_000,
            "only {} tokens read back from o200k_base",
            ranks.len()
        );
        let pattern = tiktoken_rs::O200K_BASE_PAT_STR;
        anyhow::ensure!(
            pattern.ends_with(&format!("{LOOKAHEAD_BRANCH}|{SPACES}")),
            "o200k's pattern changed; the split must be checked again"
        );
        let before = &pattern[..pattern.len() - LOOKAHEAD_BRANCH.len() - SPACES.len() - 1];
        let split = Regex::new_many(&[before, SPACES])?;
        Ok(Vocabulary { core, ranks, split })
    }

    fn encode(&self, text: &str, cache: &mut Cache, out: &mut Vec<u32>) {
        let mut at = 0;
        while at < text.len() {
            let input = Input::new(text).range(at..).anchored(Anchored::Yes);
            // Every character is matched by some branch; should none be, one byte is a piece.
            let mut end = self.split.search_with(cache, &input).map_or(at + 1, |m| {
                let mut end = m.end();
                // `\s+` only where `\s+(?!\S)` failed: spaces before a non-space lose
                // their last one to what follows (unless there is only one).
                if m.pattern().as_usize() == 1 && end < text.len() {
                    let last = text[at..end].chars().next_back().map_or(0, char::len_utf8);
                    if end - at > last {
                        end -= last;
                    }
                }
                end
            });
            while !text.is_char_boundary(end) {
                end += 1;
            }
            self.piece(&text[at..end], out);
            at = end;
        }
    }

    fn piece(&self, piece: &str, out: &mut Vec<u32>) {
        let bytes = piece.as_bytes();
        if let Some(&rank) = self.ranks.get(bytes) {
            out.push(rank);
        } else if bytes.len() >= LONG_PIECE {
            // A piece alone splits into itself again (no branch looks past it but the one
            // handled above, which at the end of text takes the whole run).
            out.extend(self.core.encode_ordinary(piece));
        } else {
            for part in tiktoken_rs::byte_pair_split(bytes, &self.ranks) {
                match self.ranks.get(part) {
                    Some(&rank) => out.push(rank),
                    // Not reachable with a whole vocabulary (every byte is a token).
                    None => out.extend(self.core.encode_ordinary(&String::from_utf8_lossy(part))),
                }
            }
        }
    }
}

thread_local! {
    /// The lazy DFA's scratch of this thread (one vocabulary per process).
    static CACHE: RefCell<Option<Cache>> = const { RefCell::new(None) };
}

impl Tokenizer for O200k {
    fn name(&self) -> &str {
        "o200k_base"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 4 + 1);
        CACHE.with_borrow_mut(|slot| {
            let cache = slot.get_or_insert_with(|| self.vocabulary.split.create_cache());
            self.vocabulary.encode(text, cache, &mut out);
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_tokens_with_the_real_vocabulary() {
        let t = O200k::load().unwrap();
        assert_eq!(t.name(), "o200k_base");
        assert!(t.encode("").is_empty());
        // One token per common English word with its leading space.
        assert_eq!(t.encode("hello world").len(), 2);
        // Round trip: the ids decode to the text.
        let ids = t.encode("LoRA adapters from conversations, 2024.");
        assert_eq!(
            t.reference().decode(&ids).unwrap(),
            "LoRA adapters from conversations, 2024."
        );
    }

    /// Text made to visit every branch of the pattern and the seams between them: runs of
    /// each kind of space and line break, letters of several scripts and cases, combining
    /// marks, digits, punctuation, contractions, emoji, long words.
    fn mixed(seed: u64, len: usize) -> String {
        const PARTS: &[&str] = &[
            " ",
            "  ",
            "   ",
            "\t",
            "\n",
            "\r\n",
            "\n\n",
            " \n ",
            "\u{a0}",
            "\u{3000}",
            "\u{2028}",
            "\u{85}",
            "\u{b}",
            "\u{c}",
            "a",
            "Z",
            "hello",
            "World",
            "LoRA",
            "ÉCOLE",
            "straße",
            "ǅemal",
            "ʰ",
            "日本語",
            "кот",
            "Δέλτα",
            "ق",
            "e\u{301}",
            "\u{301}",
            "0",
            "12",
            "1234567",
            "٣",
            "½",
            "'s",
            "'LL",
            "'t",
            "’",
            "!",
            "...",
            "#",
            "/",
            "//",
            "\\",
            "\"",
            "{",
            "}",
            "😀",
            "👍🏽",
            "-",
            "_",
            "$5",
            "\u{200b}",
            "\u{0}",
            "\u{1f}",
            "x\u{feff}",
            "https://example.com/a?b=c",
        ];
        let mut state = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let mut text = String::new();
        while text.len() < len {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            text.push_str(PARTS[(state >> 33) as usize % PARTS.len()]);
        }
        text
    }

    #[test]
    fn encodes_exactly_as_tiktoken_does() {
        let t = O200k::load().unwrap();
        let reference = t.reference();
        let mut samples: Vec<String> = (0..3000)
            .map(|seed| mixed(seed, 1 + seed as usize % 200))
            .collect();
        samples.extend([
            String::new(),
            " ".into(),
            "  ".into(),
            "a  ".into(),
            "  a".into(),
            "\n".into(),
            " \n".into(),
            "x \n  y".into(),
            "word".repeat(400),
            format!("{}é", "é".repeat(150)),
            " ".repeat(300) + "x",
            "1".repeat(301),
            "!?".repeat(200),
            include_str!("../../examples/support-chats-v4.jsonl").to_string(),
        ]);
        for text in &samples {
            assert_eq!(t.encode(text), reference.encode_ordinary(text), "{text:?}");
        }
    }
}
