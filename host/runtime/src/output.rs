//! Bounds on what a plugin answers, checked before anything it says reaches the controller.
//!
//! A plugin's memory cap already bounds how much it can return; these bound what the
//! controller then does with it. Commands are all-or-nothing: a scaler asking for more than
//! [`MAX_COMMANDS`], or naming something with a text past [`MAX_TEXT`], is broken, and none of
//! its commands is issued. Words for people (a status message, a diagnostic) are cut instead,
//! since the rest of the answer is still worth having.

use crate::bindings::rollout::exports::trellis::plugin::rollout_api::{
    RolloutDecision, RolloutPhase,
};
use crate::bindings::{Command, Diagnostic, Severity, Status};
use crate::error::Fault;

/// The most commands one scaler call may return. A pass issues the commands of every app; a
/// scaler asking for more than this at once (far more than hosts a lattice has times the
/// replicas of one trait) is broken.
pub const MAX_COMMANDS: usize = 10_000;

/// The longest text a plugin may put in a command's id, host, image, link or config name, and
/// the length status messages and diagnostics are cut to. Ids and image references are tens
/// of bytes; a reader has no use for a longer message.
pub const MAX_TEXT: usize = 4 << 10;

/// The most diagnostics one plugin call may return; the rest are counted in one last finding.
pub const MAX_DIAGNOSTICS: usize = 1_000;

/// The longest memo a scaler may ask to get back (`reconcile-result.memo`): a few timestamps
/// and figures; the controller keeps one per trait of every app, in memory.
pub const MAX_MEMO: usize = 4 << 10;

/// Refuses a memo past [`MAX_MEMO`].
pub(crate) fn check_memo(memo: Option<&str>) -> Result<(), Fault> {
    match memo {
        Some(memo) if memo.len() > MAX_MEMO => Err(Fault::InvalidOutput(format!(
            "returned a memo of {} bytes, over the limit of {MAX_MEMO}",
            memo.len()
        ))),
        _ => Ok(()),
    }
}

/// Refuses a scaler's commands past [`MAX_COMMANDS`] or with a name past [`MAX_TEXT`].
pub(crate) fn check_commands(commands: &[Command]) -> Result<(), Fault> {
    if commands.len() > MAX_COMMANDS {
        return Err(Fault::InvalidOutput(format!(
            "returned {} commands, over the limit of {MAX_COMMANDS} per call",
            commands.len()
        )));
    }
    for (i, command) in commands.iter().enumerate() {
        if let Some((field, text)) = names(command).find(|(_, text)| text.len() > MAX_TEXT) {
            return Err(Fault::InvalidOutput(format!(
                "command {i} has a {field} of {} bytes, over the limit of {MAX_TEXT}",
                text.len()
            )));
        }
    }
    Ok(())
}

/// The names a command carries (config entries are values, not names: they are bounded by the
/// manifest that gave them).
fn names(command: &Command) -> impl Iterator<Item = (&'static str, &str)> {
    let mut out: Vec<(&'static str, &str)> = Vec::new();
    match command {
        Command::ScaleComponent(c) => {
            out.extend([
                ("host id", c.host_id.as_str()),
                ("component id", c.component_id.as_str()),
                ("image", c.image.as_str()),
            ]);
            out.extend(c.config.iter().map(|n| ("config name", n.as_str())));
        }
        Command::StartProvider(c) => {
            out.extend([
                ("host id", c.host_id.as_str()),
                ("provider id", c.provider_id.as_str()),
                ("image", c.image.as_str()),
            ]);
            out.extend(c.config.iter().map(|n| ("config name", n.as_str())));
        }
        Command::StopProvider(c) => {
            out.extend([
                ("host id", c.host_id.as_str()),
                ("provider id", c.provider_id.as_str()),
            ]);
        }
        Command::PutLink(l) => {
            out.extend([
                ("source id", l.source_id.as_str()),
                ("target", l.target.as_str()),
                ("link name", l.name.as_str()),
                ("WIT namespace", l.wit_namespace.as_str()),
                ("WIT package", l.wit_package.as_str()),
            ]);
            out.extend(l.interfaces.iter().map(|n| ("interface", n.as_str())));
            out.extend(l.source_config.iter().map(|n| ("config name", n.as_str())));
            out.extend(l.target_config.iter().map(|n| ("config name", n.as_str())));
        }
        Command::DeleteLink(l) => {
            out.extend([
                ("source id", l.source_id.as_str()),
                ("link name", l.name.as_str()),
                ("WIT namespace", l.wit_namespace.as_str()),
                ("WIT package", l.wit_package.as_str()),
            ]);
        }
        Command::PutConfig(c) => out.push(("config name", c.name.as_str())),
        Command::DeleteConfig(name) => out.push(("config name", name.as_str())),
    }
    out.into_iter()
}

/// Cuts the message of a status to [`MAX_TEXT`].
/// The most label values a rollout step's host split may name, per version: regions and
/// zones are a handful; a plugin naming more is broken.
pub const MAX_SPLIT_VALUES: usize = 256;

/// Refuses a rollout decision whose shares are past 100 percent or whose host split is past
/// [`MAX_SPLIT_VALUES`] or [`MAX_TEXT`]; cuts its message (and an abort's or a gate's reason)
/// to [`MAX_TEXT`].
pub(crate) fn check_rollout(decision: &mut RolloutDecision) -> Result<(), Fault> {
    let target = &decision.target;
    for (what, percent) in [
        ("traffic", target.traffic),
        ("new-instances", target.new_instances),
        ("old-instances", target.old_instances),
    ] {
        if percent > 100 {
            return Err(Fault::InvalidOutput(format!(
                "asked for {what} {percent}%, past 100%"
            )));
        }
    }
    if let Some(split) = &target.hosts {
        let values = split.new_values.iter().chain(&split.old_values);
        if split.new_values.len().max(split.old_values.len()) > MAX_SPLIT_VALUES
            || split.label.len() > MAX_TEXT
            || values.clone().any(|v| v.len() > MAX_TEXT)
        {
            return Err(Fault::InvalidOutput(format!(
                "split hosts by more than {MAX_SPLIT_VALUES} label values, or by a text past {MAX_TEXT} bytes"
            )));
        }
    }
    cut(&mut decision.message, MAX_TEXT);
    match &mut decision.phase {
        RolloutPhase::WaitingForPromotion(why) | RolloutPhase::Abort(why) => cut(why, MAX_TEXT),
        RolloutPhase::Progressing | RolloutPhase::Done => {}
    }
    Ok(())
}

pub(crate) fn bound_status(status: &mut Status) {
    match status {
        Status::Deployed => {}
        Status::Reconciling(m) | Status::Failed(m) | Status::Waiting(m) => cut(m, MAX_TEXT),
    }
}

/// Cuts each diagnostic's texts to [`MAX_TEXT`] and keeps at most [`MAX_DIAGNOSTICS`] of them.
pub(crate) fn bound_diagnostics(found: &mut Vec<Diagnostic>) {
    if found.len() > MAX_DIAGNOSTICS {
        let left_out = found.len() - (MAX_DIAGNOSTICS - 1);
        found.truncate(MAX_DIAGNOSTICS - 1);
        found.push(Diagnostic {
            severity: Severity::Info,
            path: String::new(),
            message: format!(
                "the plugin returned {left_out} more findings than the {MAX_DIAGNOSTICS} kept"
            ),
            hint: String::new(),
        });
    }
    for d in found {
        for text in [&mut d.path, &mut d.message, &mut d.hint] {
            cut(text, MAX_TEXT);
        }
    }
}

/// Cuts `text` to at most `max` bytes (at least 3) on a character boundary, marking the cut
/// with `…`.
pub fn cut(text: &mut String, max: usize) {
    if text.len() <= max {
        return;
    }
    let mut end = max.saturating_sub('…'.len_utf8());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.truncate(end);
    text.push('…');
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bindings::{ScaleComponent, StopProvider};

    fn scale(id: &str) -> Command {
        Command::ScaleComponent(ScaleComponent {
            host_id: "h".into(),
            component_id: id.into(),
            image: "i".into(),
            count: 1,
            config: Vec::new(),
        })
    }

    #[test]
    fn too_many_commands_are_refused_whole() {
        let many = vec![scale("c"); MAX_COMMANDS + 1];
        let err = check_commands(&many).unwrap_err().to_string();
        assert!(err.contains("10001 commands"), "{err}");
        assert!(check_commands(&many[..MAX_COMMANDS]).is_ok());
    }

    #[test]
    fn an_oversized_name_is_refused_naming_the_field() {
        let stop = Command::StopProvider(StopProvider {
            host_id: "h".into(),
            provider_id: "p".repeat(MAX_TEXT + 1),
        });
        let err = check_commands(&[scale("ok"), stop])
            .unwrap_err()
            .to_string();
        assert!(err.contains("command 1 has a provider id"), "{err}");
    }

    #[test]
    fn diagnostics_are_cut_and_counted() {
        let one = Diagnostic {
            severity: Severity::Error,
            path: "p".into(),
            message: "m".repeat(MAX_TEXT * 2),
            hint: String::new(),
        };
        let mut found = vec![one; 100_000];
        bound_diagnostics(&mut found);
        assert_eq!(found.len(), MAX_DIAGNOSTICS);
        assert!(found[0].message.len() <= MAX_TEXT);
        assert!(
            found.last().unwrap().message.contains("99001 more"),
            "{}",
            found.last().unwrap().message
        );
    }

    #[test]
    fn status_messages_are_cut() {
        let mut status = Status::Failed("x".repeat(MAX_TEXT * 3));
        bound_status(&mut status);
        let Status::Failed(m) = status else { panic!() };
        assert!(m.len() <= MAX_TEXT && m.ends_with('…'));
    }

    proptest::proptest! {
        #[test]
        fn cut_never_exceeds_and_keeps_a_prefix(text in ".{0,64}", max in 3usize..80) {
            let mut s = text.clone();
            cut(&mut s, max);
            proptest::prop_assert!(s.len() <= max);
            proptest::prop_assert!(text.starts_with(s.trim_end_matches('…')));
        }
    }
}
