//! Embeds the web assets under `web/` (the visitor widget, the agent console) in the
//! binary, so `cargo build` needs nothing but Rust: for every file a table entry with
//! its URL path, media type, bytes, a gzip variant (kept when smaller) and an ETag
//! (SHA-256 of the bytes), written to `$OUT_DIR/assets.rs` for `src/web_assets.rs`.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error>>;

fn main() -> Result<()> {
    let root = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR")?);
    let web = root.join("web");
    let out = PathBuf::from(std::env::var("OUT_DIR")?);
    println!("cargo:rerun-if-changed=web");
    let mut files = Vec::new();
    if web.is_dir() {
        walk(&web, &mut files)?;
    }
    files.sort();
    let mut table = String::from("&[\n");
    for (i, path) in files.iter().enumerate() {
        println!("cargo:rerun-if-changed={}", path.display());
        let bytes = std::fs::read(path)?;
        let rel = path.strip_prefix(&web)?;
        let url = format!("/{}", rel.to_string_lossy().replace('\\', "/"));
        let etag: String = Sha256::digest(&bytes)[..12]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
        gz.write_all(&bytes)?;
        let gz = gz.finish()?;
        let gzip = if gz.len() + 64 < bytes.len() {
            let name = format!("asset-{i}.gz");
            std::fs::write(out.join(&name), &gz)?;
            format!("Some(include_bytes!(concat!(env!(\"OUT_DIR\"), \"/{name}\")))")
        } else {
            "None".to_owned()
        };
        let _ = writeln!(
            table,
            "    Asset {{ path: {url:?}, content_type: {ct:?}, body: include_bytes!({src:?}), \
             gzip: {gzip}, etag: \"\\\"{etag}\\\"\" }},",
            ct = media_type(path),
            src = path.display().to_string(),
        );
    }
    table.push(']');
    std::fs::write(out.join("assets.rs"), table)?;
    Ok(())
}

/// Every file under `dir`, skipping dot files.
fn walk(dir: &Path, files: &mut Vec<PathBuf>) -> Result<()> {
    let mut entries = Vec::new();
    for e in std::fs::read_dir(dir)? {
        entries.push(e?.path());
    }
    entries.sort();
    for p in entries {
        let hidden = p
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if p.is_dir() {
            walk(&p, files)?;
        } else {
            files.push(p);
        }
    }
    Ok(())
}

/// The `Content-Type` of an asset, from its extension.
fn media_type(path: &Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()).unwrap_or("") {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "json" => "application/json",
        "svg" => "image/svg+xml",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "txt" => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}
