//! What people ask of a running experiment: `forklane promote|abort|pause|resume` write these
//! annotations; the controller reads them, acts, and clears the one-shot ones.

use std::collections::BTreeMap;

use serde_json::{Value, json};

pub(crate) const PAUSED: &str = "forklane.io/paused";
pub(crate) const PROMOTE: &str = "forklane.io/promote";
pub(crate) const ABORT: &str = "forklane.io/abort";

/// How far `forklane promote` goes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Promote {
    /// Past the current pause or analysis step (canary), or to the natural winner.
    Next,
    /// Straight to 100% for the candidate (or the analysis' choice).
    Full,
    /// All traffic to this arm.
    Arm(String),
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Commands {
    pub paused: bool,
    pub promote: Option<Promote>,
    pub abort: Option<String>,
}

impl Commands {
    pub(crate) fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |key| annotations.and_then(|a| a.get(key)).map(String::as_str);
        Commands {
            paused: get(PAUSED) == Some("true"),
            promote: get(PROMOTE).map(|v| match v {
                "" | "next" | "true" => Promote::Next,
                "full" => Promote::Full,
                arm => Promote::Arm(arm.to_string()),
            }),
            abort: get(ABORT).map(|reason| {
                if reason.is_empty() || reason == "true" {
                    "aborted by forklane abort".into()
                } else {
                    reason.to_string()
                }
            }),
        }
    }
}

/// The merge patch a command writes (`kubectl annotate` would do the same).
pub fn patch(command: &Command) -> Value {
    let (key, value) = match command {
        Command::Pause => (PAUSED, json!("true")),
        Command::Resume => (PAUSED, Value::Null),
        Command::Promote(p) => (
            PROMOTE,
            json!(match p {
                Promote::Next => "next".to_string(),
                Promote::Full => "full".to_string(),
                Promote::Arm(arm) => arm.clone(),
            }),
        ),
        Command::Abort(reason) => (ABORT, json!(reason.clone().unwrap_or_else(|| "true".into()))),
    };
    json!({"metadata": {"annotations": {key: value}}})
}

/// The merge patch that marks one-shot commands as handled.
pub(crate) fn clear_one_shot() -> Value {
    json!({"metadata": {"annotations": {PROMOTE: null}}})
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    Pause,
    Resume,
    Promote(Promote),
    Abort(Option<String>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_the_patches_write() {
        for (command, expected) in [
            (Command::Pause, Commands { paused: true, ..Default::default() }),
            (
                Command::Promote(Promote::Arm("v3".into())),
                Commands { promote: Some(Promote::Arm("v3".into())), ..Default::default() },
            ),
            (Command::Promote(Promote::Full), Commands { promote: Some(Promote::Full), ..Default::default() }),
            (Command::Abort(None), Commands { abort: Some("aborted by forklane abort".into()), ..Default::default() }),
        ] {
            let annotations: BTreeMap<String, String> =
                serde_json::from_value(patch(&command)["metadata"]["annotations"].clone()).unwrap();
            assert_eq!(Commands::from_annotations(Some(&annotations)), expected);
        }
        assert_eq!(patch(&Command::Resume)["metadata"]["annotations"][PAUSED], Value::Null);
    }
}
