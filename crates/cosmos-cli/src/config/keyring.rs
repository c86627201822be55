//! The OS keyring where one exists: the freedesktop Secret Service (GNOME Keyring, KWallet)
//! on the session bus. Each secret is an entry of the service `cosmos`, named after the secret
//! and the config file it belongs with, so two cosmos homes keep apart. No session bus, or no
//! Secret Service on it, means no keyring: secrets then go to the owner-only file.

use std::path::Path;

const SERVICE: &str = "cosmos";

/// The entry for a secret of the configuration at `config`, or `None` when this session has
/// no bus to find a keyring on.
fn entry(env_bus: Option<&str>, name: &str, config: &Path) -> Option<keyring::Entry> {
    env_bus.filter(|b| !b.is_empty())?;
    keyring::Entry::new(SERVICE, &format!("{name} ({})", config.display())).ok()
}

/// A keyring that holds secrets for one configuration.
#[derive(Debug, Clone)]
pub struct Keyring {
    bus: Option<String>,
    config: std::path::PathBuf,
}

/// What the keyring said.
#[derive(Debug)]
pub enum Stored {
    /// There is a keyring and it took (or holds) the secret.
    Yes,
    /// There is a keyring; it has no such secret.
    No,
    /// No keyring here (no session bus, or no Secret Service on it): why.
    Unavailable(String),
}

impl Keyring {
    /// `bus` is the session bus address from the environment (`DBUS_SESSION_BUS_ADDRESS`).
    pub fn new(bus: Option<String>, config: &Path) -> Self {
        Self {
            bus,
            config: config.to_path_buf(),
        }
    }

    fn entry(&self, name: &str) -> Result<keyring::Entry, String> {
        entry(self.bus.as_deref(), name, &self.config)
            .ok_or_else(|| "no session bus (DBUS_SESSION_BUS_ADDRESS is not set)".to_owned())
    }

    pub fn get(&self, name: &str) -> Result<Option<String>, String> {
        match self.entry(name)?.get_password() {
            Ok(v) => Ok(Some(v)),
            Err(keyring::Error::NoEntry) => Ok(None),
            Err(e) => Err(e.to_string()),
        }
    }

    pub fn set(&self, name: &str, value: &str) -> Stored {
        match self
            .entry(name)
            .and_then(|e| e.set_password(value).map_err(|e| e.to_string()))
        {
            Ok(()) => Stored::Yes,
            Err(e) => Stored::Unavailable(e),
        }
    }

    pub fn delete(&self, name: &str) -> Stored {
        match self.entry(name).map(|e| e.delete_credential()) {
            Ok(Ok(())) => Stored::Yes,
            Ok(Err(keyring::Error::NoEntry)) => Stored::No,
            Ok(Err(e)) => Stored::Unavailable(e.to_string()),
            Err(e) => Stored::Unavailable(e),
        }
    }
}
