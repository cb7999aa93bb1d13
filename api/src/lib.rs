//! The HTTP API and the `brightrun` binary's commands.

pub mod app;
pub mod console;
pub mod contract;
pub mod demo;
pub mod envelope;
pub mod error;
pub mod extract;
pub mod http_server;
pub mod live;
pub mod multipart;
pub mod openai_error;
pub mod openapi;
pub mod parked;
pub mod rate_limit;
pub mod request_id;
pub mod routes;
pub mod security_headers;
pub mod state;
pub mod telemetry;

pub use app::{router, serve, start, Roles, Service};

#[cfg(test)]
mod tests {
    /// The read side lives beside its projectors (`projections/src/<model>/queries.rs`);
    /// handlers only extract, call and map.
    #[test]
    fn the_api_crate_holds_no_sql() {
        fn walk(dir: &std::path::Path, found: &mut Vec<String>) {
            for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, found);
                } else if path.extension().is_some_and(|e| e == "rs") {
                    let text = std::fs::read_to_string(&path).unwrap_or_default();
                    for (i, line) in text.lines().enumerate() {
                        // Spelled in two parts, so this test does not find itself.
                        if line.contains(concat!("sqlx", "::query")) {
                            found.push(format!("{}:{}", path.display(), i + 1));
                        }
                    }
                }
            }
        }
        let mut found = Vec::new();
        walk(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
            &mut found,
        );
        assert!(found.is_empty(), "SQL in the api crate: {found:?}");
    }

    /// The repository holds sources, not built or downloaded things: no packages or binaries
    /// (wheels, archives, libraries), and no file over 1 MiB but the generated OpenAPI
    /// document. (A setuptools wheel nothing used was once checked in.)
    #[test]
    fn the_repository_holds_no_packages_or_large_files() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let Ok(listed) = std::process::Command::new("git")
            .arg("-C")
            .arg(&root)
            .args(["ls-files", "-z"])
            .output()
        else {
            return; // not a git checkout: nothing to say
        };
        let packaged = [
            ".whl",
            ".tar.gz",
            ".tgz",
            ".zip",
            ".so",
            ".dylib",
            ".dll",
            ".exe",
            ".jar",
            ".gguf",
            ".safetensors",
            ".bin",
            ".pt",
        ];
        let mut found = Vec::new();
        for path in listed.stdout.split(|b| *b == 0).filter(|p| !p.is_empty()) {
            let path = String::from_utf8_lossy(path).to_string();
            let size = std::fs::metadata(root.join(&path)).map_or(0, |m| m.len());
            if packaged.iter().any(|ext| path.ends_with(ext))
                || (size > 1024 * 1024 && path != "openapi/openapi.json")
            {
                found.push(format!("{path} ({size} bytes)"));
            }
        }
        assert!(found.is_empty(), "packages or large files: {found:?}");
    }
}
