//! A tool's result as the model reads it: one text. Text content is joined,
//! other content described in one line, structured content given as JSON
//! when there is no text, and the whole cut at `tools.max_result_bytes`.

use rmcp::model::CallToolResult;
use serde_json::Value;

use super::CallOutcome;

/// `result` as text, at most `max_bytes` of it (and a marker saying how
/// much was cut), with the server's `isError`.
pub fn flatten(result: &CallToolResult, max_bytes: usize) -> CallOutcome {
    // Content blocks are read through their JSON shape: one line per kind,
    // kinds this daemon does not know included.
    let blocks: Vec<Value> = result
        .content
        .iter()
        .filter_map(|block| serde_json::to_value(block).ok())
        .collect();
    let mut parts: Vec<String> = blocks.iter().map(describe).collect();
    let has_text = blocks.iter().any(|block| block["type"] == "text");
    if !has_text && let Some(structured) = &result.structured_content {
        parts.push(structured.to_string());
    }
    CallOutcome {
        output: truncate(parts.join("\n"), max_bytes),
        is_error: result.is_error.unwrap_or(false),
    }
}

/// One content block: its text, or one line saying what it is.
fn describe(block: &Value) -> String {
    let kind = block["type"].as_str().unwrap_or("unknown");
    let mime = block["mimeType"]
        .as_str()
        .unwrap_or("application/octet-stream");
    match kind {
        "text" => block["text"].as_str().unwrap_or_default().to_owned(),
        "image" | "audio" => format!("[{mime}, {} bytes]", decoded_len(&block["data"])),
        "resource" => {
            let resource = &block["resource"];
            let uri = resource["uri"].as_str().unwrap_or_default();
            match resource["text"].as_str() {
                Some(text) => format!("[resource {uri}]\n{text}"),
                None => format!(
                    "[resource {uri}, {}, {} bytes]",
                    resource["mimeType"]
                        .as_str()
                        .unwrap_or("application/octet-stream"),
                    decoded_len(&resource["blob"])
                ),
            }
        }
        "resource_link" => format!(
            "[resource link {}]",
            block["uri"].as_str().unwrap_or_default()
        ),
        other => format!("[{other} content]"),
    }
}

/// The size of base64 `data` once decoded.
fn decoded_len(data: &Value) -> usize {
    let text = data.as_str().unwrap_or_default().trim_end_matches('=');
    text.len() * 3 / 4
}

/// `text` cut at `max_bytes` (at a character boundary), with a marker.
pub fn truncate(mut text: String, max_bytes: usize) -> String {
    if text.len() <= max_bytes {
        return text;
    }
    let total = text.len();
    let mut cut = max_bytes;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[cut: {} of {total} bytes not shown (tools.max_result_bytes = {max_bytes})]",
        total - cut
    ));
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ContentBlock as Content;

    #[test]
    fn text_is_joined_and_images_described() {
        let result = CallToolResult::success(vec![
            Content::text("one"),
            Content::image("aGVsbG8=", "image/png"),
            Content::text("two"),
        ]);
        let outcome = flatten(&result, 1000);
        assert_eq!(outcome.output, "one\n[image/png, 5 bytes]\ntwo");
        assert!(!outcome.is_error);
    }

    #[test]
    fn structured_content_stands_in_for_missing_text() {
        let mut result = CallToolResult::success(vec![]);
        result.structured_content = Some(serde_json::json!({"t": 1}));
        result.is_error = Some(true);
        let outcome = flatten(&result, 1000);
        assert_eq!(outcome.output, r#"{"t":1}"#);
        assert!(outcome.is_error);
    }

    #[test]
    fn a_long_result_is_cut_at_a_char_boundary_with_a_marker() {
        let text = "é".repeat(10); // 20 bytes
        let cut = truncate(text, 5);
        assert!(
            cut.starts_with("éé\n[cut: 16 of 20 bytes not shown"),
            "{cut}"
        );
        assert_eq!(truncate("short".into(), 5), "short");
    }
}
