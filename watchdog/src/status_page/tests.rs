//! Board, rendering and access together, without I/O.

use super::board::{AuditView, TargetView};
use super::history::{BYTES_PER_CONTAINER, MAX_POINTS};
use super::*;
use crate::collect::{Observation, Sweep};
use crate::decide::AlertState;
use crate::incident::{Attempt, Incident as LoopIncident, Phase};
use crate::operators::book::{Ack, Silence};
use crate::signals::{Severity, Signal, SignalKind, Subject as SigSubject};
use std::collections::BTreeMap;
use std::time::Duration;
use vigil_docker::{ContainerDetails, ContainerRef, Health, RunState};
use vigil_protocol::wire::Action;
use vigil_shared::config::Secret;

const T0: i64 = 1_800_000_000_000;

fn board() -> Board {
    Board::new(Meta {
        host: "h<o>st".into(),
        deployment: "default".into(),
        enabled: true,
        remediation_configured: true,
        started_at: Timestamp(T0),
    })
}

fn details(i: usize, project: &str, state: RunState, health: Health) -> ContainerDetails {
    ContainerDetails {
        container: ContainerRef {
            id: format!("{i:064x}"),
            name: format!("c-{i}"),
            project: Some(project.into()),
            service: Some("web".into()),
        },
        image: "img".into(),
        labels: BTreeMap::new(),
        state,
        health,
        health_failing_streak: 0,
        exit_code: 3,
        oom_killed: false,
        restart_count: 2,
        restart_policy: String::new(),
        started_at: None,
        finished_at: None,
        memory_limit: 0,
        last_probe: None,
        stop_timeout: None,
    }
}

fn sweep(b: &Board, at: i64, containers: Vec<ContainerDetails>) {
    b.observe(
        &Observation::Sweep(Sweep {
            at: Timestamp(at),
            containers,
        }),
        Timestamp(at),
    );
}

#[test]
fn a_thousand_flapping_containers_stay_within_the_documented_memory_bound() {
    let b = board();
    let n = 1000;
    for f in 0..(MAX_POINTS + 40) {
        let health = if f % 2 == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        let at = T0 + i64::try_from(f).unwrap_or(0) * 1000;
        let long = "p".repeat(10_000);
        sweep(
            &b,
            at,
            (0..n)
                .map(|i| details(i, &long, RunState::Running, health))
                .collect(),
        );
    }
    for seq in 1..=200u64 {
        b.record_audit(
            AuditView {
                request_id: None,
                duration_ms: None,
                seq,
                ts: Some(Timestamp(T0 + i64::try_from(seq).unwrap_or(0))),
                action: Some("restart".into()),
                target: Some(TargetView {
                    service: None,
                    id: Some(format!("{:064x}", seq % 3)),
                    name: None,
                    project: None,
                }),
                decision: "executed".into(),
                reason: "ok".into(),
                result: None,
                retry_at: None,
            },
            Timestamp(T0 + 400_000),
        );
    }
    let used = b.history_bytes();
    assert!(
        used <= n * BYTES_PER_CONTAINER,
        "{used} bytes for {n} containers exceeds {} each",
        BYTES_PER_CONTAINER
    );
    let doc = b.snapshot(Timestamp(T0 + 400_000));
    assert_eq!(doc.containers.len(), n);
    assert!(
        doc.containers
            .iter()
            .all(|c| c.timeline.len() <= MAX_POINTS)
    );
    assert!(
        doc.containers
            .iter()
            .all(|c| c.project.as_ref().is_some_and(|p| p.len() <= 128))
    );
    assert_eq!(doc.history.bytes_now, used);
    assert!(doc.actions.len() <= board::MAX_ACTIONS);
}

#[test]
fn docker_text_is_escaped_and_states_show() {
    let b = board();
    let evil = "<img src=x onerror=alert(1)>\"'&";
    sweep(
        &b,
        T0,
        vec![
            details(1, evil, RunState::Running, Health::Healthy),
            details(2, "shop", RunState::Running, Health::Unhealthy),
            details(3, "shop", RunState::Exited, Health::None),
        ],
    );
    let html = render::page(&b.snapshot(Timestamp(T0 + 5000))).expect("render");
    assert!(!html.contains("<img"), "{html}");
    assert!(
        html.contains("&#60;img src=x onerror=alert(1)&#62;"),
        "{html}"
    );
    assert!(!html.contains("h<o>st"));
    for (name, state) in [("c-1", "healthy"), ("c-2", "unhealthy"), ("c-3", "exited")] {
        assert!(
            html.contains(&format!("data-name=\"{name}\" data-state=\"{state}\"")),
            "{name} {state}"
        );
    }
    // Failing containers first.
    let doc = b.snapshot(Timestamp(T0 + 5000));
    let order: Vec<&str> = doc.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(order, vec!["c-2", "c-3", "c-1"]);
    assert_eq!(doc.containers[1].exit_code, Some(3));
    let live = render::live(&doc).expect("live");
    assert!(live.starts_with("<main id=\"live\""), "{live}");
    assert!(!live.contains("<script"));
}

#[test]
fn incidents_carry_the_remediation_from_requests_and_the_audit() {
    let b = board();
    sweep(
        &b,
        T0,
        vec![details(1, "shop", RunState::Running, Health::Unhealthy)],
    );
    let sig = Signal::new(
        SignalKind::ContainerUnhealthy,
        true,
        Severity::High,
        SigSubject {
            project: Some("shop".into()),
            service: Some("web".into()),
            container: Some("c-1".into()),
            container_id: Some(format!("{:064x}", 1)),
            name: None,
        },
        "health check failing",
        Timestamp(T0),
    );
    let firing = AlertState::Firing {
        since: Timestamp(T0),
        last_notified: Timestamp(T0),
        count: 1,
        interval: Duration::from_secs(3600),
        occurrence: None,
    };
    let disk = Signal::new(
        SignalKind::DiskHigh,
        true,
        Severity::Medium,
        SigSubject::named("/"),
        "92% used",
        Timestamp(T0),
    );
    let pending = AlertState::Pending {
        since: Timestamp(T0),
    };
    b.set_alerts([(&sig, &firing), (&disk, &firing), (&disk, &pending)].into_iter());
    let doc = b.snapshot(Timestamp(T0 + 1000));
    assert_eq!(doc.incidents.len(), 2, "pending alerts are not incidents");
    assert_eq!(doc.incidents[0].severity, "high", "most severe first");
    assert!(doc.incidents[0].remediation.is_none());

    b.note_request(&format!("{:064x}", 1), "restart", Timestamp(T0 + 2000));
    let doc = b.snapshot(Timestamp(T0 + 2500));
    let r = doc.incidents[0].remediation.clone().expect("requested");
    assert_eq!((r.state.as_str(), r.audit_seq), ("requested", None));

    let refused = |seq, reason: &str, retry| AuditView {
        request_id: None,
        duration_ms: None,
        seq,
        ts: Some(Timestamp(T0 + 3000 + i64::try_from(seq).unwrap_or(0))),
        action: Some("restart".into()),
        target: Some(TargetView {
            service: None,
            id: Some(format!("{:064x}", 1)),
            name: Some("c-1".into()),
            project: Some("shop".into()),
        }),
        decision: "refused".into(),
        reason: reason.into(),
        result: None,
        retry_at: retry,
    };
    b.record_audit(
        refused(7, "backoff", Some(Timestamp(T0 + 60_000))),
        Timestamp(T0 + 3100),
    );
    let doc = b.snapshot(Timestamp(T0 + 4000));
    let r = doc.incidents[0].remediation.clone().expect("refused");
    assert_eq!(r.state, "refused");
    assert_eq!(r.audit_seq, Some(7));
    assert_eq!(r.retry_at, Some(T0 + 60_000));
    let html = render::page(&doc).expect("render");
    assert!(html.contains("refused until"), "{html}");

    b.record_audit(refused(8, "breaker_opened", None), Timestamp(T0 + 3200));
    let doc = b.snapshot(Timestamp(T0 + 4000));
    assert_eq!(
        doc.incidents[0]
            .remediation
            .as_ref()
            .map(|r| r.state.as_str()),
        Some("escalated")
    );
    assert_eq!(doc.actions[0].audit_seq, 8, "newest action first");
    assert_eq!(
        doc.containers[0].marks.len(),
        3,
        "a request and two audit marks"
    );

    // The JSON reads back as the same document.
    let json = serde_json::to_string(&doc).expect("json");
    let back: model::StatusDoc = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, doc);
}

#[test]
fn marks_read_before_the_first_sweep_are_kept_for_the_container() {
    let b = board();
    b.record_audit(
        AuditView {
            request_id: None,
            duration_ms: None,
            seq: 1,
            ts: Some(Timestamp(T0)),
            action: Some("restart".into()),
            target: Some(TargetView {
                service: None,
                id: Some(format!("{:064x}", 5)),
                name: Some("c-5".into()),
                project: None,
            }),
            decision: "dry_run".into(),
            reason: "dry_run".into(),
            result: None,
            retry_at: None,
        },
        Timestamp(T0),
    );
    sweep(
        &b,
        T0 + 1000,
        vec![details(5, "p", RunState::Running, Health::None)],
    );
    let doc = b.snapshot(Timestamp(T0 + 2000));
    assert_eq!(doc.containers[0].marks.len(), 1);
    assert_eq!(doc.containers[0].state, "running");
    assert_eq!(doc.executor.dry_run, Some(true));
}

#[test]
fn responses_need_the_token_when_one_is_set_and_carry_the_csp() {
    let web = Web {
        board: Arc::new(board()),
        access: Access::new(Some(&Secret::new("0123456789abcdef0123"))),
    };
    let get = |path: &str, auth: Option<&str>| {
        let mut headers = HeaderMap::new();
        if let Some(a) = auth {
            headers.insert(header::AUTHORIZATION, HeaderValue::from_str(a).expect("hv"));
        }
        web.respond(&Method::GET, &path.parse().expect("uri"), &headers)
    };
    let r = get("/", None).expect("answered");
    assert_eq!(r.status(), StatusCode::UNAUTHORIZED);
    assert!(
        get("/healthz", None).is_none(),
        "healthz is routed elsewhere, open"
    );
    assert_eq!(
        get("/metrics", None).map(|r| r.status()),
        Some(StatusCode::UNAUTHORIZED)
    );
    assert!(get("/metrics", Some("Bearer 0123456789abcdef0123")).is_none());
    let ok = get("/", Some("Bearer 0123456789abcdef0123")).expect("page");
    assert_eq!(ok.status(), StatusCode::OK);
    let csp = ok.headers()[header::CONTENT_SECURITY_POLICY]
        .to_str()
        .expect("csp");
    assert!(csp.starts_with("default-src 'none'"));
    let post = web.respond(&Method::POST, &"/".parse().expect("uri"), &HeaderMap::new());
    assert!(post.is_none(), "only GET and HEAD: the router answers 405");
    let schema: serde_json::Value = serde_json::from_str(SCHEMA_JSON).expect("schema is JSON");
    assert_eq!(
        schema["properties"]["version"]["const"],
        model::SCHEMA_VERSION
    );
}

/// Silences and acks as the operators' book would hand them out.
struct FixedSilences(Vec<Silence>, Vec<Ack>);

impl crate::operators::SilenceView for FixedSilences {
    fn active_silences(&self, now: Timestamp) -> Vec<Silence> {
        self.0
            .iter()
            .filter(|s| s.is_active(now))
            .cloned()
            .collect()
    }
    fn active_acks(&self, now: Timestamp) -> Vec<Ack> {
        self.1.iter().filter(|a| now < a.until).cloned().collect()
    }
}

fn unhealthy_signal(i: usize) -> Signal {
    Signal::new(
        SignalKind::ContainerUnhealthy,
        true,
        Severity::High,
        SigSubject {
            project: Some("shop".into()),
            service: Some("web".into()),
            container: Some(format!("c-{i}")),
            container_id: Some(format!("{i:064x}")),
            name: None,
        },
        "health check failing",
        Timestamp(T0),
    )
}

fn firing_state() -> AlertState {
    AlertState::Firing {
        since: Timestamp(T0),
        last_notified: Timestamp(T0),
        count: 1,
        interval: Duration::from_secs(3600),
        occurrence: None,
    }
}

fn loop_incident(i: usize, phase: Phase, attempts: Vec<Attempt>) -> LoopIncident {
    LoopIncident {
        key: unhealthy_signal(i).key,
        container_id: format!("{i:064x}"),
        container: format!("c-{i}"),
        action: Action::Restart,
        reason: "unhealthy".into(),
        confidence: 0.9,
        detected_at: Timestamp(T0),
        phase,
        attempts,
        acted_at: Some(Timestamp(T0 + 9_000)),
        breaker_until: None,
    }
}

fn attempt(id: &str, outcome: Option<&str>, seq: Option<u64>) -> Attempt {
    Attempt {
        request_id: id.into(),
        issued_at: Timestamp(T0 + 1_000),
        outcome: outcome.map(str::to_string),
        seq,
    }
}

#[test]
fn incidents_show_the_incident_machines_phase_and_silences_and_acks() {
    let b = board();
    sweep(
        &b,
        T0,
        (1..=6)
            .map(|i| details(i, "shop", RunState::Running, Health::Unhealthy))
            .collect(),
    );
    b.set_silences(Arc::new(FixedSilences(
        vec![
            Silence {
                id: "s00abcd".into(),
                target: "c-5".into(),
                reason: "<b>maintenance</b>".into(),
                by: "7 ann".into(),
                created_at: Timestamp(T0),
                until: Timestamp(T0 + 3_600_000),
            },
            Silence {
                id: "s00dead".into(),
                target: "over".into(),
                reason: String::new(),
                by: "7 ann".into(),
                created_at: Timestamp(T0 - 10),
                until: Timestamp(T0 + 1),
            },
        ],
        vec![Ack {
            container: "c-6".into(),
            by: "8 bob".into(),
            at: Timestamp(T0),
            until: Timestamp(T0 + 86_400_000),
        }],
    )));
    let signals: Vec<Signal> = (1..=6).map(unhealthy_signal).collect();
    let firing = firing_state();
    b.set_alerts(signals.iter().map(|s| (s, &firing)));
    let incs = [
        loop_incident(
            1,
            Phase::Requested {
                request_id: "r1".into(),
                expires_at: Timestamp(T0 + 61_000),
            },
            vec![attempt("r1", None, None)],
        ),
        loop_incident(
            2,
            Phase::Waiting {
                retry_at: Timestamp(T0 + 120_000),
                reason: "backoff".into(),
            },
            vec![attempt("r2", Some("refused: backoff"), Some(11))],
        ),
        loop_incident(
            3,
            Phase::Verifying {
                seq: 12,
                until: Timestamp(T0 + 129_000),
            },
            vec![attempt("r3", Some("executed"), Some(12))],
        ),
        loop_incident(
            4,
            Phase::Escalated,
            vec![
                attempt("r4a", Some("executed"), Some(13)),
                attempt("r4b", Some("refused: breaker_opened"), Some(14)),
            ],
        ),
    ];
    for inc in &incs {
        b.note_incident(&inc.key, Some(inc));
    }
    let now = Timestamp(T0 + 10_000);
    let doc = b.snapshot(now);
    let by_name = |n: &str| {
        doc.incidents
            .iter()
            .find(|i| i.subject.container.as_deref() == Some(n))
            .unwrap_or_else(|| panic!("no incident for {n}: {doc:#?}"))
            .clone()
    };
    let r = by_name("c-1").remediation.expect("requested");
    assert_eq!(
        (r.state.as_str(), r.phase.as_deref(), r.at, r.attempts),
        ("requested", Some("requested"), T0 + 1_000, Some(1))
    );
    let r = by_name("c-2").remediation.expect("refused");
    assert_eq!(
        (r.state.as_str(), r.retry_at, r.audit_seq, r.detail.as_str()),
        ("refused", Some(T0 + 120_000), Some(11), "backoff")
    );
    let r = by_name("c-3").remediation.expect("executed");
    assert_eq!(
        (r.state.as_str(), r.at, r.audit_seq, r.verify_until),
        ("executed", T0 + 9_000, Some(12), Some(T0 + 129_000))
    );
    assert_eq!(r.phase.as_deref(), Some("verifying"));
    let r = by_name("c-4").remediation.expect("escalated");
    assert_eq!(
        (r.state.as_str(), r.audit_seq, r.executed, r.attempts),
        ("escalated", Some(14), Some(1), Some(2))
    );
    let c5 = by_name("c-5");
    assert!(c5.remediation.is_none(), "no incident, no record: none");
    assert_eq!(c5.silence.as_ref().map(|s| s.id.as_str()), Some("s00abcd"));
    let c6 = by_name("c-6");
    assert!(c6.acked && c5.silence.is_some() && c6.silence.is_none());
    assert_eq!(c6.acked_by.as_deref(), Some("8 bob"));
    assert_eq!(doc.silences.len(), 1, "the ended silence is not listed");
    assert_eq!(doc.silences[0].by.as_deref(), Some("7 ann"));

    let html = render::page(&doc).expect("render");
    for needle in [
        "restart requested at",
        "restart refused until 2027-01-15 08:02:00 UTC: backoff (audit #11)",
        "restarted at 2027-01-15 08:00:09 UTC (audit #12), verifying until",
        "escalated: manual action needed (audit #14)",
        "silenced until",
        "acknowledged by 8 bob",
        "data-remediation=\"escalated\"",
        "&#60;b&#62;maintenance&#60;/b&#62;",
    ] {
        assert!(html.contains(needle), "{needle} not in\n{html}");
    }
    assert!(!html.contains("<b>maintenance"));

    // The end of an incident, and an alert that stopped firing, drop the copy.
    b.note_incident(&incs[0].key, None);
    b.set_alerts(signals[1..2].iter().map(|s| (s, &firing)));
    let doc = b.snapshot(now);
    assert_eq!(doc.incidents.len(), 1);
    b.set_alerts(signals.iter().map(|s| (s, &firing)));
    let doc = b.snapshot(now);
    let states: Vec<Option<String>> = doc
        .incidents
        .iter()
        .map(|i| i.remediation.as_ref().map(|r| r.state.clone()))
        .collect();
    assert_eq!(
        states.iter().flatten().count(),
        1,
        "only the copy noted while its alert kept firing is left: {states:?}"
    );

    // The same text reaches Telegram's /status.
    let ops = crate::operators::Operators::in_memory();
    ops.status.note_incident(&incs[2].key, Some(&incs[2]));
    let text = ops.status.phase_text(&incs[2].key).expect("phase");
    assert!(text.starts_with("restarted at "), "{text}");
    assert!(text.contains("(audit #12)"), "{text}");
}

#[test]
fn a_strip_is_one_path_per_state_and_per_kind_of_mark() {
    let b = board();
    for f in 0..10i64 {
        let health = if f % 2 == 0 {
            Health::Healthy
        } else {
            Health::Unhealthy
        };
        sweep(
            &b,
            T0 + f * 60_000,
            vec![details(1, "shop", RunState::Running, health)],
        );
    }
    for seq in 1..=3u64 {
        b.record_audit(
            AuditView {
                request_id: None,
                duration_ms: None,
                seq,
                ts: Some(Timestamp(T0 + 1_000 * i64::try_from(seq).unwrap_or(0))),
                action: Some("restart".into()),
                target: Some(TargetView {
                    service: None,
                    id: Some(format!("{:064x}", 1)),
                    name: None,
                    project: None,
                }),
                decision: "executed".into(),
                reason: "ok".into(),
                result: None,
                retry_at: None,
            },
            Timestamp(T0 + 600_000),
        );
    }
    let html = render::page(&b.snapshot(Timestamp(T0 + 600_000))).expect("render");
    assert_eq!(
        html.matches("<path class=\"s-healthy\"").count(),
        1,
        "{html}"
    );
    assert_eq!(html.matches("<path class=\"s-unhealthy\"").count(), 1);
    assert_eq!(html.matches("<path class=\"mark m-executed\"").count(), 1);
    assert!(html.contains("data-count=\"3\""), "{html}");
    assert!(html.contains("executed x3, latest at"), "{html}");
    // Five healthy spans in one path: five sub-paths.
    let healthy = html
        .split("<path class=\"s-healthy\" d=\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("the healthy path");
    assert_eq!(healthy.matches('M').count(), 5, "{healthy}");
}
