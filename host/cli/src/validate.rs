//! `trellis app validate`: findings printed like a compiler's, most severe first.

use std::fmt::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use trellis_lattice::api::{Severity, ValidateResponse};
use trellis_runtime::{Runtime, RuntimeConfig};

/// Validates manifest text with the plugins of `dir`, in this process: the controller's own
/// validation (`trellis_controller::validate`), with the runtime a controller of that folder
/// would have, so the findings are the ones `put` would give. Also returns the files of `dir`
/// that are not plugins a controller would load, with why.
pub fn offline(
    dir: &Path,
    text: &str,
    cache_dir: Option<PathBuf>,
) -> anyhow::Result<(ValidateResponse, Vec<(PathBuf, String)>)> {
    if !dir.is_dir() {
        bail!(
            "{} is not a folder of plugins: give the folder holding the .wasm files a controller loads (its --plugins)",
            dir.display()
        );
    }
    let runtime = Runtime::new(RuntimeConfig {
        plugin_dir: dir.to_path_buf(),
        cache_dir,
        ..RuntimeConfig::default()
    })
    .context("cannot start the plugin runtime")?;
    runtime.reload();
    let refused = runtime
        .plugins()
        .problems
        .iter()
        .map(|(file, why)| (file.clone(), why.to_string()))
        .collect();
    let found = trellis_controller::validate::validate_text(&runtime, text);
    let response = ValidateResponse {
        valid: !trellis_controller::validate::has_errors(&found),
        diagnostics: found,
    };
    Ok((response, refused))
}

/// The findings as text for people:
///
/// ```text
/// error: link target 'ecoh' is not a component of this application
///   --> app.yaml: spec.components[1].traits[1].properties.target
///   = hint: did you mean 'echo'?
///   = from: manifest-validator
/// ```
///
/// followed by a one-line summary.
pub fn render(file: &Path, response: &ValidateResponse) -> String {
    let mut out = String::new();
    for d in &response.diagnostics {
        let severity = match d.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        let _ = writeln!(out, "{severity}: {}", d.message);
        if d.path.is_empty() {
            let _ = writeln!(out, "  --> {}", file.display());
        } else {
            let _ = writeln!(out, "  --> {}: {}", file.display(), d.path);
        }
        if !d.hint.is_empty() {
            let _ = writeln!(out, "  = hint: {}", d.hint);
        }
        if !d.source.is_empty() {
            let _ = writeln!(out, "  = from: {}", d.source);
        }
        out.push('\n');
    }
    let count = |s: Severity| {
        response
            .diagnostics
            .iter()
            .filter(|d| d.severity == s)
            .count()
    };
    let (errors, warnings) = (count(Severity::Error), count(Severity::Warning));
    let plural = |n: usize| if n == 1 { "" } else { "s" };
    let _ = writeln!(
        out,
        "{}: {errors} error{}, {warnings} warning{}{}",
        file.display(),
        plural(errors),
        plural(warnings),
        if response.valid { " — valid" } else { "" }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use trellis_lattice::api::Diagnostic;

    #[test]
    fn renders_place_hint_and_summary() {
        let response = ValidateResponse {
            valid: false,
            diagnostics: vec![Diagnostic {
                severity: Severity::Error,
                path: "spec.components[1].traits[1].properties.target".into(),
                message: "link target 'ecoh' is not a component of this application".into(),
                hint: "did you mean 'echo'?".into(),
                source: "manifest-validator".into(),
            }],
        };
        let text = render(Path::new("app.yaml"), &response);
        assert_eq!(
            text,
            "error: link target 'ecoh' is not a component of this application\n  \
             --> app.yaml: spec.components[1].traits[1].properties.target\n  \
             = hint: did you mean 'echo'?\n  = from: manifest-validator\n\n\
             app.yaml: 1 error, 0 warnings\n"
        );
    }
}
