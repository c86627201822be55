//! Logging in: the configured key file, else the agent's keys, else the usual `~/.ssh/id_*`.
//! An encrypted key file is used through the agent; without one the error says what to do.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use russh::client::Handle;
use russh::keys::agent::AgentIdentity;
use russh::keys::agent::client::AgentClient;
use russh::keys::{PrivateKey, PrivateKeyWithHashAlg, PublicKey};

use super::{Client, SshSpec};
use crate::{RemoteError, RemoteResult};

enum KeyFile {
    Plain(Box<PrivateKey>),
    /// Encrypted: only usable through an agent that holds it.
    Encrypted(PublicKey),
}

fn read_key(path: &Path) -> RemoteResult<KeyFile> {
    match russh::keys::load_secret_key(path, None) {
        Ok(k) => Ok(KeyFile::Plain(Box::new(k))),
        Err(russh::keys::Error::KeyIsEncrypted) => {
            let public = PathBuf::from(format!("{}.pub", path.display()));
            let key = russh::keys::load_public_key(&public).map_err(|_| {
                RemoteError::Auth(format!(
                    "the key {} is encrypted and its public half {} is missing: add the key to \
                     ssh-agent (`ssh-add {}`) and keep the .pub file beside it",
                    path.display(),
                    public.display(),
                    path.display()
                ))
            })?;
            Ok(KeyFile::Encrypted(key))
        }
        Err(e) => Err(RemoteError::Auth(format!(
            "cannot read the SSH key {}: {e}; check `--key` on the target",
            path.display()
        ))),
    }
}

async fn agent() -> Option<AgentClient<tokio::net::UnixStream>> {
    std::env::var_os("SSH_AUTH_SOCK")?;
    AgentClient::connect_env().await.ok()
}

async fn with_plain(
    handle: &mut Handle<Client>,
    user: &str,
    key: PrivateKey,
) -> RemoteResult<bool> {
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    let r = handle
        .authenticate_publickey(user, PrivateKeyWithHashAlg::new(Arc::new(key), hash))
        .await
        .map_err(|e| RemoteError::Auth(format!("authentication failed: {e}")))?;
    Ok(r.success())
}

async fn with_agent(
    handle: &mut Handle<Client>,
    user: &str,
    agent: &mut AgentClient<tokio::net::UnixStream>,
    only: Option<&PublicKey>,
) -> RemoteResult<bool> {
    let identities = agent.request_identities().await.unwrap_or_default();
    let hash = handle
        .best_supported_rsa_hash()
        .await
        .ok()
        .flatten()
        .flatten();
    for id in identities {
        let AgentIdentity::PublicKey { key, .. } = id else {
            continue;
        };
        if only.is_some_and(|o| o.key_data() != key.key_data()) {
            continue;
        }
        let r = handle
            .authenticate_publickey_with(user, key, hash, agent)
            .await
            .map_err(|e| RemoteError::Auth(format!("agent authentication failed: {e}")))?;
        if r.success() {
            return Ok(true);
        }
    }
    Ok(false)
}

pub(super) async fn authenticate(handle: &mut Handle<Client>, spec: &SshSpec) -> RemoteResult<()> {
    let user = spec.user.as_str();
    let denied = |tried: &str| {
        RemoteError::Auth(format!(
            "{} refused the login as `{user}` ({tried}): check the user (`--user`) and that the \
             public key is in ~{user}/.ssh/authorized_keys on the host",
            spec.address()
        ))
    };
    if let Some(path) = &spec.identity {
        return match read_key(path)? {
            KeyFile::Plain(key) => {
                if with_plain(handle, user, *key).await? {
                    Ok(())
                } else {
                    Err(denied(&format!("key {}", path.display())))
                }
            }
            KeyFile::Encrypted(public) => {
                let Some(mut agent) = agent().await else {
                    return Err(RemoteError::Auth(format!(
                        "the key {} is encrypted and no ssh-agent is running (SSH_AUTH_SOCK): \
                         start one and `ssh-add {}`, or give an unencrypted key with `--key`",
                        path.display(),
                        path.display()
                    )));
                };
                if with_agent(handle, user, &mut agent, Some(&public)).await? {
                    Ok(())
                } else {
                    Err(RemoteError::Auth(format!(
                        "the key {} is encrypted and the agent does not hold it: `ssh-add {}`",
                        path.display(),
                        path.display()
                    )))
                }
            }
        };
    }
    if let Some(mut agent) = agent().await
        && with_agent(handle, user, &mut agent, None).await?
    {
        return Ok(());
    }
    let home = std::env::home_dir().unwrap_or_default();
    for name in ["id_ed25519", "id_ecdsa", "id_rsa"] {
        let path = home.join(".ssh").join(name);
        if !path.is_file() {
            continue;
        }
        if let Ok(KeyFile::Plain(key)) = read_key(&path)
            && with_plain(handle, user, *key).await?
        {
            return Ok(());
        }
    }
    Err(denied(
        "agent keys and ~/.ssh/id_*; give a key with `--key PATH`",
    ))
}
