//! The BPE tokenizer behind the domain's `Tokenizer` port: tiktoken's o200k_base vocabulary,
//! compiled into the binary (no download), loaded once per process on first use.

use std::sync::OnceLock;

use domain::dataset::validator::Tokenizer;
use tiktoken_rs::CoreBPE;

pub struct O200k {
    bpe: &'static CoreBPE,
}

impl O200k {
    /// Loads the vocabulary (about a second in a debug build) the first time.
    pub fn load() -> anyhow::Result<O200k> {
        static BPE: OnceLock<Result<CoreBPE, String>> = OnceLock::new();
        match BPE.get_or_init(|| tiktoken_rs::o200k_base().map_err(|e| e.to_string())) {
            Ok(bpe) => Ok(O200k { bpe }),
            Err(e) => Err(anyhow::anyhow!(
                "cannot load the o200k_base vocabulary: {e}"
            )),
        }
    }
}

impl Tokenizer for O200k {
    fn name(&self) -> &str {
        "o200k_base"
    }

    fn encode(&self, text: &str) -> Vec<u32> {
        self.bpe.encode_ordinary(text)
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
            t.bpe.decode(&ids).unwrap(),
            "LoRA adapters from conversations, 2024."
        );
    }
}
