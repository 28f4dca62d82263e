//! The `layover` command.

fn main() {}
