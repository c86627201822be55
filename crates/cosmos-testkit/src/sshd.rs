//! A real OpenSSH `sshd` on 127.0.0.1: a free port, a fresh host key, key-only login as the
//! current user, the simulator on that user's PATH as `nvidia-smi`, and the real `docker`
//! CLI. Each host has its own root (for run files) and cosmos-transfer1 checkout. Dropping
//! it stops sshd (by process group) and removes every container it labelled or that mounts
//! its directories.

use std::fs;
use std::io::Read;
use std::net::TcpListener;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use cosmos_core::quote::shell_join;
use rustix::process::{Pid, Signal, kill_process_group};

use crate::tools::{Tool, require};
use crate::{KitError, KitResult, sim_binary};

const START_DEADLINE: Duration = Duration::from_secs(10);

/// How to start a host.
#[derive(Debug, Clone)]
pub struct HostOptions {
    /// GPUs the simulated `nvidia-smi` reports (`COSMOS_SIM_GPUS` in the login environment).
    pub gpus: u32,
    /// The sshd program (default `/usr/sbin/sshd`).
    pub sshd: Option<PathBuf>,
}

impl Default for HostOptions {
    fn default() -> Self {
        Self {
            gpus: 8,
            sshd: None,
        }
    }
}

/// A running sshd fixture.
#[derive(Debug)]
pub struct SshHost {
    dir: tempfile::TempDir,
    port: u16,
    user: String,
    sshd: PathBuf,
    ssh: PathBuf,
    child: Option<Child>,
    id: String,
    started_in: Duration,
}

fn run_quiet(cmd: &mut Command, what: &str) -> KitResult<String> {
    let out = cmd
        .output()
        .map_err(|e| KitError::new(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(KitError::new(format!(
            "{what} failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The account tests log in as.
pub const REMOTE_USER: &str = "cosmos-remote";

/// The login name, and its uid/gid when the fixture must hand files over to it.
type RemoteUser = (String, Option<(u32, u32)>);

/// The remote user, looked up once per process.
fn remote_user() -> KitResult<RemoteUser> {
    static USER: OnceLock<KitResult<RemoteUser>> = OnceLock::new();
    USER.get_or_init(lookup_remote_user).clone()
}

fn lookup_remote_user() -> KitResult<RemoteUser> {
    if !rustix::process::geteuid().is_root() {
        let me = run_quiet(Command::new("id").arg("-un"), "id -un")?;
        return Ok((me.trim().to_owned(), None));
    }
    let id = |flag: &str| -> KitResult<u32> {
        run_quiet(Command::new("id").args([flag, REMOTE_USER]), "id")
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .ok_or_else(|| {
                KitError::new(format!(
                    "the sshd fixtures log in as `{REMOTE_USER}`, which does not exist; `.ci/run` creates it with `useradd --create-home --shell /bin/sh --groups docker --password '*' {REMOTE_USER}`"
                ))
            })
    };
    Ok((REMOTE_USER.to_owned(), Some((id("-u")?, id("-g")?))))
}

fn chown_tree(path: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    std::os::unix::fs::lchown(path, Some(uid), Some(gid))?;
    if path.is_dir() && !path.is_symlink() {
        for entry in fs::read_dir(path)? {
            chown_tree(&entry?.path(), uid, gid)?;
        }
    }
    Ok(())
}

fn keygen(keygen: &Path, path: &Path) -> KitResult<()> {
    run_quiet(
        Command::new(keygen)
            .args([
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                "cosmos-testkit",
                "-f",
            ])
            .arg(path),
        "ssh-keygen",
    )
    .map(|_| ())
}

fn free_port() -> KitResult<u16> {
    let listener = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| KitError::new(format!("no free port on 127.0.0.1: {e}")))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| KitError::new(e.to_string()))
}

fn unique_id() -> String {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    format!(
        "{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// Starts `n` hosts, each with its own port, keys, root and checkout.
pub fn start_hosts(n: usize) -> KitResult<Vec<SshHost>> {
    (0..n).map(|_| SshHost::start()).collect()
}

impl SshHost {
    pub fn start() -> KitResult<Self> {
        Self::start_with(HostOptions::default())
    }

    pub fn start_with(options: HostOptions) -> KitResult<Self> {
        let sshd = require(Tool::Sshd, options.sshd.as_deref())?;
        let ssh_keygen = require(Tool::SshKeygen, None)?;
        let ssh = require(Tool::Ssh, None)?;
        require(Tool::Docker, None)?;
        let sim = sim_binary()?;
        let began = Instant::now();
        let dir = tempfile::Builder::new()
            .prefix("cosmos-sshd-")
            .tempdir()
            .map_err(|e| KitError::new(format!("no temporary directory: {e}")))?;
        let d = dir.path();
        let io = |e: std::io::Error| KitError::new(format!("cannot prepare {}: {e}", d.display()));
        keygen(&ssh_keygen, &d.join("host_key"))?;
        keygen(&ssh_keygen, &d.join("client_key"))?;
        fs::copy(d.join("client_key.pub"), d.join("authorized_keys")).map_err(io)?;
        fs::create_dir_all(d.join("bin")).map_err(io)?;
        // A copy, so the remote user needs no access to the build tree.
        fs::copy(&sim, d.join("bin/cosmos-sim")).map_err(io)?;
        symlink("cosmos-sim", d.join("bin/nvidia-smi")).map_err(io)?;
        fs::create_dir_all(d.join("root")).map_err(io)?;
        fs::create_dir_all(d.join("records")).map_err(io)?;
        run_quiet(
            Command::new(&sim).arg("checkout").arg(d.join("cosmos")),
            "cosmos-sim checkout",
        )?;
        let (user, owner) = remote_user()?;
        if let Some((uid, gid)) = owner {
            // The remote user reads its keys and owns its root and checkout; the host key
            // stays private to sshd.
            fs::set_permissions(d, fs::Permissions::from_mode(0o755)).map_err(io)?;
            fs::set_permissions(d.join("authorized_keys"), fs::Permissions::from_mode(0o644))
                .map_err(io)?;
            chown_tree(&d.join("root"), uid, gid).map_err(io)?;
            chown_tree(&d.join("cosmos"), uid, gid).map_err(io)?;
            chown_tree(&d.join("records"), uid, gid).map_err(io)?;
        }
        // sshd running as root wants its privilege-separation directory.
        let _ = fs::create_dir_all("/run/sshd");
        let mut host = Self {
            port: 0,
            user,
            sshd,
            ssh,
            child: None,
            id: unique_id(),
            started_in: Duration::ZERO,
            dir,
        };
        host.write_config(options.gpus)?;
        host.launch()?;
        host.started_in = began.elapsed();
        Ok(host)
    }

    fn write_config(&self, gpus: u32) -> KitResult<()> {
        let d = self.dir.path().display();
        let config = format!(
            "ListenAddress 127.0.0.1\n\
HostKey {d}/host_key\n\
PidFile none\n\
AuthorizedKeysFile {d}/authorized_keys\n\
AuthenticationMethods publickey\n\
PubkeyAuthentication yes\n\
PasswordAuthentication no\n\
KbdInteractiveAuthentication no\n\
UsePAM no\n\
StrictModes no\n\
PermitRootLogin prohibit-password\n\
AllowUsers {user}\n\
MaxSessions 64\n\
MaxStartups 64:30:128\n\
SetEnv PATH={d}/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin COSMOS_SIM_GPUS={gpus} COSMOS_SIM_GPU_STATE={d}/records\n\
Subsystem sftp internal-sftp\n",
            user = self.user
        );
        fs::write(self.dir.path().join("sshd_config"), config)
            .map_err(|e| KitError::new(format!("cannot write sshd_config: {e}")))
    }

    /// Starts sshd on a free port (a new one if the chosen port was taken meanwhile) and waits
    /// until it listens.
    fn launch(&mut self) -> KitResult<()> {
        let mut last = String::new();
        for _ in 0..5 {
            let port = if self.port == 0 {
                free_port()?
            } else {
                self.port
            };
            match self.spawn(port) {
                Ok(()) => return self.write_known_hosts(),
                Err(e) if e.0.contains("Address already in use") && self.port == 0 => last = e.0,
                Err(e) => return Err(e),
            }
        }
        Err(KitError::new(format!("sshd found no free port: {last}")))
    }

    fn spawn(&mut self, port: u16) -> KitResult<()> {
        let log_path = self.dir.path().join(format!("sshd-{port}.log"));
        let log = fs::File::create(&log_path).map_err(|e| KitError::new(e.to_string()))?;
        let mut child = Command::new(&self.sshd)
            .arg("-D")
            .arg("-e")
            .arg("-f")
            .arg(self.dir.path().join("sshd_config"))
            .arg("-p")
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| Tool::Sshd.missing(&e.to_string()))?;
        let deadline = Instant::now() + START_DEADLINE;
        loop {
            let mut text = String::new();
            if let Ok(mut f) = fs::File::open(&log_path) {
                let _ = f.read_to_string(&mut text);
            }
            if text.contains("Server listening on") {
                self.port = port;
                self.child = Some(child);
                return Ok(());
            }
            if let Ok(Some(status)) = child.try_wait() {
                return Err(KitError::new(format!(
                    "sshd exited ({status}) before listening: {}",
                    text.trim()
                )));
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(KitError::new(format!(
                    "sshd did not listen within {START_DEADLINE:?}: {}",
                    text.trim()
                )));
            }
            std::thread::sleep(Duration::from_millis(2));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    /// How long `start` took, keys and checkout included.
    pub fn startup_time(&self) -> Duration {
        self.started_in
    }

    /// The client's private key (authorised on the host).
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// The host's public key line (`ssh-ed25519 AAAA… comment`).
    pub fn host_public_key(&self) -> KitResult<String> {
        fs::read_to_string(self.dir.path().join("host_key.pub"))
            .map(|s| s.trim().to_owned())
            .map_err(|e| KitError::new(e.to_string()))
    }

    /// Pins this host's key for its port in `known_hosts` (the port is fixed once listening).
    fn write_known_hosts(&self) -> KitResult<()> {
        let key = self.host_public_key()?;
        let mut fields = key.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            self.port,
            fields.next().unwrap_or_default(),
            fields.next().unwrap_or_default()
        );
        fs::write(self.known_hosts(), line).map_err(|e| KitError::new(e.to_string()))
    }

    /// A known_hosts file that pins this host's key.
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The target root: where run directories and blobs go on this host.
    pub fn root(&self) -> PathBuf {
        self.dir.path().join("root")
    }

    /// Where a model on this host can record its starts (`COSMOS_SIM_RECORD`): outside the
    /// target root, which containers do not see whole; mount it with [`Self::records_mount`].
    pub fn record_file(&self) -> PathBuf {
        self.dir.path().join("records/record.jsonl")
    }

    /// Where the simulated model marks its GPUs busy and the host's `nvidia-smi` reads their
    /// load (`COSMOS_SIM_GPU_STATE`: give it to the model too; [`Self::records_mount`]
    /// mounts it).
    pub fn gpu_state_dir(&self) -> PathBuf {
        self.dir.path().join("records")
    }

    /// The `--mount` that lets containers write [`Self::record_file`].
    pub fn records_mount(&self) -> String {
        let d = self.dir.path().join("records");
        format!("{0}:{0}", d.display())
    }

    /// The host's cosmos-transfer1 checkout (placeholder checkpoints included).
    pub fn cosmos_dir(&self) -> PathBuf {
        self.dir.path().join("cosmos")
    }

    /// `--label` value every container a test starts on this host should carry.
    pub fn container_label(&self) -> String {
        format!("cosmos.testkit={}", self.id)
    }

    /// An OpenSSH client command running `argv` on the host, quoted by cosmos's one quoting
    /// function, with host-key checking against this host's pinned key.
    pub fn ssh(&self, argv: &[&str]) -> Command {
        let mut cmd = Command::new(&self.ssh);
        cmd.arg("-i")
            .arg(self.client_key())
            .arg("-o")
            .arg(format!(
                "UserKnownHostsFile={}",
                self.known_hosts().display()
            ))
            .args([
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "BatchMode=yes",
                "-o",
                "IdentitiesOnly=yes",
            ])
            .args([
                "-o",
                "GlobalKnownHostsFile=/dev/null",
                "-o",
                "LogLevel=ERROR",
            ])
            .arg("-p")
            .arg(self.port.to_string())
            .arg(format!("{}@127.0.0.1", self.user))
            .arg("--")
            .arg(shell_join(argv));
        cmd
    }

    /// Stops sshd, keeping its port, keys and files (a host going away mid-run).
    /// Stops sshd and every session it serves, as a host going away does: open
    /// connections drop too (each session is its own process group, so the listener's
    /// group alone would leave them up).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let sessions = descendants(child.id());
            // sshd leads its own process group (`process_group(0)` at spawn).
            let _ = kill_process_group(Pid::from_child(&child), Signal::TERM);
            for pid in sessions {
                if let Some(pid) = Pid::from_raw(pid as i32) {
                    let _ = rustix::process::kill_process(pid, Signal::KILL);
                }
            }
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline {
                if let Ok(Some(_)) = child.try_wait() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts sshd again on the same port with the same host key.
    pub fn restart(&mut self) -> KitResult<()> {
        self.stop();
        self.launch()
    }

    /// Whether sshd is running.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }
}

impl Drop for SshHost {
    fn drop(&mut self) {
        self.stop();
        crate::containers::remove(&self.container_label(), self.dir.path());
    }
}

/// Every process below `root`, from the parent links in /proc.
fn descendants(root: u32) -> Vec<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        // /proc/PID/stat: `pid (comm) state ppid …`; comm may hold spaces and parentheses.
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            continue;
        };
        parents.push((pid, ppid));
    }
    let mut found = Vec::new();
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for (pid, ppid) in &parents {
            if *ppid == p && !found.contains(pid) {
                found.push(*pid);
                frontier.push(*pid);
            }
        }
    }
    found
}
