//! The output lines of `paceline run`, in the Batch API output format.

use paceline::batch::{OutputRecord, ProviderResponse};
use serde_json::{Value, json};

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

fn answer(status: u16, body: &str) -> paceline::engine::ProviderAnswer {
    paceline::engine::ProviderAnswer {
        status,
        request_id: Some("req_9".into()),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        usage: None,
    }
}

/// A line as the job store writes it: one JSON line that reads back as the record.
fn written(custom_id: &str, verdict: &paceline::engine::Verdict) -> (String, OutputRecord) {
    let line = OutputRecord::line_from_verdict(custom_id, verdict).expect("line");
    assert!(!line.contains('\n'), "{line}");
    let record: OutputRecord = serde_json::from_str(&line).expect("the line reads back");
    assert_record_id(&json!(record.id));
    (line, record)
}

#[test]
fn a_json_body_is_copied_into_the_line_as_it_came() {
    use paceline::engine::Verdict;
    // Key order and number spelling as the provider wrote them (a parsed document would sort
    // the keys and respell 1.50).
    let body = r#"{"id":"chatcmpl-1","choices":[{"message":{"content":"a\nb"}}],"cost":1.50}"#;
    // A final line break (common) is dropped.
    let (line, record) = written(
        "t-1",
        &Verdict::Succeeded(answer(200, &format!("{body}\n"))),
    );
    assert!(line.contains(&format!(r#""body":{body}"#)), "{line}");
    assert_eq!(
        line,
        format!(
            r#"{{"id":"{}","custom_id":"t-1","response":{{"status_code":200,"request_id":"req_9","body":{body}}},"error":null}}"#,
            record.id
        )
    );
    assert!(record.is_success());
}

#[test]
fn a_body_over_several_lines_or_not_json_still_makes_one_line() {
    use paceline::engine::Verdict;
    let pretty = "{\n  \"error\": {\n    \"code\": \"server_error\"\n  }\n}\n";
    let failed = Verdict::Failed {
        answer: Some(answer(500, pretty)),
        code: "max_attempts_exceeded".into(),
        message: "8 attempts; the last: HTTP 500".into(),
    };
    let (_, record) = written("t-2", &failed);
    let response = record.response.expect("the provider's answer is kept");
    assert_eq!(response.status_code, 500);
    assert_eq!(response.body, json!({"error": {"code": "server_error"}}));
    let error = record.error.expect("error");
    assert_eq!(error.code, "max_attempts_exceeded");

    let text = Verdict::Failed {
        answer: Some(answer(502, "<html>Bad Gateway</html>")),
        code: "max_attempts_exceeded".into(),
        message: "x".into(),
    };
    let (_, record) = written("t-3", &text);
    assert_eq!(
        record.response.expect("kept").body,
        json!("<html>Bad Gateway</html>")
    );

    let none = Verdict::Failed {
        answer: None,
        code: "deadline_exceeded".into(),
        message: "y".into(),
    };
    let (line, record) = written("t-4", &none);
    assert!(line.contains(r#""response":null"#), "{line}");
    assert!(!record.is_success());
}
