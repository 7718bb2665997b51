//! What the ureq-based sinks (Slack, webhook) share: a blocking POST run off the async runtime,
//! the retry classes of an HTTP answer, and scrubbing the URL (a credential) out of errors.

use super::sink::SendError;
use super::text::{scrub, truncate_chars};
use std::time::Duration;
use vigil_shared::config::Secret;

/// Longest answer body we read; answers are `ok` or a short error word.
const MAX_ANSWER_BYTES: u64 = 16 * 1024;

/// An agent that returns 4xx/5xx as answers (not errors) and gives up after `timeout`.
pub(crate) fn agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .build()
        .into()
}

/// What the server said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Answer {
    pub status: u16,
    pub retry_after: Option<Duration>,
    pub body: String,
}

/// POSTs `body` as JSON to the secret `url` on the blocking pool.
pub(crate) async fn post_json(
    agent: &ureq::Agent,
    url: &Secret,
    body: serde_json::Value,
) -> Result<Answer, SendError> {
    let agent = agent.clone();
    let target = url.expose().to_string();
    let joined = tokio::task::spawn_blocking(move || -> Result<Answer, ureq::Error> {
        let mut resp = agent.post(target.as_str()).send_json(&body)?;
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(parse_retry_after);
        // An unreadable body still leaves the status, which is what decides.
        let body = resp
            .body_mut()
            .with_config()
            .limit(MAX_ANSWER_BYTES)
            .read_to_string()
            .unwrap_or_default();
        Ok(Answer {
            status,
            retry_after,
            body,
        })
    })
    .await;
    match joined {
        Ok(Ok(answer)) => Ok(answer),
        Ok(Err(e)) => Err(classify_error(&e, url)),
        Err(e) => Err(SendError::retryable(format!("send task failed: {e}"))),
    }
}

/// Maps an answer to success or a retry class: 2xx succeeds; 429, 408 and 5xx are worth retrying
/// (honouring Retry-After); any other status is permanent.
pub(crate) fn classify(answer: &Answer, url: &Secret) -> Result<(), SendError> {
    let body = || truncate_chars(&scrub(answer.body.trim(), &[url.expose()]), 200);
    match answer.status {
        200..=299 => Ok(()),
        429 | 408 | 500..=599 => Err(SendError::Retryable {
            after: answer.retry_after,
            reason: format!("HTTP {}: {}", answer.status, body()),
        }),
        s => Err(SendError::Permanent(format!("HTTP {s}: {}", body()))),
    }
}

fn classify_error(e: &ureq::Error, url: &Secret) -> SendError {
    let reason = scrub(&e.to_string(), &[url.expose()]);
    match e {
        ureq::Error::BadUri(_)
        | ureq::Error::Http(_)
        | ureq::Error::InvalidProxyUrl
        | ureq::Error::TooManyRedirects
        | ureq::Error::RedirectFailed => SendError::Permanent(reason),
        _ => SendError::retryable(reason),
    }
}

/// `Retry-After` in seconds (the HTTP-date form is rare for these services and is ignored).
fn parse_retry_after(v: &str) -> Option<Duration> {
    v.trim().parse::<u64>().ok().map(Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, body: &str) -> Answer {
        Answer {
            status,
            retry_after: None,
            body: body.into(),
        }
    }

    #[test]
    fn status_classes() {
        let url = Secret::new("http://h/services/T/B/secret");
        assert_eq!(classify(&answer(200, "ok"), &url), Ok(()));
        assert_eq!(classify(&answer(204, ""), &url), Ok(()));
        assert!(classify(&answer(500, ""), &url).is_err_and(|e| e.is_retryable()));
        assert!(classify(&answer(503, ""), &url).is_err_and(|e| e.is_retryable()));
        assert!(
            matches!(classify(&answer(400, "invalid_payload"), &url), Err(SendError::Permanent(r)) if r.contains("invalid_payload"))
        );
        assert!(matches!(
            classify(&answer(404, "no_service"), &url),
            Err(SendError::Permanent(_))
        ));
        let limited = Answer {
            status: 429,
            retry_after: Some(Duration::from_secs(7)),
            body: String::new(),
        };
        assert_eq!(
            classify(&limited, &url),
            Err(SendError::Retryable {
                after: Some(Duration::from_secs(7)),
                reason: "HTTP 429: ".into()
            })
        );
    }

    #[test]
    fn answer_bodies_are_scrubbed() {
        let url = Secret::new("http://h/services/T/B/secret");
        let e = classify(&answer(400, "bad url http://h/services/T/B/secret"), &url);
        assert!(matches!(e, Err(SendError::Permanent(r)) if !r.contains("secret")));
    }

    #[test]
    fn retry_after_seconds() {
        assert_eq!(parse_retry_after(" 3 "), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"), None);
    }

    #[tokio::test]
    async fn connection_errors_are_retryable_and_scrubbed() {
        // Port 9 on localhost: nothing listens, the connect is refused at once.
        let url = Secret::new("http://127.0.0.1:9/services/T/B/topsecret");
        let e = post_json(
            &agent(Duration::from_secs(2)),
            &url,
            serde_json::json!({"text": "x"}),
        )
        .await
        .expect_err("nothing listens");
        assert!(e.is_retryable(), "{e}");
        assert!(!e.to_string().contains("topsecret"), "{e}");
    }
}
