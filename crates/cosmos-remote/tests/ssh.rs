//! The SSH runner and SFTP store against a real OpenSSH sshd (the test kit's fixture).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use rand::Rng;

use cosmos_remote::blobs::{self, LocalBlob, Verify};
use cosmos_remote::ssh::hostkeys::{HostKeyVerdict, KnownHosts};
use cosmos_remote::ssh::{SftpFiles, SshConnection, SshSpec, scan_host_key};
use cosmos_remote::{CommandRunner, Host, RemoteError, args};
use cosmos_testkit::SshHost;

fn spec(host: &SshHost, known: KnownHosts) -> SshSpec {
    SshSpec {
        name: "fixture".into(),
        host: "127.0.0.1".into(),
        port: host.port(),
        user: host.user().into(),
        identity: Some(host.client_key()),
        jump: None,
        known_hosts: known,
        connect_timeout: cosmos_remote::ssh::CONNECT_TIMEOUT,
    }
}

fn pinned(host: &SshHost) -> SshSpec {
    spec(host, KnownHosts::new(host.known_hosts(), None))
}

fn connect(host: &SshHost) -> (Arc<SshConnection>, Host) {
    let conn = SshConnection::new(pinned(host));
    let h = Host {
        runner: conn.clone(),
        files: Arc::new(SftpFiles::new(conn.clone())),
    };
    (conn, h)
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

#[test]
fn commands_run_over_one_reused_connection() {
    let host = SshHost::start().expect("sshd fixture");
    let (conn, _) = connect(&host);
    runtime().block_on(async {
        let out = conn
            .run(&args(&["sh", "-c", "echo out; echo err >&2; exit 3"]))
            .await
            .expect("run");
        assert_eq!(out.code, Some(3));
        assert_eq!(out.stdout_text(), "out\n");
        assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
        // The same sshd session serves every later command: its parent pid never changes.
        let first = conn
            .run(&args(&["sh", "-c", "ps -o ppid= -p $PPID"]))
            .await
            .expect("ppid");
        let mut times = Vec::new();
        for _ in 0..20 {
            let t = Instant::now();
            let again = conn
                .run(&args(&["sh", "-c", "ps -o ppid= -p $PPID"]))
                .await
                .expect("ppid");
            times.push(t.elapsed());
            assert_eq!(again.stdout, first.stdout, "a new connection was opened");
        }
        times.sort();
        // Informational: a warm command's median, for the record.
        eprintln!("warm command median: {:?}", times[times.len() / 2]);
    });
}

/// Random strings of awkward characters survive the one quoting function through a real
/// `sh` on the remote side byte for byte.
#[test]
fn quoting_round_trips_through_a_real_shell() {
    let host = SshHost::start().expect("sshd fixture");
    let (conn, _) = connect(&host);
    let alphabet: Vec<char> = " \t\n'\"\\$`!*?[]{}()<>|&;#~=%^,:-_aé€😀漢"
        .chars()
        .collect();
    let mut rng = rand::rng();
    let mut cases: Vec<String> = vec![
        "'; rm -rf ~ #".into(),
        "$(touch /tmp/pwned)".into(),
        "`id`".into(),
        String::new(),
        "-n".into(),
        "a\nb".into(),
    ];
    for _ in 0..60 {
        let len = rng.random_range(0..24);
        cases.push(
            (0..len)
                .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                .collect(),
        );
    }
    runtime().block_on(async {
        for case in cases {
            // printf %s\0 prints each argument exactly, NUL-terminated.
            let argv = args(&["printf", "%s\\0", &case, "end"]);
            let out = conn.run(&argv).await.expect("printf");
            assert!(out.success(), "{case:?}: {}", out.last_words());
            let want = format!("{case}\0end\0");
            assert_eq!(
                out.stdout,
                want.as_bytes(),
                "{case:?} was altered by the shell"
            );
        }
    });
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    let host = SshHost::start().expect("sshd fixture");
    let dir = tempfile::tempdir().expect("temp dir");
    runtime().block_on(async {
        // Unknown: an empty known_hosts file.
        let own = dir.path().join("known_hosts");
        let unknown = SshConnection::new(spec(&host, KnownHosts::new(own.clone(), None)));
        let e = unknown
            .connect()
            .await
            .expect_err("unknown key must be refused");
        assert!(matches!(e, RemoteError::UnknownHostKey { .. }), "{e}");
        // Which target, in the library's words; the CLI adds the command that trusts it.
        assert!(
            e.to_string()
                .contains("(target `fixture`) is not trusted yet"),
            "{e}"
        );

        // Trusting it (what `cosmos target trust` does) lets the connection through.
        let (key, verdict) = scan_host_key(&spec(&host, KnownHosts::new(own.clone(), None)))
            .await
            .expect("scan");
        assert_eq!(verdict, HostKeyVerdict::Unknown);
        KnownHosts::new(own.clone(), None)
            .trust("127.0.0.1", host.port(), &key)
            .expect("trust");
        SshConnection::new(spec(&host, KnownHosts::new(own.clone(), None)))
            .connect()
            .await
            .expect("trusted key connects");

        // Changed: a different key pinned for the same host and port.
        let other = dir.path().join("other");
        let st = Command::new("ssh-keygen")
            .args(["-q", "-t", "ed25519", "-N", "", "-f"])
            .arg(&other)
            .status()
            .expect("ssh-keygen");
        assert!(st.success());
        let public = std::fs::read_to_string(dir.path().join("other.pub")).expect("pub");
        let mut fields = public.split_whitespace();
        let line = format!(
            "[127.0.0.1]:{} {} {}\n",
            host.port(),
            fields.next().expect("type"),
            fields.next().expect("key")
        );
        let changed_file = dir.path().join("changed_known_hosts");
        std::fs::write(&changed_file, line).expect("write");
        let changed = SshConnection::new(spec(&host, KnownHosts::new(changed_file, None)));
        let e = changed
            .connect()
            .await
            .expect_err("changed key must be refused");
        assert!(matches!(e, RemoteError::HostKeyChanged { .. }), "{e}");
        assert!(e.to_string().contains("HAS CHANGED"), "{e}");
    });
}

#[test]
fn a_wrong_key_is_a_clear_authentication_error() {
    let host = SshHost::start().expect("sshd fixture");
    let dir = tempfile::tempdir().expect("temp dir");
    let key = dir.path().join("stranger");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "", "-f"])
        .arg(&key)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let mut s = pinned(&host);
    s.identity = Some(key);
    runtime().block_on(async {
        let e = SshConnection::new(s)
            .connect()
            .await
            .expect_err("must be refused");
        assert!(matches!(e, RemoteError::Auth(_)), "{e}");
        assert!(e.to_string().contains("authorized_keys"), "{e}");
    });

    // An encrypted key with no agent says so.
    let locked = dir.path().join("locked");
    let st = Command::new("ssh-keygen")
        .args(["-q", "-t", "ed25519", "-N", "secret-pass", "-f"])
        .arg(&locked)
        .status()
        .expect("ssh-keygen");
    assert!(st.success());
    let mut s = pinned(&host);
    s.identity = Some(locked);
    // SAFETY of the test: this process starts no agent; the variable only steers lookups.
    runtime().block_on(async {
        if std::env::var_os("SSH_AUTH_SOCK").is_none() {
            let e = SshConnection::new(s)
                .connect()
                .await
                .expect_err("must be refused");
            assert!(e.to_string().contains("encrypted"), "{e}");
            assert!(e.to_string().contains("ssh-agent"), "{e}");
        }
    });
}

#[test]
fn an_unreachable_host_is_a_transient_error() {
    let mut host = SshHost::start().expect("sshd fixture");
    let s = pinned(&host);
    host.stop();
    runtime().block_on(async {
        let e = SshConnection::new(s).connect().await.expect_err("stopped");
        assert!(e.is_transient(), "{e}");
        assert!(e.to_string().starts_with("cannot reach ssh://"), "{e}");
    });
}

fn write_random(path: &Path, size: usize) {
    let mut rng = rand::rng();
    let data: Vec<u8> = (0..size).map(|_| rng.random()).collect();
    std::fs::write(path, data).expect("write");
}

#[test]
fn blobs_upload_once_verified_and_resume() {
    let host = SshHost::start().expect("sshd fixture");
    let (conn, h) = connect(&host);
    let dir = tempfile::tempdir().expect("temp dir");
    let root = host.root().display().to_string();
    let mut blobs_in = Vec::new();
    for (i, size) in [0usize, 1, 300_000, 3_000_001].into_iter().enumerate() {
        let p = dir.path().join(format!("f{i}"));
        write_random(&p, size);
        let (sha256, size) = blobs::hash_local(&p).expect("hash");
        blobs_in.push(LocalBlob {
            path: p,
            sha256,
            size,
        });
    }
    runtime().block_on(async {
        let noop = Arc::new(|_: u64| {});
        let (paths, sent) = blobs::upload_all(&h, &root, &blobs_in, Verify::Stamp, 3, noop.clone())
            .await
            .expect("upload");
        assert_eq!(sent.bytes, blobs_in.iter().map(|b| b.size).sum::<u64>());
        let sums = h
            .sha256(&paths.iter().map(String::as_str).collect::<Vec<_>>())
            .await
            .expect("remote sums");
        for (b, s) in blobs_in.iter().zip(&sums) {
            assert_eq!(&b.sha256, s);
        }
        // Unchanged inputs: nothing crosses the wire.
        let (_, again) = blobs::upload_all(&h, &root, &blobs_in, Verify::Stamp, 3, noop.clone())
            .await
            .expect("re-upload");
        assert_eq!(again.bytes, 0);
        assert!(again.skipped);

        // Four bytes overwritten in place, same size: the stamp no longer matches, the blob is
        // hashed, found wrong and uploaded again; nothing is trusted on its size alone.
        let victim = &blobs_in[2];
        let at = blobs::blob_path(&root, &victim.sha256);
        h.ok(
            "corrupt in place",
            &args(&[
                "sh",
                "-c",
                "printf XXXX | dd of=\"$1\" bs=1 seek=100 conv=notrunc 2>/dev/null",
                "sh",
                &at,
            ]),
        )
        .await
        .expect("corrupt");
        assert_ne!(h.sha256(&[&at]).await.expect("sum")[0], victim.sha256);
        let (_, healed) = blobs::upload(&h, &root, victim, Verify::Stamp, &|_| {})
            .await
            .expect("re-upload the corrupted blob");
        assert_eq!(healed.bytes, victim.size, "uploaded again");
        assert_eq!(h.sha256(&[&at]).await.expect("sum")[0], victim.sha256);
        // Full verification hashes even a blob whose stamp matches.
        let (_, full) = blobs::upload(&h, &root, victim, Verify::Full, &|_| {})
            .await
            .expect("verify in full");
        assert!(full.skipped);

        // A partial upload left by a dropped connection resumes from its size.
        let big = &blobs_in[3];
        let target = blobs::blob_path(&root, &big.sha256);
        h.ok("remove", &args(&["rm", "-f", &target]))
            .await
            .expect("rm");
        let part = format!("{target}.part");
        let head = std::fs::read(&big.path).expect("read")[..1_000_000].to_vec();
        h.files
            .write(&part, &head, 0o644)
            .await
            .expect("write part");
        let (_, resumed) = blobs::upload(&h, &root, big, Verify::Stamp, &|_| {})
            .await
            .expect("resume");
        assert_eq!(resumed.bytes, big.size - 1_000_000);
        assert_eq!(h.sha256(&[&target]).await.expect("sum")[0], big.sha256);

        // A corrupt partial file is detected and replaced.
        h.ok("remove", &args(&["rm", "-f", &target]))
            .await
            .expect("rm");
        h.files
            .write(&part, &[7u8; 10], 0o644)
            .await
            .expect("write junk");
        blobs::upload(&h, &root, big, Verify::Stamp, &|_| {})
            .await
            .expect("re-upload");
        assert_eq!(h.sha256(&[&target]).await.expect("sum")[0], big.sha256);
        assert_eq!(h.files.size(&part).await.expect("stat"), None);

        // Downloads verify against the target's hash.
        let back = dir.path().join("back");
        let (sha, size) = blobs::download(&h, &target, None, &back, &|_| {})
            .await
            .expect("download");
        assert_eq!((sha.as_str(), size), (big.sha256.as_str(), big.size));
        assert_eq!(
            std::fs::read(&back).expect("read"),
            std::fs::read(&big.path).expect("read")
        );
        drop(conn);
    });
}

#[test]
fn secret_files_are_owner_only() {
    let host = SshHost::start().expect("sshd fixture");
    let (_, h) = connect(&host);
    let path = format!("{}/env", host.root().display());
    runtime().block_on(async {
        h.files
            .write(&path, b"HF_TOKEN=hf_x\n", 0o600)
            .await
            .expect("write");
        let out = h
            .ok("stat", &args(&["stat", "-c", "%a", &path]))
            .await
            .expect("stat");
        assert_eq!(out.stdout_text().trim(), "600");
    });
}

/// Free space is read for a root that does not exist yet (a fresh target), from the
/// filesystem that will hold it, and creates nothing.
#[test]
fn free_space_is_known_before_the_root_exists() {
    let host = SshHost::start().expect("sshd fixture");
    let (_, h) = connect(&host);
    let fresh = host.root().join("not/made/yet");
    let fresh_s = fresh.display().to_string();
    runtime().block_on(async {
        let free = h.free_bytes(&fresh_s).await.expect("df");
        let existing = h
            .free_bytes(&host.root().display().to_string())
            .await
            .expect("df");
        assert!(free.is_some_and(|f| f > 0), "{free:?}");
        // Same filesystem: the same answer, give or take what others wrote meanwhile.
        let (a, b) = (free.unwrap_or(0), existing.unwrap_or(0));
        assert!(a.abs_diff(b) < 64 << 20, "{a} vs {b}");
    });
    assert!(!fresh.exists(), "reading free space made the folder");
}

#[test]
fn a_host_that_accepts_tcp_but_never_speaks_ssh_fails_within_one_deadline_that_says_so() {
    // A listener that is never accepted from: the kernel completes TCP, nobody answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("listener");
    let port = silent.local_addr().expect("address").port();
    let spec = SshSpec {
        name: "silent".into(),
        host: "127.0.0.1".into(),
        port,
        user: "nobody".into(),
        identity: None,
        jump: None,
        known_hosts: KnownHosts::empty(),
        connect_timeout: std::time::Duration::from_secs(2),
    };
    let heard = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let notice = {
        let heard = heard.clone();
        cosmos_remote::ssh::ConnectNotice(Arc::new(move |line: &str| {
            heard.lock().expect("lock").push(line.to_owned());
        }))
    };
    let conn = SshConnection::with_notice(spec.clone(), Some(notice));
    runtime().block_on(async {
        let began = Instant::now();
        let err = conn.connect().await.expect_err("nothing answers");
        let took = began.elapsed();
        assert!(
            took >= std::time::Duration::from_secs(2) && took < std::time::Duration::from_secs(4),
            "one deadline for every attempt: {took:?}"
        );
        let text = err.to_string();
        assert!(
            text.contains(
                "accepted the connection but did not complete an SSH handshake within 2 s"
            ),
            "{text}"
        );
        let heard = heard.lock().expect("lock").clone();
        assert_eq!(heard.len(), 1, "{heard:?}");
        assert!(
            heard[0].starts_with("connecting to silent (ssh://nobody@127.0.0.1:"),
            "{heard:?}"
        );

        // Scanning the host key keeps to the same deadline.
        let began = Instant::now();
        let err = scan_host_key(&spec).await.expect_err("nothing answers");
        assert!(began.elapsed() < std::time::Duration::from_secs(4));
        assert!(
            err.to_string().contains("SSH handshake within 2 s"),
            "{err}"
        );
    });
    drop(silent);
}
