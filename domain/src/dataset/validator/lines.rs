//! Splits a byte stream into lines with bounded memory: chunks go in as they arrive (from an
//! object store, a request body), complete lines come out; a line longer than the limit is
//! reported as such and skipped to its end, never buffered whole.

/// One line of the input, numbered from 1.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    /// The line's bytes, without the `\n` (and without a `\r` before it).
    Complete { number: u64, bytes: Vec<u8> },
    /// The line passed the limit; `length` is its full length in bytes.
    TooLong { number: u64, length: u64 },
}

#[derive(Debug)]
pub struct LineSplitter {
    max_line_bytes: usize,
    buffer: Vec<u8>,
    /// Bytes of the current line seen so far while it is being skipped.
    skipping: Option<u64>,
    number: u64,
    bytes_seen: u64,
}

impl LineSplitter {
    pub fn new(max_line_bytes: usize) -> LineSplitter {
        LineSplitter {
            max_line_bytes,
            buffer: Vec::new(),
            skipping: None,
            number: 0,
            bytes_seen: 0,
        }
    }

    pub fn bytes_seen(&self) -> u64 {
        self.bytes_seen
    }

    /// Feeds a chunk; `emit` receives every line the chunk completes.
    pub fn feed(&mut self, mut chunk: &[u8], emit: &mut impl FnMut(Line)) {
        self.bytes_seen += chunk.len() as u64;
        while !chunk.is_empty() {
            let newline = chunk.iter().position(|&b| b == b'\n');
            let (part, rest, ends_line) = match newline {
                Some(i) => (&chunk[..i], &chunk[i + 1..], true),
                None => (chunk, &chunk[chunk.len()..], false),
            };
            chunk = rest;
            if let Some(skipped) = self.skipping.as_mut() {
                *skipped += part.len() as u64;
            } else if self.buffer.len() + part.len() > self.max_line_bytes {
                self.skipping = Some((self.buffer.len() + part.len()) as u64);
                self.buffer = Vec::new();
            } else {
                self.buffer.extend_from_slice(part);
            }
            if ends_line {
                self.end_line(emit);
            }
        }
    }

    /// Ends the input: a last line without a trailing newline is emitted too.
    pub fn finish(&mut self, emit: &mut impl FnMut(Line)) {
        if self.skipping.is_some() || !self.buffer.is_empty() {
            self.end_line(emit);
        }
    }

    fn end_line(&mut self, emit: &mut impl FnMut(Line)) {
        self.number += 1;
        match self.skipping.take() {
            Some(length) => emit(Line::TooLong {
                number: self.number,
                length,
            }),
            None => {
                let mut bytes = std::mem::take(&mut self.buffer);
                if bytes.last() == Some(&b'\r') {
                    bytes.pop();
                }
                emit(Line::Complete {
                    number: self.number,
                    bytes,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(chunks: &[&[u8]], max: usize) -> Vec<Line> {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.feed(c, &mut |l| out.push(l));
        }
        s.finish(&mut |l| out.push(l));
        out
    }

    fn complete(number: u64, text: &str) -> Line {
        Line::Complete {
            number,
            bytes: text.as_bytes().to_vec(),
        }
    }

    #[test]
    fn lines_split_across_chunks_are_joined() {
        let lines = split(&[b"ab", b"c\nde", b"f\r\n", b"g"], 100);
        assert_eq!(
            lines,
            vec![complete(1, "abc"), complete(2, "def"), complete(3, "g")]
        );
    }

    #[test]
    fn empty_lines_keep_their_numbers() {
        let lines = split(&[b"a\n\nb\n"], 100);
        assert_eq!(
            lines,
            vec![complete(1, "a"), complete(2, ""), complete(3, "b")]
        );
    }

    #[test]
    fn a_line_over_the_limit_is_reported_with_its_length_and_skipped() {
        let long = [b'x'; 25];
        let lines = split(&[b"ok\n", &long[..10], &long[10..], b"\nafter\n"], 8);
        assert_eq!(
            lines,
            vec![
                complete(1, "ok"),
                Line::TooLong {
                    number: 2,
                    length: 25
                },
                complete(3, "after")
            ]
        );
    }

    #[test]
    fn the_buffer_never_grows_past_the_limit() {
        let mut s = LineSplitter::new(1024);
        let chunk = vec![b'y'; 64 * 1024];
        let mut out = Vec::new();
        for _ in 0..160 {
            s.feed(&chunk, &mut |l| out.push(l));
            assert!(
                s.buffer.capacity() <= 64 * 1024,
                "buffer grew to {}",
                s.buffer.capacity()
            );
        }
        s.finish(&mut |l| out.push(l));
        assert_eq!(
            out,
            vec![Line::TooLong {
                number: 1,
                length: 160 * 64 * 1024
            }]
        );
    }

    #[test]
    fn an_empty_input_has_no_lines() {
        assert!(split(&[], 10).is_empty());
        assert!(split(&[b""], 10).is_empty());
    }
}
