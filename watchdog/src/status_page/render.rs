//! The HTML page, drawn on the server from a [`StatusDoc`] with compile-time templates
//! (`watchdog/templates/status_*.html`, askama). Askama escapes every value it prints, so names,
//! labels and audit text from Docker or the executor always render as text. The timeline strips
//! are inline SVG computed here; the page's one script and one style sheet are inline too, and
//! allowed by their SHA-256 hashes in the Content-Security-Policy (nothing else may run or load).

use super::model::{ContainerView, Incident, StatusDoc};
use super::time::clock;
use askama::Template;
use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::sync::LazyLock;
use std::time::Duration;
use vigil_shared::time::human_duration;

const SCRIPT: &str = include_str!("assets/page.js");
const STYLE: &str = include_str!("assets/page.css");
/// Width of a strip in SVG units: one per 6 seconds of the 24-hour window (whole numbers only:
/// formatting integers is much cheaper than floats at 1,000 containers).
const STRIP_UNITS: i64 = 14_400;
/// Width of an action mark, in strip units.
const MARK_UNITS: i64 = 30;

/// The Content-Security-Policy of every page response: only the inline script and style with
/// these exact hashes, fetches to this origin, `data:` images (the empty favicon), no frames,
/// forms or base URL changes.
pub static CSP: LazyLock<String> = LazyLock::new(|| {
    format!(
        "default-src 'none'; script-src '{}'; style-src '{}'; img-src data:; connect-src 'self'; \
         base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        hash(SCRIPT),
        hash(STYLE)
    )
});

fn hash(text: &str) -> String {
    format!(
        "sha256-{}",
        base64::engine::general_purpose::STANDARD.encode(Sha256::digest(text.as_bytes()))
    )
}

#[derive(Template)]
#[template(path = "status_page.html")]
struct PageTpl<'a> {
    v: &'a View,
    script: &'static str,
    style: &'static str,
}

#[derive(Template)]
#[template(path = "status_live.html")]
struct LiveTpl<'a> {
    v: &'a View,
}

/// The full page.
pub fn page(doc: &StatusDoc) -> Result<String, askama::Error> {
    let v = View::from(doc);
    PageTpl {
        v: &v,
        script: SCRIPT,
        style: STYLE,
    }
    .render()
}

/// The live part alone (`GET /live`), which the page's script swaps in every second.
pub fn live(doc: &StatusDoc) -> Result<String, askama::Error> {
    let v = View::from(doc);
    LiveTpl { v: &v }.render()
}

/// Everything the templates print, already formatted.
pub struct View {
    pub title: String,
    pub host: String,
    pub deployment: String,
    pub generated: String,
    pub last_sweep: String,
    pub docker_ok: bool,
    pub enabled: bool,
    pub remediation_configured: bool,
    pub heartbeat: Badge,
    pub paused: Badge,
    pub dry_run: Badge,
    pub incidents: Vec<IncidentRow>,
    pub containers: Vec<ContainerRow>,
    pub bad_containers: usize,
    pub actions: Vec<ActionRow>,
    pub silences: Vec<SilenceRow>,
    pub memory: Option<Meter>,
    pub disks: Vec<Meter>,
    pub host_sampled: String,
    pub history: String,
}

pub struct Badge {
    pub class: &'static str,
    pub text: String,
}

pub struct IncidentRow {
    pub severity: String,
    pub kind: String,
    pub state: String,
    pub subject: String,
    pub since: String,
    pub cause: String,
    pub remediation: String,
    pub remediation_class: &'static str,
    /// `remediation.state` (or `none`), for the DOM's `data-remediation`.
    pub remediation_state: String,
    pub silence: String,
}

pub struct ContainerRow {
    pub id: String,
    pub short_id: String,
    pub name: String,
    pub group: String,
    pub state: String,
    pub since: String,
    pub detail: String,
    pub segs: Vec<Seg>,
    pub marks: Vec<MarkPos>,
}

/// One state's part of a strip: every span in that state, as one SVG path.
pub struct Seg {
    pub d: String,
    pub class: String,
    pub title: String,
}

/// One kind of Vigil action on a strip (all marks of that decision), as one SVG path.
pub struct MarkPos {
    pub d: String,
    pub class: String,
    pub title: String,
    pub count: usize,
}

pub struct ActionRow {
    pub at: String,
    pub seq: u64,
    pub action: String,
    pub target: String,
    pub decision: String,
    pub detail: String,
}

pub struct SilenceRow {
    pub id: String,
    pub by: String,
    pub target: String,
    pub until: String,
    pub reason: String,
}

pub struct Meter {
    pub label: String,
    pub text: String,
    pub class: &'static str,
}

impl From<&StatusDoc> for View {
    fn from(doc: &StatusDoc) -> View {
        let now = doc.generated_at;
        let firing = doc.incidents.iter().filter(|i| i.state == "firing").count();
        let bad_containers = doc
            .containers
            .iter()
            .filter(|c| {
                matches!(
                    c.state.as_str(),
                    "unhealthy" | "exited" | "down" | "restarting"
                )
            })
            .count();
        let ex = &doc.executor;
        let heartbeat = match ex.heartbeat_ok {
            _ if !doc.watchdog.remediation_configured => Badge {
                class: "off",
                text: "no executor (alert-only mode)".into(),
            },
            Some(true) => Badge {
                class: "ok",
                text: format!(
                    "executor heartbeat ok{}",
                    ex.heartbeat_at
                        .map(|at| format!(", {}", ago(now, at)))
                        .unwrap_or_default()
                ),
            },
            Some(false) => Badge {
                class: "bad",
                text: match ex.heartbeat_at {
                    Some(at) => format!("executor heartbeat stale ({})", ago(now, at)),
                    None => "executor heartbeat missing".into(),
                },
            },
            None => Badge {
                class: "off",
                text: "executor heartbeat not read yet".into(),
            },
        };
        let paused = match ex.paused {
            Some(true) => Badge {
                class: "warn",
                text: "remediation PAUSED".into(),
            },
            Some(false) => Badge {
                class: "ok",
                text: "remediation active".into(),
            },
            None => Badge {
                class: "off",
                text: "pause state unknown".into(),
            },
        };
        let dry_run = match ex.dry_run {
            Some(true) => Badge {
                class: "warn",
                text: "DRY RUN (last action)".into(),
            },
            Some(false) => Badge {
                class: "ok",
                text: "acting for real".into(),
            },
            None => Badge {
                class: "off",
                text: "no action seen yet".into(),
            },
        };
        let host = &doc.host_signals;
        let memory = match (host.memory_total_bytes, host.memory_available_bytes) {
            (Some(total), Some(avail)) if total > 0 => Some(meter("memory", total, avail)),
            _ => None,
        };
        View {
            title: if firing > 0 {
                format!("({firing}) Vigil: {}", doc.host)
            } else {
                format!("Vigil: {}", doc.host)
            },
            host: doc.host.clone(),
            deployment: doc.deployment.clone(),
            generated: clock(now),
            last_sweep: doc.watchdog.last_sweep_at.map_or_else(
                || "no sweep yet".into(),
                |at| format!("{} ({})", clock(at), ago(now, at)),
            ),
            docker_ok: doc.watchdog.docker_ok,
            enabled: doc.watchdog.enabled,
            remediation_configured: doc.watchdog.remediation_configured,
            heartbeat,
            paused,
            dry_run,
            incidents: doc.incidents.iter().map(|i| incident_row(i, now)).collect(),
            containers: doc
                .containers
                .iter()
                .map(|c| container_row(c, now, doc.history.window_ms))
                .collect(),
            bad_containers,
            actions: doc
                .actions
                .iter()
                .map(|a| ActionRow {
                    at: a.at.map_or_else(|| "?".into(), clock),
                    seq: a.audit_seq,
                    action: a.action.clone().unwrap_or_else(|| "-".into()),
                    target: a.target.clone().unwrap_or_else(|| "-".into()),
                    decision: a.decision.clone(),
                    detail: {
                        let mut d = a.result.clone().unwrap_or_else(|| words(&a.reason));
                        if let Some(r) = a.retry_at {
                            d.push_str(&format!(" (retry at {})", clock(r)));
                        }
                        d
                    },
                })
                .collect(),
            silences: doc
                .silences
                .iter()
                .map(|s| SilenceRow {
                    id: s.id.clone(),
                    by: s.by.clone().unwrap_or_default(),
                    target: s.target.clone(),
                    until: clock(s.until),
                    reason: s.reason.clone().unwrap_or_default(),
                })
                .collect(),
            memory,
            disks: host
                .disks
                .iter()
                .map(|d| meter(&d.path, d.total_bytes, d.available_bytes))
                .collect(),
            host_sampled: host
                .sampled_at
                .map_or_else(|| "not sampled yet".into(), |at| ago(now, at)),
            history: format!(
                "history: {} in memory for {} container(s) (at most {} KiB each)",
                bytes(doc.history.bytes_now as u64),
                doc.containers.len(),
                doc.history.bytes_per_container_bound / 1024
            ),
        }
    }
}

fn meter(label: &str, total: u64, avail: u64) -> Meter {
    let used = total.saturating_sub(avail);
    let pct = (used as f64 * 100.0 / total.max(1) as f64).round();
    Meter {
        label: label.to_string(),
        text: format!("{pct:.0}% used ({} of {})", bytes(used), bytes(total)),
        class: if pct >= 90.0 {
            "bad"
        } else if pct >= 80.0 {
            "warn"
        } else {
            "ok"
        },
    }
}

fn incident_row(i: &Incident, now: i64) -> IncidentRow {
    let s = &i.subject;
    let subject = match &s.container {
        Some(c) => match (&s.project, &s.service) {
            (Some(p), Some(sv)) => format!("{c} ({p}/{sv})"),
            (Some(p), None) => format!("{c} ({p})"),
            _ => c.clone(),
        },
        None => s.name.clone().unwrap_or_else(|| "-".into()),
    };
    let (remediation, remediation_class) = match &i.remediation {
        Some(r) => (super::remedy::text(r), super::remedy::class(&r.state)),
        None => ("none".into(), "off"),
    };
    IncidentRow {
        severity: i.severity.clone(),
        kind: i.kind.clone(),
        state: i.state.clone(),
        subject,
        since: format!("{} ({})", clock(i.since), ago(now, i.since)),
        cause: i.cause.clone(),
        remediation,
        remediation_class,
        remediation_state: i
            .remediation
            .as_ref()
            .map_or_else(|| "none".into(), |r| r.state.clone()),
        silence: match (&i.silence, i.acked) {
            (Some(s), _) => format!("silenced until {} ({})", clock(s.until), s.id),
            (None, true) => match &i.acked_by {
                Some(by) => format!("acknowledged by {by}"),
                None => "acknowledged".into(),
            },
            (None, false) => String::new(),
        },
    }
}

fn container_row(c: &ContainerView, now: i64, window_ms: i64) -> ContainerRow {
    let start = now - window_ms;
    let x = |at: i64| {
        let off = i128::from(at.clamp(start, now) - start);
        let units = off * i128::from(STRIP_UNITS) / i128::from(window_ms.max(1));
        i64::try_from(units).unwrap_or(0)
    };
    // One path per state (and one per kind of mark), not one element per change: at 1,000
    // containers with full histories the page stays a few MB and draws in well under a second.
    let mut segs: Vec<Seg> = Vec::new();
    let mut shares: Vec<(String, i64)> = Vec::new();
    for (i, p) in c.timeline.iter().enumerate() {
        let end = c.timeline.get(i + 1).map_or(now, |n| n.at);
        if end <= start {
            continue;
        }
        let (x0, x1) = (x(p.at), x(end));
        let w = (x1 - x0).max(1);
        let class = format!("s-{}", p.state);
        let i = match segs.iter().position(|s| s.class == class) {
            Some(i) => i,
            None => {
                segs.push(Seg {
                    d: String::with_capacity(512),
                    class: class.clone(),
                    title: String::new(),
                });
                segs.len() - 1
            }
        };
        let _ = write!(segs[i].d, "M{x0} 0h{w}v16h-{w}z");
        let ms = end - p.at.max(start);
        match shares.iter_mut().find(|(st, _)| st == &p.state) {
            Some((_, total)) => *total += ms,
            None => shares.push((p.state.clone(), ms)),
        }
    }
    for seg in &mut segs {
        let state = seg.class.trim_start_matches("s-");
        let ms = shares
            .iter()
            .find(|(st, _)| st == state)
            .map_or(0, |(_, ms)| *ms);
        seg.title = format!(
            "{state}: {} of the last 24 hours",
            human_duration(Duration::from_millis(u64::try_from(ms).unwrap_or(0)))
        );
    }
    let mut marks: Vec<MarkPos> = Vec::new();
    let mut latest: Vec<&super::model::Mark> = Vec::new();
    for m in &c.marks {
        let class = format!("m-{}", m.decision);
        let i = match marks.iter().position(|k| k.class == class) {
            Some(i) => i,
            None => {
                marks.push(MarkPos {
                    d: String::with_capacity(128),
                    title: String::new(),
                    class,
                    count: 0,
                });
                latest.push(m);
                marks.len() - 1
            }
        };
        let k = &mut marks[i];
        let _ = write!(
            k.d,
            "M{} 0h{MARK_UNITS}v16h-{MARK_UNITS}z",
            (x(m.at) - MARK_UNITS / 2).max(0)
        );
        k.count += 1;
        if m.at >= latest[i].at {
            latest[i] = m;
        }
    }
    for (k, m) in marks.iter_mut().zip(&latest) {
        k.title = format!(
            "{} x{}, latest at {}{}",
            words(&m.decision),
            k.count,
            clock(m.at),
            m.audit_seq
                .map(|s| format!(" (audit #{s})"))
                .unwrap_or_default()
        );
    }
    let mut detail = Vec::new();
    if let Some(code) = c.exit_code {
        detail.push(format!("exit code {code}"));
    }
    if c.restart_count > 0 {
        detail.push(format!("{} restart(s)", c.restart_count));
    }
    ContainerRow {
        id: c.id.clone(),
        short_id: c.id.chars().take(12).collect(),
        name: c.name.clone(),
        group: match (&c.project, &c.service) {
            (Some(p), Some(s)) => format!("{p} / {s}"),
            (Some(p), None) => p.clone(),
            (None, Some(s)) => s.clone(),
            (None, None) => String::new(),
        },
        state: c.state.clone(),
        since: ago(now, c.since),
        detail: detail.join(", "),
        segs,
        marks,
    }
}

fn words(code: &str) -> String {
    code.trim().replace(['_', '-'], " ")
}

fn ago(now: i64, at: i64) -> String {
    let ms = u64::try_from(now.saturating_sub(at).max(0)).unwrap_or(0);
    format!("{} ago", human_duration(Duration::from_millis(ms)))
}

fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = n as f64;
    let mut u = 0;
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csp_allows_only_the_inline_script_and_style_by_hash() {
        assert!(CSP.contains("default-src 'none'"));
        assert!(!CSP.contains("unsafe"));
        assert!(CSP.contains(&hash(SCRIPT)) && CSP.contains(&hash(STYLE)));
    }
}
