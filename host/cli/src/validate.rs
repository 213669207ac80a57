//! `trellis app validate`: findings printed like a compiler's, most severe first.

use std::fmt::Write;
use std::path::Path;

use trellis_lattice::api::{Severity, ValidateResponse};

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
