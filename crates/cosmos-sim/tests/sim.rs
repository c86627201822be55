//! The simulator's contract (DESIGN.md §6, Appendix A), run directly and inside the image
//! through a real sshd and the real Docker engine.

mod sim {
    pub mod docker;
    pub mod failures;
    pub mod fixtures;
    pub mod setup;
    pub mod smi;
    pub mod support;
    pub mod transfer;
    pub mod transfer25;
}
