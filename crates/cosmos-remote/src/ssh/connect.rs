//! Reaching a host: TCP (or a tunnel through a jump host), the SSH handshake with its host-key
//! check, and logging in — all under one deadline, so no command can wait longer than it says,
//! and a wait past a second is announced.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex as StdMutex};
use std::time::Duration;

use russh::client::{self, Handle};
use russh::keys::PublicKey;
use tokio::time::Instant;

use super::hostkeys::{self, HostKeyVerdict, KnownHosts};
use super::{Client, SshSpec, auth, config};
use crate::{RemoteError, RemoteResult};

/// How long reaching a host may take by default: TCP, handshake and login together.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// After this long without a connection, the connection's notice is called.
const SLOW: Duration = Duration::from_secs(1);

/// Called once when connecting is slow, with a line for the user (`connecting to …`).
#[derive(Clone)]
pub struct ConnectNotice(pub Arc<dyn Fn(&str) + Send + Sync>);

impl std::fmt::Debug for ConnectNotice {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ConnectNotice")
    }
}

/// Where a connection attempt was when it ran out of time.
const TCP: u8 = 0;
const HANDSHAKE: u8 = 1;
const LOGIN: u8 = 2;

pub(super) type Connected = (Handle<Client>, Option<Arc<Handle<Client>>>);

fn seconds(d: Duration) -> String {
    let s = format!("{:.1}", d.as_secs_f64());
    s.trim_end_matches(".0").to_owned()
}

/// The truth about a connection that ran out of time: what it was waiting for.
fn timed_out(spec: &SshSpec, phase: u8, limit: Duration) -> RemoteError {
    let (host, port, limit) = (&spec.host, spec.port, seconds(limit));
    let via = spec
        .jump
        .as_ref()
        .map(|j| format!(" (through {})", j.address()))
        .unwrap_or_default();
    let message = match phase {
        TCP => format!(
            "nothing accepted a TCP connection to {host}:{port}{via} within {limit} s (a firewall \
             dropping packets, or the wrong host or port)"
        ),
        HANDSHAKE => format!(
            "{host}:{port}{via} accepted the connection but did not complete an SSH handshake \
             within {limit} s (is sshd listening on that port?)"
        ),
        _ => format!("logging in to {host}:{port}{via} did not finish within {limit} s"),
    };
    unreachable(spec, &message)
}

/// Connects, retrying transient failures with backoff while the deadline allows; the notice
/// hears about a wait past a second.
pub(super) async fn within_deadline(
    spec: &SshSpec,
    notice: Option<&ConnectNotice>,
    attempts: u32,
    first_backoff: Duration,
) -> RemoteResult<Connected> {
    let limit = spec.connect_timeout;
    let deadline = Instant::now() + limit;
    let phase = AtomicU8::new(TCP);
    let work = async {
        let mut pause = first_backoff;
        let mut attempt = 1;
        loop {
            match tokio::time::timeout_at(deadline, connect(spec, &phase)).await {
                Err(_) => return Err(timed_out(spec, phase.load(Ordering::Relaxed), limit)),
                Ok(Ok(pair)) => return Ok(pair),
                Ok(Err(e))
                    if e.is_transient()
                        && attempt < attempts
                        && Instant::now() + pause < deadline =>
                {
                    tracing::debug!(target: "cosmos_remote", "connect attempt {attempt} failed: {e}");
                    tokio::time::sleep(crate::backoff::jittered(pause)).await;
                    pause *= 2;
                    attempt += 1;
                }
                Ok(Err(e)) => return Err(e),
            }
        }
    };
    announced(spec, notice, work).await
}

/// Awaits `work`, calling `notice` once if it takes longer than [`SLOW`].
async fn announced<T>(
    spec: &SshSpec,
    notice: Option<&ConnectNotice>,
    work: impl Future<Output = T>,
) -> T {
    tokio::pin!(work);
    let slow = tokio::time::sleep(SLOW);
    tokio::pin!(slow);
    let mut said = notice.is_none();
    loop {
        tokio::select! {
            out = &mut work => return out,
            _ = &mut slow, if !said => {
                said = true;
                if let Some(n) = notice {
                    (n.0)(&format!(
                        "connecting to {} ({}; giving up after {} s)…",
                        spec.name,
                        spec.address(),
                        seconds(spec.connect_timeout)
                    ));
                }
            }
        }
    }
}

/// What a host key seen during a handshake was judged to be.
type Seen = Arc<StdMutex<Option<(PublicKey, HostKeyVerdict)>>>;

/// A handshake handler for `spec` that checks keys against `known` and remembers what it saw.
fn client_for(spec: &SshSpec, known: KnownHosts) -> (Client, Seen) {
    let seen: Seen = Arc::new(StdMutex::new(None));
    let client = Client {
        known,
        host: spec.host.clone(),
        port: spec.port,
        seen: seen.clone(),
    };
    (client, seen)
}

fn unreachable(spec: &SshSpec, e: &dyn std::fmt::Display) -> RemoteError {
    RemoteError::Unreachable {
        target: spec.address(),
        message: e.to_string(),
    }
}

/// Opens a TCP (or tunnelled) connection, checks the host key and logs in, recording in
/// `phase` how far it got.
async fn connect(spec: &SshSpec, phase: &AtomicU8) -> RemoteResult<Connected> {
    let (client, seen) = client_for(spec, spec.known_hosts.clone());
    let unreachable = |e: &dyn std::fmt::Display| unreachable(spec, e);
    let (result, jump) = match &spec.jump {
        None => {
            phase.store(TCP, Ordering::Relaxed);
            let tcp = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
                .await
                .map_err(|e| unreachable(&e))?;
            // A small command must not wait for Nagle's algorithm (DESIGN.md §7).
            tcp.set_nodelay(true).map_err(|e| unreachable(&e))?;
            phase.store(HANDSHAKE, Ordering::Relaxed);
            (client::connect_stream(config(), tcp, client).await, None)
        }
        Some(jump_spec) => {
            let (jump, _) = Box::pin(connect(jump_spec, phase)).await?;
            let jump = Arc::new(jump);
            phase.store(TCP, Ordering::Relaxed);
            let tunnel = jump
                .channel_open_direct_tcpip(spec.host.clone(), spec.port.into(), "127.0.0.1", 0)
                .await
                .map_err(|e| unreachable(&format!("via {}: {e}", jump_spec.address())))?;
            phase.store(HANDSHAKE, Ordering::Relaxed);
            let r = client::connect_stream(config(), tunnel.into_stream(), client).await;
            (r, Some(jump))
        }
    };
    let mut handle = match result {
        Ok(h) => h,
        Err(russh::Error::UnknownKey) => {
            let seen = seen.lock().ok().and_then(|s| s.clone());
            return Err(match seen {
                Some((key, HostKeyVerdict::Changed { file })) => RemoteError::HostKeyChanged {
                    target: spec.address(),
                    name: spec.name.clone(),
                    fingerprint: hostkeys::fingerprint(&key),
                    file: file.display().to_string(),
                },
                Some((key, _)) => RemoteError::UnknownHostKey {
                    target: spec.address(),
                    name: spec.name.clone(),
                    fingerprint: hostkeys::fingerprint(&key),
                },
                None => unreachable(&"the server offered no usable host key"),
            });
        }
        Err(e) => return Err(unreachable(&e)),
    };
    phase.store(LOGIN, Ordering::Relaxed);
    auth::authenticate(&mut handle, spec).await?;
    Ok((handle, jump))
}

/// Connects only far enough to learn the host's key, for `cosmos target trust`, within the
/// spec's connect deadline.
pub async fn scan_host_key(spec: &SshSpec) -> RemoteResult<(PublicKey, HostKeyVerdict)> {
    let phase = AtomicU8::new(TCP);
    tokio::time::timeout(spec.connect_timeout, scan(spec, &phase))
        .await
        .unwrap_or_else(|_| {
            Err(timed_out(
                spec,
                phase.load(Ordering::Relaxed),
                spec.connect_timeout,
            ))
        })
}

async fn scan(spec: &SshSpec, phase: &AtomicU8) -> RemoteResult<(PublicKey, HostKeyVerdict)> {
    // Trust nothing, so the handshake stops right after the key is seen.
    let (client, seen) = client_for(spec, KnownHosts::empty());
    let unreachable = |e: &dyn std::fmt::Display| unreachable(spec, e);
    let result = match &spec.jump {
        None => {
            let tcp = tokio::net::TcpStream::connect((spec.host.as_str(), spec.port))
                .await
                .map_err(|e| unreachable(&e))?;
            phase.store(HANDSHAKE, Ordering::Relaxed);
            client::connect_stream(config(), tcp, client)
                .await
                .map(drop)
        }
        Some(jump_spec) => {
            let (jump, _) = connect(jump_spec, phase).await?;
            phase.store(TCP, Ordering::Relaxed);
            let tunnel = jump
                .channel_open_direct_tcpip(spec.host.clone(), spec.port.into(), "127.0.0.1", 0)
                .await
                .map_err(|e| unreachable(&e))?;
            phase.store(HANDSHAKE, Ordering::Relaxed);
            client::connect_stream(config(), tunnel.into_stream(), client)
                .await
                .map(drop)
        }
    };
    let key = seen.lock().ok().and_then(|s| s.clone()).map(|(k, _)| k);
    match (key, result) {
        (Some(key), _) => {
            let verdict = spec.known_hosts.check(&spec.host, spec.port, &key);
            Ok((key, verdict))
        }
        (None, Err(e)) => Err(unreachable(&e)),
        (None, Ok(())) => Err(RemoteError::Protocol(
            "the server did not show a host key".into(),
        )),
    }
}
