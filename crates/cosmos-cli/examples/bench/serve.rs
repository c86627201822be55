//! What the `cosmos serve` benchmarks share (included with `#[path]`; not an example itself):
//! the release binary on a home, and a server started on a free loopback port.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

use cosmos_testkit::workspace_root;

/// The release `cosmos` on `home`.
pub fn cosmos(home: &Path) -> Command {
    let mut c = Command::new(workspace_root().join("target/release/cosmos"));
    c.env("COSMOS_HOME", home).env("NO_COLOR", "1");
    c
}

/// Starts `cosmos serve --bind 127.0.0.1:0 ARGS…` on `home`; the process and its address.
/// The server's warnings (a slow request, a slow refresh) are printed as part of the result.
pub fn serve(home: &Path, args: &[&str]) -> (Child, String) {
    let mut server = cosmos(home)
        .args(["serve", "--bind", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("cosmos serve");
    let mut lines = BufReader::new(server.stderr.take().expect("stderr")).lines();
    let addr = lines
        .by_ref()
        .map_while(Result::ok)
        .find_map(|l| {
            l.strip_prefix("serving http://")
                .and_then(|r| r.split('/').next())
                .map(str::to_owned)
        })
        .expect("the server's address");
    std::thread::spawn(move || {
        for line in lines.map_while(Result::ok) {
            if line.contains(" WARN ") || line.contains(" ERROR ") {
                eprintln!("server: {line}");
            }
        }
    });
    (server, addr)
}
