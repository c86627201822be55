//! Output split into lines as it streams in: a model's log, a build's, a download's.

/// Splits a stream of bytes into lines (at `\n` or `\r`, as progress bars redraw).
#[derive(Default)]
pub(crate) struct Lines {
    pending: Vec<u8>,
}

impl Lines {
    /// Hands each line completed by `bytes` to `each` (without its end); keeps the rest.
    pub(crate) fn push(&mut self, bytes: &[u8], mut each: impl FnMut(&str)) {
        let mut rest = bytes;
        while let Some(end) = rest.iter().position(|b| *b == b'\n' || *b == b'\r') {
            self.pending.extend_from_slice(&rest[..end]);
            each(&String::from_utf8_lossy(&self.pending));
            self.pending.clear();
            rest = &rest[end + 1..];
        }
        self.pending.extend_from_slice(rest);
    }
}
