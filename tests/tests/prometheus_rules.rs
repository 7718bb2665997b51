//! The Prometheus rules that watch Vigil itself (`compose/prometheus/vigil-rules.yml`): valid for
//! `promtool check rules`, and `promtool test rules` proves each alert fires on a sample series
//! and stays quiet on a healthy one. Needs Debian's `prometheus` package (installed by
//! `scripts/setup-test.sh`); without `promtool` this fails, it never skips.

use std::process::Command;
use vigil_tests::workspace_root;

fn promtool(args: &[&str]) -> String {
    let dir = workspace_root().join("compose/prometheus");
    let out = Command::new("promtool")
        .args(args)
        .current_dir(&dir)
        .output()
        .unwrap_or_else(|e| {
            panic!(
                "cannot run promtool ({e}): run `bash scripts/setup-test.sh` (package prometheus)"
            )
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "promtool {args:?} failed:\n{text}");
    text
}

#[test]
fn rules_are_valid_and_each_alert_fires_in_the_unit_tests() {
    let checked = promtool(&["check", "rules", "vigil-rules.yml"]);
    assert!(checked.contains("4 rules found"), "{checked}");
    promtool(&["test", "rules", "vigil-rules.test.yml"]);

    // Every alert in the rules has a test case where it is expected to fire.
    let dir = workspace_root().join("compose/prometheus");
    let rules = std::fs::read_to_string(dir.join("vigil-rules.yml")).expect("rules");
    let tests = std::fs::read_to_string(dir.join("vigil-rules.test.yml")).expect("tests");
    let alerts: Vec<&str> = rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("- alert: "))
        .collect();
    assert_eq!(alerts.len(), 4, "{alerts:?}");
    for alert in alerts {
        let fires = tests.split("- eval_time:").any(|case| {
            case.contains(&format!("alertname: {alert}\n")) && case.contains("exp_labels:")
        });
        assert!(fires, "no test case expects {alert} to fire");
    }
}
