//! Just enough of Python's `argparse` to reject command lines exactly where `transfer.py` and
//! `torchrun` would: `--opt value` and `--opt=value`, unique-prefix abbreviations, type and
//! choice checks, required options, and the usage/error text with exit code 2.

use serde_json::{Map, Value};

/// What an option takes.
#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Str,
    Int,
    Float,
    /// `store_true`.
    Flag,
    Choice(&'static [&'static str]),
    IntChoice(&'static [i64]),
}

/// One `--option`.
#[derive(Debug, Clone)]
pub struct Opt {
    pub name: &'static str,
    pub kind: Kind,
    pub default: Value,
    pub required: bool,
    /// Another spelling (torchrun accepts `--nproc-per-node` and `--nproc_per_node`).
    pub alias: Option<&'static str>,
}

impl Opt {
    pub fn new(name: &'static str, kind: Kind, default: Value) -> Self {
        Self {
            name,
            kind,
            default,
            required: false,
            alias: None,
        }
    }

    pub fn flag(name: &'static str) -> Self {
        Self::new(name, Kind::Flag, Value::Bool(false))
    }

    pub fn required(mut self) -> Self {
        self.required = true;
        self
    }

    pub fn alias(mut self, alias: &'static str) -> Self {
        self.alias = Some(alias);
        self
    }

    fn dest(&self) -> &'static str {
        self.name.trim_start_matches('-')
    }

    fn metavar(&self) -> String {
        match self.kind {
            Kind::Choice(c) => format!("{{{}}}", c.join(",")),
            Kind::IntChoice(c) => {
                let c: Vec<String> = c.iter().map(i64::to_string).collect();
                format!("{{{}}}", c.join(","))
            }
            _ => self.dest().to_ascii_uppercase().replace('-', "_"),
        }
    }

    fn usage_part(&self) -> String {
        let body = match self.kind {
            Kind::Flag => self.name.to_owned(),
            _ => format!("{} {}", self.name, self.metavar()),
        };
        if self.required {
            body
        } else {
            format!("[{body}]")
        }
    }
}

/// Why parsing stopped: help was asked for (exit 0) or the line is wrong (exit 2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stop {
    Help(String),
    Error(String),
}

impl Stop {
    pub fn exit_code(&self) -> u8 {
        match self {
            Stop::Help(_) => 0,
            Stop::Error(_) => 2,
        }
    }
}

/// A parser for one program.
#[derive(Debug, Clone)]
pub struct Parser {
    pub prog: String,
    pub opts: Vec<Opt>,
    /// Trailing positional part of the usage line (`training_script ...` for torchrun).
    pub positional_usage: Option<&'static str>,
}

/// The parsed options, and what followed them when the parser stops at the first positional.
#[derive(Debug, Clone)]
pub struct Parsed {
    pub values: Map<String, Value>,
    pub rest: Vec<String>,
}

impl Parser {
    pub fn new(prog: impl Into<String>, opts: Vec<Opt>) -> Self {
        Self {
            prog: prog.into(),
            opts,
            positional_usage: None,
        }
    }

    /// `usage: prog [-h] [--a A] …`, wrapped at 78 columns as argparse does without a terminal.
    pub fn usage(&self) -> String {
        let head = format!("usage: {} ", self.prog);
        let mut parts = vec!["[-h]".to_owned()];
        parts.extend(self.opts.iter().map(Opt::usage_part));
        if let Some(p) = self.positional_usage {
            parts.push(p.to_owned());
        }
        let indent = " ".repeat(head.len());
        let mut lines = vec![head.trim_end().to_owned()];
        for part in parts {
            let last = lines.last_mut().expect("usage has a first line");
            if last.len() + 1 + part.len() > 78 && last.len() > indent.len() {
                lines.push(format!("{indent}{part}"));
            } else {
                last.push(' ');
                last.push_str(&part);
            }
        }
        lines.join("\n")
    }

    fn error(&self, message: String) -> Stop {
        Stop::Error(format!(
            "{}\n{}: error: {message}\n",
            self.usage(),
            self.prog
        ))
    }

    fn help(&self) -> Stop {
        let mut text = format!(
            "{}\n\noptions:\n  -h, --help            show this help message and exit\n",
            self.usage()
        );
        for opt in &self.opts {
            let left = match opt.kind {
                Kind::Flag => opt.name.to_owned(),
                _ => format!("{} {}", opt.name, opt.metavar()),
            };
            text.push_str(&format!("  {left}\n"));
        }
        Stop::Help(text)
    }

    fn find(&self, name: &str) -> Result<Option<&Opt>, Stop> {
        if let Some(exact) = self
            .opts
            .iter()
            .find(|o| o.name == name || o.alias == Some(name))
        {
            return Ok(Some(exact));
        }
        let matches: Vec<&Opt> = self
            .opts
            .iter()
            .filter(|o| o.name.starts_with(name) || o.alias.is_some_and(|a| a.starts_with(name)))
            .collect();
        match matches.as_slice() {
            [] => Ok(None),
            [one] => Ok(Some(one)),
            many => {
                let names: Vec<&str> = many.iter().map(|o| o.name).collect();
                Err(self.error(format!(
                    "ambiguous option: {name} could match {}",
                    names.join(", ")
                )))
            }
        }
    }

    fn convert(&self, opt: &Opt, raw: &str) -> Result<Value, Stop> {
        let bad = |what: &str| {
            self.error(format!(
                "argument {}: invalid {what} value: '{raw}'",
                opt.name
            ))
        };
        match opt.kind {
            Kind::Str => Ok(Value::String(raw.to_owned())),
            Kind::Int => python_int(raw).map(Value::from).ok_or_else(|| bad("int")),
            Kind::Float => python_float(raw)
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .ok_or_else(|| bad("float")),
            Kind::Flag => Ok(Value::Bool(true)),
            Kind::Choice(choices) => {
                if choices.contains(&raw) {
                    Ok(Value::String(raw.to_owned()))
                } else {
                    let list: Vec<String> = choices.iter().map(|c| format!("'{c}'")).collect();
                    Err(self.error(format!(
                        "argument {}: invalid choice: '{raw}' (choose from {})",
                        opt.name,
                        list.join(", ")
                    )))
                }
            }
            Kind::IntChoice(choices) => {
                let n = python_int(raw).ok_or_else(|| bad("int"))?;
                if choices.contains(&n) {
                    Ok(Value::from(n))
                } else {
                    let list: Vec<String> = choices.iter().map(i64::to_string).collect();
                    Err(self.error(format!(
                        "argument {}: invalid choice: {n} (choose from {})",
                        opt.name,
                        list.join(", ")
                    )))
                }
            }
        }
    }

    /// Parses `args`. With `stop_at_positional`, the first token that is not an option ends
    /// the options and it and everything after it come back as `rest` (torchrun's script and
    /// its arguments); otherwise stray tokens are "unrecognized arguments".
    pub fn parse(&self, args: &[String], stop_at_positional: bool) -> Result<Parsed, Stop> {
        let mut values = Map::new();
        let mut unrecognized = Vec::new();
        let mut rest = Vec::new();
        let mut i = 0;
        while i < args.len() {
            let token = &args[i];
            i += 1;
            if token == "-h" || token == "--help" {
                return Err(self.help());
            }
            if !token.starts_with("--") || token == "--" {
                if stop_at_positional {
                    let from = if token == "--" { i } else { i - 1 };
                    rest = args[from..].to_vec();
                    break;
                }
                unrecognized.push(token.clone());
                continue;
            }
            let (name, inline) = match token.split_once('=') {
                Some((n, v)) => (n, Some(v)),
                None => (token.as_str(), None),
            };
            let Some(opt) = self.find(name)? else {
                unrecognized.push(token.clone());
                continue;
            };
            let value = match (opt.kind, inline) {
                (Kind::Flag, Some(v)) => {
                    return Err(self.error(format!(
                        "argument {}: ignored explicit argument '{v}'",
                        opt.name
                    )));
                }
                (Kind::Flag, None) => Value::Bool(true),
                (_, Some(v)) => self.convert(opt, v)?,
                (_, None) => {
                    let next = args.get(i).filter(|n| !looks_like_option(n));
                    let Some(raw) = next else {
                        return Err(
                            self.error(format!("argument {}: expected one argument", opt.name))
                        );
                    };
                    i += 1;
                    self.convert(opt, raw)?
                }
            };
            values.insert(opt.dest().replace('-', "_"), value);
        }
        let missing: Vec<&str> = self
            .opts
            .iter()
            .filter(|o| o.required && !values.contains_key(&o.dest().replace('-', "_")))
            .map(|o| o.name)
            .collect();
        if !missing.is_empty() {
            return Err(self.error(format!(
                "the following arguments are required: {}",
                missing.join(", ")
            )));
        }
        if !unrecognized.is_empty() {
            return Err(self.error(format!(
                "unrecognized arguments: {}",
                unrecognized.join(" ")
            )));
        }
        let mut ordered = Map::new();
        for opt in &self.opts {
            let key = opt.dest().replace('-', "_");
            let value = values.remove(&key).unwrap_or_else(|| opt.default.clone());
            ordered.insert(key, value);
        }
        Ok(Parsed {
            values: ordered,
            rest,
        })
    }
}

/// argparse treats `-5` as a value when no option looks like a negative number.
fn looks_like_option(token: &str) -> bool {
    token.starts_with('-') && token.len() > 1 && python_float(token).is_none()
}

fn python_int(raw: &str) -> Option<i64> {
    raw.trim().replace('_', "").parse().ok()
}

fn python_float(raw: &str) -> Option<f64> {
    let t = raw.trim().to_ascii_lowercase();
    match t.as_str() {
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        "nan" => None,
        _ => t.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parser() -> Parser {
        Parser::new(
            "transfer.py",
            vec![
                Opt::new("--seed", Kind::Int, Value::from(1)),
                Opt::new("--sigma_max", Kind::Float, Value::from(70.0)),
                Opt::new(
                    "--blur_strength",
                    Kind::Choice(&["low", "medium"]),
                    "medium".into(),
                ),
                Opt::new("--controlnet_specs", Kind::Str, Value::Null).required(),
                Opt::flag("--offload_text_encoder_model"),
                Opt::flag("--offload_guardrail_models"),
            ],
        )
    }

    fn args(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    fn error(line: &str) -> String {
        match parser().parse(&args(line), false) {
            Err(Stop::Error(text)) => text.lines().last().unwrap_or_default().to_owned(),
            other => panic!("{line}: expected an error, got {other:?}"),
        }
    }

    #[test]
    fn values_defaults_and_abbreviations_parse_as_argparse_does() {
        let parsed = parser()
            .parse(
                &args("--controlnet_specs=s.json --se 7 --sigma_max -3 --offload_t"),
                false,
            )
            .unwrap();
        let v = &parsed.values;
        assert_eq!(v["seed"], 7);
        assert_eq!(v["sigma_max"], -3.0);
        assert_eq!(v["blur_strength"], "medium");
        assert_eq!(v["offload_text_encoder_model"], true);
        assert_eq!(v["offload_guardrail_models"], false);
        assert_eq!(v["controlnet_specs"], "s.json");
    }

    #[test]
    fn bad_lines_get_argparse_messages() {
        let cases = [
            (
                "--seed 1",
                "transfer.py: error: the following arguments are required: --controlnet_specs",
            ),
            (
                "--controlnet_specs s --frobnicate 3",
                "transfer.py: error: unrecognized arguments: --frobnicate 3",
            ),
            (
                "--controlnet_specs s --seed x",
                "transfer.py: error: argument --seed: invalid int value: 'x'",
            ),
            (
                "--controlnet_specs s --sigma_max",
                "transfer.py: error: argument --sigma_max: expected one argument",
            ),
            (
                "--controlnet_specs s --offload",
                "transfer.py: error: ambiguous option: --offload could match --offload_text_encoder_model, --offload_guardrail_models",
            ),
            (
                "--controlnet_specs s --blur_strength huge",
                "transfer.py: error: argument --blur_strength: invalid choice: 'huge' (choose from 'low', 'medium')",
            ),
            (
                "--controlnet_specs s --offload_guardrail_models=1",
                "transfer.py: error: argument --offload_guardrail_models: ignored explicit argument '1'",
            ),
        ];
        for (line, want) in cases {
            assert_eq!(error(line), want, "{line}");
        }
    }

    #[test]
    fn usage_wraps_under_the_program_name() {
        let usage = parser().usage();
        assert!(
            usage.starts_with("usage: transfer.py [-h] [--seed SEED]"),
            "{usage}"
        );
        assert!(usage.lines().all(|l| l.len() <= 78), "{usage}");
        assert!(
            usage.contains(" --controlnet_specs CONTROLNET_SPECS"),
            "{usage}"
        );
        assert!(
            usage
                .lines()
                .skip(1)
                .all(|l| l.starts_with("                   ")),
            "{usage}"
        );
    }

    #[test]
    fn stopping_at_the_script_keeps_its_arguments() {
        let p = Parser::new(
            "torchrun",
            vec![Opt::new("--nnodes", Kind::Str, "1".into())],
        );
        let parsed = p
            .parse(&args("--nnodes=1 script.py --seed 3 --nnodes 9"), true)
            .unwrap();
        assert_eq!(parsed.rest, args("script.py --seed 3 --nnodes 9"));
    }
}
