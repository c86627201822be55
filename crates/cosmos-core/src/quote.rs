//! POSIX shell quoting: the one function every command line we print or send goes through
//! (DESIGN.md §3, invariant 4).

use std::borrow::Cow;

fn is_safe(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_@%+=:,./-".contains(&b)
}

/// Quotes one argument so that `sh` reads it back byte for byte as one word.
pub fn shell_quote(arg: &str) -> Cow<'_, str> {
    if !arg.is_empty() && arg.bytes().all(is_safe) {
        return Cow::Borrowed(arg);
    }
    let mut out = String::with_capacity(arg.len() + 2);
    out.push('\'');
    for c in arg.chars() {
        if c == '\'' {
            // Close the quote, emit an escaped quote, reopen.
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    Cow::Owned(out)
}

/// Joins an argument vector into one shell command line.
pub fn shell_join<S: AsRef<str>>(argv: &[S]) -> String {
    argv.iter()
        .map(|a| shell_quote(a.as_ref()))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_table() {
        let cases = [
            ("plain", "plain"),
            ("/a/b-c_d.mp4", "/a/b-c_d.mp4"),
            ("", "''"),
            ("two words", "'two words'"),
            ("it's", "'it'\\''s'"),
            ("$(touch /tmp/pwned)", "'$(touch /tmp/pwned)'"),
            ("`id`", "'`id`'"),
            ("a\nb", "'a\nb'"),
            ("'; rm -rf ~ #", "''\\''; rm -rf ~ #'"),
        ];
        for (arg, want) in cases {
            assert_eq!(shell_quote(arg), want, "{arg:?}");
        }
        assert_eq!(shell_join(&["echo", "a b", "c"]), "echo 'a b' c");
    }
}
