//! Benchmark: cosmos's SFTP upload against OpenSSH `scp` on the same files over loopback, in
//! one run, against the test kit's sshd. Then the same upload again, which must move 0 bytes.
//!
//!     cargo run --release -p cosmos-remote --example sftp-vs-scp [-- MIB_TOTAL]

use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use cosmos_remote::blobs::{self, LocalBlob};
use cosmos_remote::ssh::hostkeys::KnownHosts;
use cosmos_remote::ssh::{SftpFiles, SshConnection, SshSpec};
use cosmos_remote::{Host, args};
use cosmos_testkit::SshHost;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let total_mib: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1024);
    let files = 4;
    let host = SshHost::start()?;
    let dir = tempfile::tempdir()?;
    let mut blobs_in = Vec::new();
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for i in 0..files {
        let path = dir.path().join(format!("input{i}.bin"));
        let size = total_mib * 1024 * 1024 / files;
        let mut data = vec![0u8; size];
        for chunk in data.chunks_mut(8) {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            chunk.copy_from_slice(&seed.to_le_bytes()[..chunk.len()]);
        }
        std::fs::write(&path, &data)?;
        let (sha256, size) = blobs::hash_local(&path)?;
        blobs_in.push(LocalBlob { path, sha256, size });
    }
    let bytes: u64 = blobs_in.iter().map(|b| b.size).sum();
    let mib = bytes as f64 / 1048576.0;

    // OpenSSH scp (SFTP protocol underneath in OpenSSH 9), same key, same host.
    let scp_dir = host.root().join("scp");
    std::fs::create_dir_all(&scp_dir)?;
    let _ = Command::new("chown")
        .arg(host.user())
        .arg(&scp_dir)
        .status();
    let t = Instant::now();
    let st = Command::new("scp")
        .args(["-q", "-B", "-i"])
        .arg(host.client_key())
        .arg("-o")
        .arg(format!(
            "UserKnownHostsFile={}",
            host.known_hosts().display()
        ))
        .args([
            "-o",
            "StrictHostKeyChecking=yes",
            "-P",
            &host.port().to_string(),
        ])
        .args(blobs_in.iter().map(|b| b.path.clone()))
        .arg(format!("{}@127.0.0.1:{}/", host.user(), scp_dir.display()))
        .status()?;
    let scp_secs = t.elapsed().as_secs_f64();
    assert!(st.success(), "scp failed");

    let conn = SshConnection::new(SshSpec {
        name: "bench".into(),
        host: "127.0.0.1".into(),
        port: host.port(),
        user: host.user().into(),
        identity: Some(host.client_key()),
        jump: None,
        known_hosts: KnownHosts::new(host.known_hosts(), None),
        connect_timeout: cosmos_remote::ssh::CONNECT_TIMEOUT,
    });
    let h = Host {
        runner: conn.clone(),
        files: Arc::new(SftpFiles::new(conn.clone())),
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let root = host.root().display().to_string();
    let (raw_secs, verified_secs, again_bytes) = rt.block_on(async {
        conn.connect().await?;
        // Raw SFTP puts, the part comparable with scp.
        let t = Instant::now();
        for (i, b) in blobs_in.iter().enumerate() {
            h.files
                .put(&b.path, &format!("{root}/raw{i}"), 0, &|_| {})
                .await?;
        }
        let raw = t.elapsed().as_secs_f64();
        // The full content-addressed upload: put, sha256 on the target, rename.
        let t = Instant::now();
        blobs::upload_all(
            &h,
            &root,
            &blobs_in,
            blobs::Verify::Stamp,
            4,
            Arc::new(|_| {}),
        )
        .await?;
        let verified = t.elapsed().as_secs_f64();
        let (_, again) = blobs::upload_all(
            &h,
            &root,
            &blobs_in,
            blobs::Verify::Stamp,
            4,
            Arc::new(|_| {}),
        )
        .await?;
        h.ok("clean up", &args(&["rm", "-rf", &format!("{root}/blobs")]))
            .await?;
        Ok::<_, cosmos_remote::RemoteError>((raw, verified, again.bytes))
    })?;
    println!(
        "files: {files} x {:.0} MiB = {mib:.0} MiB over loopback",
        mib / files as f64
    );
    println!(
        "scp (OpenSSH):                  {scp_secs:6.2} s  {:7.1} MiB/s",
        mib / scp_secs
    );
    println!(
        "cosmos SFTP put:                {raw_secs:6.2} s  {:7.1} MiB/s  ({:.0}% of scp)",
        mib / raw_secs,
        100.0 * scp_secs / raw_secs
    );
    println!(
        "cosmos upload, sha256-verified: {verified_secs:6.2} s  {:7.1} MiB/s",
        mib / verified_secs
    );
    println!("re-upload of unchanged inputs:  {again_bytes} bytes sent");
    Ok(())
}
