//! Dependency probes and the executor's heartbeat.

use super::*;

pub(super) fn executor_signal(ok: bool, detail: &str, at: Timestamp) -> Signal {
    let subject = Subject::named("executor");
    if ok {
        return Signal::new(
            SignalKind::ExecutorDown,
            false,
            Severity::Info,
            subject,
            "",
            at,
        );
    }
    let detail = if detail.is_empty() {
        "no executor heartbeat".to_string()
    } else {
        detail.to_string()
    };
    Signal::new(
        SignalKind::ExecutorDown,
        true,
        Severity::High,
        subject,
        detail,
        at,
    )
}

pub(super) fn on_dependency(p: &DependencyProbe, out: &mut Vec<Signal>) {
    let subject = Subject::named(p.name.clone());
    let sig = if p.ok {
        Signal::new(
            SignalKind::DependencyDown,
            false,
            Severity::Info,
            subject,
            "",
            p.at,
        )
    } else {
        let detail = if p.detail.is_empty() {
            "probe failed".to_string()
        } else {
            p.detail.clone()
        };
        Signal::new(
            SignalKind::DependencyDown,
            true,
            Severity::High,
            subject,
            detail,
            p.at,
        )
    };
    out.push(sig);
}
