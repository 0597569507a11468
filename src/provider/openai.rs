//! OpenAI's API: bearer authentication, paths under a base URL that carries the `/v1`.

/// `Authorization: Bearer KEY`.
pub fn auth_headers(secret: &str) -> Vec<(&'static str, String)> {
    vec![("authorization", format!("Bearer {secret}"))]
}

/// `{base}{path without /v1}`: the base URL (`https://api.openai.com/v1`) carries the `/v1`.
pub fn url(base_url: &str, path: &str) -> String {
    let tail = path.strip_prefix("/v1").unwrap_or(path);
    format!("{base_url}{tail}")
}

#[cfg(test)]
mod tests {
    use crate::retry::{self, AttemptResult, Outcome, RetryCause};

    fn outcome(status: u16, body: &str) -> Outcome {
        retry::classify(&AttemptResult::Response {
            status,
            body: body.as_bytes(),
            headers_say_retry: None,
        })
    }

    /// OpenAI's documented error answers and what each one means for the pacing core.
    #[test]
    fn classification_table() {
        let rate = |kind: &str| {
            format!(
                r#"{{"error":{{"message":"Rate limit reached. Please try again in 1s.","type":"{kind}","code":"rate_limit_exceeded"}}}}"#
            )
        };
        let retries = [
            (429, rate("requests"), RetryCause::RateLimitRequests, true),
            (429, rate("tokens"), RetryCause::RateLimitTokens, true),
            (500, r#"{"error":{"message":"server error","type":"server_error"}}"#.into(), RetryCause::ServerError(500), false),
            (503, r#"{"error":{"message":"The engine is currently overloaded","type":"server_error"}}"#.into(), RetryCause::Overloaded, false),
            (408, String::new(), RetryCause::RequestTimeout, false),
            (409, String::new(), RetryCause::Conflict, false),
        ];
        for (status, body, cause, pause) in retries {
            assert_eq!(
                outcome(status, &body),
                Outcome::Retry {
                    cause,
                    pause_quota: pause
                },
                "{status} {body}"
            );
        }
        let finals = [
            (
                429,
                r#"{"error":{"message":"You exceeded your current quota","type":"insufficient_quota","code":"insufficient_quota"}}"#,
                "insufficient_quota",
                true,
            ),
            (
                429,
                r#"{"error":{"message":"Request too large for gpt-4o. Limit 30000, Requested 30601.","type":"tokens","code":"rate_limit_exceeded"}}"#,
                "request_too_large",
                false,
            ),
            (
                401,
                r#"{"error":{"message":"Incorrect API key provided","type":"invalid_request_error","code":"invalid_api_key"}}"#,
                "authentication_error",
                true,
            ),
            (
                400,
                r#"{"error":{"message":"bad","type":"invalid_request_error","code":null}}"#,
                "invalid_request_error",
                false,
            ),
            (
                404,
                r#"{"error":{"message":"The model does not exist","type":"invalid_request_error","code":"model_not_found"}}"#,
                "model_not_found",
                false,
            ),
        ];
        for (status, body, code, unusable) in finals {
            match outcome(status, body) {
                Outcome::Final { failure, .. } => {
                    assert_eq!(
                        (failure.code(), failure.removes_key()),
                        (code, unusable),
                        "{status} {body}"
                    );
                }
                other => panic!("{status} {body}: {other:?}"),
            }
        }
    }
}
