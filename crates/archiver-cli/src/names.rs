//! Names as the terminal sees them: control characters (ESC, BEL, CR, newline, DEL, C1) and bytes
//! that are not UTF-8 are escaped the way GNU tar's default quoting does (`\n`, `\033`, `\\`), so a
//! hostile name can neither rewrite the screen nor forge a line of output.

use std::fmt::Write;
use std::path::Path;

/// `path` with every control character and invalid byte escaped.
pub fn escape(path: &Path) -> String {
    escape_bytes(path.as_os_str().as_encoded_bytes())
}

/// Bytes escaped as [`escape`] does.
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len());
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\\' => out.push_str("\\\\"),
                '\x07' => out.push_str("\\a"),
                '\x08' => out.push_str("\\b"),
                '\x0c' => out.push_str("\\f"),
                '\n' => out.push_str("\\n"),
                '\r' => out.push_str("\\r"),
                '\t' => out.push_str("\\t"),
                '\x0b' => out.push_str("\\v"),
                c if c.is_control() => {
                    let mut buf = [0u8; 4];
                    for b in c.encode_utf8(&mut buf).bytes() {
                        let _ = write!(out, "\\{b:03o}");
                    }
                }
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            let _ = write!(out, "\\{b:03o}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn controls_and_invalid_bytes_are_escaped() {
        assert_eq!(escape_bytes(b"plain/caf\xc3\xa9"), "plain/café");
        assert_eq!(
            escape_bytes(b"a\nb\rc\x1b[2Jd\x07"),
            "a\\nb\\rc\\033[2Jd\\a"
        );
        assert_eq!(escape_bytes(b"back\\slash\x7f"), "back\\\\slash\\177");
        assert_eq!(escape_bytes(b"bad\xff"), "bad\\377");
        assert_eq!(escape_bytes("c1\u{9b}".as_bytes()), "c1\\302\\233");
    }
}
