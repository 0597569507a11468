//! Input reading and validation of `paceline run`: Batch API JSONL, template modes, errors.

use std::fs;
use std::path::{Path, PathBuf};

use paceline::api::Endpoint;
use paceline::batch::{
    BatchRequest, InputError, InputFormat, InputReader, InputSpec, LineError, ValidationReport,
    validate, write_errors_file,
};
use proptest::prelude::*;
use serde_json::{Value, json};
use tempfile::TempDir;

/// Writes `content` to `name` in a fresh temp dir; the dir lives as long as the returned guard.
fn fixture(name: &str, content: impl AsRef<[u8]>) -> (TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join(name);
    fs::write(&path, content).expect("write fixture");
    (dir, path)
}

fn batch_line(id: &str) -> String {
    json!({
        "custom_id": id,
        "method": "POST",
        "url": "/v1/chat/completions",
        "body": {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": id}]},
    })
    .to_string()
}

fn read_all(spec: &InputSpec) -> Vec<Result<BatchRequest, LineError>> {
    let mut reader = InputReader::open(spec).expect("open");
    let items: Vec<_> = (&mut reader).collect();
    reader.finish().expect("read to the end");
    items
}

fn requests(spec: &InputSpec) -> Vec<BatchRequest> {
    read_all(spec)
        .into_iter()
        .map(|r| r.unwrap_or_else(|e| panic!("unexpected line error: {e}")))
        .collect()
}

fn only_error(spec: &InputSpec) -> LineError {
    let report = validate(spec).expect("validate");
    assert_eq!(report.errors.len(), 1, "{report:?}");
    report.errors[0].clone()
}

/// The errors file `--skip-invalid` writes for `report`, written in `dir` and read back.
fn errors_file(spec: &InputSpec, report: &ValidationReport, dir: &TempDir) -> Vec<Value> {
    let path = dir.path().join("errors.jsonl");
    write_errors_file(spec, report, &path).expect("write errors");
    fs::read_to_string(&path)
        .expect("read errors")
        .lines()
        .map(|l| serde_json::from_str(l).expect("JSON line"))
        .collect()
}

fn template_spec(path: &Path, template: &str) -> InputSpec {
    InputSpec {
        template: Some(template.to_owned()),
        model: Some("gpt-4o-mini".to_owned()),
        ..InputSpec::new(path)
    }
}

#[test]
fn valid_batch_jsonl_reads_every_endpoint() {
    let lines = [
        batch_line("a"),
        json!({"custom_id": "b", "method": "POST", "url": "/v1/completions",
               "body": {"model": "m", "prompt": "hi"}})
        .to_string(),
        json!({"custom_id": "c", "method": "POST", "url": "/v1/embeddings",
               "body": {"model": "m", "input": ["x", "y"]}})
        .to_string(),
        json!({"custom_id": "d", "method": "POST", "url": "/v1/responses",
               "body": {"model": "m", "input": "hello"}})
        .to_string(),
    ];
    let (_dir, path) = fixture("in.jsonl", lines.join("\n") + "\n");
    let got = requests(&InputSpec::new(&path));
    let endpoints: Vec<_> = got
        .iter()
        .map(|r| (r.custom_id.as_str(), r.endpoint))
        .collect();
    assert_eq!(
        endpoints,
        vec![
            ("a", Endpoint::ChatCompletions),
            ("b", Endpoint::Completions),
            ("c", Endpoint::Embeddings),
            ("d", Endpoint::Responses),
        ]
    );
    assert_eq!(got[1].body, json!({"model": "m", "prompt": "hi"}));
    assert_eq!(
        got.iter().map(|r| r.line).collect::<Vec<_>>(),
        vec![1, 2, 3, 4]
    );
    let report = validate(&InputSpec::new(&path)).expect("validate");
    assert_eq!((report.valid, report.invalid), (4, 0));
    assert!(report.is_ok());
}

#[test]
fn blank_lines_are_skipped_and_crlf_and_bom_accepted() {
    let content = format!(
        "\u{feff}{}\r\n\r\n   \n{}\r\n\n",
        batch_line("x"),
        batch_line("y")
    );
    let (_dir, path) = fixture("in.jsonl", content);
    let got = requests(&InputSpec::new(&path));
    let seen: Vec<_> = got.iter().map(|r| (r.custom_id.as_str(), r.line)).collect();
    assert_eq!(seen, vec![("x", 1), ("y", 4)]);
}

#[test]
fn every_batch_error_kind_names_its_line() {
    let cases: Vec<(String, &str)> = vec![
        (r#"{"custom_id": "a", "method": "POST""#.to_owned(), "malformed JSON at column 35: EOF while parsing an object"),
        ("[1, 2]".to_owned(), "expected a JSON object, found an array"),
        (r#"{"method": "POST", "url": "/v1/embeddings", "body": {}}"#.to_owned(), "missing field `custom_id`"),
        (r#"{"custom_id": "", "method": "POST"}"#.to_owned(), "`custom_id` is empty"),
        (r#"{"custom_id": 7, "method": "POST"}"#.to_owned(), "`custom_id` must be a string, found a number"),
        (r#"{"custom_id": "a", "url": "/v1/embeddings"}"#.to_owned(), "missing field `method`"),
        (r#"{"custom_id": "a", "method": "GET"}"#.to_owned(), "`method` must be \"POST\", found \"GET\""),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/images", "body": {}}"#.to_owned(),
         "unsupported `url` \"/v1/images\" (supported: /v1/chat/completions, /v1/completions, /v1/embeddings, /v1/responses, /v1/messages)"),
        (r#"{"custom_id": "a", "method": "POST"}"#.to_owned(), "missing field `url`"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings"}"#.to_owned(), "missing field `body`"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": "x"}"#.to_owned(),
         "`body` must be a JSON object, found a string"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}}"#.to_owned(),
         "`body` is missing field `model`"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m"}}"#.to_owned(),
         "`body` is missing field `messages` (required by /v1/chat/completions)"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/chat/completions", "body": {"model": "m", "messages": "hi"}}"#.to_owned(),
         "`body.messages` must be an array, found a string"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/completions", "body": {"model": "m"}}"#.to_owned(),
         "`body` is missing field `prompt` (required by /v1/completions)"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {"model": "m"}}"#.to_owned(),
         "`body` is missing field `input` (required by /v1/embeddings)"),
        (r#"{"custom_id": "a", "method": "POST", "url": "/v1/responses", "body": {"model": "m"}}"#.to_owned(),
         "`body` is missing field `input` (required by /v1/responses)"),
    ];
    for (bad, expected) in cases {
        // The bad line is line 3: a valid line, a blank line, then the bad one.
        let (_dir, path) = fixture("in.jsonl", format!("{}\n\n{bad}\n", batch_line("ok")));
        let error = only_error(&InputSpec::new(&path));
        assert_eq!(error.line, 3, "{bad}");
        assert!(
            error.message.starts_with(expected),
            "for {bad}\n  got:      {}\n  expected: {expected}",
            error.message
        );
        assert!(error.to_string().starts_with("line 3: "), "{error}");
    }
}

#[test]
fn duplicate_custom_ids_name_the_first_line() {
    let lines = [
        batch_line("a"),
        batch_line("abc"),
        batch_line("b"),
        batch_line("abc"),
        batch_line("abc"),
    ];
    let (_dir, path) = fixture("in.jsonl", lines.join("\n"));
    let report = validate(&InputSpec::new(&path)).expect("validate");
    assert_eq!((report.valid, report.invalid), (3, 2));
    let shown: Vec<String> = report.errors.iter().map(ToString::to_string).collect();
    assert_eq!(
        shown,
        vec![
            "line 4: duplicate custom_id `abc` (first seen on line 2)",
            "line 5: duplicate custom_id `abc` (first seen on line 2)",
        ]
    );
    assert!(report.is_invalid(4) && report.is_invalid(5));
    assert!(!report.is_invalid(2));
}

#[test]
fn plain_text_without_template_asks_for_template() {
    let (_dir, path) = fixture("topics.txt", "\ncats\ndogs\n");
    let err = InputReader::open(&InputSpec::new(&path)).expect_err("plain text");
    assert!(
        matches!(err, InputError::NeedsTemplate { line: 2, .. }),
        "{err:?}"
    );
    let shown = err.to_string();
    assert!(shown.contains("--template"), "{shown}");
    assert!(shown.contains("topics.txt"), "{shown}");
    assert!(validate(&InputSpec::new(&path)).is_err());
}

#[test]
fn file_level_errors_name_the_path() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("nope.jsonl");
    let err = validate(&InputSpec::new(&missing)).expect_err("missing file");
    assert!(matches!(err, InputError::Open { .. }));
    assert!(err.to_string().contains("nope.jsonl"), "{err}");

    // A CSV header row that is not UTF-8 names no field: nothing can be read (a line or a
    // record that is not UTF-8 is judged alone, see below).
    let (_dir, path) = fixture("bad.csv", b"\xff\xfe\n1\n".as_slice());
    let err = validate(&template_spec(&path, "{a}")).expect_err("not UTF-8");
    assert!(
        matches!(err, InputError::NotUtf8 { line: 1, .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("bad.csv"), "{err}");
}

#[test]
fn a_line_that_is_not_utf8_is_one_invalid_line() {
    let mut bytes = format!("{}\n{}\n", batch_line("a"), batch_line("b")).into_bytes();
    bytes.extend_from_slice(b"{\"custom_id\": \"\xff\xfe\"}\n");
    bytes.extend_from_slice(format!("{}\n", batch_line("c")).as_bytes());
    let (dir, path) = fixture("bad.jsonl", bytes);
    let spec = InputSpec::new(&path);

    // Listed with its line number like any other invalid line; the lines after it are read.
    let report = validate(&spec).expect("validate reads the whole file");
    assert_eq!(report.valid, 3, "{report:?}");
    let error = only_error(&spec);
    assert_eq!(error.line, 3);
    assert!(error.to_string().contains("UTF-8"), "{error}");
    assert!(report.render(&path, 10).contains("line 3"));
    let items = read_all(&spec);
    assert_eq!(items.iter().filter(|r| r.is_ok()).count(), 3);

    // `--skip-invalid` writes it to the errors file (its invalid bytes replaced).
    let written = errors_file(&spec, &report, &dir);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["line"], 3);
    assert_eq!(written[0]["text"], "{\"custom_id\": \"\u{fffd}\u{fffd}\"}");

    // A CSV record likewise.
    let (dir, path) = fixture("t.csv", b"a,b\n1,x\n2,\xff\n3,z\n".as_slice());
    let spec = template_spec(&path, "{a} {b}");
    let report = validate(&spec).expect("validate reads the whole file");
    assert_eq!(report.valid, 2, "{report:?}");
    assert_eq!(report.errors[0].line, 3);
    assert!(report.errors[0].message.contains("UTF-8"), "{report:?}");
    let written = errors_file(&spec, &report, &dir);
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(written[0]["line"], 3);
    assert_eq!(written[0]["text"], "2,\u{fffd}");
}

#[test]
fn lines_template_builds_chat_requests() {
    let (_dir, path) = fixture("topics.txt", "  cats  \n\ndogs\r\n");
    let spec = InputSpec {
        system: Some("You write articles.".to_owned()),
        max_tokens: Some(500),
        ..template_spec(&path, "Write an SEO article about {line}.")
    };
    let reader = InputReader::open(&spec).expect("open");
    assert_eq!(reader.format(), InputFormat::Lines);
    let got = requests(&spec);
    assert_eq!(got.len(), 2);
    assert_eq!((got[0].custom_id.as_str(), got[0].line), ("1", 1));
    assert_eq!((got[1].custom_id.as_str(), got[1].line), ("3", 3));
    assert_eq!(got[0].endpoint, Endpoint::ChatCompletions);
    assert_eq!(
        got[1].body,
        json!({
            "model": "gpt-4o-mini",
            "messages": [
                {"role": "system", "content": "You write articles."},
                {"role": "user", "content": "Write an SEO article about dogs."},
            ],
            "max_tokens": 500,
        })
    );
}

#[test]
fn template_bodies_for_other_endpoints() {
    let (_dir, path) = fixture("topics.txt", "cats\n");
    let body = |endpoint, system: Option<&str>, max_tokens| {
        let spec = InputSpec {
            endpoint,
            system: system.map(str::to_owned),
            max_tokens,
            ..template_spec(&path, "{line}")
        };
        requests(&spec).remove(0).body
    };
    assert_eq!(
        body(Endpoint::ChatCompletions, None, None),
        json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "cats"}]})
    );
    assert_eq!(
        body(Endpoint::Completions, None, Some(9)),
        json!({"model": "gpt-4o-mini", "prompt": "cats", "max_tokens": 9})
    );
    assert_eq!(
        body(Endpoint::Embeddings, None, None),
        json!({"model": "gpt-4o-mini", "input": "cats"})
    );
    assert_eq!(
        body(Endpoint::Responses, Some("Be brief."), Some(7)),
        json!({"model": "gpt-4o-mini", "instructions": "Be brief.", "input": "cats",
               "max_output_tokens": 7})
    );
    // Options that have no meaning for the endpoint are refused, not ignored.
    let spec = InputSpec {
        endpoint: Endpoint::Embeddings,
        system: Some("x".to_owned()),
        ..template_spec(&path, "{line}")
    };
    let err = InputReader::open(&spec).expect_err("system for embeddings");
    assert!(err.to_string().contains("--system"), "{err}");
}

#[test]
fn template_needs_a_model() {
    let (_dir, path) = fixture("topics.txt", "cats\n");
    let spec = InputSpec {
        model: None,
        ..template_spec(&path, "{line}")
    };
    let err = validate(&spec).expect_err("no model");
    assert!(matches!(err, InputError::MissingModel));
    assert!(err.to_string().contains("--model"), "{err}");
}

#[test]
fn malformed_template_is_an_input_error() {
    let (_dir, path) = fixture("topics.txt", "cats\n");
    let err = validate(&template_spec(&path, "About {line")).expect_err("unclosed");
    assert!(matches!(err, InputError::Template(_)), "{err:?}");
    assert!(err.to_string().contains("--template"), "{err}");
}

#[test]
fn escaped_braces_and_unknown_placeholders() {
    let (_dir, path) = fixture("topics.txt", "cats\ndogs\n");
    let got = requests(&template_spec(&path, "Return {{\"topic\": \"{line}\"}}"));
    assert_eq!(
        got[0].body["messages"][0]["content"],
        json!("Return {\"topic\": \"cats\"}")
    );

    let report = validate(&template_spec(&path, "About {topic}")).expect("validate");
    assert_eq!((report.valid, report.invalid), (0, 2));
    assert_eq!(
        report.errors[0].to_string(),
        "line 1: unknown placeholder `{topic}` in template (available fields: line)"
    );
}

#[test]
fn records_jsonl_template_with_id_field() {
    let content = concat!(
        r#"{"id": "t-1", "topic": "cats", "words": 300, "draft": true}"#,
        "\n",
        r#"{"id": 42, "topic": "dogs", "words": 500, "draft": false}"#,
        "\n\n",
        r#"{"topic": "owls", "words": 100, "draft": false}"#,
        "\n",
        r#"{"id": "t-4", "words": 100}"#,
        "\n",
        "not json\n",
    );
    let (_dir, path) = fixture("records.jsonl", content);
    let spec = InputSpec {
        id_field: Some("id".to_owned()),
        ..template_spec(&path, "Write {words} words about {topic} (draft: {draft})")
    };
    let items = read_all(&spec);
    assert_eq!(items.len(), 5);
    let first = items[0].as_ref().expect("line 1");
    assert_eq!(first.custom_id, "t-1");
    assert_eq!(
        first.body["messages"][0]["content"],
        json!("Write 300 words about cats (draft: true)")
    );
    let second = items[1].as_ref().expect("line 2");
    assert_eq!((second.custom_id.as_str(), second.line), ("42", 2));
    let errors: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![
            "line 4: missing id field `id` (available fields: draft, topic, words)",
            "line 5: unknown placeholder `{topic}` in template (available fields: id, words)",
            "line 6: malformed JSON at column 2: expected ident",
        ]
    );

    // Without --id-field the custom_id is the line number.
    let spec = InputSpec {
        id_field: None,
        ..spec
    };
    let ids: Vec<String> = read_all(&spec)
        .into_iter()
        .filter_map(Result::ok)
        .map(|r| r.custom_id)
        .collect();
    assert_eq!(ids, vec!["1", "2", "4"]);
}

#[test]
fn csv_template_with_quotes_and_id_field() {
    let content = "slug,topic,audience\n\
                   cats,\"Cats, and why\",kids\n\
                   dogs,\"Dogs\nover two lines\",adults\n\
                   \n\
                   short,row\n\
                   ,empty id,all\n";
    let (_dir, path) = fixture("topics.csv", content);
    let spec = InputSpec {
        id_field: Some("slug".to_owned()),
        ..template_spec(&path, "{topic} for {audience}")
    };
    assert_eq!(
        InputReader::open(&spec).expect("open").format(),
        InputFormat::Csv
    );
    let items = read_all(&spec);
    let ok: Vec<(String, u64, Value)> = items
        .iter()
        .filter_map(|r| r.as_ref().ok())
        .map(|r| {
            (
                r.custom_id.clone(),
                r.line,
                r.body["messages"][0]["content"].clone(),
            )
        })
        .collect();
    assert_eq!(
        ok,
        vec![
            ("cats".to_owned(), 2, json!("Cats, and why for kids")),
            (
                "dogs".to_owned(),
                3,
                json!("Dogs\nover two lines for adults")
            ),
        ]
    );
    let errors: Vec<String> = items
        .iter()
        .filter_map(|r| r.as_ref().err())
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        errors,
        vec![
            "line 6: expected 3 CSV fields (as in the header), found 2",
            "line 7: id field `slug` is empty",
        ]
    );

    let report = validate(&template_spec(&path, "{title}")).expect("validate");
    assert_eq!(
        report.errors[0].to_string(),
        "line 2: unknown placeholder `{title}` in template (available fields: slug, topic, audience)"
    );
}

#[test]
fn auto_format_by_extension() {
    let cases = [
        ("a.csv", InputFormat::Csv),
        ("a.CSV", InputFormat::Csv),
        ("a.jsonl", InputFormat::RecordsJsonl),
        ("a.json", InputFormat::RecordsJsonl),
        ("a.txt", InputFormat::Lines),
        ("topics", InputFormat::Lines),
    ];
    for (name, expected) in cases {
        assert_eq!(
            InputFormat::Auto.resolve(Path::new(name), true),
            expected,
            "{name}"
        );
        assert_eq!(
            InputFormat::Auto.resolve(Path::new(name), false),
            InputFormat::BatchJsonl
        );
    }
    assert_eq!("records-jsonl".parse(), Ok(InputFormat::RecordsJsonl));
    assert!("xml".parse::<InputFormat>().is_err());
    // An explicit format wins over the extension.
    let (_dir, path) = fixture("topics.jsonl", "just a line\n");
    let spec = InputSpec {
        format: InputFormat::Lines,
        ..template_spec(&path, "{line}")
    };
    assert_eq!(
        requests(&spec)[0].body["messages"][0]["content"],
        json!("just a line")
    );
}

#[test]
fn contradictory_options_are_refused() {
    let (_dir, path) = fixture("in.jsonl", batch_line("a"));
    let spec = InputSpec {
        format: InputFormat::BatchJsonl,
        ..template_spec(&path, "{line}")
    };
    assert!(matches!(
        InputReader::open(&spec),
        Err(InputError::Options(_))
    ));
    let spec = InputSpec {
        format: InputFormat::Csv,
        ..InputSpec::new(&path)
    };
    assert!(matches!(
        InputReader::open(&spec),
        Err(InputError::Options(_))
    ));
    // Template-only options are refused for Batch API JSONL rather than silently ignored.
    let spec = InputSpec {
        max_tokens: Some(10),
        ..InputSpec::new(&path)
    };
    let err = InputReader::open(&spec).expect_err("max_tokens without template");
    assert!(
        err.to_string()
            .starts_with("--max-tokens applies only with --template"),
        "{err}"
    );
}

fn report_with(n: u64) -> ValidationReport {
    let errors: Vec<LineError> = (1..=n)
        .map(|i| LineError::new(i * 2, format!("problem {i}")))
        .collect();
    ValidationReport {
        valid: 5,
        invalid: n,
        errors,
    }
}

#[test]
fn render_truncates_after_limit_with_a_count() {
    let path = Path::new("input.jsonl");
    assert_eq!(
        report_with(3).render(path, 2),
        "input.jsonl: 3 invalid lines:\n  line 2: problem 1\n  line 4: problem 2\n  ... and 1 more"
    );
    assert_eq!(
        report_with(1).render(path, 20),
        "input.jsonl: 1 invalid line:\n  line 2: problem 1"
    );
    let long = report_with(37).render(path, 20);
    assert_eq!(long.lines().count(), 22);
    assert!(long.ends_with("\n  ... and 17 more"), "{long}");
    assert_eq!(
        report_with(0).render(path, 20),
        "input.jsonl: 5 valid lines, none invalid"
    );
}

#[test]
fn errors_file_holds_original_text_and_error() {
    let bad = r#"{"custom_id": "b", "method": "GET"}"#;
    let lines = [
        batch_line("a"),
        bad.to_owned(),
        String::new(),
        batch_line("a"),
        batch_line("c"),
    ];
    let (dir, path) = fixture("in.jsonl", lines.join("\n"));
    let spec = InputSpec::new(&path);
    let report = validate(&spec).expect("validate");
    let written = errors_file(&spec, &report, &dir);
    assert_eq!(
        written,
        vec![
            json!({"line": 2, "error": "`method` must be \"POST\", found \"GET\"", "text": bad}),
            json!({"line": 4, "error": "duplicate custom_id `a` (first seen on line 1)",
                   "text": batch_line("a")}),
        ]
    );

    // CSV records are written back as CSV.
    let (dir, path) = fixture("t.csv", "a,b\n1,\"x, y\"\n2\n");
    let spec = template_spec(&path, "{a} {b}");
    let report = validate(&spec).expect("validate");
    let errors_path = dir.path().join("errors.jsonl");
    write_errors_file(&spec, &report, &errors_path).expect("write errors");
    let text = fs::read_to_string(&errors_path).expect("read errors");
    let line: Value = serde_json::from_str(text.trim_end()).expect("one JSON line");
    assert_eq!(
        line,
        json!({"line": 3, "error": "expected 2 CSV fields (as in the header), found 1", "text": "2"})
    );
}

#[test]
fn endpoint_paths_round_trip() {
    for endpoint in Endpoint::ALL {
        assert_eq!(endpoint.path().parse::<Endpoint>(), Ok(endpoint));
        assert_eq!(Endpoint::from_path(&endpoint.to_string()), Some(endpoint));
        let json = serde_json::to_value(endpoint).expect("serialize");
        assert_eq!(json, json!(endpoint.path()));
        assert_eq!(
            serde_json::from_value::<Endpoint>(json).ok(),
            Some(endpoint)
        );
    }
    assert_eq!(Endpoint::default(), Endpoint::ChatCompletions);
    assert!("/v1/images".parse::<Endpoint>().is_err());
}

#[test]
fn large_input_streams_through_validation() {
    let mut content = String::new();
    for i in 0..50_000 {
        content.push_str(&batch_line(&format!("req-{i}")));
        content.push('\n');
    }
    content.push_str(&batch_line("req-7"));
    content.push('\n');
    let (_dir, path) = fixture("big.jsonl", content);
    let report = validate(&InputSpec::new(&path)).expect("validate");
    assert_eq!((report.valid, report.invalid), (50_000, 1));
    assert_eq!(
        report.errors[0].to_string(),
        "line 50001: duplicate custom_id `req-7` (first seen on line 8)"
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Valid Batch JSONL, with blank lines anywhere, comes back with its custom_ids in order
    /// and the right line numbers.
    #[test]
    fn batch_jsonl_round_trips_custom_ids(
        ids in prop::collection::hash_set("[a-zA-Z0-9_\\-\\. é\"\\\\]{1,12}", 0..40),
        blanks in prop::collection::vec(0usize..3, 40),
    ) {
        let ids: Vec<String> = ids.into_iter().collect();
        let mut content = String::new();
        let mut expected = Vec::new();
        let mut line = 0u64;
        for (i, id) in ids.iter().enumerate() {
            for _ in 0..blanks[i] {
                content.push('\n');
                line += 1;
            }
            content.push_str(&batch_line(id));
            content.push('\n');
            line += 1;
            expected.push((id.clone(), line));
        }
        let (_dir, path) = fixture("in.jsonl", content);
        let spec = InputSpec::new(&path);
        let got: Vec<(String, u64)> =
            requests(&spec).into_iter().map(|r| (r.custom_id, r.line)).collect();
        prop_assert_eq!(got, expected);
        let report = validate(&spec).expect("validate");
        prop_assert_eq!((report.valid, report.invalid), (ids.len() as u64, 0));
    }
}

#[test]
fn csv_line_numbers_survive_blank_lines_and_missing_final_newline() {
    let cases: [(&str, Vec<u64>); 6] = [
        ("t\na\nb\n", vec![2, 3]),
        ("t\r\na\r\n\r\nb", vec![2, 4]),
        ("t\n\n\na\n\nb", vec![4, 6]),
        ("t\r\n\r\na\r\n\"b\r\nc\"\r\n\r\nd\r\n", vec![3, 4, 7]),
        ("\u{feff}t\n\"x\n\ny\"\nz", vec![2, 5]),
        ("t\n", vec![]),
    ];
    for (content, expected) in cases {
        let (_dir, path) = fixture("t.csv", content);
        let lines: Vec<u64> = requests(&template_spec(&path, "{t}"))
            .iter()
            .map(|r| r.line)
            .collect();
        assert_eq!(lines, expected, "{content:?}");
    }
    let (_dir, path) = fixture("empty.csv", "");
    assert!(requests(&template_spec(&path, "{t}")).is_empty());
}
