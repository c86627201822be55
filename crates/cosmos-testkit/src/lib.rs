//! Fixtures on real infrastructure for cosmos's tests (DESIGN.md §6): OpenSSH `sshd` hosts on
//! 127.0.0.1 with fresh keys, the real Docker engine, and the `cosmos-sim` image built locally.
//! A dev-dependency only. Missing infrastructure is an error naming the piece and the `.ci/run`
//! step that installs it; nothing here passes silently.

mod browser;
mod containers;
mod data;
mod error;
mod keyring;
mod sim;
mod sshd;
mod tools;

pub use browser::{Browser, Element};
pub use data::{sample_input_set, test_video};
pub use error::{KitError, KitResult};
pub use keyring::SecretService;
pub use sim::{sim_binary, sim_image, workspace_root};
pub use sshd::{HostOptions, REMOTE_USER, SshHost, start_hosts};
pub use tools::{Tool, require};
