//! An OS keyring of the test's own: a private session bus (`dbus-run-session`) with GNOME
//! Keyring's Secret Service on it, its keyrings in a temporary home, unlocked. Dropping it
//! stops both (by process group).

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use rustix::process::{Pid, Signal, kill_process_group};

use crate::tools::{Tool, require};
use crate::{KitError, KitResult};

/// Starts the daemon unlocked (a login keyring made with a throwaway password), prints the bus
/// address once the Secret Service is on it, then waits to be killed.
const SCRIPT: &str = r#"printf 'cosmos-test' | gnome-keyring-daemon --unlock --components=secrets >/dev/null || exit 1
echo "$DBUS_SESSION_BUS_ADDRESS"
exec sleep 3600"#;

/// A running Secret Service.
#[derive(Debug)]
pub struct SecretService {
    child: Child,
    address: String,
    _home: tempfile::TempDir,
}

impl SecretService {
    pub fn start() -> KitResult<Self> {
        let run = require(Tool::DbusRunSession, None)?;
        require(Tool::GnomeKeyring, None)?;
        let home = tempfile::tempdir().map_err(|e| KitError::new(e.to_string()))?;
        let mut child = Command::new(run)
            .args(["--", "sh", "-c", SCRIPT])
            .env("HOME", home.path())
            .env_remove("DBUS_SESSION_BUS_ADDRESS")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| Tool::DbusRunSession.missing(&e.to_string()))?;
        let mut line = String::new();
        let read = child
            .stdout
            .take()
            .map(|out| BufReader::new(out).read_line(&mut line));
        let address = line.trim().to_owned();
        if !matches!(read, Some(Ok(n)) if n > 0) || !address.starts_with("unix:") {
            let _ = kill_process_group(Pid::from_child(&child), Signal::KILL);
            let _ = child.wait();
            return Err(Tool::GnomeKeyring.missing("the Secret Service did not start"));
        }
        Ok(Self {
            child,
            address,
            _home: home,
        })
    }

    /// `DBUS_SESSION_BUS_ADDRESS` for programs that should use this keyring.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl Drop for SecretService {
    fn drop(&mut self) {
        let _ = kill_process_group(Pid::from_child(&self.child), Signal::TERM);
        let _ = self.child.wait();
    }
}
