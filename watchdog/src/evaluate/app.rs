//! The application's metrics endpoint: `app_down` and the `[[app.rules]]` thresholds.

use super::*;

impl Tracker {
    pub(super) fn on_app(&mut self, p: &AppProbe, out: &mut Vec<Signal>) {
        let subject = Subject::named("app");
        if p.ok {
            self.app_failures = 0;
            out.push(Signal::new(
                SignalKind::AppDown,
                false,
                Severity::Info,
                subject,
                "",
                p.at,
            ));
            for rule in &self.settings.app_rules {
                if let Some(&value) = p.samples.get(&rule.metric) {
                    out.push(app_rule_signal(rule, value, p.at));
                }
            }
            return;
        }
        self.app_failures = self.app_failures.saturating_add(1);
        if self.app_failures >= self.settings.app_down_after.max(1) {
            let detail = format!(
                "metrics endpoint not answering ({} consecutive failures): {}",
                self.app_failures, p.detail
            );
            out.push(Signal::new(
                SignalKind::AppDown,
                true,
                Severity::High,
                subject,
                detail,
                p.at,
            ));
        }
    }
}

/// One app threshold rule judged against its sample.
pub(super) fn app_rule_signal(
    rule: &crate::collect::config::AppRule,
    value: f64,
    at: Timestamp,
) -> Signal {
    let breach = match (rule.above, rule.below) {
        (Some(above), _) if value > above => {
            Some(format!("{} = {value} (above {above})", rule.metric))
        }
        (_, Some(below)) if value < below => {
            Some(format!("{} = {value} (below {below})", rule.metric))
        }
        _ => None,
    };
    Signal::new(
        SignalKind::AppMetric,
        breach.is_some(),
        if breach.is_some() {
            Severity::High
        } else {
            Severity::Info
        },
        Subject::named(rule.metric.clone()),
        breach.unwrap_or_default(),
        at,
    )
}
