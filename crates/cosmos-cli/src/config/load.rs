//! Resolving the configuration: where the files are, reading the file, applying
//! `COSMOS_<SECTION>_<KEY>` overrides.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use super::{Config, KEYS, SECRET_KEYS, env_name};

/// Where cosmos keeps things.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Paths {
    pub config: PathBuf,
    /// Whether the config path was given explicitly (then it must exist).
    #[serde(skip)]
    pub config_explicit: bool,
    pub data_dir: PathBuf,
}

impl Paths {
    /// `COSMOS_HOME` holds everything; otherwise the platform's config and data directories.
    pub fn resolve(env: &BTreeMap<String, String>, config_flag: Option<&Path>) -> Result<Self> {
        let explicit = config_flag.map(Path::to_path_buf).or_else(|| {
            env.get("COSMOS_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        let (default_config, data_dir) = match env.get("COSMOS_HOME").filter(|v| !v.is_empty()) {
            Some(home) => {
                let home = PathBuf::from(home);
                (home.join("cosmos.toml"), home)
            }
            None => {
                let dirs = directories::ProjectDirs::from("", "", "cosmos").context(
                    "cannot find a home directory for cosmos's files; set COSMOS_HOME to a folder",
                )?;
                (
                    dirs.config_dir().join("cosmos.toml"),
                    dirs.data_dir().to_path_buf(),
                )
            }
        };
        Ok(Self {
            config_explicit: explicit.is_some(),
            config: explicit.unwrap_or(default_config),
            data_dir,
        })
    }
}

/// The configuration in force, with where it came from.
#[derive(Debug, Clone)]
pub struct Settings {
    pub paths: Paths,
    pub config: Config,
    pub config_loaded: bool,
    /// The session bus (`DBUS_SESSION_BUS_ADDRESS`), where an OS keyring may be.
    pub session_bus: Option<String>,
    /// Secrets given by environment variables (they win over every store).
    pub secrets_from_env: Vec<String>,
    /// `[[hooks]]`, checked.
    pub hooks: Vec<cosmos_engine::Hook>,
}

impl Settings {
    /// Reads the config file (if any) and applies environment overrides.
    pub fn load(env: &BTreeMap<String, String>, config_flag: Option<&Path>) -> Result<Self> {
        let paths = Paths::resolve(env, config_flag)?;
        let (text, loaded) = match std::fs::read_to_string(&paths.config) {
            Ok(text) => (text, true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !paths.config_explicit => {
                (String::new(), false)
            }
            Err(e) => bail!(
                "cannot read the config file `{}`: {e}",
                paths.config.display()
            ),
        };
        let mut config = parse_config(&text, &paths.config, env)?;
        if loaded {
            refuse_readable_secrets(&paths.config, &text)?;
        }
        // `cosmos secret set` keeps secrets in their own owner-only file; its values win over
        // the config file's, an environment variable over both.
        for (name, value) in read_secrets(&secrets_file(&paths.config))? {
            if name == "hf_token" && !env.contains_key(&env_name("secrets", "hf_token")) {
                config.secrets.hf_token = Some(value);
            }
        }
        let hooks = super::hooks::build(&config.hooks, env)
            .map_err(|e| anyhow::anyhow!("in `{}`: {e}", paths.config.display()))?;
        Ok(Self {
            hooks,
            paths,
            config,
            config_loaded: loaded,
            session_bus: env.get("DBUS_SESSION_BUS_ADDRESS").cloned(),
            secrets_from_env: SECRET_KEYS
                .iter()
                .filter(|(s, k)| env.get(&env_name(s, k)).is_some_and(|v| !v.is_empty()))
                .map(|(_, k)| (*k).to_owned())
                .collect(),
        })
    }

    pub fn database(&self) -> PathBuf {
        self.paths.data_dir.join(&self.config.store.database)
    }

    /// The resolved configuration as TOML with secrets hidden.
    pub fn redacted_toml(&self) -> Result<String> {
        let mut table =
            toml::Table::try_from(&self.config).context("cannot render the configuration")?;
        for (section, key) in SECRET_KEYS {
            if let Some(toml::Value::Table(t)) = table.get_mut(*section)
                && t.contains_key(*key)
            {
                t.insert((*key).to_owned(), toml::Value::String("<redacted>".into()));
            }
        }
        if let Some(toml::Value::Array(hooks)) = table.get_mut("hooks") {
            for hook in hooks.iter_mut().filter_map(toml::Value::as_table_mut) {
                if hook.contains_key("secret") {
                    hook.insert("secret".into(), toml::Value::String("<redacted>".into()));
                }
            }
        }
        toml::to_string_pretty(&table).context("cannot render the configuration")
    }
}

/// The secrets file beside the config file.
pub fn secrets_file(config: &Path) -> PathBuf {
    config
        .parent()
        .unwrap_or_else(|| Path::new("."))
        .join("secrets.toml")
}

/// The secrets in the file (none when there is no file). A file others can read is refused.
fn read_secrets(path: &Path) -> Result<BTreeMap<String, String>> {
    use std::os::unix::fs::PermissionsExt;
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => bail!("cannot read the secrets file `{}`: {e}", path.display()),
    };
    let mode = std::fs::metadata(path)?.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "the secrets file `{p}` can be read by other users (mode {:o}): `chmod 600 {p}`",
            mode & 0o777,
            p = path.display()
        );
    }
    let table: BTreeMap<String, String> = toml::from_str(&text).map_err(|e| {
        anyhow::anyhow!(
            "the secrets file `{}` is not `name = \"value\"` lines: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    Ok(table)
}

/// Sets (or, with `None`, removes) one secret in the file, written whole to an owner-only
/// file that replaces the old one. Returns whether the secret was there before.
pub fn write_secret(path: &Path, name: &str, value: Option<&str>) -> Result<bool> {
    let mut all = read_secrets(path)?;
    let had = match value {
        Some(v) => all.insert(name.to_owned(), v.to_owned()).is_some(),
        None => all.remove(name).is_some(),
    };
    let text = toml::to_string(&all).context("cannot write the secrets")?;
    write_private(path, text.as_bytes())?;
    Ok(had)
}

/// Writes a file only its owner may read, whole or not at all (a temporary file renamed
/// into place), creating its folder.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .with_context(|| format!("cannot create `{}`", dir.display()))?;
    }
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot write `{}`", tmp.display()))?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot write `{}`", path.display()))?;
    Ok(())
}

/// A secret that is set, and where it comes from (never its value).
#[derive(Debug, Clone, Serialize)]
pub struct SecretSource {
    pub name: String,
    pub source: String,
}

/// The secrets set, each with the place its value comes from (the one in force first).
pub fn secret_sources(config: &Path) -> Result<Vec<SecretSource>> {
    let mut out = Vec::new();
    let file = read_secrets(&secrets_file(config))?;
    let config_text = std::fs::read_to_string(config).unwrap_or_default();
    let config_table: toml::Table = toml::from_str(&config_text).unwrap_or_default();
    for (section, key) in SECRET_KEYS {
        let env = env_name(section, key);
        let source = if std::env::var_os(&env).is_some_and(|v| !v.is_empty()) {
            format!("environment variable {env}")
        } else if file.contains_key(*key) {
            format!("{} (owner-only)", secrets_file(config).display())
        } else if config_table
            .get(*section)
            .and_then(|s| s.get(*key))
            .is_some()
        {
            format!("{} [{section}]", config.display())
        } else {
            continue;
        };
        out.push(SecretSource {
            name: (*key).to_owned(),
            source,
        });
    }
    Ok(out)
}

/// A config file that holds a secret must be readable by its owner alone, as ssh insists
/// for private keys: otherwise nothing is read from it.
fn refuse_readable_secrets(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    let holds: Vec<String> = SECRET_KEYS
        .iter()
        .filter(|(section, key)| {
            table
                .get(*section)
                .and_then(|s| s.get(*key))
                .is_some_and(|v| v.as_str().is_some_and(|v| !v.is_empty()))
        })
        .map(|(section, key)| format!("{section}.{key}"))
        .chain(
            table
                .get("hooks")
                .and_then(toml::Value::as_array)
                .into_iter()
                .flatten()
                .filter(|h| h.get("secret").is_some())
                .map(|h| {
                    let name = h.get("name").and_then(toml::Value::as_str).unwrap_or("?");
                    format!("the secret of hook `{name}`")
                }),
        )
        .collect();
    if holds.is_empty() {
        return Ok(());
    }
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read `{}`", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        let mut instead = SECRET_KEYS
            .iter()
            .map(|(s, k)| env_name(s, k))
            .collect::<Vec<_>>()
            .join(", ");
        if holds.iter().any(|h| h.starts_with("the secret of hook")) {
            instead.push_str("; a hook's `secret_env` names a variable that holds its secret");
        }
        bail!(
            "the config file `{p}` holds a secret ({}) but other users can read it (mode {:o}): \
             `chmod 600 {p}`, or move the secret to its environment variable ({instead})",
            holds.join(", "),
            mode & 0o777,
            p = path.display()
        );
    }
    Ok(())
}

/// Parses config text, then applies `COSMOS_<SECTION>_<KEY>` overrides one by one so a bad
/// value names its variable.
pub fn parse_config(text: &str, path: &Path, env: &BTreeMap<String, String>) -> Result<Config> {
    let config: Config = toml::from_str(text).map_err(|e| {
        anyhow::anyhow!(
            "invalid config file `{}`: {}",
            path.display(),
            e.to_string().trim_end()
        )
    })?;
    let mut table = toml::Table::try_from(&config).context("cannot apply environment overrides")?;
    let sections: Vec<&str> = KEYS.iter().map(|(s, ..)| *s).collect();
    for (name, value) in env {
        let Some(rest) = name.strip_prefix("COSMOS_") else {
            continue;
        };
        let Some(section) = sections
            .iter()
            .find(|s| rest.starts_with(&format!("{}_", s.to_ascii_uppercase())))
        else {
            continue;
        };
        let Some((_, key, ..)) = KEYS
            .iter()
            .find(|(s, k, ..)| s == section && env_name(s, k) == *name)
        else {
            let known: Vec<String> = KEYS
                .iter()
                .filter(|(s, ..)| s == section)
                .map(|(s, k, ..)| env_name(s, k))
                .collect();
            bail!(
                "unknown configuration variable `{name}`: the `{section}` section has {}",
                known.join(", ")
            );
        };
        // A TOML literal (`20`, `5.5`, `true`) keeps its type; anything else is a string.
        let parsed = toml::from_str::<toml::Table>(&format!("v = {value}"))
            .ok()
            .and_then(|mut t| t.remove("v"))
            .unwrap_or_else(|| toml::Value::String(value.clone()));
        let entry = table
            .entry((*section).to_owned())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = entry {
            t.insert((*key).to_owned(), parsed);
        }
        Config::deserialize(toml::Value::Table(table.clone())).map_err(|e| {
            anyhow::anyhow!("invalid value in `{name}`: {}", e.to_string().trim_end())
        })?;
    }
    Config::deserialize(toml::Value::Table(table)).context("invalid configuration")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::default_file;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn default_file_parses_to_the_defaults_and_lists_every_field() {
        let text = default_file();
        let parsed = parse_config(&text, Path::new("x"), &env(&[])).unwrap();
        assert_eq!(parsed, Config::default());
        // Uncommenting every key must still parse: the catalogue names only real fields.
        let all = text.replace("# hf_token = \"…\"", "hf_token = \"t\"");
        let parsed = parse_config(&all, Path::new("x"), &env(&[])).unwrap();
        assert_eq!(parsed.secrets.hf_token.as_deref(), Some("t"));
        // And every field of the defaults appears in the catalogue.
        let table = toml::Table::try_from(Config::default()).unwrap();
        for (section, value) in &table {
            for key in value.as_table().unwrap().keys() {
                assert!(
                    KEYS.iter().any(|(s, k, ..)| s == section && k == key),
                    "{section}.{key} undocumented"
                );
            }
        }
    }

    #[test]
    fn precedence_is_default_then_file_then_environment() {
        let file = "[defaults]\nsteps = 20\nseed = 5\n";
        let cases = [
            (&[][..], 20, 5, 5.0),
            (&[("COSMOS_DEFAULTS_STEPS", "12")][..], 12, 5, 5.0),
            (
                &[
                    ("COSMOS_DEFAULTS_GUIDANCE", "7.5"),
                    ("COSMOS_DEFAULTS_SEED", "9"),
                ][..],
                20,
                9,
                7.5,
            ),
        ];
        for (vars, steps, seed, guidance) in cases {
            let c = parse_config(file, Path::new("c.toml"), &env(vars)).unwrap();
            assert_eq!(
                (c.defaults.steps, c.defaults.seed, c.defaults.guidance),
                (steps, seed, guidance),
                "{vars:?}"
            );
            assert_eq!(c.defaults.fps, 24, "untouched keys keep their defaults");
        }
        let c = parse_config(
            "",
            Path::new("c.toml"),
            &env(&[("COSMOS_TARGET_ROOT", "/data/c")]),
        )
        .unwrap();
        assert_eq!(c.target.root, "/data/c");
    }

    #[test]
    fn bad_keys_and_values_name_the_culprit() {
        let cases = [
            ("[defaults]\nstpes = 3\n", &[][..], "unknown field `stpes`"),
            ("[defualts]\n", &[][..], "unknown field `defualts`"),
            ("[defaults]\nsteps = \"many\"\n", &[][..], "invalid type"),
            (
                "",
                &[("COSMOS_DEFAULTS_STPES", "3")][..],
                "unknown configuration variable `COSMOS_DEFAULTS_STPES`",
            ),
            (
                "",
                &[("COSMOS_DEFAULTS_STEPS", "lots")][..],
                "invalid value in `COSMOS_DEFAULTS_STEPS`",
            ),
            (
                "",
                &[("COSMOS_DEFAULTS_BLUR_STRENGTH", "fuzzy")][..],
                "unknown variant `fuzzy`",
            ),
        ];
        for (text, vars, want) in cases {
            let err = format!(
                "{:#}",
                parse_config(text, Path::new("/etc/c.toml"), &env(vars)).unwrap_err()
            );
            assert!(err.contains(want), "{want:?} not in {err:?}");
            if vars.is_empty() {
                assert!(err.contains("/etc/c.toml"), "file not named: {err}");
            }
        }
    }

    #[test]
    fn other_cosmos_variables_are_not_config() {
        let vars = env(&[
            ("COSMOS_HOME", "/h"),
            ("COSMOS_LOG", "debug"),
            ("COSMOS_SIM_FAIL", "oom"),
        ]);
        assert_eq!(
            parse_config("", Path::new("c"), &vars).unwrap(),
            Config::default()
        );
    }

    #[test]
    fn cosmos_home_relocates_everything_and_config_flag_wins() {
        let vars = env(&[("COSMOS_HOME", "/tmp/ch")]);
        let p = Paths::resolve(&vars, None).unwrap();
        assert_eq!(p.config, PathBuf::from("/tmp/ch/cosmos.toml"));
        assert_eq!(p.data_dir, PathBuf::from("/tmp/ch"));
        assert!(!p.config_explicit);
        let vars = env(&[
            ("COSMOS_HOME", "/tmp/ch"),
            ("COSMOS_CONFIG", "/etc/env.toml"),
        ]);
        assert_eq!(
            Paths::resolve(&vars, None).unwrap().config,
            PathBuf::from("/etc/env.toml")
        );
        let p = Paths::resolve(&vars, Some(Path::new("/flag.toml"))).unwrap();
        assert_eq!(p.config, PathBuf::from("/flag.toml"));
        assert!(p.config_explicit);
    }

    #[test]
    fn secrets_are_redacted() {
        let mut config = Config::default();
        config.secrets.hf_token = Some("hf_supersecret".into());
        let s = Settings {
            hooks: Vec::new(),
            paths: Paths {
                config: "c".into(),
                config_explicit: false,
                data_dir: "d".into(),
            },
            config: config.clone(),
            config_loaded: true,
            session_bus: None,
            secrets_from_env: Vec::new(),
        };
        let shown = s.redacted_toml().unwrap();
        assert!(
            !shown.contains("hf_supersecret") && shown.contains("<redacted>"),
            "{shown}"
        );
        assert!(!format!("{config:?}").contains("hf_supersecret"));
    }
}
