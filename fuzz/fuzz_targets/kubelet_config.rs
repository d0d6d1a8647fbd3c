//! KubeletConfiguration files (YAML or JSON) and flags: the file is decoded strictly and then
//! resolved with the flags into settings, as `kubelet-rs --config FILE FLAGS...` does.
//!
//! Input: the first line is the flags (split on spaces), the rest the file. Checked: no panic;
//! every refusal is an error value.

#![no_main]

use std::path::Path;

use clap::Parser;
use kubelet_rs::config::file::parse_config;
use kubelet_rs::config::{resolve, Flags};
use libfuzzer_sys::fuzz_target;

#[derive(Parser, Debug)]
struct Cli {
    #[command(flatten)]
    flags: Flags,
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (args, file) = text.split_once('\n').unwrap_or((text, ""));
    let mut argv = vec!["kubelet-rs"];
    argv.extend(args.split(' ').filter(|a| !a.is_empty()));
    let Ok(cli) = Cli::try_parse_from(argv) else {
        return;
    };
    let path = Path::new("/fuzz/kubelet.yaml");
    let parsed = parse_config(file, path);
    let _ = resolve(&cli.flags, parsed.as_ref().ok().map(|c| (path, c)), "fuzz-host");
});
