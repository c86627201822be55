//! Host aliases from `~/.ssh/config`: the keys cosmos honours (HostName, User, Port,
//! IdentityFile, ProxyJump), with OpenSSH's rule that the first value obtained wins.

use std::path::{Path, PathBuf};

/// What the config file says about one host alias.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostEntry {
    pub host_name: Option<String>,
    pub user: Option<String>,
    pub port: Option<u16>,
    pub identity_file: Option<PathBuf>,
    pub proxy_jump: Option<String>,
}

impl HostEntry {
    pub fn is_empty(&self) -> bool {
        *self == HostEntry::default()
    }
}

/// OpenSSH's pattern match: `*` any run, `?` one character.
fn glob(pattern: &str, text: &str) -> bool {
    let (p, t): (Vec<char>, Vec<char>) = (pattern.chars().collect(), text.chars().collect());
    let (mut pi, mut ti, mut star, mut mark) = (0, 0, None, 0);
    while ti < t.len() {
        if pi < p.len() && (p[pi] == '?' || p[pi].eq_ignore_ascii_case(&t[ti])) {
            pi += 1;
            ti += 1;
        } else if pi < p.len() && p[pi] == '*' {
            star = Some(pi);
            mark = ti;
            pi += 1;
        } else if let Some(s) = star {
            pi = s + 1;
            mark += 1;
            ti = mark;
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|c| *c == '*')
}

fn host_matches(patterns: &[&str], alias: &str) -> bool {
    let mut matched = false;
    for p in patterns {
        if let Some(negated) = p.strip_prefix('!') {
            if glob(negated, alias) {
                return false;
            }
        } else if glob(p, alias) {
            matched = true;
        }
    }
    matched
}

fn expand_home(value: &str, home: &Path) -> PathBuf {
    match value.strip_prefix("~/") {
        Some(rest) => home.join(rest),
        None => PathBuf::from(value),
    }
}

/// Looks `alias` up in config text.
pub fn lookup(text: &str, alias: &str, home: &Path) -> HostEntry {
    let mut entry = HostEntry::default();
    let mut active = true;
    for raw in text.lines() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (key, value) = match line.split_once(|c: char| c == '=' || c.is_whitespace()) {
            Some((k, v)) => (k.trim(), v.trim().trim_start_matches('=').trim()),
            None => continue,
        };
        let value = value.trim_matches('"');
        match key.to_ascii_lowercase().as_str() {
            "host" => {
                let patterns: Vec<&str> = value.split_whitespace().collect();
                active = host_matches(&patterns, alias);
            }
            // Match blocks need evaluation cosmos does not do: their settings are skipped.
            "match" => active = false,
            _ if !active => {}
            "hostname" => {
                entry
                    .host_name
                    .get_or_insert_with(|| value.replace("%h", alias));
            }
            "user" => {
                entry.user.get_or_insert_with(|| value.to_owned());
            }
            "port" if entry.port.is_none() => entry.port = value.parse().ok(),
            "identityfile" => {
                entry
                    .identity_file
                    .get_or_insert_with(|| expand_home(value, home));
            }
            "proxyjump" if entry.proxy_jump.is_none() && !value.eq_ignore_ascii_case("none") => {
                entry.proxy_jump = Some(value.to_owned());
            }
            _ => {}
        }
    }
    entry
}

/// Looks `alias` up in the user's `~/.ssh/config`, if there is one.
pub fn lookup_user(alias: &str) -> HostEntry {
    let Some(home) = std::env::home_dir() else {
        return HostEntry::default();
    };
    match std::fs::read_to_string(home.join(".ssh").join("config")) {
        Ok(text) => lookup(&text, alias, &home),
        Err(_) => HostEntry::default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = "\
# GPU boxes
Host gpu1 gpu1-alt
    HostName 10.0.0.5
    User artist
    Port 2222
    IdentityFile ~/.ssh/gpu_ed25519
    ProxyJump bastion

Host !gpu9 gpu*
    User=fallback
    Port 22

Match host never
    User skipped

Host *
    IdentityFile ~/.ssh/id_default
";

    #[test]
    fn first_value_wins_and_patterns_apply() {
        let home = Path::new("/home/a");
        let e = lookup(CONFIG, "gpu1", home);
        assert_eq!(e.host_name.as_deref(), Some("10.0.0.5"));
        assert_eq!(e.user.as_deref(), Some("artist"));
        assert_eq!(e.port, Some(2222));
        assert_eq!(
            e.identity_file,
            Some(PathBuf::from("/home/a/.ssh/gpu_ed25519"))
        );
        assert_eq!(e.proxy_jump.as_deref(), Some("bastion"));

        let e = lookup(CONFIG, "gpu7", home);
        assert_eq!(e.user.as_deref(), Some("fallback"));
        assert_eq!(e.host_name, None);
        assert_eq!(
            e.identity_file,
            Some(PathBuf::from("/home/a/.ssh/id_default"))
        );

        // Negated: gpu9 does not take the gpu* block.
        let e = lookup(CONFIG, "gpu9", home);
        assert_eq!(e.user, None);
    }

    #[test]
    fn globs() {
        assert!(glob("gpu*", "gpu12"));
        assert!(glob("g?u", "GPU"));
        assert!(!glob("gpu?", "gpu12"));
        assert!(glob("*", ""));
    }
}
