//! The driver's pure parts: the bounded input buffer and the output's newline
//! translation.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

/// The most unread input bytes kept; older ones are dropped beyond this.
pub const CAPACITY: usize = 4096;

/// Typed bytes not yet read by a client, oldest first.
#[derive(Debug, Default)]
pub struct Input {
    bytes: VecDeque<u8>,
    /// Bytes dropped because the buffer was full.
    dropped: u64,
}

impl Input {
    /// Appends a byte, dropping the oldest if the buffer is full.
    pub fn push(&mut self, byte: u8) {
        if self.bytes.len() >= CAPACITY {
            self.bytes.pop_front();
            self.dropped = self.dropped.saturating_add(1);
        }
        self.bytes.push_back(byte);
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// A copy of the oldest `max` bytes at most, left in the buffer (see
    /// [`Input::consume`]): input is taken only once a reply carrying it has
    /// been delivered.
    pub fn peek(&self, max: usize) -> Vec<u8> {
        self.bytes.iter().take(max).copied().collect()
    }

    /// Forgets the oldest `count` bytes.
    pub fn consume(&mut self, count: usize) {
        let count = count.min(self.bytes.len());
        self.bytes.drain(..count);
    }
}

/// Turns `\n` into `\r\n` on the way out, remembering the last byte across
/// writes so that text already ending lines with `\r\n` is left alone.
#[derive(Debug, Default)]
pub struct Output {
    last: u8,
}

impl Output {
    /// Feeds `text` through the translation, byte by byte, to `emit`.
    pub fn translate(&mut self, text: &[u8], mut emit: impl FnMut(u8)) {
        for &byte in text {
            if byte == b'\n' && self.last != b'\r' {
                emit(b'\r');
            }
            emit(byte);
            self.last = byte;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn input_drops_the_oldest_beyond_capacity() {
        let mut input = Input::default();
        for index in 0..CAPACITY + 3 {
            input.push(index as u8);
        }
        assert_eq!(input.dropped(), 3);
        assert_eq!(input.peek(2), vec![3, 4]);
        input.consume(CAPACITY - 1);
        assert_eq!(input.peek(10), vec![(CAPACITY + 2) as u8]);
        input.consume(10);
        assert!(input.is_empty());
    }

    #[test]
    fn peek_leaves_the_bytes_until_consumed() {
        let mut input = Input::default();
        for byte in *b"abc" {
            input.push(byte);
        }
        assert_eq!(input.peek(2), b"ab");
        assert_eq!(input.peek(9), b"abc");
        input.consume(2);
        assert_eq!(input.peek(9), b"c");
    }

    #[test]
    fn newlines_become_crlf_once() {
        let mut output = Output::default();
        let mut bytes = Vec::new();
        output.translate(b"a\nb\r\nc\n", |byte| bytes.push(byte));
        assert_eq!(bytes, b"a\r\nb\r\nc\r\n");
        bytes.clear();
        output.translate(b"\r", |byte| bytes.push(byte));
        output.translate(b"\n\n", |byte| bytes.push(byte));
        assert_eq!(bytes, b"\r\n\r\n");
    }
}
