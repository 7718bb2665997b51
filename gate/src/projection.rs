//! What the gate lets through: a projection, not a redaction. List and inspect answers keep
//! only the fields the watchdog reads (an allowlist); labels only under
//! [`labels::COMPOSE_PREFIX`] and [`labels::VIGIL_PREFIX`]; `/events` only the container events
//! the watchdog uses, with only those attributes.
//!
//! Secrets hide in more than `Config.Env`: `Cmd`, `Args`, `Entrypoint`, `Mounts`, other tools'
//! labels, `exec_create` events carrying command lines. None of them is on an allowlist. A field
//! the watchdog starts to need is added here on purpose.
//!
//! Pure: JSON in, JSON out.

use serde_json::{Map, Value};
use vigil_docker::labels;

/// Top-level fields of a list entry (`GET /containers/json`).
const LIST_FIELDS: &[&str] = &["Id", "Names", "Image", "Created", "State", "Status"];
/// Top-level fields of an inspect answer (`GET /containers/{id}/json`).
const INSPECT_FIELDS: &[&str] = &["Id", "Name", "Image", "Created", "RestartCount"];
/// `State` of an inspect answer.
const STATE_FIELDS: &[&str] = &[
    "Status",
    "Running",
    "Paused",
    "Restarting",
    "OOMKilled",
    "Dead",
    "ExitCode",
    "StartedAt",
    "FinishedAt",
];
/// `State.Health`.
const HEALTH_FIELDS: &[&str] = &["Status", "FailingStreak"];
/// One `State.Health.Log` entry.
const HEALTH_LOG_FIELDS: &[&str] = &["Start", "End", "ExitCode", "Output"];
/// `HostConfig`.
const HOST_CONFIG_FIELDS: &[&str] = &["RestartPolicy", "Memory"];
/// `Config` (its `Labels` are filtered separately).
const CONFIG_FIELDS: &[&str] = &["Image", "Healthcheck", "StopTimeout"];
/// Container event actions the watchdog uses (`health_status: ...` is matched by prefix).
const EVENT_ACTIONS: &[&str] = &["start", "die", "oom", "kill", "stop", "destroy", "restart"];
/// Event attributes the watchdog uses besides labels.
const EVENT_ATTRIBUTES: &[&str] = &["name", "image", "exitCode", "signal"];
/// Top-level fields of an event.
const EVENT_FIELDS: &[&str] = &[
    "Type", "Action", "status", "id", "from", "scope", "time", "timeNano",
];

/// Whether a label may pass: Compose's and Vigil's own.
pub fn label_passes(name: &str) -> bool {
    name.starts_with(labels::COMPOSE_PREFIX) || name.starts_with(labels::VIGIL_PREFIX)
}

fn pick(from: &Map<String, Value>, fields: &[&str]) -> Map<String, Value> {
    fields
        .iter()
        .filter_map(|f| from.get(*f).map(|v| ((*f).to_string(), v.clone())))
        .collect()
}

fn filtered_labels(v: Option<&Value>) -> Option<Value> {
    let obj = v?.as_object()?;
    Some(Value::Object(
        obj.iter()
            .filter(|(k, _)| label_passes(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    ))
}

/// One list entry or a whole list.
pub fn project_list(value: &Value) -> Value {
    match value {
        Value::Array(items) => Value::Array(items.iter().map(project_list_entry).collect()),
        other => project_list_entry(other),
    }
}

fn project_list_entry(value: &Value) -> Value {
    let Some(obj) = value.as_object() else {
        return Value::Null;
    };
    let mut out = pick(obj, LIST_FIELDS);
    if let Some(l) = filtered_labels(obj.get("Labels")) {
        out.insert("Labels".into(), l);
    }
    Value::Object(out)
}

/// An inspect answer.
pub fn project_inspect(value: &Value) -> Value {
    let Some(obj) = value.as_object() else {
        return Value::Null;
    };
    let mut out = pick(obj, INSPECT_FIELDS);
    if let Some(state) = obj.get("State").and_then(Value::as_object) {
        let mut s = pick(state, STATE_FIELDS);
        if let Some(health) = state.get("Health").and_then(Value::as_object) {
            let mut h = pick(health, HEALTH_FIELDS);
            if let Some(log) = health.get("Log").and_then(Value::as_array) {
                let entries = log
                    .iter()
                    .filter_map(Value::as_object)
                    .map(|e| Value::Object(pick(e, HEALTH_LOG_FIELDS)))
                    .collect();
                h.insert("Log".into(), Value::Array(entries));
            }
            s.insert("Health".into(), Value::Object(h));
        }
        out.insert("State".into(), Value::Object(s));
    }
    if let Some(host) = obj.get("HostConfig").and_then(Value::as_object) {
        out.insert(
            "HostConfig".into(),
            Value::Object(pick(host, HOST_CONFIG_FIELDS)),
        );
    }
    if let Some(config) = obj.get("Config").and_then(Value::as_object) {
        let mut c = pick(config, CONFIG_FIELDS);
        if let Some(l) = filtered_labels(config.get("Labels")) {
            c.insert("Labels".into(), l);
        }
        out.insert("Config".into(), Value::Object(c));
    }
    Value::Object(out)
}

/// One event: `None` when the watchdog does not use it (other types, `exec_*`, ...), else the
/// event with only the fields and attributes the watchdog reads.
pub fn project_event(value: &Value) -> Option<Value> {
    let obj = value.as_object()?;
    if obj.get("Type").and_then(Value::as_str) != Some("container") {
        return None;
    }
    let action = obj.get("Action").and_then(Value::as_str)?;
    if !(EVENT_ACTIONS.contains(&action) || action.starts_with("health_status:")) {
        return None;
    }
    let mut out = pick(obj, EVENT_FIELDS);
    if let Some(actor) = obj.get("Actor").and_then(Value::as_object) {
        let mut a = Map::new();
        if let Some(id) = actor.get("ID") {
            a.insert("ID".into(), id.clone());
        }
        if let Some(attrs) = actor.get("Attributes").and_then(Value::as_object) {
            let kept = attrs
                .iter()
                .filter(|(k, _)| EVENT_ATTRIBUTES.contains(&k.as_str()) || label_passes(k))
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect();
            a.insert("Attributes".into(), Value::Object(kept));
        }
        out.insert("Actor".into(), Value::Object(a));
    }
    Some(Value::Object(out))
}

/// Splits an event stream into lines as bytes arrive and projects each complete line.
#[derive(Debug, Default)]
pub struct EventFilter {
    pending: Vec<u8>,
}

/// Longest event line kept while waiting for its end; a longer one is dropped whole.
const MAX_EVENT_LINE: usize = 256 * 1024;

impl EventFilter {
    /// Feeds a chunk; returns the projected events it completed, one JSON line each.
    pub fn push(&mut self, chunk: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in chunk {
            if b == b'\n' {
                let line = std::mem::take(&mut self.pending);
                if let Some(v) = serde_json::from_slice::<Value>(&line)
                    .ok()
                    .as_ref()
                    .and_then(project_event)
                    && let Ok(bytes) = serde_json::to_vec(&v)
                {
                    out.extend_from_slice(&bytes);
                    out.push(b'\n');
                }
            } else if self.pending.len() < MAX_EVENT_LINE {
                self.pending.push(b);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn secret_free(v: &Value) {
        let text = v.to_string();
        assert!(!text.contains("hunter2"), "{text}");
    }

    #[test]
    fn inspect_keeps_the_allowlist_only() {
        let v = json!({
            "Id": "abc", "Name": "/web", "Image": "sha256:1", "Created": "t", "RestartCount": 2,
            "Path": "sh", "Args": ["-c", "hunter2"],
            "State": {"Status": "running", "Running": true, "Pid": 42, "ExitCode": 0,
                "OOMKilled": false, "StartedAt": "s", "FinishedAt": "f",
                "Health": {"Status": "unhealthy", "FailingStreak": 3,
                    "Log": [{"Start": "a", "End": "b", "ExitCode": 1, "Output": "x", "Extra": 1}]}},
            "HostConfig": {"RestartPolicy": {"Name": "no"}, "Memory": 64, "Binds": ["/hunter2:/x"]},
            "Config": {"Env": ["P=hunter2"], "Cmd": ["hunter2"], "Entrypoint": ["hunter2"],
                "Image": "busybox", "StopTimeout": 30, "Healthcheck": {"Test": ["CMD", "true"]},
                "Labels": {"com.docker.compose.project": "shop", (labels::REMEDIATE): "true",
                    "traefik.auth": "hunter2"}},
            "Mounts": [{"Source": "/hunter2"}],
        });
        let p = project_inspect(&v);
        secret_free(&p);
        assert_eq!(
            p["State"]["Health"]["Log"][0],
            json!({"Start": "a", "End": "b", "ExitCode": 1, "Output": "x"})
        );
        assert_eq!(p["State"].get("Pid"), None);
        assert_eq!(p["Config"]["StopTimeout"], 30);
        assert_eq!(
            p["Config"]["Labels"],
            json!({"com.docker.compose.project": "shop", (labels::REMEDIATE): "true"})
        );
        assert_eq!(
            p["HostConfig"],
            json!({"RestartPolicy": {"Name": "no"}, "Memory": 64})
        );
        assert_eq!(p["RestartCount"], 2);
    }

    #[test]
    fn list_keeps_the_allowlist_only() {
        let v = json!([{"Id": "a", "Names": ["/web"], "Image": "i", "Command": "sh -c hunter2",
            "Created": 1, "State": "running", "Status": "Up",
            "Labels": {"x.secret": "hunter2", (labels::PROTECTED): "1"}, "Mounts": [{"Source": "/hunter2"}]}]);
        let p = project_list(&v);
        secret_free(&p);
        assert_eq!(p[0]["Labels"], json!({(labels::PROTECTED): "1"}));
        assert_eq!(p[0]["Names"], json!(["/web"]));
    }

    #[test]
    fn events_pass_only_what_the_watchdog_uses() {
        let die = json!({"Type": "container", "Action": "die", "id": "c", "time": 1, "timeNano": 2,
            "Actor": {"ID": "c", "Attributes": {"name": "web", "exitCode": "3",
                "com.docker.compose.service": "api", "other.token": "hunter2"}}});
        let p = project_event(&die).expect("die passes");
        secret_free(&p);
        assert_eq!(
            p["Actor"]["Attributes"],
            json!({"name": "web", "exitCode": "3", "com.docker.compose.service": "api"})
        );
        let exec = json!({"Type": "container", "Action": "exec_create: sh -c hunter2",
            "Actor": {"ID": "c", "Attributes": {"execID": "e"}}});
        assert_eq!(project_event(&exec), None);
        let health = json!({"Type": "container", "Action": "health_status: unhealthy"});
        assert!(project_event(&health).is_some());
        assert_eq!(
            project_event(&json!({"Type": "network", "Action": "connect"})),
            None
        );
    }

    #[test]
    fn the_event_filter_reassembles_lines() {
        let mut f = EventFilter::default();
        let a = br#"{"Type":"container","Action":"exec_create: echo hunter2"}"#;
        let b = br#"{"Type":"container","Action":"start","Actor":{"ID":"c","Attributes":{"name":"w"}}}"#;
        let mut stream = a.to_vec();
        stream.push(b'\n');
        stream.extend_from_slice(b);
        stream.push(b'\n');
        let (x, y) = stream.split_at(70);
        let mut out = f.push(x);
        out.extend(f.push(y));
        let text = String::from_utf8(out).expect("utf8");
        assert!(!text.contains("hunter2"), "{text}");
        assert_eq!(text.lines().count(), 1, "{text}");
        assert!(text.contains("\"start\""));
    }
}
