//! Line editing on a raw serial line: echo, erase, history, and the keys a
//! terminal sends that mean nothing here.
//!
//! [`Editor::feed`] takes one input byte at a time and appends to `echo` what
//! the terminal should show; it returns an [`Event`] when a line is complete
//! or abandoned.

use alloc::collections::VecDeque;
use alloc::string::String;

/// The longest line kept, in bytes; typing beyond it rings the bell.
pub const MAX_LINE: usize = 1024;
/// Lines remembered for Up/Down.
pub const HISTORY: usize = 32;

const BACKSPACE: u8 = 0x08;
const DELETE: u8 = 0x7f;
const CTRL_C: u8 = 0x03;
const CTRL_U: u8 = 0x15;
const ESCAPE: u8 = 0x1b;
const BELL: char = '\x07';
/// What erases one character on the terminal: back, blank, back.
const RUB_OUT: &str = "\x08 \x08";

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// Enter: the line typed (history has it too if not blank).
    Line(String),
    /// Ctrl-C: the line was abandoned.
    Cancelled,
}

/// Where the editor is in an escape sequence.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Escape {
    None,
    /// After ESC.
    Start,
    /// After ESC [ (a control sequence, ended by a byte in 0x40..=0x7e).
    Csi {
        plain: bool,
    },
    /// After ESC O (cursor keys in the terminal's application mode).
    Ss3,
}

#[derive(Debug)]
pub struct Editor {
    line: String,
    /// The bytes so far of a UTF-8 character being typed.
    partial: [u8; 4],
    partial_len: usize,
    escape: Escape,
    /// The last byte was `\r`, so a `\n` right after it ends nothing.
    after_cr: bool,
    history: VecDeque<String>,
    /// The history entry shown, while browsing it with Up/Down.
    browsing: Option<usize>,
}

impl Default for Editor {
    fn default() -> Self {
        Editor::new()
    }
}

impl Editor {
    #[must_use]
    pub fn new() -> Editor {
        Editor {
            line: String::new(),
            partial: [0; 4],
            partial_len: 0,
            escape: Escape::None,
            after_cr: false,
            history: VecDeque::new(),
            browsing: None,
        }
    }

    /// The line typed so far.
    #[cfg(test)]
    #[must_use]
    pub fn line(&self) -> &str {
        &self.line
    }

    /// Handles one input byte.
    pub fn feed(&mut self, byte: u8, echo: &mut String) -> Option<Event> {
        let after_cr = core::mem::replace(&mut self.after_cr, false);
        if self.escape != Escape::None {
            self.escape_byte(byte, echo);
            return None;
        }
        if byte >= 0x80 {
            self.utf8_byte(byte, echo);
            return None;
        }
        self.partial_len = 0;
        match byte {
            b'\r' => {
                self.after_cr = true;
                Some(self.enter(echo))
            }
            b'\n' if after_cr => None,
            b'\n' => Some(self.enter(echo)),
            BACKSPACE | DELETE => {
                if self.line.pop().is_some() {
                    echo.push_str(RUB_OUT);
                }
                None
            }
            CTRL_U => {
                self.replace_line("", echo);
                None
            }
            CTRL_C => {
                self.line.clear();
                self.browsing = None;
                echo.push_str("^C\n");
                Some(Event::Cancelled)
            }
            ESCAPE => {
                self.escape = Escape::Start;
                None
            }
            0x20..=0x7e => {
                self.insert(char::from(byte), echo);
                None
            }
            // Other control characters (Tab, Ctrl-D, ...) mean nothing here.
            _ => None,
        }
    }

    fn enter(&mut self, echo: &mut String) -> Event {
        echo.push('\n');
        self.browsing = None;
        let line = core::mem::take(&mut self.line);
        if !line.trim().is_empty() && self.history.back() != Some(&line) {
            if self.history.len() >= HISTORY {
                self.history.pop_front();
            }
            self.history.push_back(line.clone());
        }
        Event::Line(line)
    }

    fn insert(&mut self, character: char, echo: &mut String) {
        if self.line.len() + character.len_utf8() > MAX_LINE {
            echo.push(BELL);
            return;
        }
        self.line.push(character);
        echo.push(character);
    }

    /// A byte of a multi-byte UTF-8 character: the character is inserted once
    /// whole; a malformed sequence is dropped.
    fn utf8_byte(&mut self, byte: u8, echo: &mut String) {
        let Some(slot) = self.partial.get_mut(self.partial_len) else {
            self.partial_len = 0;
            return;
        };
        *slot = byte;
        self.partial_len += 1;
        let bytes = self.partial.get(..self.partial_len).unwrap_or(&[]);
        match core::str::from_utf8(bytes) {
            Ok(text) => {
                let mut characters = text.chars();
                if let Some(character) = characters.next() {
                    self.insert(character, echo);
                }
                self.partial_len = 0;
            }
            // Incomplete so far: wait for the rest.
            Err(error) if error.error_len().is_none() => {}
            Err(_) => self.partial_len = 0,
        }
    }

    fn escape_byte(&mut self, byte: u8, echo: &mut String) {
        self.escape = match (self.escape, byte) {
            (Escape::Start, b'[') => Escape::Csi { plain: true },
            (Escape::Start, b'O') => Escape::Ss3,
            // Parameters and intermediates: the sequence goes on.
            (Escape::Csi { .. }, 0x20..=0x3f) => Escape::Csi { plain: false },
            (Escape::Csi { plain }, 0x40..=0x7e) => {
                if plain {
                    self.cursor_key(byte, echo);
                }
                Escape::None
            }
            (Escape::Ss3, _) => {
                self.cursor_key(byte, echo);
                Escape::None
            }
            // ESC and another key (Alt-key), or a malformed sequence: dropped.
            _ => Escape::None,
        };
    }

    /// Up and Down browse the history; other keys are ignored.
    fn cursor_key(&mut self, key: u8, echo: &mut String) {
        let last = self.history.len().checked_sub(1);
        let browsing = match (key, self.browsing, last) {
            (b'A', None, Some(last)) => Some(last),
            (b'A', Some(index), _) => Some(index.saturating_sub(1)),
            (b'B', Some(index), Some(last)) if index < last => Some(index + 1),
            (b'B', Some(_), _) => None,
            _ => return,
        };
        let text = browsing
            .and_then(|index| self.history.get(index))
            .cloned()
            .unwrap_or_default();
        self.browsing = browsing;
        self.replace_line(&text, echo);
    }

    /// Erases the line on the terminal and shows `text` in its place.
    fn replace_line(&mut self, text: &str, echo: &mut String) {
        for _ in self.line.chars() {
            echo.push_str(RUB_OUT);
        }
        self.line.clear();
        self.line.push_str(text);
        echo.push_str(text);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec::Vec;

    /// Feeds `input`, returning the events and the echo.
    fn type_in(editor: &mut Editor, input: &[u8]) -> (Vec<Event>, String) {
        let mut echo = String::new();
        let events = input
            .iter()
            .filter_map(|&byte| editor.feed(byte, &mut echo))
            .collect();
        (events, echo)
    }

    fn line(text: &str) -> Event {
        Event::Line(text.to_string())
    }

    #[test]
    fn typing_echoes_and_enter_ends_the_line() {
        let mut editor = Editor::new();
        let (events, echo) = type_in(&mut editor, b"ps\r");
        assert_eq!(events, [line("ps")]);
        assert_eq!(echo, "ps\n");
    }

    #[test]
    fn crlf_is_one_enter_but_lf_alone_is_one_too() {
        let mut editor = Editor::new();
        let (events, _) = type_in(&mut editor, b"a\r\nb\nc\r\r");
        assert_eq!(events, [line("a"), line("b"), line("c"), line("")]);
    }

    #[test]
    fn backspace_and_delete_erase() {
        let mut editor = Editor::new();
        let (events, echo) = type_in(&mut editor, b"lsx\x08\x7f\x7fcat\r");
        assert_eq!(events, [line("cat")]);
        assert_eq!(echo, "lsx\x08 \x08\x08 \x08\x08 \x08cat\n");
        // Erasing an empty line shows nothing.
        let (_, echo) = type_in(&mut editor, b"\x7f");
        assert_eq!(echo, "");
    }

    #[test]
    fn ctrl_u_clears_and_ctrl_c_abandons() {
        let mut editor = Editor::new();
        let (events, echo) = type_in(&mut editor, b"ab\x15c\x03");
        assert_eq!(events, [Event::Cancelled]);
        assert_eq!(echo, "ab\x08 \x08\x08 \x08c^C\n");
        assert_eq!(editor.line(), "");
    }

    #[test]
    fn escape_sequences_are_not_typed() {
        let mut editor = Editor::new();
        // Right, Left, Delete (ESC [ 3 ~), F1 (ESC O P), Alt-x.
        let (events, echo) = type_in(&mut editor, b"a\x1b[C\x1b[D\x1b[3~\x1bOP\x1bxb\r");
        assert_eq!(events, [line("ab")]);
        assert_eq!(echo, "ab\n");
    }

    #[test]
    fn up_and_down_browse_the_history() {
        let mut editor = Editor::new();
        type_in(&mut editor, b"one\rtwo\r\r");
        let (_, echo) = type_in(&mut editor, b"x\x1b[A");
        assert_eq!(editor.line(), "two");
        assert_eq!(echo, "x\x08 \x08two");
        type_in(&mut editor, b"\x1b[A\x1b[A");
        assert_eq!(editor.line(), "one");
        type_in(&mut editor, b"\x1b[B");
        assert_eq!(editor.line(), "two");
        type_in(&mut editor, b"\x1b[B");
        assert_eq!(editor.line(), "");
        // Application-mode cursor keys too.
        let (events, _) = type_in(&mut editor, b"\x1bOA\r");
        assert_eq!(events, [line("two")]);
    }

    #[test]
    fn utf8_is_inserted_whole_and_erased_whole() {
        let mut editor = Editor::new();
        let (events, echo) = type_in(&mut editor, "échoé\x7f\r".as_bytes());
        assert_eq!(events, [line("écho")]);
        assert_eq!(echo, "échoé\x08 \x08\n");
        // A stray continuation byte is dropped.
        let (events, _) = type_in(&mut editor, b"a\x80b\r");
        assert_eq!(events, [line("ab")]);
    }

    #[test]
    fn lines_are_bounded() {
        let mut editor = Editor::new();
        let long = [b'x'; MAX_LINE + 2];
        let (_, echo) = type_in(&mut editor, &long);
        assert_eq!(editor.line().len(), MAX_LINE);
        assert!(echo.ends_with("\x07\x07"));
    }
}
