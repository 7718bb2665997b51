use super::*;
use std::time::Duration;

#[test]
fn config_table_comes_from_the_flag_then_the_variable_and_errors_name_the_source() {
    let env = MapEnv::new();
    assert!(
        read_config_table(None, "X_CONFIG", &env)
            .unwrap()
            .is_empty()
    );
    let dir = tempfile::tempdir().unwrap();
    let good = dir.path().join("good.toml");
    std::fs::write(&good, "interval = \"5s\"\n").unwrap();
    let env = MapEnv::new().with("X_CONFIG", good.to_str().unwrap());
    let t = read_config_table(None, "X_CONFIG", &env).unwrap();
    assert_eq!(t["interval"].as_str(), Some("5s"));
    let missing = dir.path().join("missing.toml");
    let errs = read_config_table(Some(&missing), "X_CONFIG", &env).unwrap_err();
    assert!(errs.has_key("config file"), "{errs}");
    let env = MapEnv::new().with("X_CONFIG", missing.to_str().unwrap());
    let errs = read_config_table(None, "X_CONFIG", &env).unwrap_err();
    assert!(errs.has_key("X_CONFIG"), "{errs}");
}

#[test]
fn durations_parse() {
    let cases = [
        ("15s", Duration::from_secs(15)),
        ("500ms", Duration::from_millis(500)),
        ("2m", Duration::from_secs(120)),
        ("1h", Duration::from_secs(3600)),
        ("1h30m", Duration::from_secs(5400)),
        ("1h 30m 5s", Duration::from_secs(5405)),
        ("1d", Duration::from_secs(86_400)),
        ("1s500ms", Duration::from_millis(1500)),
        ("0", Duration::ZERO),
        ("0s", Duration::ZERO),
        (" 10s ", Duration::from_secs(10)),
    ];
    for (text, want) in cases {
        assert_eq!(parse_duration(text), Ok(want), "{text}");
    }
}

#[test]
fn bad_durations_are_rejected() {
    for text in [
        "",
        "15",
        "s",
        "1.5s",
        "10 sec",
        "-1s",
        "1y",
        "ms5",
        "99999999999999999999h",
    ] {
        assert!(parse_duration(text).is_err(), "{text:?} should be rejected");
    }
}

#[test]
fn durations_round_trip_through_format() {
    for text in ["15s", "500ms", "2m", "1h30m", "1d2h", "1s250ms", "0s"] {
        let d = parse_duration(text).unwrap();
        assert_eq!(format_duration(d), text);
        assert_eq!(parse_duration(&format_duration(d)), Ok(d));
    }
}

#[test]
fn bools_parse() {
    for t in ["true", "TRUE", "1", "yes", "on"] {
        assert_eq!(parse_bool(t), Ok(true), "{t}");
    }
    for f in ["false", "False", "0", "no", "off"] {
        assert_eq!(parse_bool(f), Ok(false), "{f}");
    }
    assert!(parse_bool("maybe").is_err());
    assert!(parse_bool("").is_err());
}

#[test]
fn secret_debug_never_shows_the_value() {
    let s = Secret::new("hunter2-token");
    let shown = format!("{s:?} {:?}", Some(s.clone()));
    assert!(!shown.contains("hunter2"), "{shown}");
    assert_eq!(s.expose(), "hunter2-token");
}

#[test]
fn secret_file_is_read_and_trimmed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("token");
    std::fs::write(&path, "abc:def\n").unwrap();
    let s = read_secret_file("X_FILE", &path).unwrap();
    assert_eq!(s.expose(), "abc:def");
    std::fs::write(&path, "abc\r\n").unwrap();
    assert_eq!(read_secret_file("X_FILE", &path).unwrap().expose(), "abc");
}

#[test]
fn missing_or_empty_secret_file_names_key_and_path() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("nope");
    let e = read_secret_file("X_FILE", &missing).unwrap_err();
    assert_eq!(e.key, "X_FILE");
    assert!(
        e.message.contains(&missing.display().to_string()),
        "{}",
        e.message
    );

    let empty = dir.path().join("empty");
    std::fs::write(&empty, "\n").unwrap();
    let e = read_secret_file("X_FILE", &empty).unwrap_err();
    assert_eq!(e.key, "X_FILE");
    assert!(e.message.contains("empty"), "{}", e.message);
}

#[test]
fn errors_display_one_per_line() {
    let mut errs = ConfigErrors::new();
    errs.add("a.b", "unknown key");
    errs.add("A_C", "bad");
    errs.add("a.b", "unknown key"); // duplicate is dropped
    assert_eq!(errs.len(), 2);
    assert_eq!(errs.to_string(), "a.b: unknown key\nA_C: bad");
}

#[test]
fn env_names_follow_the_nesting_rule() {
    assert_eq!(
        env_name("WATCHDOG", "notify.group_window"),
        "WATCHDOG_NOTIFY__GROUP_WINDOW"
    );
    assert_eq!(env_name("WATCHDOG", "interval"), "WATCHDOG_INTERVAL");
}

#[test]
fn map_env_filters_by_prefix() {
    let env = MapEnv::new()
        .with("A_X", "1")
        .with("B_Y", "2")
        .with("A_Z", "3");
    assert_eq!(env.var("B_Y").as_deref(), Some("2"));
    assert_eq!(
        env.vars_with_prefix("A_"),
        vec![("A_X".into(), "1".into()), ("A_Z".into(), "3".into())]
    );
}

fn table(text: &str) -> toml::Table {
    ConfigReader::parse_toml("test", text).unwrap()
}

#[test]
fn reader_prefers_env_and_names_origins() {
    let env = MapEnv::new().with("APP_S__N", "7");
    let mut r = ConfigReader::new("APP", table("[s]\nn = 3\nm = 4\n"), &env, &[]);
    let n = r.get("s.n", convert::u32).unwrap();
    assert_eq!(n.value, 7);
    assert_eq!(n.key(), "APP_S__N");
    let m = r.get("s.m", convert::u32).unwrap();
    assert_eq!(m.value, 4);
    assert_eq!(m.key(), "s.m");
    assert!(r.finish().is_empty());
}

#[test]
fn reader_reports_unknown_keys_and_variables_together() {
    let env = MapEnv::new().with("APP_NOPE", "1").with("APP_S__N", "x");
    let mut r = ConfigReader::new(
        "APP",
        table("top = 1\n[s]\nn = 3\nextra = 1\n[[list]]\na = 1\nb = 2\n[other]\n"),
        &env,
        &[],
    );
    assert!(r.get("s.n", convert::u32).is_none());
    for i in 0..r.array_len("list") {
        r.get(&format!("list[{i}].a"), convert::u32);
    }
    let errs = r.finish();
    for key in [
        "top",
        "s.extra",
        "list[0].b",
        "other",
        "APP_NOPE",
        "APP_S__N",
    ] {
        assert!(errs.has_key(key), "missing {key} in:\n{errs}");
    }
    assert_eq!(errs.len(), 6, "{errs}");
}

#[test]
fn reader_secret_rules() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tok");
    std::fs::write(&path, "s3cret\n").unwrap();
    let p = path.display().to_string();

    // File form through the documented alias.
    let env = MapEnv::new().with("APP_TOKEN_FILE", p.as_str());
    let aliases = [("x.token", "APP_TOKEN"), ("x.token_file", "APP_TOKEN_FILE")];
    let mut r = ConfigReader::new("APP", toml::Table::new(), &env, &aliases);
    let s = r.secret("x.token", "x.token_file").unwrap();
    assert_eq!(s.value.expose(), "s3cret");
    assert_eq!(s.key(), "APP_TOKEN_FILE");
    assert!(r.finish().is_empty());

    // Both forms in the environment.
    let env = MapEnv::new()
        .with("APP_TOKEN_FILE", p.as_str())
        .with("APP_TOKEN", "inline");
    let mut r = ConfigReader::new("APP", toml::Table::new(), &env, &aliases);
    assert!(r.secret("x.token", "x.token_file").is_none());
    let errs = r.finish();
    assert!(errs.has_key("APP_TOKEN"), "{errs}");
    assert!(
        !errs.to_string().contains("inline"),
        "secret leaked: {errs}"
    );

    // The environment wins over the file as a whole.
    let env = MapEnv::new().with("APP_TOKEN", "from-env");
    let mut r = ConfigReader::new(
        "APP",
        table("[x]\ntoken_file = \"/nonexistent/x\"\n"),
        &env,
        &aliases,
    );
    let s = r.secret("x.token", "x.token_file").unwrap();
    assert_eq!(s.value.expose(), "from-env");
    assert!(r.finish().is_empty());
}

#[test]
fn reader_reports_type_errors_with_dotted_key() {
    let env = MapEnv::new();
    let mut r = ConfigReader::new("APP", table("s = 5\n[t]\nd = 15\n"), &env, &[]);
    assert!(r.get("s.n", convert::u32).is_none());
    assert!(r.duration("t.d").is_none());
    let errs = r.finish();
    assert!(errs.has_key("s"), "{errs}");
    assert!(errs.has_key("t.d"), "{errs}");
}
