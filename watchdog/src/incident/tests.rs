use super::story::Story;
use super::*;

const S: i64 = 1000;

fn t(s: i64) -> Timestamp {
    Timestamp(s * S)
}

fn cfg() -> LoopSettings {
    LoopSettings {
        verify_window: Duration::from_secs(30),
        lost_grace: Duration::from_secs(5),
        send_retry: Duration::from_secs(5),
        default_retry: Duration::from_secs(20),
    }
}

fn opened() -> Incident {
    Incident::open(
        "container_unhealthy/shop/web/shop-web-1",
        "id1",
        "shop-web-1",
        Action::Restart,
        t(0),
    )
    .0
}

fn with_phase(phase: Phase, attempts: &[&str]) -> Incident {
    let mut inc = opened();
    inc.phase = phase;
    inc.attempts = attempts
        .iter()
        .map(|id| Attempt {
            request_id: id.to_string(),
            issued_at: t(0),
            outcome: None,
            seq: None,
        })
        .collect();
    inc
}

fn escalated_until(secs: i64, attempts: &[&str]) -> Incident {
    let mut inc = with_phase(Phase::Escalated, attempts);
    inc.breaker_until = Some(t(secs));
    inc
}

fn requested(id: &str) -> Phase {
    Phase::Requested {
        request_id: id.into(),
        expires_at: t(60),
    }
}

fn audit(id: &str, seq: u64, outcome: Outcome) -> Input {
    Input::Audit(AuditNote {
        request_id: id.into(),
        seq,
        at: t(10),
        outcome,
    })
}

fn refused(reason: &str, retry_at: Option<Timestamp>) -> Outcome {
    Outcome::Refused {
        reason: reason.into(),
        retry_at,
    }
}

fn rejected(reason: &str) -> Outcome {
    Outcome::Rejected {
        reason: reason.into(),
    }
}

/// What a transition produced, in a comparable shape.
#[derive(Debug, PartialEq)]
enum Want {
    Closed,
    Phase(Phase),
}

fn kinds(fx: &[Effect]) -> Vec<&'static str> {
    fx.iter()
        .map(|e| match e {
            Effect::Request => "request",
            Effect::Tell(Story::Executed { .. }) => "tell executed",
            Effect::Tell(Story::Failed { .. }) => "tell failed",
            Effect::Tell(Story::Refused { until: Some(_), .. }) => "tell deferred",
            Effect::Tell(Story::Refused { until: None, .. }) => "tell refused",
            Effect::Tell(Story::DryRun { .. }) => "tell dry run",
            Effect::Tell(Story::Escalated { .. }) => "tell escalated",
            Effect::Tell(Story::Healed { .. }) => "tell healed",
        })
        .collect()
}

#[test]
fn opening_asks_at_once() {
    let (inc, fx) = Incident::open("k", "id", "c", Action::Start, t(3));
    assert_eq!(inc.phase, Phase::Due { at: t(3) });
    assert_eq!(inc.detected_at, t(3));
    assert_eq!(fx, vec![Effect::Request]);
}

/// One row of the transition table: name, incident before, input, seconds, expected outcome and
/// the outputs it must emit.
type Row<'a> = (&'a str, Incident, Input, i64, Want, Vec<&'a str>);

#[test]
fn transition_table() {
    let c = cfg();
    let verifying = Phase::Verifying {
        seq: 4,
        until: t(40),
    };
    let waiting = Phase::Waiting {
        retry_at: t(50),
        reason: "backoff".into(),
    };
    #[rustfmt::skip]
    let table: Vec<Row> = vec![
        // Detected / due.
        ("due + issued -> requested", with_phase(Phase::Due { at: t(0) }, &[]),
            Input::Issued { request_id: "r1".into(), expires_at: t(60) }, 0,
            Want::Phase(requested("r1")), vec![]),
        ("due, firing, time reached -> request", with_phase(Phase::Due { at: t(5) }, &["r0"]),
            Input::Tick { firing: true }, 5, Want::Phase(Phase::Due { at: t(5) }), vec!["request"]),
        ("due, not yet -> nothing", with_phase(Phase::Due { at: t(5) }, &["r0"]),
            Input::Tick { firing: true }, 4, Want::Phase(Phase::Due { at: t(5) }), vec![]),
        ("due, not firing -> nothing", with_phase(Phase::Due { at: t(5) }, &["r0"]),
            Input::Tick { firing: false }, 9, Want::Phase(Phase::Due { at: t(5) }), vec![]),
        // Requested.
        ("requested, publish failed -> due after send_retry", with_phase(requested("r1"), &["r1"]),
            Input::SendFailed { request_id: "r1".into(), error: "broken pipe".into() }, 2,
            Want::Phase(Phase::Due { at: t(7) }), vec![]),
        ("requested, old publish failed -> unchanged", with_phase(requested("r2"), &["r1", "r2"]),
            Input::SendFailed { request_id: "r1".into(), error: "x".into() }, 2,
            Want::Phase(requested("r2")), vec![]),
        ("requested, before expiry+grace -> waits", with_phase(requested("r1"), &["r1"]),
            Input::Tick { firing: true }, 64, Want::Phase(requested("r1")), vec![]),
        ("requested, lost -> re-sent", with_phase(requested("r1"), &["r1"]),
            Input::Tick { firing: true }, 65, Want::Phase(Phase::Due { at: t(65) }), vec!["request"]),
        ("requested, lost while not firing -> due, no request", with_phase(requested("r1"), &["r1"]),
            Input::Tick { firing: false }, 65, Want::Phase(Phase::Due { at: t(65) }), vec![]),
        ("requested, executed -> verifying", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, Outcome::Executed), 10,
            Want::Phase(Phase::Verifying { seq: 4, until: t(40) }), vec!["tell executed"]),
        ("requested, failed -> waiting default", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, Outcome::Failed { detail: "engine 500".into() }), 10,
            Want::Phase(Phase::Waiting { retry_at: t(30), reason: "failed".into() }), vec!["tell failed"]),
        ("requested, backoff with retry_at -> waiting until then", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("backoff", Some(t(50)))), 10, Want::Phase(waiting.clone()), vec!["tell deferred"]),
        ("requested, budget without retry_at -> default wait", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("budget", None)), 10,
            Want::Phase(Phase::Waiting { retry_at: t(30), reason: "budget".into() }), vec!["tell deferred"]),
        ("requested, paused -> waiting", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("paused", Some(t(70)))), 10,
            Want::Phase(Phase::Waiting { retry_at: t(70), reason: "paused".into() }), vec!["tell deferred"]),
        ("requested, stale -> waiting, quietly", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("stale", None)), 10,
            Want::Phase(Phase::Waiting { retry_at: t(30), reason: "stale".into() }), vec![]),
        ("requested, retry_at in the past -> waiting until now", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("backoff", Some(t(1)))), 10,
            Want::Phase(Phase::Waiting { retry_at: t(10), reason: "backoff".into() }), vec!["tell deferred"]),
        ("requested, breaker_opened -> escalated", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("breaker_opened", Some(t(3600)))), 10, Want::Phase(Phase::Escalated), vec!["tell escalated"]),
        ("requested, breaker -> escalated", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("breaker", None)), 10, Want::Phase(Phase::Escalated), vec!["tell escalated"]),
        ("requested, not opted in -> gave up", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("not_opted_in", None)), 10,
            Want::Phase(Phase::GaveUp { reason: "not_opted_in".into() }), vec!["tell refused"]),
        ("requested, protected -> gave up", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, refused("protected", None)), 10,
            Want::Phase(Phase::GaveUp { reason: "protected".into() }), vec!["tell refused"]),
        ("requested, bad signature -> gave up", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, rejected("bad_signature")), 10,
            Want::Phase(Phase::GaveUp { reason: "bad_signature".into() }), vec!["tell refused"]),
        ("requested, expired -> re-sent at once", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, rejected("expired")), 10, Want::Phase(Phase::Due { at: t(10) }), vec!["request"]),
        ("requested, dry run -> gave up", with_phase(requested("r1"), &["r1"]),
            audit("r1", 4, Outcome::DryRun), 10,
            Want::Phase(Phase::GaveUp { reason: "dry_run".into() }), vec!["tell dry run"]),
        ("requested, record of another incident -> unchanged", with_phase(requested("r1"), &["r1"]),
            audit("zz", 4, Outcome::Executed), 10, Want::Phase(requested("r1")), vec![]),
        ("requested, older attempt expired -> unchanged", with_phase(requested("r2"), &["r1", "r2"]),
            audit("r1", 4, rejected("expired")), 10, Want::Phase(requested("r2")), vec![]),
        ("requested, older attempt executed -> verifying", with_phase(requested("r2"), &["r1", "r2"]),
            audit("r1", 4, Outcome::Executed), 10,
            Want::Phase(Phase::Verifying { seq: 4, until: t(40) }), vec!["tell executed"]),
        ("requested, recovered -> healed", with_phase(requested("r1"), &["r1"]),
            Input::Recovered, 12, Want::Closed, vec!["tell healed"]),
        // Verifying.
        ("verifying, recovered -> healed", with_phase(verifying.clone(), &["r1"]),
            Input::Recovered, 20, Want::Closed, vec!["tell healed"]),
        ("verifying, within the window -> nothing", with_phase(verifying.clone(), &["r1"]),
            Input::Tick { firing: true }, 39, Want::Phase(verifying.clone()), vec![]),
        ("verifying, window over and still failing -> next attempt", with_phase(verifying.clone(), &["r1"]),
            Input::Tick { firing: true }, 40, Want::Phase(Phase::Due { at: t(40) }), vec!["request"]),
        ("verifying, failing again -> next attempt at once", with_phase(verifying.clone(), &["r1"]),
            Input::FailingAgain, 25, Want::Phase(Phase::Due { at: t(25) }), vec!["request"]),
        ("requested, failing again -> unchanged", with_phase(requested("r1"), &["r1"]),
            Input::FailingAgain, 25, Want::Phase(requested("r1")), vec![]),
        ("waiting, failing again -> unchanged", with_phase(waiting.clone(), &["r1"]),
            Input::FailingAgain, 25, Want::Phase(waiting.clone()), vec![]),
        ("verifying, stale refusal of the next request -> unchanged", with_phase(verifying.clone(), &["r1", "r2"]),
            audit("r2", 5, refused("stale", None)), 20, Want::Phase(verifying.clone()), vec![]),
        // Waiting.
        ("waiting, before retry_at -> nothing", with_phase(waiting.clone(), &["r1"]),
            Input::Tick { firing: true }, 49, Want::Phase(waiting.clone()), vec![]),
        ("waiting, retry_at reached and firing -> request", with_phase(waiting.clone(), &["r1"]),
            Input::Tick { firing: true }, 50, Want::Phase(Phase::Due { at: t(50) }), vec!["request"]),
        ("waiting, recovered -> healed", with_phase(waiting.clone(), &["r1"]),
            Input::Recovered, 30, Want::Closed, vec!["tell healed"]),
        // Terminal until recovery.
        ("gave up, tick -> nothing ever", with_phase(Phase::GaveUp { reason: "protected".into() }, &["r1"]),
            Input::Tick { firing: true }, 99_999, Want::Phase(Phase::GaveUp { reason: "protected".into() }), vec![]),
        ("escalated, tick -> nothing ever", with_phase(Phase::Escalated, &["r1"]),
            Input::Tick { firing: true }, 99_999, Want::Phase(Phase::Escalated), vec![]),
        ("escalated, another breaker record -> told once", with_phase(Phase::Escalated, &["r1", "r2"]),
            audit("r2", 9, refused("breaker", None)), 20, Want::Phase(Phase::Escalated), vec![]),
        ("escalated, recovered -> healed", with_phase(Phase::Escalated, &["r1"]),
            Input::Recovered, 20, Want::Closed, vec!["tell healed"]),
        ("escalated, breaker window over and firing -> request", escalated_until(100, &["r1"]),
            Input::Tick { firing: true }, 100, Want::Phase(Phase::Due { at: t(100) }), vec!["request"]),
        ("escalated, breaker window not over -> nothing", escalated_until(100, &["r1"]),
            Input::Tick { firing: true }, 99, Want::Phase(Phase::Escalated), vec![]),
        ("escalated, breaker window over but not firing -> nothing", escalated_until(100, &["r1"]),
            Input::Tick { firing: false }, 100, Want::Phase(Phase::Escalated), vec![]),
    ];
    for (name, inc, input, now, want, effects) in table {
        let (next, fx) = step(&inc, &input, t(now), &c);
        let got = match next {
            None => Want::Closed,
            Some(n) => Want::Phase(n.phase),
        };
        assert_eq!(got, want, "{name}");
        assert_eq!(kinds(&fx), effects, "{name}");
    }
}

#[test]
fn the_breaker_refusal_says_when_requests_may_resume() {
    let c = cfg();
    let inc = with_phase(requested("r1"), &["r1"]);
    let (next, _) = step(
        &inc,
        &audit("r1", 4, refused("breaker_opened", Some(t(3600)))),
        t(10),
        &c,
    );
    let next = next.expect("open");
    assert_eq!(next.phase, Phase::Escalated);
    assert_eq!(next.breaker_until, Some(t(3600)));
    let (after, fx) = step(&next, &Input::Tick { firing: true }, t(3600), &c);
    let after = after.expect("open");
    assert_eq!(kinds(&fx), vec!["request"]);
    assert_eq!(
        after.breaker_until, None,
        "a new round; a new opening escalates again"
    );
}

#[test]
fn attempts_are_recorded_with_outcomes_and_told_on_escalation() {
    let c = cfg();
    let inc = with_phase(requested("r1"), &["r1"]);
    let (inc, _) = step(&inc, &audit("r1", 4, Outcome::Executed), t(10), &c);
    let inc = inc.expect("open");
    assert_eq!(inc.acted_at, Some(t(10)));
    assert_eq!(inc.executed(), 1);
    let mut inc = inc;
    inc.attempts.push(Attempt {
        request_id: "r2".into(),
        issued_at: t(40),
        outcome: None,
        seq: None,
    });
    inc.phase = requested("r2");
    let (inc, fx) = step(
        &inc,
        &audit("r2", 7, refused("breaker_opened", None)),
        t(41),
        &c,
    );
    let inc = inc.expect("open");
    let Some(Effect::Tell(Story::Escalated { tried, seq, .. })) = fx.first() else {
        panic!("{fx:?}");
    };
    assert_eq!(*seq, 7);
    assert!(tried.contains("restart 1x (audit #4)"), "{tried}");
    assert!(tried.contains("refused: breaker_opened (#7)"), "{tried}");
    let msg = fx_message(&fx[0], &inc, t(41));
    assert!(msg.text.contains("manual action needed"), "{}", msg.text);
    assert!(msg.text.contains("audit #7"), "{}", msg.text);
}

fn fx_message(e: &Effect, inc: &Incident, now: Timestamp) -> crate::notify::Message {
    match e {
        Effect::Tell(s) => s.message(inc, Some("shop"), now),
        Effect::Request => panic!("not a message"),
    }
}

#[test]
fn verification_window_follows_the_healthcheck() {
    let floor = Duration::from_secs(10);
    assert_eq!(
        verify_window(Duration::from_secs(5), 3, Duration::from_secs(10), floor),
        Duration::from_secs(30)
    );
    assert_eq!(
        verify_window(Duration::from_secs(1), 1, Duration::ZERO, floor),
        floor
    );
    assert_eq!(
        verify_window(Duration::from_secs(30), 0, Duration::ZERO, floor),
        Duration::from_secs(60)
    );
}

#[test]
fn incidents_survive_serialization() {
    let mut inc = with_phase(requested("r1"), &["r1"]);
    inc.attempts[0].outcome = Some("lost".into());
    let json = serde_json::to_string(&inc).expect("json");
    let back: Incident = serde_json::from_str(&json).expect("parse");
    assert_eq!(back, inc);
}

// ---- Timelines: one per scenario of the loop ---------------------------------------------

/// Drives one incident like the engine does: every `Request` effect becomes an `Issued` input
/// with a fresh id; returns the ids issued and the stories told.
struct Driver {
    inc: Option<Incident>,
    cfg: LoopSettings,
    issued: Vec<String>,
    told: Vec<&'static str>,
}

impl Driver {
    fn open(at: i64) -> Driver {
        let (inc, fx) = Incident::open("k", "id1", "web", Action::Restart, t(at));
        let mut d = Driver {
            inc: Some(inc),
            cfg: cfg(),
            issued: Vec::new(),
            told: Vec::new(),
        };
        d.effects(fx, at);
        d
    }

    fn effects(&mut self, fx: Vec<Effect>, at: i64) {
        for e in fx {
            match e {
                Effect::Request => {
                    let id = format!("r{}", self.issued.len() + 1);
                    self.issued.push(id.clone());
                    self.feed(
                        Input::Issued {
                            request_id: id,
                            expires_at: t(at + 60),
                        },
                        at,
                    );
                }
                other => self.told.extend(kinds(&[other])),
            }
        }
    }

    fn feed(&mut self, input: Input, at: i64) {
        let inc = self.inc.as_ref().expect("incident still open");
        let (next, fx) = step(inc, &input, t(at), &self.cfg);
        self.inc = next;
        self.effects(fx, at);
    }

    fn tick_until(&mut self, from: i64, to: i64, firing: bool) {
        for s in from..=to {
            if self.inc.is_some() {
                self.feed(Input::Tick { firing }, s);
            }
        }
    }

    fn last(&self) -> String {
        self.issued.last().cloned().expect("something issued")
    }

    fn audit(&mut self, seq: u64, outcome: Outcome, at: i64) {
        let id = self.last();
        self.feed(
            Input::Audit(AuditNote {
                request_id: id,
                seq,
                at: t(at),
                outcome,
            }),
            at,
        );
    }
}

#[test]
fn timeline_one_heal() {
    let mut d = Driver::open(0);
    d.tick_until(0, 1, true);
    d.audit(1, Outcome::Executed, 1);
    // The restart's own kill/die/start: the engine keeps feeding "still firing" until healthy.
    d.tick_until(2, 20, true);
    d.feed(Input::Recovered, 21);
    assert!(d.inc.is_none());
    assert_eq!(d.issued.len(), 1);
    assert_eq!(d.told, ["tell executed", "tell healed"]);
}

#[test]
fn timeline_burst_over_the_budget() {
    // Refused for the host budget until the minute rolls over, then restarted once.
    let mut d = Driver::open(0);
    d.audit(1, refused("budget", Some(t(45))), 1);
    d.tick_until(2, 44, true);
    assert_eq!(d.issued.len(), 1, "nothing before retry_at");
    d.tick_until(45, 45, true);
    assert_eq!(d.issued.len(), 2);
    d.audit(2, Outcome::Executed, 46);
    d.tick_until(47, 60, true);
    d.feed(Input::Recovered, 61);
    assert_eq!(d.told, ["tell deferred", "tell executed", "tell healed"]);
}

#[test]
fn timeline_always_broken_escalates_once() {
    let mut d = Driver::open(0);
    let mut at = 0;
    let mut seq = 0;
    for backoff in [0, 10, 20] {
        seq += 1;
        if backoff > 0 {
            d.audit(seq, refused("backoff", Some(t(at + backoff))), at);
            d.tick_until(at + 1, at + backoff, true);
            at += backoff;
            seq += 1;
        }
        d.audit(seq, Outcome::Executed, at);
        d.tick_until(at + 1, at + 30, true);
        at += 30;
    }
    seq += 1;
    d.audit(seq, refused("breaker_opened", None), at);
    let before = d.issued.len();
    d.tick_until(at, at + 7200, true);
    assert_eq!(d.issued.len(), before, "no more requests once escalated");
    assert_eq!(
        d.told.iter().filter(|t| **t == "tell escalated").count(),
        1,
        "{:?}",
        d.told
    );
    assert_eq!(d.told.iter().filter(|t| **t == "tell executed").count(), 3);
}

#[test]
fn timeline_redis_down_then_back() {
    let mut d = Driver::open(0);
    let first = d.last();
    d.feed(
        Input::SendFailed {
            request_id: first,
            error: "broken pipe".into(),
        },
        0,
    );
    // Every send_retry while Redis is down.
    for s in (5..=30).step_by(5) {
        d.tick_until(s, s, true);
        let id = d.last();
        d.feed(
            Input::SendFailed {
                request_id: id,
                error: "connection refused".into(),
            },
            s,
        );
    }
    d.tick_until(31, 35, true);
    let n = d.issued.len();
    d.audit(1, Outcome::Executed, 36);
    d.tick_until(37, 40, true);
    d.feed(Input::Recovered, 41);
    assert_eq!(d.issued.len(), n);
    assert_eq!(d.told, ["tell executed", "tell healed"]);
}

#[test]
fn timeline_executor_down_then_back() {
    let mut d = Driver::open(0);
    // No record by expiry (+grace): lost, a fresh request.
    d.tick_until(1, 65, true);
    assert_eq!(d.issued.len(), 2);
    d.tick_until(66, 99, true);
    // The executor returns at 100 and reads both: the first is expired, the second is acted on.
    d.feed(
        Input::Audit(AuditNote {
            request_id: "r1".into(),
            seq: 1,
            at: t(100),
            outcome: rejected("expired"),
        }),
        100,
    );
    assert_eq!(d.issued.len(), 2, "an old attempt's expiry changes nothing");
    d.audit(2, Outcome::Executed, 100);
    d.tick_until(101, 110, true);
    d.feed(Input::Recovered, 111);
    assert_eq!(d.issued.len(), 2);
    assert_eq!(d.told, ["tell executed", "tell healed"]);
}

#[test]
fn timeline_restored_after_a_watchdog_restart() {
    let mut d = Driver::open(0);
    d.audit(1, Outcome::Executed, 1);
    let saved = serde_json::to_string(d.inc.as_ref().expect("open")).expect("json");
    // A new process: same incident, same first detection; recovery counts from 0.
    let restored: Incident = serde_json::from_str(&saved).expect("parse");
    let (next, fx) = step(&restored, &Input::Recovered, t(90), &cfg());
    assert!(next.is_none());
    assert!(matches!(
        fx.as_slice(),
        [Effect::Tell(Story::Healed { after, executed: 1, last_seq: Some(1) })]
            if *after == Duration::from_secs(90)
    ));
}

#[test]
fn healed_message_counts_from_first_detection() {
    let inc = opened();
    let story = Story::Healed {
        after: Duration::from_secs(47),
        executed: 1,
        last_seq: Some(12),
    };
    let msg = story.message(&inc, Some("shop"), t(47));
    assert!(msg.text.contains("healed after 47s in all"), "{}", msg.text);
    assert!(msg.text.contains("audit #12"), "{}", msg.text);
    let deferred = Story::Refused {
        action: Action::Restart,
        seq: 3,
        reason: "budget".into(),
        until: Some(t(3600 + 61)),
    };
    let msg = deferred.message(&inc, None, t(3600));
    assert!(msg.text.contains("budget"), "{}", msg.text);
    assert!(msg.text.contains("01:01:01 UTC"), "{}", msg.text);
}
