//! Every `paceline.toml` the README prints parses, as printed, under both commands: `run` and
//! `serve` read one vocabulary (`base_url`, `provider`, `[[keys]]`, …), and each accepts the
//! other's settings, so a file written for one works in the other.

use paceline::config::{ConfigFile, RawConfig, RawRunConfig, RunConfig};
use paceline::gateway::{GatewayConfig, RawGatewayConfig};

/// The README's TOML blocks: (line of the opening fence, text).
fn toml_blocks(readme: &str) -> Vec<(usize, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(usize, String)> = None;
    for (i, line) in readme.lines().enumerate() {
        match &mut open {
            None if line.trim_start().starts_with("```toml") => open = Some((i + 1, String::new())),
            None => {}
            Some(_) if line.trim_start().starts_with("```") => blocks.extend(open.take()),
            Some((_, text)) => {
                text.push_str(line);
                text.push('\n');
            }
        }
    }
    assert!(open.is_none(), "a ```toml block is never closed");
    blocks
}

#[test]
fn every_readme_config_parses_under_run_and_serve() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md"))
        .expect("read README.md");
    let blocks = toml_blocks(&readme);
    assert!(blocks.len() >= 6, "the README's configs: {}", blocks.len());
    for (line, text) in blocks {
        let name = format!("README.md block at line {line}");
        let run: Result<RunConfig, _> =
            RawRunConfig::from_file(ConfigFile::new(&name, text.as_str()))
                .and_then(TryInto::try_into);
        if let Err(err) = run {
            panic!("under run: {err}\n{text}");
        }
        let serve: Result<GatewayConfig, _> =
            RawGatewayConfig::from_file(ConfigFile::new(&name, text.as_str()))
                .and_then(TryInto::try_into);
        if let Err(err) = serve {
            panic!("under serve: {err}\n{text}");
        }
    }
}

#[test]
fn a_misspelt_setting_is_still_refused_by_both() {
    let text = "base_url = \"http://127.0.0.1:9/v1\"\nmax_wiat = \"30s\"\n";
    let run = RawRunConfig::from_file(ConfigFile::new("p.toml", text)).map(|_| ());
    let serve = RawGatewayConfig::from_file(ConfigFile::new("p.toml", text)).map(|_| ());
    for err in [run.unwrap_err(), serve.unwrap_err()] {
        let err = err.to_string();
        assert!(err.contains("p.toml") && err.contains("max_wiat"), "{err}");
    }
}
