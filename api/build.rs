//! Builds the web console (`console/`, Vite) and embeds its files in the binary, so that
//! `cargo run --bin brightrun -- serve` serves it at `/` with no other step.
//!
//! - `BRIGHTRUN_CONSOLE_DIST=<folder>`: embed that already built folder instead.
//! - Without `npm` on the machine, a page saying how to build the console is embedded.
//!
//! `npm ci` runs only when `console/node_modules` is missing or older than the lockfile.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets it"));
    let console = manifest.join("../console");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets it"));
    for path in [
        "src",
        "index.html",
        "package.json",
        "package-lock.json",
        "vite.config.ts",
    ] {
        println!("cargo:rerun-if-changed={}", console.join(path).display());
    }
    println!("cargo:rerun-if-env-changed=BRIGHTRUN_CONSOLE_DIST");

    let dist = match std::env::var_os("BRIGHTRUN_CONSOLE_DIST") {
        Some(dir) => PathBuf::from(dir),
        None => match build(&console, &out.join("console")) {
            Ok(dir) => dir,
            Err(why) => {
                println!("cargo:warning=the web console was not built ({why}); / answers a page saying so");
                placeholder(&out.join("console-placeholder"), &why)
            }
        },
    };
    let mut files = Vec::new();
    collect(&dist, &dist, &mut files);
    files.sort();
    let mut code = String::from("/// The console's files: (path under /, bytes).\npub static FILES: &[(&str, &[u8])] = &[\n");
    for (rel, abs) in &files {
        code.push_str(&format!("    ({rel:?}, include_bytes!({abs:?})),\n"));
    }
    code.push_str("];\n");
    std::fs::write(out.join("console_files.rs"), code).expect("OUT_DIR is writable");
}

fn build(console: &Path, into: &Path) -> Result<PathBuf, String> {
    let npm = if cfg!(windows) { "npm.cmd" } else { "npm" };
    let lock = console.join("package-lock.json");
    let installed = console.join("node_modules/.package-lock.json");
    let stale = match (modified(&lock), modified(&installed)) {
        (Some(l), Some(i)) => l > i,
        _ => true,
    };
    if stale {
        run(Command::new(npm)
            .args(["ci", "--no-audit", "--no-fund", "--prefer-offline"])
            .current_dir(console))?;
    }
    run(Command::new(npm)
        .args(["run", "build", "--silent"])
        .env("CONSOLE_OUT_DIR", into)
        .current_dir(console))?;
    Ok(into.to_path_buf())
}

fn run(command: &mut Command) -> Result<(), String> {
    let output = command
        .output()
        .map_err(|e| format!("cannot run {command:?}: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{command:?} failed: {}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

fn modified(path: &Path) -> Option<std::time::SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn placeholder(dir: &Path, why: &str) -> PathBuf {
    std::fs::create_dir_all(dir).expect("OUT_DIR is writable");
    let why = why.replace('&', "&amp;").replace('<', "&lt;");
    let page = format!(
        "<!doctype html><html lang=\"en\"><meta charset=\"utf-8\"><title>BrightRun</title>\
         <h1>The BrightRun console was not built</h1><p>Building it needs Node.js and npm: \
         install them and build again (<code>cargo build</code> runs <code>npm ci</code> and \
         <code>npm run build</code> in <code>console/</code>). The API is served under \
         <a href=\"/api/docs\">/api</a>.</p><pre>{why}</pre></html>"
    );
    std::fs::write(dir.join("index.html"), page).expect("OUT_DIR is writable");
    dir.to_path_buf()
}

fn collect(root: &Path, dir: &Path, files: &mut Vec<(String, String)>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            collect(root, &path, files);
        } else if let Ok(rel) = path.strip_prefix(root) {
            let rel = rel.to_string_lossy().replace('\\', "/");
            files.push((rel, path.display().to_string()));
        }
    }
}
