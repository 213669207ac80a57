//! Embeds the plugin templates (`templates/{lang}/{kind or shared}/…`) in the binary: writes
//! `$OUT_DIR/templates.rs`, a list of every template file with its text, so that adding a file
//! to a template needs no change in code.

use std::path::{Path, PathBuf};

fn main() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    println!("cargo:rerun-if-changed={}", root.display());
    let mut files = Vec::new();
    walk(&root, &mut files);
    files.sort();
    let mut out = String::from("/// Every template file: (path under `templates/`, `.tmpl` left off; its text).\npub const TEMPLATES: &[(&str, &str)] = &[\n");
    for file in files {
        println!("cargo:rerun-if-changed={}", file.display());
        let relative = file.strip_prefix(&root).expect("under templates/");
        let key = relative.to_string_lossy().replace('\\', "/");
        let key = key.strip_suffix(".tmpl").unwrap_or(&key).to_string();
        out.push_str(&format!(
            "    ({key:?}, include_str!({:?})),\n",
            file.display().to_string()
        ));
    }
    out.push_str("];\n");
    let dest =
        PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR")).join("templates.rs");
    std::fs::write(dest, out).expect("write templates.rs");
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read templates/").flatten() {
        let path = entry.path();
        if path.is_dir() {
            println!("cargo:rerun-if-changed={}", path.display());
            walk(&path, files);
        } else if path.extension().is_some_and(|e| e == "tmpl") {
            files.push(path);
        }
    }
}
