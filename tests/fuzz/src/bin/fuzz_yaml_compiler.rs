//! AFL++ target: [`layover_fuzz::yaml_compiler`] on each input (`cargo xtask fuzz`).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        layover_fuzz::yaml_compiler(data);
    });
}
