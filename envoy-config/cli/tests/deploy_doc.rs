//! Every `layover …` command in envoy-config/docs/deploy.md runs, from the repository root,
//! with the flags shown, and succeeds: the guide cannot drift from the CLI. Commands are the
//! lines of ```sh blocks that start with `layover ` (no shell syntax on those lines).

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::Path;
use std::process::Command;

fn repo_root() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
}

/// The `layover` command lines of the ```sh blocks.
fn commands(doc: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut in_sh = false;
    for line in doc.lines() {
        let t = line.trim();
        if t.starts_with("```") {
            in_sh = !in_sh && t == "```sh";
            continue;
        }
        if in_sh && t.starts_with("layover ") {
            out.push(t.to_string());
        }
    }
    out
}

/// Whitespace-separated words, with single or double quotes grouping.
fn words(line: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut quote = None;
    let mut any = false;
    for c in line.chars() {
        match (quote, c) {
            (None, '\'' | '"') => {
                quote = Some(c);
                any = true;
            }
            (Some(q), c) if c == q => quote = None,
            (None, c) if c.is_whitespace() => {
                if any {
                    out.push(std::mem::take(&mut cur));
                    any = false;
                }
            }
            (_, c) => {
                cur.push(c);
                any = true;
            }
        }
    }
    assert!(quote.is_none(), "unbalanced quotes: {line}");
    if any {
        out.push(cur);
    }
    out
}

#[test]
fn every_layover_command_in_the_deploy_guide_runs() {
    let doc = std::fs::read_to_string(repo_root().join("envoy-config/docs/deploy.md")).unwrap();
    let cmds = commands(&doc);
    for sub in ["compile", "eval", "manifests", "envoy"] {
        assert!(
            cmds.iter()
                .any(|c| c.starts_with(&format!("layover {sub} "))),
            "deploy.md shows no `layover {sub}` command"
        );
    }
    for line in &cmds {
        assert!(
            !line.contains(['|', '>', '<', '$', '`', ';', '&']),
            "shell syntax in a checked command: {line}"
        );
        let args = words(line);
        let out = Command::new(env!("CARGO_BIN_EXE_layover"))
            .args(&args[1..])
            // `layover envoy` needs the built module (`cargo xtask test` builds it first).
            .current_dir(repo_root())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "`{line}` failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
