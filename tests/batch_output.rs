//! The output file of `paceline run`: Batch API output lines and the append-only writer.

use std::fs;
use std::path::Path;

use paceline::batch::{OutputError, OutputRecord, OutputWriter, ProviderResponse};
use serde_json::{Value, json};

fn lines_of(path: &Path) -> Vec<Value> {
    fs::read_to_string(path)
        .expect("read output")
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is one JSON value"))
        .collect()
}

fn assert_record_id(id: &Value) {
    let id = id.as_str().expect("id is a string");
    let suffix = id.strip_prefix("batch_req_").expect("batch_req_ prefix");
    assert_eq!(suffix.len(), 24, "{id}");
    assert!(suffix.chars().all(|c| c.is_ascii_alphanumeric()), "{id}");
}

#[test]
fn success_line_has_the_batch_api_shape() {
    let body = json!({"id": "chatcmpl-1", "choices": [{"message": {"content": "a\nb"}}]});
    let record = OutputRecord::success("topic-1", 200, "req_abc", body.clone());
    let value = serde_json::to_value(&record).expect("serialize");
    assert_record_id(&value["id"]);
    assert_eq!(
        value,
        json!({
            "id": value["id"],
            "custom_id": "topic-1",
            "response": {"status_code": 200, "request_id": "req_abc", "body": body},
            "error": null,
        })
    );
    assert!(record.is_success());
}

#[test]
fn failure_lines_keep_the_provider_response_when_there_was_one() {
    let provider_body =
        json!({"error": {"type": "insufficient_quota", "code": "insufficient_quota"}});
    let with_response = OutputRecord::failure(
        "a",
        Some(ProviderResponse::new(429, "req_1", provider_body.clone())),
        "insufficient_quota",
        "You exceeded your current quota",
    );
    let value = serde_json::to_value(&with_response).expect("serialize");
    assert_eq!(
        value["response"],
        json!({"status_code": 429, "request_id": "req_1", "body": provider_body})
    );
    assert_eq!(
        value["error"],
        json!({"code": "insufficient_quota", "message": "You exceeded your current quota"})
    );
    assert!(!with_response.is_success());

    let without = OutputRecord::failure(
        "b",
        None,
        "max_attempts_exceeded",
        "8 attempts; last: timeout",
    );
    let value = serde_json::to_value(&without).expect("serialize");
    assert_eq!(value["response"], Value::Null);
    assert_eq!(value["error"]["code"], json!("max_attempts_exceeded"));
    assert_eq!(
        value
            .as_object()
            .map(|o| o.keys().cloned().collect::<Vec<_>>()),
        Some(vec![
            "custom_id".into(),
            "error".into(),
            "id".into(),
            "response".into()
        ])
    );
}

#[test]
fn non_json_bodies_are_kept_as_strings() {
    assert_eq!(
        ProviderResponse::body_from_bytes(br#"{"ok": true}"#),
        json!({"ok": true})
    );
    assert_eq!(
        ProviderResponse::body_from_bytes(b"<html>502 Bad Gateway</html>"),
        json!("<html>502 Bad Gateway</html>")
    );
    assert_eq!(
        ProviderResponse::body_from_bytes(b"\xffoops"),
        json!("\u{fffd}oops")
    );
    assert_eq!(ProviderResponse::body_from_bytes(b""), json!(""));
}

#[test]
fn writer_appends_one_line_per_record_and_records_parse_back() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("results.jsonl");
    let records = vec![
        OutputRecord::success("1", 200, "r1", json!({"text": "line one\nline two"})),
        OutputRecord::failure(
            "2",
            None,
            "request_too_large",
            "Limit 30000, Requested 30601",
        ),
    ];
    {
        let mut writer = OutputWriter::open(&path).expect("open");
        for record in &records {
            writer.write(record).expect("write");
        }
        writer.flush().expect("flush");
    }
    // Reopening appends; it never truncates complete lines.
    let third = OutputRecord::success("3", 200, "r3", json!("plain text body"));
    {
        let mut writer = OutputWriter::open(&path).expect("reopen");
        writer.write(&third).expect("write");
        writer.sync().expect("sync");
    }
    let text = fs::read_to_string(&path).expect("read");
    assert_eq!(text.lines().count(), 3);
    // Fields in the Batch API's order.
    for line in text.lines() {
        assert!(line.starts_with(r#"{"id":"batch_req_"#), "{line}");
        assert!(line.contains(r#"","custom_id":""#), "{line}");
    }
    assert!(text.ends_with('\n'));
    let parsed: Vec<OutputRecord> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("parse record"))
        .collect();
    assert_eq!(parsed, [records, vec![third]].concat());
    let ids: Vec<Value> = lines_of(&path).iter().map(|v| v["id"].clone()).collect();
    ids.iter().for_each(assert_record_id);
    assert_ne!(ids[0], ids[1]);
}

#[test]
fn a_torn_last_line_is_cut_before_appending() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("results.jsonl");
    let complete =
        serde_json::to_string(&OutputRecord::success("1", 200, "r", json!({}))).expect("serialize");
    fs::write(&path, format!("{complete}\n{{\"id\": \"batch_req_torn")).expect("write");
    let mut writer = OutputWriter::open(&path).expect("open");
    writer
        .write(&OutputRecord::success("2", 200, "r", json!({})))
        .expect("write");
    writer.flush().expect("flush");
    let custom_ids: Vec<Value> = lines_of(&path)
        .iter()
        .map(|v| v["custom_id"].clone())
        .collect();
    assert_eq!(custom_ids, vec![json!("1"), json!("2")]);
}

#[test]
fn output_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing-dir").join("results.jsonl");
    let err = OutputWriter::open(&path).expect_err("no such directory");
    assert!(matches!(err, OutputError::Open { .. }));
    assert!(err.to_string().contains("missing-dir"), "{err}");
}
