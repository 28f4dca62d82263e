//! AFL++ target: [`layover_fuzz::policy_decoder`] on each input (`cargo xtask fuzz`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        layover_fuzz::policy_decoder(data);
    });
}
