//! What the model prints: loguru lines on stdout (rank 0 only) and tqdm's clip bar on stderr.

use std::io::Write;
use std::time::{Duration, Instant};

/// Where a log line claims to come from, as loguru prints it (`path:line:function`).
#[derive(Debug, Clone, Copy)]
pub struct Site {
    pub file: &'static str,
    pub line: u32,
    pub func: &'static str,
}

pub const fn site(file: &'static str, line: u32, func: &'static str) -> Site {
    Site { file, line, func }
}

/// Source files of cosmos-transfer1 that log the milestones, relative to the checkout.
pub mod src {
    pub const TRANSFER: &str = "cosmos_transfer1/diffusion/inference/transfer.py";
    pub const UTILS: &str = "cosmos_transfer1/diffusion/inference/inference_utils.py";
    pub const PIPELINE: &str = "cosmos_transfer1/diffusion/inference/world_generation_pipeline.py";
    pub const PREPROCESSORS: &str = "cosmos_transfer1/diffusion/inference/preprocessors.py";
    pub const MODEL: &str = "cosmos_transfer1/diffusion/model/model_ctrl.py";
    pub const MISC: &str = "cosmos_transfer1/utils/misc.py";
    pub const DISTRIBUTED: &str = "cosmos_transfer1/utils/distributed.py";
    pub const GUARDRAIL: &str = "cosmos_transfer1/auxiliary/guardrail/common/presets.py";
    pub const T5: &str = "cosmos_transfer1/utils/t5_text_encoder.py";
    pub const AUGMENT: &str = "cosmos_transfer1/diffusion/datasets/augmentors/control_input.py";
    pub const UPSAMPLER: &str = "cosmos_transfer1/auxiliary/upsampler/model/upsampler.py";
}

/// One loguru line: `[MM-DD HH:mm:ss|LEVEL|path:line:function] message`.
pub fn format_line(level: &str, at: Site, message: &str) -> String {
    let now = chrono::Local::now().format("%m-%d %H:%M:%S");
    format!(
        "[{now}|{level}|{}:{}:{}] {message}",
        at.file, at.line, at.func
    )
}

fn emit(level: &str, at: Site, message: &str) {
    let line = format_line(level, at, message);
    let mut out = std::io::stdout().lock();
    // A closed stdout must not turn into a panic; the model would carry on too.
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

pub fn info(at: Site, message: &str) {
    emit("INFO", at, message);
}

pub fn warning(at: Site, message: &str) {
    emit("WARNING", at, message);
}

pub fn critical(at: Site, message: &str) {
    emit("CRITICAL", at, message);
}

/// A raw `print()` on stdout.
pub fn print(message: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{message}");
    let _ = out.flush();
}

/// Writes to stderr without panicking on a closed pipe.
pub fn stderr(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes());
    let _ = err.flush();
}

/// tqdm's default bar, redrawn in place with `\r` on stderr, one per rank.
#[derive(Debug)]
pub struct ClipBar {
    total: u64,
    done: u64,
    ranks: u32,
    started: Instant,
}

impl ClipBar {
    pub fn start(total: u64, ranks: u32) -> Self {
        let bar = Self {
            total,
            done: 0,
            ranks: ranks.max(1),
            started: Instant::now(),
        };
        bar.draw();
        bar
    }

    pub fn advance(&mut self) {
        self.done = (self.done + 1).min(self.total);
        self.draw();
    }

    pub fn close(self) {
        stderr("\n");
    }

    fn draw(&self) {
        let line = render_bar(self.done, self.total, self.started.elapsed());
        let mut text = String::new();
        for _ in 0..self.ranks {
            text.push('\r');
            text.push_str(&line);
        }
        stderr(&text);
    }
}

fn clock(d: Duration) -> String {
    let s = d.as_secs();
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// `{pct}%|{bar}| n/total [elapsed<remaining, rate]` as tqdm draws it.
pub fn render_bar(done: u64, total: u64, elapsed: Duration) -> String {
    let width = 10u64;
    let filled = (done * width).checked_div(total).unwrap_or(0);
    let pct = (done * 100).checked_div(total).unwrap_or(0);
    let bar: String = "█".repeat(filled as usize) + &" ".repeat((width - filled) as usize);
    let (remaining, rate) = if done == 0 {
        ("?".to_owned(), "?it/s".to_owned())
    } else {
        let per = elapsed.as_secs_f64() / done as f64;
        let left = Duration::from_secs_f64(per * (total - done) as f64);
        let rate = if per >= 1.0 {
            format!("{per:.2}s/it")
        } else {
            format!("{:.2}it/s", 1.0 / per.max(1e-9))
        };
        (clock(left), rate)
    };
    format!(
        "{pct:>3}%|{bar}| {done}/{total} [{}<{remaining}, {rate}]",
        clock(elapsed)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_have_loguru_shape() {
        let line = format_line(
            "INFO",
            site(src::PIPELINE, 615, "_run_model"),
            "Starting diffusion sampling",
        );
        let (stamp, rest) = line.split_once('|').unwrap();
        assert_eq!(stamp.len(), "[MM-DD HH:mm:ss".len(), "{line}");
        assert!(rest.ends_with("|cosmos_transfer1/diffusion/inference/world_generation_pipeline.py:615:_run_model] Starting diffusion sampling"), "{line}");
    }

    #[test]
    fn bar_draws_like_tqdm() {
        assert_eq!(
            render_bar(0, 2, Duration::ZERO),
            "  0%|          | 0/2 [00:00<?, ?it/s]"
        );
        assert_eq!(
            render_bar(1, 2, Duration::from_secs(3)),
            " 50%|█████     | 1/2 [00:03<00:03,  3.00s/it]".replacen(",  3", ", 3", 1)
        );
        assert!(
            render_bar(4, 4, Duration::from_millis(400))
                .starts_with("100%|██████████| 4/4 [00:00<00:00, 10.00it/s")
        );
    }
}
