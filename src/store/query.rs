//! A search query as the full-text index reads it: words with punctuation
//! inside (`sk-fake`, `example.com`, `don't`) quoted as phrases, which is
//! what they mean; FTS5 would read them as syntax (`sk-fake` is `sk` and a
//! column filter `-fake`) and fail with "no such column: fake".

/// `query` with each word that holds punctuation quoted; phrases, `OR`,
/// `NOT`, `AND`, `prefix*`, `^initial`, grouping parentheses and the rest of
/// FTS5's syntax are left as written.
pub fn fts_query(query: &str) -> String {
    let mut out = String::with_capacity(query.len() + 8);
    let mut rest = query;
    while !rest.is_empty() {
        // A quoted phrase is copied whole, to its closing quote (or the end).
        if let Some(after) = rest.strip_prefix('"') {
            let end = after.find('"').map_or(after.len(), |i| i + 1);
            out.push('"');
            out.push_str(&after[..end]);
            rest = &after[end..];
            continue;
        }
        let end = rest
            .find(|c: char| c.is_whitespace() || c == '"')
            .unwrap_or(rest.len());
        let (word, after) = rest.split_at(end);
        if word.is_empty() {
            let space = rest.chars().next().map_or(0, char::len_utf8);
            out.push_str(&rest[..space]);
            rest = &rest[space..];
            continue;
        }
        out.push_str(&quoted(word));
        rest = after;
    }
    out
}

/// One word outside quotes: as written, or its core quoted (keeping any
/// `^` before it, `(` around it and `*` or `)` after it) when the core has
/// punctuation FTS5 has no meaning for in a word.
fn quoted(word: &str) -> String {
    let core_start = word.find(|c| c != '(' && c != '^').unwrap_or(word.len());
    let (lead, tail) = word.split_at(core_start);
    let core_end = tail.rfind(|c| c != ')' && c != '*').map_or(0, |i| {
        i + tail[i..].chars().next().map_or(1, char::len_utf8)
    });
    let (core, trail) = tail.split_at(core_end);
    let bare = |c: char| c.is_alphanumeric() || c == '_' || !c.is_ascii();
    // `:`, `(`, `,` and `+` inside a word are syntax a user may mean
    // (a column filter, NEAR(a b, 5), a+b): left for the index to read.
    let syntax = |c: char| matches!(c, ':' | '(' | ')' | ',' | '+' | '^' | '*');
    if core.is_empty() || core.chars().all(bare) || core.chars().any(syntax) {
        return word.to_owned();
    }
    format!("{lead}\"{core}\"{trail}")
}

#[cfg(test)]
mod tests {
    use super::fts_query;

    #[test]
    fn words_with_punctuation_become_phrases() {
        assert_eq!(fts_query("sk-fake"), "\"sk-fake\"");
        assert_eq!(fts_query("find sk-fake now"), "find \"sk-fake\" now");
        assert_eq!(
            fts_query("example.com OR don't"),
            "\"example.com\" OR \"don't\""
        );
        assert_eq!(fts_query("sk-fa*"), "\"sk-fa\"*");
        assert_eq!(fts_query("(sk-fake OR x)"), "(\"sk-fake\" OR x)");
        assert_eq!(fts_query("^a-b"), "^\"a-b\"");
    }

    #[test]
    fn the_rest_of_the_syntax_is_left_as_written() {
        for query in [
            "hello world",
            "\"exact phrase\" OR word",
            "\"sk-fake already quoted\"",
            "a NOT b",
            "pref*",
            "NEAR(a b, 5)",
            "content:word",
            "a + b",
            "héllo wörld",
            "snake_case",
            "\"unclosed",
            "  spaced   out  ",
        ] {
            assert_eq!(fts_query(query), query, "{query}");
        }
    }
}
