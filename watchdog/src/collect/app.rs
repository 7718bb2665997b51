//! The watched application's metrics endpoint (Prometheus text exposition). Each interval the
//! endpoint is fetched once; an answer that is not 2xx, or no answer, is an [`AppProbe`] with
//! `ok = false` (what `app_down` is debounced from). Samples are keyed by their exposed text,
//! `name` or `name{label="value",...}`, which is what [`super::config::AppRule::metric`] names.

use super::config::AppConfig;
use super::{AppProbe, Observation, emit};
use std::collections::BTreeMap;
use std::time::Duration;
use tokio::sync::mpsc::Sender;
use tokio_util::sync::CancellationToken;
use vigil_shared::time::Timestamp;

/// Bodies beyond this are cut off (and the cut-off last line is almost surely skipped).
const BODY_LIMIT: u64 = 4 * 1024 * 1024;

/// Parses Prometheus text exposition into `sample key -> value`. Comments (`# HELP`, `# TYPE`)
/// and blank lines are skipped; so is any malformed line, without failing the rest. Values may be
/// `NaN`, `+Inf`, `-Inf`; an optional integer timestamp is ignored. The key keeps the label set
/// as written, with whitespace outside quoted values removed. A repeated key keeps its last value.
pub fn parse_prometheus_text(text: &str) -> BTreeMap<String, f64> {
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((key, value)) = parse_sample_line(line) {
            samples.insert(key, value);
        }
    }
    samples
}

fn is_name_start(c: char) -> bool {
    c.is_ascii_alphabetic() || c == '_' || c == ':'
}

fn is_name_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

/// `name[{labels}] value [timestamp]` → `(key, value)`; `None` for anything malformed.
fn parse_sample_line(line: &str) -> Option<(String, f64)> {
    let mut chars = line.char_indices().peekable();
    let (_, first) = chars.next()?;
    if !is_name_start(first) {
        return None;
    }
    let mut name_end = line.len();
    while let Some(&(i, c)) = chars.peek() {
        if is_name_char(c) {
            chars.next();
        } else {
            name_end = i;
            break;
        }
    }
    let mut key = line[..name_end].to_owned();
    let mut rest = &line[name_end..];
    if let Some(after_brace) = rest.strip_prefix('{') {
        let (labels, after) = scan_labels(after_brace)?;
        if !labels.is_empty() {
            key.push('{');
            key.push_str(&labels);
            key.push('}');
        }
        rest = after;
    }
    // The value must be separated from the name or label set by whitespace.
    if !rest.starts_with([' ', '\t']) {
        return None;
    }
    let mut fields = rest.split_whitespace();
    let value = parse_value(fields.next()?)?;
    if let Some(ts) = fields.next() {
        ts.parse::<i64>().ok()?;
    }
    if fields.next().is_some() {
        return None;
    }
    Some((key, value))
}

/// Scans a label set after its `{` up to the matching `}` (quote- and escape-aware). Returns the
/// label text with whitespace outside quotes removed (and a trailing comma dropped), and what
/// follows the `}`.
fn scan_labels(s: &str) -> Option<(String, &str)> {
    let mut out = String::new();
    let mut in_quotes = false;
    let mut escaped = false;
    for (i, c) in s.char_indices() {
        if in_quotes {
            out.push(c);
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                in_quotes = false;
            }
            continue;
        }
        match c {
            '"' => {
                in_quotes = true;
                out.push(c);
            }
            '}' => {
                if out.ends_with(',') {
                    out.pop();
                }
                if !labels_well_formed(&out) {
                    return None;
                }
                return Some((out, &s[i + 1..]));
            }
            c if c.is_whitespace() => {}
            c => out.push(c),
        }
    }
    None
}

/// Every comma-separated pair is `name="..."` (commas inside quotes were kept verbatim, so the
/// check walks quotes again rather than splitting on commas).
fn labels_well_formed(labels: &str) -> bool {
    let mut rest = labels;
    while !rest.is_empty() {
        let Some(eq) = rest.find('=') else {
            return false;
        };
        let name = &rest[..eq];
        let mut name_chars = name.chars();
        if !name_chars
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            || !name_chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
        {
            return false;
        }
        let Some(quoted) = rest[eq + 1..].strip_prefix('"') else {
            return false;
        };
        let mut escaped = false;
        let mut close = None;
        for (i, c) in quoted.char_indices() {
            if escaped {
                escaped = false;
            } else if c == '\\' {
                escaped = true;
            } else if c == '"' {
                close = Some(i);
                break;
            }
        }
        let Some(close) = close else {
            return false;
        };
        rest = &quoted[close + 1..];
        if let Some(next) = rest.strip_prefix(',') {
            if next.is_empty() {
                return false;
            }
            rest = next;
        } else if !rest.is_empty() {
            return false;
        }
    }
    true
}

fn parse_value(token: &str) -> Option<f64> {
    match token {
        "NaN" => Some(f64::NAN),
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        // Rust would also take "inf"/"infinity"; the format only knows the spellings above.
        t if t
            .chars()
            .any(|c| c.is_ascii_alphabetic() && !matches!(c, 'e' | 'E')) =>
        {
            None
        }
        t => t.parse::<f64>().ok(),
    }
}

/// Fetches and parses the endpoint once.
pub async fn probe(config: &AppConfig) -> AppProbe {
    let at = Timestamp::now();
    match super::deps::get(&config.url, config.timeout, BODY_LIMIT).await {
        Ok(answer) if (200..300).contains(&answer.status) => {
            let samples = parse_prometheus_text(&answer.body);
            AppProbe {
                at,
                ok: true,
                detail: format!("HTTP {}, {} samples", answer.status, samples.len()),
                samples,
            }
        }
        Ok(answer) => AppProbe {
            at,
            ok: false,
            detail: format!("HTTP {}", answer.status),
            samples: BTreeMap::new(),
        },
        Err(e) => AppProbe {
            at,
            ok: false,
            detail: e.to_string(),
            samples: BTreeMap::new(),
        },
    }
}

/// Probes the endpoint every `interval` (first probe at once) until `cancel`.
pub async fn run(
    config: AppConfig,
    interval: Duration,
    tx: Sender<Observation>,
    cancel: CancellationToken,
) {
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        let result = tokio::select! {
            _ = cancel.cancelled() => return,
            r = probe(&config) => r,
        };
        if !result.ok {
            tracing::debug!(app.url = %config.url, error = %result.detail, "App metrics probe failed");
        }
        if !emit(&tx, &cancel, Observation::App(result)).await {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_typical_exposition() {
        let text = r#"# HELP http_requests_total The total number of HTTP requests.
# TYPE http_requests_total counter
http_requests_total{method="post",code="200"} 1027 1395066363000
http_requests_total{method="post",code="400"}    3 1395066363000

# A comment
queue_depth 12
temperature -3.5e2
ratio NaN
latency_bucket{le="+Inf"} +Inf
floor -Inf
metric_without_timestamp_and_labels 12.47
"#;
        let s = parse_prometheus_text(text);
        assert_eq!(
            s[r#"http_requests_total{method="post",code="200"}"#],
            1027.0
        );
        assert_eq!(s[r#"http_requests_total{method="post",code="400"}"#], 3.0);
        assert_eq!(s["queue_depth"], 12.0);
        assert_eq!(s["temperature"], -350.0);
        assert!(s["ratio"].is_nan());
        assert_eq!(s[r#"latency_bucket{le="+Inf"}"#], f64::INFINITY);
        assert_eq!(s["floor"], f64::NEG_INFINITY);
        assert_eq!(s["metric_without_timestamp_and_labels"], 12.47);
        assert_eq!(s.len(), 8, "{s:?}");
    }

    #[test]
    fn label_values_may_hold_braces_spaces_and_escapes() {
        let text = r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""} 1.458255915e9
weird{ a = "x } y" , } 2
empty{} 3
"#;
        let s = parse_prometheus_text(text);
        assert_eq!(
            s[r#"msdos_file_access_time_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find file:\n\"FILE.TXT\""}"#],
            1.458255915e9
        );
        assert_eq!(s[r#"weird{a="x } y"}"#], 2.0);
        assert_eq!(s["empty"], 3.0);
    }

    #[test]
    fn garbage_lines_are_skipped_without_losing_the_rest() {
        let text = "good 1\n\
            1bad_name 2\n\
            novalue\n\
            unterminated{a=\"b\" 3\n\
            badlabel{a=b} 4\n\
            twovalues 5 6 7\n\
            badts 5 soon\n\
            word_value lots\n\
            inf_spelling inf\n\
            joined{a=\"b\"}5\n\
            {a=\"b\"} 6\n\
            \u{0}\u{1}\u{2}\n\
            also_good{x=\"1\"} 2 -5\n";
        let s = parse_prometheus_text(text);
        assert_eq!(s.len(), 2, "{s:?}");
        assert_eq!(s["good"], 1.0);
        assert_eq!(s[r#"also_good{x="1"}"#], 2.0);
    }

    #[test]
    fn repeated_sample_keeps_the_last_value() {
        let s = parse_prometheus_text("a 1\na 2\n");
        assert_eq!(s["a"], 2.0);
    }

    #[tokio::test]
    async fn probe_reads_samples_and_reports_bad_status() {
        let body = "# TYPE up gauge\nup 1\nqueue_depth{q=\"mail\"} 7\n";
        let addr = crate::collect::deps::tests::http_server(200, body).await;
        let config = AppConfig {
            url: format!("http://{addr}/metrics").parse().unwrap(),
            timeout: Duration::from_secs(2),
            down_after: 3,
            rules: vec![],
        };
        let p = probe(&config).await;
        assert!(p.ok, "{p:?}");
        assert_eq!(p.samples["up"], 1.0);
        assert_eq!(p.samples[r#"queue_depth{q="mail"}"#], 7.0);
        assert_eq!(p.detail, "HTTP 200, 2 samples");

        let addr = crate::collect::deps::tests::http_server(500, "oops").await;
        let config = AppConfig {
            url: format!("http://{addr}/metrics").parse().unwrap(),
            ..config
        };
        let p = probe(&config).await;
        assert!(!p.ok);
        assert_eq!(p.detail, "HTTP 500");
        assert!(p.samples.is_empty());
    }
}
