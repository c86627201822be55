//! Measures how long an sshd fixture takes to start (keys, checkout, sshd listening) and to
//! answer its first `ssh true`, over N hosts. Figures go to docs/BENCHMARKS.md.
//!
//! cargo run --release -p cosmos-testkit --example fixture-startup -- 20

use std::time::{Duration, Instant};

use cosmos_testkit::{SshHost, sim_image};

fn summary(name: &str, mut xs: Vec<Duration>) {
    xs.sort_unstable();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{name:<28} min {:>7.1} ms  median {:>7.1} ms  max {:>7.1} ms  (n={})",
        ms(xs[0]),
        ms(xs[xs.len() / 2]),
        ms(xs[xs.len() - 1]),
        xs.len()
    );
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse())
        .transpose()?
        .unwrap_or(20)
        .max(1);
    // Built once per test process; not part of a fixture's start.
    sim_image()?;
    let mut starts = Vec::new();
    let mut first_login = Vec::new();
    for _ in 0..n {
        let began = Instant::now();
        let host = SshHost::start()?;
        starts.push(began.elapsed());
        let began = Instant::now();
        let ok = host.ssh(&["true"]).status()?.success();
        first_login.push(began.elapsed());
        if !ok {
            return Err("ssh true failed".into());
        }
    }
    summary("SshHost::start", starts);
    summary("first `ssh true` (OpenSSH)", first_login);
    Ok(())
}
