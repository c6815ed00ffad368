//! `echo`: the built-in offline provider. It replies with the prompt, word by
//! word, pausing between words so streaming is visible. It needs no key and
//! no network, which makes it the provider for demos and tests.

use std::time::Duration;

use futures_util::stream;
use serde_json::{Map, Value};

use super::{ChatRequest, EventStream, Provider, ProviderEvent, Role};
use crate::model::Usage;

pub struct Echo {
    delay: Duration,
}

impl Echo {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

impl Provider for Echo {
    fn stream(&self, request: ChatRequest) -> EventStream {
        let prompt = request
            .turns
            .iter()
            .rev()
            .find(|t| t.role == Role::User)
            .map(|t| t.content.to_string())
            .unwrap_or_default();
        let input_words: usize = request
            .turns
            .iter()
            .map(|t| t.content.split_whitespace().count())
            .sum();
        let output_words = prompt.split_whitespace().count();

        // The reply's metadata says how much context arrived, so users and
        // tests can see the whole conversation is passed along.
        let mut facts = Map::new();
        facts.insert("context_messages".into(), Value::from(request.turns.len()));
        facts.insert(
            "instructions".into(),
            Value::from(request.instructions.is_some()),
        );

        let mut events = vec![ProviderEvent::Metadata(facts)];
        events.extend(words(&prompt).map(|w| ProviderEvent::Delta(w.to_owned())));
        events.push(ProviderEvent::Usage(Usage {
            input_tokens: input_words as u64,
            output_tokens: output_words as u64,
            ..Usage::default()
        }));
        events.push(ProviderEvent::Finish("stop".into()));

        let delay = self.delay;
        Box::pin(stream::unfold(
            events.into_iter().enumerate(),
            move |mut events| async move {
                let (index, event) = events.next()?;
                let is_text = matches!(event, ProviderEvent::Delta(_));
                // No pause before the first word: the reply starts at once.
                if is_text && index > 1 && !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                Some((Ok(event), events))
            },
        ))
    }
}

/// Splits text into words, each keeping the whitespace that follows it, so
/// the pieces concatenate back to the original exactly.
fn words(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let word_end = rest
            .char_indices()
            .skip_while(|(_, c)| c.is_whitespace())
            .find(|(_, c)| c.is_whitespace())
            .map_or(rest.len(), |(i, _)| i);
        let end = rest[word_end..]
            .char_indices()
            .find(|(_, c)| !c.is_whitespace())
            .map_or(rest.len(), |(i, _)| word_end + i);
        let (piece, tail) = rest.split_at(end);
        rest = tail;
        Some(piece)
    })
}

#[cfg(test)]
mod tests {
    use super::words;

    #[test]
    fn words_concatenate_back_to_the_text() {
        for text in ["hello there  world", "  lead", "one", "a\nb\tc ", "", "é ü"] {
            let pieces: Vec<&str> = words(text).collect();
            assert_eq!(pieces.concat(), text);
        }
        assert_eq!(words("hi you").collect::<Vec<_>>(), ["hi ", "you"]);
    }
}
