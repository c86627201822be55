//! SSH targets over russh: one connection per target, reused by every command and transfer
//! (channels multiplexed), kept alive, reconnected with backoff (DESIGN.md §3, invariant 7).
//! Host keys are checked against known_hosts files before anything else happens
//! (invariant 5).

mod auth;
mod connect;
pub mod hostkeys;
mod sftp;

use std::path::PathBuf;
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use async_trait::async_trait;
use russh::ChannelMsg;
use russh::client::{self, Handle};
use russh::keys::PublicKey;
use tokio::sync::Mutex;

use cosmos_core::quote::shell_join;

use crate::{CommandRunner, RemoteError, RemoteResult, Sink, Stream};
use hostkeys::{HostKeyVerdict, KnownHosts};

pub use connect::{CONNECT_TIMEOUT, ConnectNotice, scan_host_key};
pub use sftp::SftpFiles;

/// Where and how to log in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshSpec {
    /// The target's name, for messages and hints.
    pub name: String,
    pub host: String,
    pub port: u16,
    pub user: String,
    /// A private key file; without one the agent's keys and the usual `~/.ssh/id_*` are tried.
    pub identity: Option<PathBuf>,
    /// Reach the host through this one first (OpenSSH's ProxyJump).
    pub jump: Option<Box<SshSpec>>,
    pub known_hosts: KnownHosts,
    /// One deadline for reaching the host: TCP, the SSH handshake and logging in, every
    /// attempt and any jump host included.
    pub connect_timeout: Duration,
}

impl SshSpec {
    pub fn address(&self) -> String {
        format!("ssh://{}@{}:{}", self.user, self.host, self.port)
    }
}

/// The russh event handler: checks the host key and remembers what it saw.
#[derive(Debug)]
struct Client {
    known: KnownHosts,
    host: String,
    port: u16,
    seen: Arc<StdMutex<Option<(PublicKey, HostKeyVerdict)>>>,
}

impl client::Handler for Client {
    type Error = russh::Error;

    async fn check_server_key(
        &mut self,
        key: &russh::keys::PublicKeyOrCertificate,
    ) -> Result<bool, Self::Error> {
        let russh::keys::PublicKeyOrCertificate::PublicKey { key, .. } = key else {
            return Ok(false);
        };
        let verdict = self.known.check(&self.host, self.port, key);
        let trusted = verdict == HostKeyVerdict::Trusted;
        if let Ok(mut seen) = self.seen.lock() {
            *seen = Some((key.clone(), verdict));
        }
        Ok(trusted)
    }
}

fn config() -> Arc<client::Config> {
    Arc::new(client::Config {
        // A small command must not wait for Nagle's algorithm (DESIGN.md §7).
        nodelay: true,
        keepalive_interval: Some(Duration::from_secs(15)),
        keepalive_max: 4,
        window_size: 16 * 1024 * 1024,
        channel_buffer_size: 256,
        ..Default::default()
    })
}

/// One SSH connection to a target, opened on first use and re-opened after it drops.
#[derive(Debug)]
pub struct SshConnection {
    spec: SshSpec,
    live: Mutex<Option<Live>>,
    /// Told when connecting takes longer than a second, so a wait never looks like a hang.
    notice: Option<ConnectNotice>,
}

struct Live {
    handle: Arc<Handle<Client>>,
    sftp: Option<Arc<russh_sftp::client::RawSftpSession>>,
    /// Keeps the jump host's connection open while this one tunnels through it.
    _jump: Option<Arc<Handle<Client>>>,
}

impl std::fmt::Debug for Live {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Live").finish_non_exhaustive()
    }
}

/// How many times a dropped or refused connection is retried, and the first pause.
const CONNECT_ATTEMPTS: u32 = 4;
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

impl SshConnection {
    pub fn new(spec: SshSpec) -> Arc<Self> {
        Self::with_notice(spec, None)
    }

    /// A connection that calls `notice` when connecting takes more than a second.
    pub fn with_notice(spec: SshSpec, notice: Option<ConnectNotice>) -> Arc<Self> {
        Arc::new(Self {
            spec,
            live: Mutex::new(None),
            notice,
        })
    }

    pub fn spec(&self) -> &SshSpec {
        &self.spec
    }

    /// The live session handle, connecting (with backoff) when there is none.
    async fn handle(&self) -> RemoteResult<Arc<Handle<Client>>> {
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_ref()
            && !l.handle.is_closed()
        {
            return Ok(l.handle.clone());
        }
        *live = None;
        let (handle, jump) = connect::within_deadline(
            &self.spec,
            self.notice.as_ref(),
            CONNECT_ATTEMPTS,
            FIRST_BACKOFF,
        )
        .await?;
        let handle = Arc::new(handle);
        *live = Some(Live {
            handle: handle.clone(),
            sftp: None,
            _jump: jump,
        });
        Ok(handle)
    }

    /// Connects now, so that a bad key or an unreachable host shows up before any work.
    #[tracing::instrument(level = "debug", skip(self), fields(target = %self.spec.name))]
    pub async fn connect(&self) -> RemoteResult<()> {
        self.handle().await.map(drop)
    }

    /// Forgets the connection so the next use reconnects.
    pub async fn reset(&self) {
        if let Some(live) = self.live.lock().await.take() {
            let _ = live
                .handle
                .disconnect(russh::Disconnect::ByApplication, "", "en")
                .await;
        }
    }

    async fn channel(&self) -> RemoteResult<russh::Channel<client::Msg>> {
        let handle = self.handle().await?;
        match handle.channel_open_session().await {
            Ok(ch) => Ok(ch),
            Err(e) => {
                // A dead connection shows up here first: drop it so the next call reconnects.
                self.live.lock().await.take();
                Err(self.unreachable(e))
            }
        }
    }

    /// The SFTP session on this connection, opened on first use.
    pub(crate) async fn sftp(&self) -> RemoteResult<Arc<russh_sftp::client::RawSftpSession>> {
        let handle = self.handle().await?;
        {
            let live = self.live.lock().await;
            if let Some(l) = live.as_ref()
                && Arc::ptr_eq(&l.handle, &handle)
                && let Some(s) = &l.sftp
            {
                return Ok(s.clone());
            }
        }
        let channel = self.channel().await?;
        channel
            .request_subsystem(true, "sftp")
            .await
            .map_err(|e| self.unreachable(e))?;
        let session = russh_sftp::client::RawSftpSession::new(channel.into_stream());
        session.set_timeout(120);
        session
            .init()
            .await
            .map_err(|e| RemoteError::Protocol(format!("SFTP start-up failed: {e}")))?;
        let session = Arc::new(session);
        let mut live = self.live.lock().await;
        if let Some(l) = live.as_mut()
            && Arc::ptr_eq(&l.handle, &handle)
        {
            l.sftp = Some(session.clone());
        }
        Ok(session)
    }

    pub(crate) fn unreachable(&self, e: impl std::fmt::Display) -> RemoteError {
        RemoteError::Unreachable {
            target: self.spec.address(),
            message: e.to_string(),
        }
    }

    async fn exec(&self, argv: &[String], sink: &mut Sink<'_>) -> RemoteResult<Option<u32>> {
        let line = shell_join(argv);
        let began = std::time::Instant::now();
        let mut channel = self.channel().await?;
        channel
            .exec(true, line.as_bytes())
            .await
            .map_err(|e| self.unreachable(e))?;
        let mut code = None;
        let mut closed_cleanly = false;
        while let Some(msg) = channel.wait().await {
            match msg {
                ChannelMsg::Data { data } => sink(Stream::Stdout, &data),
                ChannelMsg::ExtendedData { data, ext: 1 } => sink(Stream::Stderr, &data),
                ChannelMsg::ExitStatus { exit_status } => {
                    code = Some(exit_status);
                    closed_cleanly = true;
                }
                ChannelMsg::ExitSignal { .. } => closed_cleanly = true,
                _ => {}
            }
        }
        if !closed_cleanly {
            // The channel ended without an exit status: the connection dropped under it.
            self.live.lock().await.take();
            return Err(self.unreachable("the connection dropped while a command ran"));
        }
        tracing::debug!(target: "cosmos_remote", "exit {code:?} after {:.1?}: {line}", began.elapsed());
        Ok(code)
    }
}

#[async_trait]
impl CommandRunner for SshConnection {
    #[tracing::instrument(
        level = "debug",
        skip_all,
        fields(target = %self.spec.name, program = argv.first().map(String::as_str).unwrap_or(""))
    )]
    async fn stream(&self, argv: &[String], sink: &mut Sink<'_>) -> RemoteResult<Option<u32>> {
        self.exec(argv, sink).await
    }

    fn describe(&self) -> String {
        self.spec.address()
    }
}
