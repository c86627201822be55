//! The test kit's own guarantees: hosts that start fast and apart, clean-up on drop, and a
//! clear failure when a piece of infrastructure is missing.

use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use cosmos_testkit::{HostOptions, SshHost, sim_image, start_hosts};

use super::support::TestResult;

#[test]
fn three_hosts_have_their_own_ports_keys_and_roots() -> TestResult {
    let hosts = start_hosts(3)?;
    let mut ports: Vec<u16> = hosts.iter().map(SshHost::port).collect();
    ports.sort_unstable();
    ports.dedup();
    assert_eq!(ports.len(), 3);
    let keys: std::collections::HashSet<String> = hosts
        .iter()
        .map(|h| h.host_public_key())
        .collect::<Result<_, _>>()?;
    assert_eq!(keys.len(), 3, "each host has a fresh host key");
    for host in &hosts {
        assert!(host.root().is_dir() && host.cosmos_dir().join("checkpoints").is_dir());
        // Measured for docs/BENCHMARKS.md; the budget is a second per sshd.
        eprintln!(
            "sshd fixture on port {} started in {:?}",
            host.port(),
            host.startup_time()
        );
        let out = host.ssh(&["sh", "-c", "echo $COSMOS_SIM_GPUS; nvidia-smi -L | wc -l; docker version --format '{{.Server.Version}}'"]).output()?;
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[..2], ["8", "8"], "{text}");
        assert!(
            !lines[2].is_empty(),
            "the remote user reaches the Docker engine: {text}"
        );
    }
    let other = &hosts[1];
    // Host 0's client key is not authorised on host 1, and key checking is strict.
    let mut cross = hosts[0].ssh(&["true"]);
    let args: Vec<String> = cross
        .get_args()
        .map(|a| a.to_string_lossy().into_owned())
        .collect();
    let port_at = args
        .iter()
        .position(|a| a == "-p")
        .map(|i| i + 1)
        .unwrap_or_default();
    let mut cmd = Command::new("ssh");
    for (i, a) in args.iter().enumerate() {
        cmd.arg(if i == port_at {
            other.port().to_string()
        } else {
            a.clone()
        });
    }
    assert!(
        !cmd.output()?.status.success(),
        "a foreign host key and client key must be refused"
    );
    assert!(cross.output()?.status.success());
    Ok(())
}

#[test]
fn a_host_reports_no_gpus_when_asked() -> TestResult {
    let host = SshHost::start_with(HostOptions {
        gpus: 0,
        ..HostOptions::default()
    })?;
    let out = host.ssh(&["nvidia-smi"]).output()?;
    assert_eq!(out.status.code(), Some(9));
    Ok(())
}

#[test]
fn drop_stops_sshd_and_removes_its_containers() -> TestResult {
    let image = sim_image()?;
    let mut host = SshHost::start()?;
    let label = host.container_label();
    let out = host
        .ssh(&[
            "docker", "run", "--detach", "--label", &label, &image, "sleep", "300",
        ])
        .output()?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let port = host.port();
    host.stop();
    assert!(!host.is_running());
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .is_err(),
        "sshd still listens"
    );
    host.restart()?;
    assert_eq!(host.port(), port, "a restarted host keeps its port");
    assert!(host.ssh(&["true"]).status()?.success(), "and its host key");
    drop(host);
    let left = Command::new("docker")
        .args(["ps", "-aq", "--filter", &format!("label={label}")])
        .output()?;
    assert!(
        String::from_utf8_lossy(&left.stdout).trim().is_empty(),
        "containers survived the fixture"
    );
    assert!(
        TcpStream::connect_timeout(&([127, 0, 0, 1], port).into(), Duration::from_millis(500))
            .is_err()
    );
    Ok(())
}

#[test]
fn a_missing_sshd_is_named_with_its_ci_step() {
    let err = SshHost::start_with(HostOptions {
        sshd: Some("/nonexistent/sshd".into()),
        ..HostOptions::default()
    })
    .expect_err("there is no sshd there");
    let text = err.to_string();
    assert!(text.contains("`/nonexistent/sshd` not found"), "{text}");
    assert!(text.contains("apt-get install -y openssh-server"), "{text}");
}
