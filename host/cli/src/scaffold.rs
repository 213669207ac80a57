//! `trellis plugin new`: a plugin crate that tests natively and builds to wasm32-wasip2 as it is.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

/// The SDK the generated crate depends on: this repository's, found where this binary was
/// built from (the SDK is not on crates.io yet).
const SDK_DIR: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../sdk");

/// The files of a new plugin crate of one kind, from `templates/{kind}/`.
macro_rules! templates {
    ($kind:literal) => {
        &[
            (
                "Cargo.toml",
                include_str!(concat!("../templates/", $kind, "/Cargo.toml.tmpl")),
            ),
            (
                ".cargo/config.toml",
                include_str!(concat!("../templates/", $kind, "/cargo-config.toml.tmpl")),
            ),
            (
                "src/lib.rs",
                include_str!(concat!("../templates/", $kind, "/src/lib.rs.tmpl")),
            ),
            (
                "README.md",
                include_str!(concat!("../templates/", $kind, "/README.md.tmpl")),
            ),
            (".gitignore", "/target\n"),
        ]
    };
}

const SCALER: &[(&str, &str)] = templates!("scaler");
const PLACEMENT: &[(&str, &str)] = templates!("placement");
const VALIDATOR: &[(&str, &str)] = templates!("validator");

/// Creates `dir/name` holding a new plugin of `kind`. Returns the folder.
pub fn new_plugin(dir: &Path, name: &str, kind: &str) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("`{name}` cannot name a plugin: use lower-case letters, digits and `-`, starting with a letter (for a scaler it becomes the trait type)");
    }
    let files = match kind {
        "scaler" => SCALER,
        "placement" => PLACEMENT,
        "validator" => VALIDATOR,
        other => bail!("unknown plugin kind `{other}`: use scaler, placement or validator"),
    };
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or folder",
            root.display()
        );
    }
    let sdk = std::fs::canonicalize(SDK_DIR).with_context(|| {
        format!("the trellis SDK is not at {SDK_DIR}: run this trellis binary from the repository it was built in")
    })?;
    for (path, template) in files {
        let text = template
            .replace("{{name}}", name)
            .replace("{{file}}", &name.replace('-', "_"))
            .replace("{{sdk}}", &sdk.display().to_string());
        let target = root.join(path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(root)
}
