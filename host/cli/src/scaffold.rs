//! `trellis plugin new`: a plugin project in Rust, JavaScript or Python that tests and builds to
//! a component as it is, from the templates embedded at build time (`templates/{lang}/shared/`
//! and `templates/{lang}/{kind}/`, plus `templates/fixtures/{kind}/` for JS and Python).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

include!(concat!(env!("OUT_DIR"), "/templates.rs"));

/// The contract, written into JavaScript and Python projects (their tools build from WIT; a
/// Rust project gets it inside the SDK crate).
const CONTRACT: &str = include_str!("../../../sdk/wit/plugin.wit");

/// The SDK version a new Rust plugin depends on: the one this trellis was built with.
pub const SDK_VERSION: &str = env!("CARGO_PKG_VERSION");

/// What a plugin decides.
pub const KINDS: &[&str] = &["scaler", "placement", "validator"];

/// The languages a plugin can be written in.
pub const LANGS: &[&str] = &["rust", "js", "python"];

/// Where a new Rust plugin gets the SDK from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Sdk {
    /// The registry, at this version (the default).
    Version(String),
    /// A folder holding the SDK crate: for people working on trellis itself.
    Path(PathBuf),
}

impl Default for Sdk {
    fn default() -> Self {
        Sdk::Version(SDK_VERSION.into())
    }
}

impl Sdk {
    /// The dependency as Cargo.toml writes it.
    fn dependency(&self) -> anyhow::Result<String> {
        match self {
            Sdk::Version(v) => Ok(format!("\"{v}\"")),
            Sdk::Path(dir) => {
                let dir = std::fs::canonicalize(dir)
                    .with_context(|| format!("--sdk-path {}: no such folder", dir.display()))?;
                if !dir.join("Cargo.toml").is_file() {
                    bail!(
                        "--sdk-path {} holds no Cargo.toml: give the SDK crate's folder (`sdk/` of a trellis checkout)",
                        dir.display()
                    );
                }
                let path = dir.display().to_string();
                Ok(format!("{{ path = {path:?} }}"))
            }
        }
    }
}

/// What each language's project keeps out of version control.
fn gitignore(lang: &str) -> &'static str {
    match lang {
        "rust" => "/target\n",
        "js" => "/node_modules\n/dist\n",
        _ => "/.venv\n/dist\n/bindings\n__pycache__/\n.pytest_cache/\n",
    }
}

/// Creates `dir/name` holding a new `kind` plugin in `lang`. Returns the folder.
pub fn new_plugin(
    dir: &Path,
    name: &str,
    kind: &str,
    lang: &str,
    sdk: &Sdk,
) -> anyhow::Result<PathBuf> {
    let valid = !name.is_empty()
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    if !valid {
        bail!("`{name}` cannot name a plugin: use lower-case letters, digits and `-`, starting with a letter (for a scaler it becomes the trait type)");
    }
    if !KINDS.contains(&kind) {
        bail!("unknown plugin kind `{kind}`: use {}", KINDS.join(", "));
    }
    if !LANGS.contains(&lang) {
        bail!(
            "unknown language `{lang}`: use {} (rust builds with cargo, js with componentize-js from npm, python with componentize-py from PyPI)",
            LANGS.join(", ")
        );
    }
    let root = dir.join(name);
    if root.exists() {
        bail!(
            "{} already exists; pick another name or folder",
            root.display()
        );
    }
    let sdk = if lang == "rust" {
        sdk.dependency()?
    } else {
        String::new()
    };
    let mut files: Vec<(String, String)> = Vec::new();
    // The fixture lattices and manifests are the same in every language but Rust (whose
    // tests build theirs in code); each test runner has its own folder name.
    let fixtures = match lang {
        "js" => Some("test/fixtures/"),
        "python" => Some("tests/fixtures/"),
        _ => None,
    };
    let mut sources = vec![
        (format!("{lang}/shared/"), String::new()),
        (format!("{lang}/{kind}/"), String::new()),
    ];
    if let Some(into) = fixtures {
        sources.push((format!("fixtures/{kind}/"), into.to_string()));
    }
    for (prefix, into) in sources {
        for (path, template) in TEMPLATES {
            if let Some(relative) = path.strip_prefix(&prefix) {
                let relative = format!("{into}{relative}");
                let text = template
                    .replace("{{name}}", name)
                    .replace("{{file}}", &name.replace('-', "_"))
                    .replace("{{sdk}}", &sdk);
                files.push((relative, text));
            }
        }
    }
    files.push((".gitignore".into(), gitignore(lang).into()));
    if lang != "rust" {
        files.push(("wit/plugin.wit".into(), CONTRACT.into()));
    }
    for (path, text) in files {
        let target = root.join(&path);
        if let Some(parent) = target.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&target, text)
            .with_context(|| format!("cannot write {}", target.display()))?;
    }
    Ok(root)
}

/// What to run next in a new project of `lang`, folder `root`.
pub fn next_steps(lang: &str, root: &Path) -> String {
    let root = root.display();
    match lang {
        "rust" => format!(
            "cd {root} && cargo test && cargo build --target wasm32-wasip2 --release"
        ),
        "js" => format!("cd {root} && npm install && npm test   (npm run build makes dist/*.wasm)"),
        _ => format!(
            "cd {root} && python3 -m venv .venv && .venv/bin/pip install -r requirements-dev.txt && .venv/bin/python -m pytest   (.venv/bin/python build.py makes dist/*.wasm)"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_language_has_every_kind() {
        for lang in LANGS {
            for kind in KINDS {
                let prefix = format!("{lang}/{kind}/");
                assert!(
                    TEMPLATES.iter().any(|(p, _)| p.starts_with(&prefix)),
                    "no template for {lang} {kind}"
                );
            }
        }
    }

    #[test]
    fn a_rust_plugin_depends_on_the_sdk_by_version_unless_given_a_path() {
        let dir = tempfile::tempdir().unwrap();
        let root = new_plugin(dir.path(), "pin", "scaler", "rust", &Sdk::default()).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(
            manifest.contains(&format!("trellis-sdk = \"{SDK_VERSION}\"")),
            "{manifest}"
        );
        let sdk = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../sdk");
        let root = new_plugin(dir.path(), "pin2", "scaler", "rust", &Sdk::Path(sdk)).unwrap();
        let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
        assert!(manifest.contains("trellis-sdk = { path = \""), "{manifest}");
        let err = new_plugin(
            dir.path(),
            "pin3",
            "scaler",
            "rust",
            &Sdk::Path(dir.path().to_path_buf()),
        )
        .unwrap_err();
        assert!(err.to_string().contains("holds no Cargo.toml"), "{err}");
    }

    #[test]
    fn js_and_python_projects_carry_the_contract_and_no_placeholder() {
        let dir = tempfile::tempdir().unwrap();
        for lang in ["js", "python"] {
            for kind in KINDS {
                let name = format!("{lang}-{kind}");
                let root = new_plugin(dir.path(), &name, kind, lang, &Sdk::default()).unwrap();
                assert_eq!(
                    std::fs::read_to_string(root.join("wit/plugin.wit")).unwrap(),
                    CONTRACT
                );
                for entry in walk(&root) {
                    let text = std::fs::read_to_string(&entry).unwrap();
                    assert!(
                        !text.contains("{{"),
                        "{} keeps a placeholder",
                        entry.display()
                    );
                }
            }
        }
    }

    fn walk(dir: &Path) -> Vec<PathBuf> {
        let mut files = Vec::new();
        for entry in std::fs::read_dir(dir).unwrap().flatten() {
            let path = entry.path();
            if path.is_dir() {
                files.extend(walk(&path));
            } else {
                files.push(path);
            }
        }
        files
    }

    #[test]
    fn js_and_python_tests_get_the_fixtures() {
        let dir = tempfile::tempdir().unwrap();
        for (lang, folder) in [("js", "test/fixtures"), ("python", "tests/fixtures")] {
            let root = new_plugin(
                dir.path(),
                &format!("f{lang}"),
                "scaler",
                lang,
                &Sdk::default(),
            )
            .unwrap();
            assert!(root.join(folder).join("app.yaml").is_file(), "{lang}");
        }
    }

    #[test]
    fn unknown_kinds_and_languages_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let err = new_plugin(dir.path(), "x", "scaler", "go", &Sdk::default()).unwrap_err();
        assert!(err.to_string().contains("unknown language `go`"), "{err}");
        let err = new_plugin(dir.path(), "x", "router", "js", &Sdk::default()).unwrap_err();
        assert!(
            err.to_string().contains("unknown plugin kind `router`"),
            "{err}"
        );
    }
}
