//! How a Python script ends: an uncaught exception's traceback on stderr and exit code 1,
//! argparse's exit 2, or the interpreter failing to open the script. Also `json.dumps`.

use serde_json::Value;

use crate::argparse::Stop;

/// One traceback frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame {
    pub file: &'static str,
    pub line: u32,
    pub func: &'static str,
    pub code: &'static str,
}

pub const fn frame(file: &'static str, line: u32, func: &'static str, code: &'static str) -> Frame {
    Frame {
        file,
        line,
        func,
        code,
    }
}

/// An exception nobody catches.
#[derive(Debug, Clone)]
pub struct Raised {
    pub exception: String,
    pub message: String,
    pub frames: Vec<Frame>,
    /// What the record calls this ending (`oom`, `guardrail`, `crash`, …).
    pub kind: &'static str,
}

impl Raised {
    pub fn new(exception: &str, message: impl Into<String>, frames: &[Frame]) -> Self {
        Self {
            exception: exception.to_owned(),
            message: message.into(),
            frames: frames.to_vec(),
            kind: "exception",
        }
    }

    pub fn kind(mut self, kind: &'static str) -> Self {
        self.kind = kind;
        self
    }

    pub fn file_not_found(path: &str, frames: &[Frame]) -> Self {
        Self::new(
            "FileNotFoundError",
            format!("[Errno 2] No such file or directory: '{path}'"),
            frames,
        )
        .kind("missing_file")
    }

    /// The traceback as Python prints it, from the script's `<module>` frame down.
    pub fn traceback(&self, script: &str, entry: &str) -> String {
        let mut text = String::from("Traceback (most recent call last):\n");
        text.push_str(&format!(
            "  File \"{script}\", line 1, in <module>\n    {entry}\n"
        ));
        // Python prints module paths absolute; the checkout is the working directory.
        let root = std::env::current_dir().unwrap_or_default();
        for f in &self.frames {
            text.push_str(&format!(
                "  File \"{}\", line {}, in {}\n    {}\n",
                root.join(f.file).display(),
                f.line,
                f.func,
                f.code
            ));
        }
        if self.message.is_empty() {
            text.push_str(&format!("{}\n", self.exception));
        } else {
            text.push_str(&format!("{}: {}\n", self.exception, self.message));
        }
        text
    }
}

/// Why a script stopped early.
#[derive(Debug, Clone)]
pub enum Failure {
    Args(Stop),
    Raised(Raised),
    /// `python: can't open file …` (exit 2).
    CantOpen(String),
    /// A knob or usage problem of the simulator itself (exit 2).
    Sim(String),
    /// A script's own message on stderr and `sys.exit(code)`, with what the record calls it.
    Exit(u8, String, &'static str),
}

impl Failure {
    pub fn exit_code(&self) -> u8 {
        match self {
            Failure::Args(stop) => stop.exit_code(),
            Failure::Raised(_) => 1,
            Failure::CantOpen(_) | Failure::Sim(_) => 2,
            Failure::Exit(code, ..) => *code,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Args(Stop::Help(_)) => "help",
            Failure::Args(Stop::Error(_)) => "usage",
            Failure::Raised(r) => r.kind,
            Failure::CantOpen(_) => "missing_script",
            Failure::Sim(_) => "sim_usage",
            Failure::Exit(_, _, kind) => kind,
        }
    }
}

impl From<Raised> for Failure {
    fn from(r: Raised) -> Self {
        Failure::Raised(r)
    }
}

/// `json.dumps(value)` with Python's defaults: `", "` and `": "` separators, ASCII only.
pub fn dumps(value: &Value) -> String {
    let mut out = String::new();
    write_json(value, &mut out);
    out
}

fn write_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(s) => write_str(s, out),
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                write_str(k, out);
                out.push_str(": ");
                write_json(v, out);
            }
            out.push('}');
        }
    }
}

fn write_str(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (c as u32) > 0x7e => {
                let mut buf = [0u16; 2];
                for unit in c.encode_utf16(&mut buf) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// Python's `str(value)` for a value that came from JSON.
pub fn py_str(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        Value::Null => "None".into(),
        Value::Bool(true) => "True".into(),
        Value::Bool(false) => "False".into(),
        other => dumps(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dumps_matches_python_defaults() {
        let v = json!({"prompt": "café \"x\"\n", "w": [1, 0.5], "n": null, "ok": true});
        assert_eq!(
            dumps(&v),
            r#"{"prompt": "caf\u00e9 \"x\"\n", "w": [1, 0.5], "n": null, "ok": true}"#
        );
        assert_eq!(dumps(&json!("🎬")), r#""\ud83c\udfac""#);
    }

    #[test]
    fn tracebacks_end_with_the_exception_line() {
        let r = Raised::new(
            "ValueError",
            "Must have 'input_video' specified if sigma_max < 80",
            &[frame("a.py", 3, "f", "f()")],
        );
        let text = r.traceback("/workspace/t.py", "main()");
        assert!(text.starts_with("Traceback (most recent call last):\n"));
        assert!(
            text.ends_with("ValueError: Must have 'input_video' specified if sigma_max < 80\n")
        );
        assert!(text.contains("/a.py\", line 3, in f\n    f()\n"), "{text}");
    }
}
