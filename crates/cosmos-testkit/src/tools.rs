//! The system programs the fixtures drive, and how CI gets each.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::{KitError, KitResult};

/// A program a fixture needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tool {
    Sshd,
    Ssh,
    SshKeygen,
    Docker,
    Busybox,
    Ffmpeg,
    DbusRunSession,
    GnomeKeyring,
    Chromium,
    Chromedriver,
}

impl Tool {
    fn default_path(self) -> &'static str {
        match self {
            Tool::Sshd => "/usr/sbin/sshd",
            Tool::Ssh => "ssh",
            Tool::SshKeygen => "ssh-keygen",
            Tool::Docker => "docker",
            Tool::Busybox => "/bin/busybox",
            Tool::Ffmpeg => "ffmpeg",
            Tool::DbusRunSession => "dbus-run-session",
            Tool::GnomeKeyring => "gnome-keyring-daemon",
            Tool::Chromium => "chromium",
            Tool::Chromedriver => "chromedriver",
        }
    }

    fn what(self) -> &'static str {
        match self {
            Tool::Sshd => "OpenSSH's server `sshd`",
            Tool::Ssh => "OpenSSH's client `ssh`",
            Tool::SshKeygen => "`ssh-keygen`",
            Tool::Docker => "the `docker` CLI with a running engine",
            Tool::Busybox => "Debian's static busybox",
            Tool::Ffmpeg => "`ffmpeg`, to make test videos",
            Tool::DbusRunSession => "`dbus-run-session`, a private session bus",
            Tool::GnomeKeyring => "`gnome-keyring-daemon`, an OS keyring (Secret Service)",
            Tool::Chromium => "Chromium, the browser the dashboard tests drive",
            Tool::Chromedriver => "`chromedriver`, WebDriver for Chromium",
        }
    }

    fn ci_step(self) -> &'static str {
        match self {
            Tool::Sshd => "apt-get install -y openssh-server",
            Tool::Ssh | Tool::SshKeygen => "apt-get install -y openssh-client",
            Tool::Docker => "the machine's Docker engine (started before the session)",
            Tool::Busybox => "apt-get install -y busybox-static",
            Tool::Ffmpeg => "apt-get install -y ffmpeg",
            Tool::DbusRunSession => "apt-get install -y dbus-daemon dbus-bin",
            Tool::GnomeKeyring => "apt-get install -y gnome-keyring",
            Tool::Chromium | Tool::Chromedriver => "apt-get install -y chromium chromium-driver",
        }
    }

    /// The error for this tool being unusable.
    pub fn missing(self, detail: &str) -> KitError {
        KitError::new(format!(
            "{} is not usable ({detail}); the fixtures need it, and `.ci/run` provides it: {}",
            self.what(),
            self.ci_step()
        ))
    }
}

fn on_path(program: &str) -> Option<PathBuf> {
    if program.contains('/') {
        return Path::new(program).is_file().then(|| PathBuf::from(program));
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|p| p.is_file())
    })
}

/// Finds `tool` (at `path` when given, else where Debian installs it) and checks it runs.
pub fn require(tool: Tool, path: Option<&Path>) -> KitResult<PathBuf> {
    let wanted = path.map_or_else(
        || tool.default_path().to_owned(),
        |p| p.display().to_string(),
    );
    let found = on_path(&wanted).ok_or_else(|| tool.missing(&format!("`{wanted}` not found")))?;
    if tool == Tool::Docker {
        // Asked once per process: every fixture needs the engine, none needs it asked twice.
        static ENGINE: OnceLock<bool> = OnceLock::new();
        let ok = *ENGINE.get_or_init(|| {
            Command::new(&found)
                .args(["version", "--format", "{{.Server.Version}}"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
        });
        if !ok {
            return Err(tool.missing("the Docker engine does not answer `docker version`"));
        }
    }
    Ok(found)
}
