//! AFL++ target: [`layover_fuzz::decide`] on each input (`cargo xtask fuzz`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        layover_fuzz::decide(data);
    });
}
