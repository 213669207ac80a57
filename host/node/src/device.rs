//! Device descriptions: a file in which an operator says what a node's device has (sensors,
//! accelerators, anything worth placing work by), read when the node starts and advertised as
//! labels, so that a manifest's spread can require `sensors.temperature: "true"` on the
//! devices that have one, without a hand-set `--label` per node.
//!
//! ```toml
//! # /etc/trellis/device.toml (trellis node --device /etc/trellis/device.toml)
//! accelerator = "coral-tpu"
//! cpu.cores = 4
//!
//! [sensors]
//! temperature = true
//! humidity = true
//! ```
//!
//! gives the labels `accelerator=coral-tpu`, `cpu.cores=4`, `sensors.temperature=true` and
//! `sensors.humidity=true`. Tables nest with dots; a value is a string, a boolean, a number or
//! a date, written as TOML writes it. The node's own labels (`hostcore.os`, `hostcore.arch`,
//! `hostcore.osfamily`) are not the file's to set.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The largest description read. A description is a few lines; this bounds what pointing the
/// flag at the wrong file (a log, a disk image) can cost, with a clear error instead.
pub const MAX_DEVICE_FILE: u64 = 64 << 10;

/// The most labels a description gives. Every label travels in every heartbeat (each second by
/// default) and is matched by placement, so a description is for what placement needs, not an
/// inventory.
pub const MAX_DEVICE_LABELS: usize = 128;

/// How deep tables may nest: `a.b.c.d` is plenty for a capability's name.
pub const MAX_DEPTH: usize = 8;

/// The longest key (with its dots) or value, in bytes.
pub const MAX_LABEL_BYTES: usize = 253;

/// The prefix of the labels the node sets itself.
const RESERVED_PREFIX: &str = "hostcore.";

/// What is wrong with a device description; every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("device description {path}: cannot read it: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("device description {path}: over {MAX_DEVICE_FILE} bytes; a description lists what placement needs in a few lines")]
    TooLarge { path: PathBuf },
    #[error("device description {path}: not TOML: {why}")]
    NotToml { path: PathBuf, why: String },
    #[error("device description {path}: `{key}`: {why}")]
    Bad {
        path: PathBuf,
        key: String,
        why: String,
    },
    #[error("device description {path}: {count} labels, over the {MAX_DEVICE_LABELS} a node advertises; keep what placement needs")]
    TooMany { path: PathBuf, count: usize },
}

/// Reads the description at `path` and gives its labels.
pub fn load(path: &Path) -> Result<BTreeMap<String, String>, DeviceError> {
    let unreadable = |e: std::io::Error| DeviceError::Unreadable {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let file = std::fs::File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_DEVICE_FILE + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_DEVICE_FILE {
        return Err(DeviceError::TooLarge {
            path: path.to_path_buf(),
        });
    }
    let text = String::from_utf8(bytes).map_err(|_| DeviceError::NotToml {
        path: path.to_path_buf(),
        why: "it is not UTF-8 text".into(),
    })?;
    parse(&text, path)
}

/// The labels of a description's text (read from `path`, which errors name).
fn parse(text: &str, path: &Path) -> Result<BTreeMap<String, String>, DeviceError> {
    let table: toml::Table = text
        .parse()
        .map_err(|e: toml::de::Error| DeviceError::NotToml {
            path: path.to_path_buf(),
            why: e.message().to_string(),
        })?;
    let mut labels = BTreeMap::new();
    flatten(path, "", &table, 1, &mut labels)?;
    if labels.len() > MAX_DEVICE_LABELS {
        return Err(DeviceError::TooMany {
            path: path.to_path_buf(),
            count: labels.len(),
        });
    }
    Ok(labels)
}

fn flatten(
    path: &Path,
    prefix: &str,
    table: &toml::Table,
    depth: usize,
    labels: &mut BTreeMap<String, String>,
) -> Result<(), DeviceError> {
    for (name, value) in table {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let bad = |why: String| DeviceError::Bad {
            path: path.to_path_buf(),
            key: key.clone(),
            why,
        };
        check_key(name, &key).map_err(bad)?;
        let value = match value {
            toml::Value::Table(inner) => {
                if depth >= MAX_DEPTH {
                    return Err(bad(format!(
                        "tables nest deeper than {MAX_DEPTH}; name the capability with fewer parts"
                    )));
                }
                flatten(path, &key, inner, depth + 1, labels)?;
                continue;
            }
            toml::Value::Array(_) => {
                return Err(bad(
                    "a list; a label has one value: write a key per item (e.g. `sensors.temperature = true`)"
                        .into(),
                ))
            }
            toml::Value::String(s) => s.clone(),
            toml::Value::Integer(n) => n.to_string(),
            toml::Value::Float(x) => x.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Datetime(d) => d.to_string(),
        };
        if value.len() > MAX_LABEL_BYTES || value.chars().any(char::is_control) {
            return Err(bad(format!(
                "its value must be at most {MAX_LABEL_BYTES} bytes of text without control characters"
            )));
        }
        labels.insert(key, value);
    }
    Ok(())
}

/// A key part may hold what label keys do elsewhere (letters, digits, `-`, `_`, `/`); the dots
/// come from nesting, or from a dotted TOML key.
fn check_key(part: &str, key: &str) -> Result<(), String> {
    if part.is_empty()
        || !part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_/".contains(c))
    {
        return Err(
            "a key part must be letters, digits, `-`, `_` or `/` (nest tables, or write `a.b = …`, for dots)"
                .into(),
        );
    }
    if key.len() > MAX_LABEL_BYTES {
        return Err(format!("longer than {MAX_LABEL_BYTES} bytes"));
    }
    if key.starts_with(RESERVED_PREFIX) {
        return Err(format!(
            "`{RESERVED_PREFIX}*` labels are set by the node itself"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse(text: &str) -> Result<BTreeMap<String, String>, DeviceError> {
        super::parse(text, Path::new("device.toml"))
    }

    fn labels(text: &str) -> Vec<(String, String)> {
        parse(text).unwrap().into_iter().collect()
    }

    fn refused(text: &str) -> String {
        match parse(text) {
            Ok(labels) => panic!("accepted: {labels:?}"),
            Err(error) => error.to_string(),
        }
    }

    #[test]
    fn tables_and_dotted_keys_become_labels() {
        let text = r#"
accelerator = "coral-tpu"
cpu.cores = 4
ratio = 0.5
installed = 2026-12-01

[sensors]
temperature = true
humidity = false
"#;
        assert_eq!(
            labels(text),
            [
                ("accelerator", "coral-tpu"),
                ("cpu.cores", "4"),
                ("installed", "2026-12-01"),
                ("ratio", "0.5"),
                ("sensors.humidity", "false"),
                ("sensors.temperature", "true"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string()))
        );
        assert!(labels("").is_empty());
    }

    #[test]
    fn what_is_refused_is_named_with_what_to_do() {
        let cases = [
            ("sensors = [\"t\", \"h\"]", "`sensors`: a list"),
            ("[hostcore]\narch = \"x\"", "`hostcore.arch`: `hostcore.*`"),
            ("\"two words\" = 1", "a key part must be"),
            ("\"a=b\" = 1", "a key part must be"),
            ("x = \"line\\nbreak\"", "control characters"),
            ("x = ", "not TOML"),
            ("a = 1\na = 2", "not TOML"),
        ];
        for (text, expected) in cases {
            let message = refused(text);
            assert!(
                message.starts_with("device description device.toml: "),
                "{message}"
            );
            assert!(message.contains(expected), "{text}: {message}");
        }
        let deep = (0..MAX_DEPTH + 1)
            .map(|i| format!("k{i}"))
            .collect::<Vec<_>>()
            .join(".");
        assert!(refused(&format!("{deep} = 1")).contains("deeper than"));
        let long = "v".repeat(MAX_LABEL_BYTES + 1);
        assert!(refused(&format!("x = \"{long}\"")).contains("at most"));
        let many: String = (0..=MAX_DEVICE_LABELS)
            .map(|i| format!("k{i} = 1\n"))
            .collect();
        assert!(refused(&many).contains("labels, over the"));
    }

    #[test]
    fn files_are_read_within_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("device.toml");
        std::fs::write(&good, "[sensors]\ntemperature = true\n").unwrap();
        assert_eq!(load(&good).unwrap()["sensors.temperature"], "true");
        let big = dir.path().join("big.toml");
        std::fs::write(&big, "#".repeat(MAX_DEVICE_FILE as usize + 1)).unwrap();
        assert!(load(&big).unwrap_err().to_string().contains("over"));
        let binary = dir.path().join("binary");
        std::fs::write(&binary, [0xff, 0xfe, 0x00]).unwrap();
        assert!(load(&binary).unwrap_err().to_string().contains("not UTF-8"));
        let missing = load(&dir.path().join("none.toml")).unwrap_err().to_string();
        assert!(missing.contains("none.toml: cannot read it"), "{missing}");
    }

    proptest! {
        /// Whatever the text, parsing ends in labels within the bounds or in an error: it
        /// never panics, and what it accepts is what a node may advertise.
        #[test]
        fn any_text_gives_bounded_labels_or_an_error(text in "(?s).{0,400}") {
            if let Ok(labels) = parse(&text) {
                prop_assert!(labels.len() <= MAX_DEVICE_LABELS);
                for (key, value) in &labels {
                    prop_assert!(!key.is_empty() && key.len() <= MAX_LABEL_BYTES);
                    prop_assert!(!key.starts_with(RESERVED_PREFIX));
                    prop_assert!(!key.contains('='));
                    prop_assert!(value.len() <= MAX_LABEL_BYTES);
                }
            }
        }

        /// Descriptions made of tables of scalars give one label per scalar, keyed by path.
        #[test]
        fn nested_scalars_give_one_label_each(
            entries in prop::collection::btree_map(("[a-c]", "[a-c]"), any::<u16>(), 0..12)
        ) {
            let mut text = String::new();
            let mut by_table: BTreeMap<&str, Vec<(&str, u16)>> = BTreeMap::new();
            for ((table, key), value) in &entries {
                by_table.entry(table).or_default().push((key, *value));
            }
            for (table, items) in &by_table {
                text.push_str(&format!("[{table}]\n"));
                for (key, value) in items {
                    text.push_str(&format!("{key} = {value}\n"));
                }
            }
            let parsed = parse(&text).unwrap();
            prop_assert_eq!(parsed.len(), entries.len());
            for ((table, key), value) in &entries {
                prop_assert_eq!(&parsed[&format!("{table}.{key}")], &value.to_string());
            }
        }
    }
}
