use std::fmt;

/// Why a fixture could not start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KitError(pub String);

pub type KitResult<T> = Result<T, KitError>;

impl fmt::Display for KitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for KitError {}

impl KitError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self(message.into())
    }
}
