//! The `mediagate` binary (admin commands come in the next commit).

fn main() {}
