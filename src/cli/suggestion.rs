//! "Did you mean …?" for a mistyped provider, profile or agent name.

use super::{CliError, Ctx};
use crate::client::ClientError;
use crate::config::Config;
use crate::model::{AgentInfo, AgentName};
use crate::profiles::{Kind, known_profiles};
use crate::wire::ListQuery;

/// A 404 for `typed`: the same error, with the agent name closest to it as
/// the hint when one is close (live or ended agents: `--live` says which
/// were asked about), else `fallback`. Any other error is returned as it is.
pub async fn unknown_agent(
    ctx: &Ctx,
    typed: &AgentName,
    error: CliError,
    live_only: bool,
    fallback: &str,
) -> CliError {
    if !matches!(
        error,
        CliError::Client(ClientError::Api { status: 404, .. })
    ) {
        return error;
    }
    let query = ListQuery {
        all: !live_only,
        ..ListQuery::default()
    };
    let known: Vec<AgentInfo> = ctx
        .client
        .get(&format!("/agents{}", query.to_query()))
        .await
        .unwrap_or_default();
    let names = known.iter().map(|agent| agent.name.as_str());
    match closest(typed.as_str(), names) {
        Some(name) => error.with_hint(format!("did you mean '{name}'? {fallback}")),
        None => error.with_hint(fallback),
    }
}

/// The name in `names` closest to `typed`, when it is close enough to be a typo of it.
fn closest<'a>(typed: &str, names: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let typed_lower = typed.to_lowercase();
    names
        .map(|name| (distance(&typed_lower, &name.to_lowercase()), name))
        .filter(|(distance, name)| *distance > 0 && *distance <= close_enough(name))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, name)| name)
}

/// The provider or profile closest to `typed`, as the option to pass,
/// when one is close enough to be what was meant.
pub fn did_you_mean(typed: &str, config: &Config) -> Option<String> {
    let providers = Kind::NAMES
        .split(", ")
        .map(|name| ("--provider", name.to_owned()));
    let profiles = known_profiles(config);
    let profiles = profiles
        .split(", ")
        .filter(|name| !name.is_empty())
        .map(|name| ("--profile", name.to_owned()));
    let typed_lower = typed.to_lowercase();
    providers
        .chain(profiles)
        .map(|(flag, name)| (distance(&typed_lower, &name.to_lowercase()), flag, name))
        .filter(|(distance, _, name)| *distance <= close_enough(name))
        .min_by_key(|(distance, _, _)| *distance)
        .map(|(_, flag, name)| format!("did you mean {flag} {name}?"))
}

/// How many edits still count as a typo of `name`: one for short names, a
/// third of the length for longer ones.
fn close_enough(name: &str) -> usize {
    (name.chars().count() / 3).max(1)
}

/// Edit distance counting a swap of two neighbours as one edit
/// (optimal string alignment), so `ehco` is one edit from `echo`.
fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut rows = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in rows.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in rows[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (rows[i - 1][j] + 1)
                .min(rows[i][j - 1] + 1)
                .min(rows[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(rows[i - 2][j - 2] + 1);
            }
            rows[i][j] = best;
        }
    }
    rows[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ProfileConfig;

    #[test]
    fn typos_find_what_was_meant() {
        let mut config = Config::default();
        config
            .profiles
            .insert("work".into(), ProfileConfig::default());
        let guess = |typed| did_you_mean(typed, &config);
        assert_eq!(
            guess("ehco").as_deref(),
            Some("did you mean --provider echo?")
        );
        assert_eq!(
            guess("opnai").as_deref(),
            Some("did you mean --provider openai?")
        );
        assert_eq!(
            guess("Anthropic").as_deref(),
            Some("did you mean --provider anthropic?")
        );
        assert_eq!(
            guess("wrok").as_deref(),
            Some("did you mean --profile work?")
        );
        assert_eq!(
            guess("openruoter").as_deref(),
            Some("did you mean --profile openrouter?")
        );
        assert_eq!(guess("nope"), None);
        assert_eq!(guess("x"), None);
    }

    #[test]
    fn agent_typos_find_the_agent() {
        let names = ["alice", "bob", "builder"];
        let guess = |typed| closest(typed, names.iter().copied());
        assert_eq!(guess("alcie"), Some("alice"));
        assert_eq!(guess("bulider"), Some("builder"));
        assert_eq!(guess("alice"), None, "an exact name is no typo");
        assert_eq!(guess("zed"), None);
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("echo", "echo"), 0);
        assert_eq!(distance("ehco", "echo"), 1);
        assert_eq!(distance("", "abc"), 3);
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
