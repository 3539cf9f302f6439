//! Refuses SQL text that MariaDB/MySQL and `sqlparser` could read differently, before anything
//! classifies it (docs/security.md, layer 4).
//!
//! The scan follows the servers' lexer, not sqlparser's: string literals (`'…'`, `"…"`, with
//! backslash escapes and doubled quotes, as under the `sql_mode` the proxy pins), quoted
//! identifiers (`` `…` ``), and the three comment forms (`#`, `-- `, `/* */`). Outside literals
//! and identifiers it refuses what the two readers disagree on: executable comments (`/*!`,
//! `/*M!`), a `/*` inside a comment (sqlparser may nest, the servers do not), a `--` that is
//! neither followed by a plain space, tab or line break nor at the end, any non-ASCII character
//! (Rust's `is_whitespace` and the servers' lexer differ on Unicode spaces) and control
//! characters other than tab, line feed and carriage return. Optimizer hints (`/*+ … */`) pass.
//! A literal with a prefix (`X'…'`, `b'…'`, `N'…'`, `_utf8mb4'…'`) must be single-quoted and
//! hold no backslash: sqlparser reads `b"\"…"` as a byte string without escapes where the
//! servers read an identifier and an escaped string.
//!
//! `check` returns the shape it found (how many literals, comments and quoted identifiers), and
//! the classifier requires sqlparser's tokens to have the same shape: whatever this scan and
//! sqlparser disagree on that is not listed above is refused too.

/// Why a text was refused; the message names the byte offset.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Ambiguity {
    #[error("executable comment ({0}) at byte {1}: sqlgate refuses SQL the server and its classifier could read differently")]
    ExecutableComment(&'static str, usize),
    #[error("'/*' inside a comment at byte {0}: comments do not nest on the server")]
    NestedComment(usize),
    #[error("'--' at byte {0} must be followed by a space, tab or line break (or use '- -')")]
    DashDash(usize),
    #[error("non-ASCII character U+{0:04X} at byte {1} outside a string literal or quoted identifier (quote it)")]
    NonAscii(u32, usize),
    #[error("control character 0x{0:02X} at byte {1} outside a string literal")]
    Control(u8, usize),
    #[error("unterminated {0} starting at byte {1}")]
    Unterminated(&'static str, usize),
    #[error("a literal with a prefix (X'…', b'…', N'…', _charset'…') at byte {0} must use single quotes and hold no backslash")]
    PrefixedLiteral(usize),
}

/// What the scan found outside the SQL's ordinary tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Shape {
    /// String literals (`'…'`, `"…"`, prefixed ones), each counted once.
    pub literals: usize,
    /// Comments of any form, optimizer hints included.
    pub comments: usize,
    /// Backtick-quoted identifiers.
    pub identifiers: usize,
}

/// Checks `sql` as described in the module comment; returns its shape.
pub fn check(sql: &str) -> Result<Shape, Ambiguity> {
    let b = sql.as_bytes();
    let mut shape = Shape::default();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        match c {
            b'\'' | b'"' => {
                let end = skip_string(b, i)?;
                let prefixed = i > 0 && is_word_byte(b[i - 1]);
                if prefixed && (c == b'"' || b[i..end].contains(&b'\\')) {
                    return Err(Ambiguity::PrefixedLiteral(i));
                }
                shape.literals += 1;
                i = end;
            }
            b'`' => {
                i = skip_identifier(b, i)?;
                shape.identifiers += 1;
            }
            b'#' => {
                i = skip_line_comment(sql, i)?;
                shape.comments += 1;
            }
            b'-' if b.get(i + 1) == Some(&b'-') => match b.get(i + 2) {
                None | Some(b' ' | b'\t' | b'\n' | b'\r') => {
                    i = skip_line_comment(sql, i)?;
                    shape.comments += 1;
                }
                Some(_) => return Err(Ambiguity::DashDash(i)),
            },
            b'/' if b.get(i + 1) == Some(&b'*') => {
                i = skip_block_comment(sql, i)?;
                shape.comments += 1;
            }
            b'\t' | b'\n' | b'\r' => i += 1,
            0..=0x1f | 0x7f => return Err(Ambiguity::Control(c, i)),
            0x80.. => return Err(non_ascii(sql, i)),
            _ => i += 1,
        }
    }
    Ok(shape)
}

/// A text whose `:name` placeholders were rewritten to `?`, with the names in order of
/// appearance (a name used twice appears twice).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub sql: String,
    pub names: Vec<String>,
}

/// Rewrites each `:name` placeholder (`:` then a letter or `_`, then letters, digits, `_`) to
/// `?`, with the same scan as `check`: inside a string literal, a quoted identifier or a comment
/// it is text, not a placeholder. A `:` right after a word byte or another `:` (`a:b`, `::x`),
/// and `:=`, are left as they are. The caller classifies the rewritten text, so what the server
/// receives is what was checked.
pub fn rewrite_named(sql: &str) -> Result<Named, Ambiguity> {
    let b = sql.as_bytes();
    let mut out = String::with_capacity(sql.len());
    let mut names = Vec::new();
    let (mut i, mut copied) = (0, 0);
    while i < b.len() {
        match b[i] {
            b'\'' | b'"' => i = skip_string(b, i)?,
            b'`' => i = skip_identifier(b, i)?,
            b'#' => i = skip_line_comment(sql, i)?,
            b'-' if b.get(i + 1) == Some(&b'-')
                && matches!(b.get(i + 2), None | Some(b' ' | b'\t' | b'\n' | b'\r')) =>
            {
                i = skip_line_comment(sql, i)?
            }
            b'/' if b.get(i + 1) == Some(&b'*') => i = skip_block_comment(sql, i)?,
            b':' if placeholder_starts(b, i) => {
                let end = b[i + 1..]
                    .iter()
                    .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    .map_or(b.len(), |n| i + 1 + n);
                out.push_str(&sql[copied..i]);
                out.push('?');
                names.push(sql[i + 1..end].to_string());
                copied = end;
                i = end;
            }
            _ => i += 1,
        }
    }
    out.push_str(&sql[copied..]);
    Ok(Named { sql: out, names })
}

/// Whether the `:` at `i` starts a `:name` placeholder.
fn placeholder_starts(b: &[u8], i: usize) -> bool {
    let after = b
        .get(i + 1)
        .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
    let before = i > 0 && (is_word_byte(b[i - 1]) || b[i - 1] == b':');
    after && !before
}

/// A byte that can end an identifier or a number (what a literal prefix is made of).
fn is_word_byte(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b'$'
}

fn non_ascii(sql: &str, at: usize) -> Ambiguity {
    let ch = sql[at..].chars().next().map_or(0, u32::from);
    Ambiguity::NonAscii(ch, at)
}

/// Skips `'…'` or `"…"` starting at `start`; returns the index after the closing quote.
/// Backslash escapes the next byte; a doubled quote is a literal quote.
fn skip_string(b: &[u8], start: usize) -> Result<usize, Ambiguity> {
    let q = b[start];
    let mut i = start + 1;
    while i < b.len() {
        match b[i] {
            b'\\' => i += 2,
            x if x == q => {
                if b.get(i + 1) == Some(&q) {
                    i += 2;
                } else {
                    return Ok(i + 1);
                }
            }
            _ => i += 1,
        }
    }
    Err(Ambiguity::Unterminated("string literal", start))
}

/// Skips `` `…` `` (a doubled backtick is a literal one); no escapes inside.
fn skip_identifier(b: &[u8], start: usize) -> Result<usize, Ambiguity> {
    let mut i = start + 1;
    while i < b.len() {
        if b[i] == b'`' {
            if b.get(i + 1) == Some(&b'`') {
                i += 2;
            } else {
                return Ok(i + 1);
            }
        } else {
            i += 1;
        }
    }
    Err(Ambiguity::Unterminated("quoted identifier", start))
}

/// Skips a `#` or `-- ` comment up to and including the line feed. The comment's own text is
/// held to the same character rules: a server and a parser must agree where it ends.
fn skip_line_comment(sql: &str, start: usize) -> Result<usize, Ambiguity> {
    let b = sql.as_bytes();
    let mut i = start;
    while i < b.len() && b[i] != b'\n' {
        comment_byte(sql, i)?;
        i += 1;
    }
    Ok(i + 1)
}

/// Skips `/* … */`; refuses executable comments and a `/*` inside.
fn skip_block_comment(sql: &str, start: usize) -> Result<usize, Ambiguity> {
    let b = sql.as_bytes();
    match b.get(start + 2) {
        Some(b'!') => return Err(Ambiguity::ExecutableComment("/*!", start)),
        Some(b'M' | b'm') if b.get(start + 3) == Some(&b'!') => {
            return Err(Ambiguity::ExecutableComment("/*M!", start))
        }
        _ => {}
    }
    let mut i = start + 2;
    while i < b.len() {
        if b[i] == b'*' && b.get(i + 1) == Some(&b'/') {
            return Ok(i + 2);
        }
        if b[i] == b'/' && b.get(i + 1) == Some(&b'*') {
            return Err(Ambiguity::NestedComment(i));
        }
        comment_byte(sql, i)?;
        i += 1;
    }
    Err(Ambiguity::Unterminated("comment", start))
}

fn comment_byte(sql: &str, i: usize) -> Result<(), Ambiguity> {
    match sql.as_bytes()[i] {
        b'\t' | b'\n' | b'\r' => Ok(()),
        c @ (0..=0x1f | 0x7f) => Err(Ambiguity::Control(c, i)),
        0x80.. => Err(non_ascii(sql, i)),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_placeholders_are_rewritten_outside_literals_and_comments() {
        let n = rewrite_named(
            "SELECT :id, ':id', \":x\", `:y`, /* :c */ :id2 -- :d\n FROM t WHERE a = :id # :e",
        )
        .unwrap();
        assert_eq!(
            n.sql,
            "SELECT ?, ':id', \":x\", `:y`, /* :c */ ? -- :d\n FROM t WHERE a = ? # :e"
        );
        assert_eq!(n.names, ["id", "id2", "id"]);
        for plain in [
            "SELECT @a := 1",
            "SELECT a:b",
            "SELECT ::x",
            "SELECT :1",
            "SELECT ':x'",
        ] {
            let n = rewrite_named(plain).unwrap();
            assert_eq!((n.sql.as_str(), n.names.len()), (plain, 0), "{plain}");
        }
        let n = rewrite_named("SELECT :_a1,:b").unwrap();
        assert_eq!(
            (n.sql.as_str(), &n.names[..]),
            ("SELECT ?,?", &["_a1".to_string(), "b".into()][..])
        );
        assert!(rewrite_named("SELECT ':x").is_err(), "unterminated literal");
    }

    #[test]
    fn cases() {
        let cases: &[(&str, bool, &str)] = &[
            ("SELECT 1", true, "plain"),
            (
                "SELECT 'é' AS `ü`",
                true,
                "non-ASCII inside literal and identifier",
            ),
            ("SELECT \"a\\\"b\"", true, "escaped double quote"),
            ("SELECT 'it''s'", true, "doubled quote"),
            (
                "SELECT 'a\\'' -- x\n",
                true,
                "backslash-escaped quote then comment",
            ),
            (
                "SELECT /*+ MAX_EXECUTION_TIME(1) */ 1",
                true,
                "optimizer hint",
            ),
            ("SELECT 1 -- comment", true, "dash-dash space"),
            ("SELECT 1 --", true, "dash-dash at end"),
            ("SELECT 1\t--\tx", true, "dash-dash tab"),
            ("SELECT 1 # hash comment\n, 2", true, "hash comment"),
            ("SELECT 1 /* c */", true, "block comment"),
            ("SELECT '/*!'", true, "executable marker inside a string"),
            ("SELECT `--x`", true, "dash-dash inside identifier"),
            ("SELECT 1\r\n", true, "CRLF"),
            (
                "/*M! DELETE FROM t */ SELECT 1",
                false,
                "MariaDB executable comment",
            ),
            (
                "/*M!100000 DELETE FROM t */ SELECT 1",
                false,
                "versioned MariaDB comment",
            ),
            ("/*m! DELETE */ SELECT 1", false, "lower-case m"),
            ("SELECT /*!99999 1, */ 2", false, "MySQL executable comment"),
            ("SELECT 1 /*! , 2 */", false, "bare /*!"),
            (
                "SELECT 1 --\u{a0} FROM t; DELETE",
                false,
                "NBSP after dash-dash",
            ),
            ("SELECT 1 --x", false, "dash-dash letter"),
            ("SELECT 1--1", false, "dash-dash digit"),
            ("SELECT\u{a0}1", false, "NBSP as whitespace"),
            ("SELECT\u{2028}1", false, "line separator"),
            ("SELECT 1 /* é */", false, "non-ASCII in comment"),
            ("SELECT 1 # é\n", false, "non-ASCII in hash comment"),
            ("SELECT\u{0b}1", false, "vertical tab"),
            ("SELECT\u{0}1", false, "NUL"),
            ("SELECT 1\u{7f}", false, "DEL"),
            (
                "SELECT 1 /* a /* b */ DELETE */",
                false,
                "nested comment opener",
            ),
            ("SELECT 'abc", false, "unterminated string"),
            ("SELECT `abc", false, "unterminated identifier"),
            ("SELECT 1 /* abc", false, "unterminated comment"),
            ("SELECT ä FROM t", false, "unquoted non-ASCII identifier"),
            (
                "SELECT X'0A', b'101', N'abc', _utf8mb4'abc'",
                true,
                "prefixed literals",
            ),
            (
                "SELECT b\"\\\" ,1 \", 2 -- \"",
                false,
                "b-prefixed double-quoted literal",
            ),
            ("SELECT B\"x\"", false, "B-prefixed double quotes"),
            (
                "SELECT _utf8mb4'\\''",
                false,
                "backslash in a prefixed literal",
            ),
            (
                "SELECT N'it''s'",
                true,
                "doubled quote in a prefixed literal",
            ),
        ];
        for (sql, ok, what) in cases {
            let r = check(sql);
            assert_eq!(r.is_ok(), *ok, "case '{what}': {sql:?} -> {r:?}");
        }
    }

    #[test]
    fn shapes() {
        let s = check("SELECT 'a', \"b\", `c` /* d */ -- e\n# f\n").unwrap();
        assert_eq!(
            s,
            Shape {
                literals: 2,
                comments: 3,
                identifiers: 1
            }
        );
    }
}
