//! The monitoring the package ships (packaging/monitoring/): Prometheus alerting rules checked and
//! unit-tested with promtool (Debian's prometheus package), a Grafana dashboard whose queries promtool
//! parses, and both held to the metrics a real renewd exports, so they cannot drift from the exporter.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::metrics::{parse, Sample};
use crate::support::proc::poll_until;
use crate::support::renewd::{log_text, stop_daemon, Renewd};
use crate::support::topology::{domain, Topology, TopologyOptions};
use crate::support::{output_text, SpecFixture};

const RULES: &str = "packaging/monitoring/renewd.rules.yml";
const RULE_TESTS: &str = "packaging/monitoring/tests/renewd.rules.test.yml";
const DASHBOARD: &str = "packaging/monitoring/renewd-dashboard.json";

/// The labels Prometheus adds to every scraped series (the target's), beside renewd's own.
const TARGET_LABELS: [&str; 2] = ["job", "instance"];
/// Series the rules use that renewd does not export, with their labels: the listener's scrape job
/// and node_exporter's systemd collector (see the header of the rules file).
const OTHER_METRICS: [(&str, &[&str]); 2] = [
    ("up", &["job", "instance"]),
    (
        "node_systemd_unit_state",
        &["name", "state", "type", "job", "instance"],
    ),
];
/// The scrape of metrics_listen that the rules assume (job `renewd`).
const JOB: &str = "renewd";
const INSTANCE: &str = "127.0.0.1:9469";

fn repo(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

fn yaml(rel: &str) -> Value {
    let text = fs::read_to_string(repo(rel)).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// Runs promtool with `args`; panics when it is not installed.
fn promtool(args: &[&str], dir: &Path) -> Output {
    match Command::new("promtool")
        .args(args)
        .current_dir(dir)
        .output()
    {
        Ok(out) => out,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "promtool is not installed: run .ci/install-deps as root (Debian package prometheus)"
        ),
        Err(e) => panic!("promtool {args:?}: {e}"),
    }
}

fn promtool_ok(args: &[&str], dir: &Path) -> String {
    let out = promtool(args, dir);
    let text = output_text(&out);
    assert!(out.status.success(), "promtool {}:\n{text}", args.join(" "));
    text
}

/// The rules of the shipped file (every group).
fn rules() -> Vec<Value> {
    yaml(RULES)["groups"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|g| g["rules"].as_array().unwrap().clone())
        .collect()
}

fn alert_names() -> Vec<String> {
    rules()
        .iter()
        .map(|r| {
            r["alert"]
                .as_str()
                .expect("only alerting rules")
                .to_string()
        })
        .collect()
}

/// promtool accepts the file; every rule is an alert with a severity and annotations that name the
/// certificate and say what to run.
#[test]
fn promtool_checks_the_shipped_rules() {
    let text = promtool_ok(&["check", "rules", RULES], &repo(""));
    let rules = rules();
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", rules.len())),
        "{text}"
    );
    for rule in &rules {
        let name = rule["alert"].as_str().unwrap();
        let severity = rule["labels"]["severity"].as_str().unwrap_or_default();
        assert!(
            ["warning", "critical"].contains(&severity),
            "{name}: severity {severity:?}"
        );
        let summary = rule["annotations"]["summary"].as_str().unwrap_or_default();
        let description = rule["annotations"]["description"]
            .as_str()
            .unwrap_or_default();
        assert!(
            !summary.is_empty() && description.contains("journalctl -u renewd"),
            "{name}: summary and a description that says where to look"
        );
        if rule["expr"]
            .as_str()
            .unwrap()
            .contains("renewd_certificate_")
            && !rule["expr"].as_str().unwrap().contains("absent(")
        {
            for text in [summary, description] {
                assert!(
                    text.contains("{{ $labels.name }}") && text.contains("{{ $labels.account }}"),
                    "{name}: names the certificate: {text}"
                );
            }
            assert!(
                description.contains("renewd status")
                    && description.contains("CERT_NAME={{ $labels.name }}"),
                "{name}: {description}"
            );
        }
    }
}

/// `promtool test rules` on the unit tests, which give every alert a case where it fires and one where
/// it does not.
#[test]
fn promtool_unit_tests_fire_and_stay_silent_for_every_alert() {
    let tests = yaml(RULE_TESTS);
    let mut firing = BTreeSet::new();
    let mut silent = BTreeSet::new();
    for case in tests["tests"].as_array().unwrap() {
        for t in case["alert_rule_test"].as_array().unwrap() {
            let name = t["alertname"].as_str().unwrap().to_string();
            match t["exp_alerts"].as_array().map(Vec::len) {
                Some(0) | None => silent.insert(name),
                Some(_) => firing.insert(name),
            };
        }
    }
    for name in alert_names() {
        assert!(firing.contains(&name), "{name}: no case where it fires");
        assert!(
            silent.contains(&name),
            "{name}: no case where it stays silent"
        );
    }
    let dir = repo(RULE_TESTS).parent().unwrap().to_path_buf();
    let file = repo(RULE_TESTS);
    let text = promtool_ok(&["test", "rules", file.to_str().unwrap()], &dir);
    assert!(text.contains("SUCCESS"), "{text}");
}

/// Every query of the dashboard, with its variables set to a value.
fn dashboard_queries(dashboard: &Value) -> Vec<String> {
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for t in panel["targets"].as_array().unwrap() {
            exprs.push(t["expr"].as_str().unwrap().to_string());
        }
    }
    for var in dashboard["templating"]["list"].as_array().unwrap() {
        if var["type"] == "query" {
            exprs.push(var["definition"].as_str().unwrap().to_string());
        }
    }
    exprs
}

/// The dashboard is a Grafana JSON model with a Prometheus data source variable that every panel
/// uses, and promtool parses every query (as recording rules, the variables set).
#[test]
fn dashboard_queries_parse_and_use_the_datasource_variable() {
    let dashboard: Value = serde_json::from_str(&fs::read_to_string(repo(DASHBOARD)).unwrap())
        .expect("the dashboard is JSON");
    let vars = dashboard["templating"]["list"].as_array().unwrap();
    assert!(
        vars.iter().any(|v| v["name"] == "datasource"
            && v["type"] == "datasource"
            && v["query"] == "prometheus"),
        "no Prometheus data source variable"
    );
    let uid = json!({"type": "prometheus", "uid": "${datasource}"});
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 8, "{} panels", panels.len());
    for p in panels {
        assert_eq!(p["datasource"], uid, "{}", p["title"]);
        for t in p["targets"].as_array().unwrap() {
            assert_eq!(t["datasource"], uid, "{}", p["title"]);
        }
    }
    let ids: BTreeSet<u64> = panels.iter().map(|p| p["id"].as_u64().unwrap()).collect();
    assert_eq!(ids.len(), panels.len(), "panel ids are unique");

    let exprs = dashboard_queries(&dashboard);
    let rules: Vec<Value> = exprs
        .iter()
        .enumerate()
        .map(|(i, e)| json!({"record": format!("dashboard:query{i}"), "expr": substitute(e)}))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("dashboard.rules.json");
    fs::write(
        &file,
        json!({"groups": [{"name": "dashboard", "rules": rules}]}).to_string(),
    )
    .unwrap();
    let text = promtool_ok(&["check", "rules", file.to_str().unwrap()], tmp.path());
    assert!(
        text.contains(&format!("SUCCESS: {} rules found", exprs.len())),
        "{text}"
    );
}

/// A dashboard query with Grafana's variables replaced by values Prometheus accepts.
fn substitute(expr: &str) -> String {
    let expr = expr
        .strip_prefix("label_values(")
        .map_or(expr.to_string(), |rest| {
            // label_values(SELECTOR, LABEL) is Grafana's, not PromQL: its selector.
            rest.rsplit_once(',').unwrap().0.to_string()
        });
    expr.replace("$__range", "7d")
        .replace("$window", "7d")
        .replace("$instance", ".*")
        .replace("$name", ".*")
}

/// What a PromQL expression refers to: each metric with the label names of its matchers, and the label
/// names of its by / without / on / ignoring / group_left / group_right clauses. Enough of PromQL for
/// the shipped rules and dashboard (identifiers, strings, numbers and durations, brackets); Grafana's
/// `$variables` are skipped.
#[derive(Debug, Default)]
struct References {
    metrics: Vec<(String, BTreeSet<String>)>,
    grouping: BTreeSet<String>,
}

const KEYWORDS: [&str; 24] = [
    "and",
    "or",
    "unless",
    "bool",
    "offset",
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
    "sum",
    "min",
    "max",
    "avg",
    "count",
    "stddev",
    "stdvar",
    "topk",
    "bottomk",
    "quantile",
    "count_values",
    "group",
    "inf",
];

fn references(expr: &str) -> References {
    let chars: Vec<char> = expr.chars().collect();
    let mut refs = References::default();
    let mut i = 0;
    // Inside `{...}` of the metric at this index of refs.metrics.
    let mut in_matchers: Option<usize> = None;
    // Inside the `(...)` after by/on/...
    let mut in_grouping = false;
    let mut after_grouping_keyword = false;
    let is_ident_start = |c: char| c.is_ascii_alphabetic() || c == '_' || c == ':';
    let is_ident = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == ':';
    while i < chars.len() {
        let c = chars[i];
        if c == '"' || c == '\'' || c == '`' {
            i += 1;
            while i < chars.len() && chars[i] != c {
                i += if chars[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
        } else if c == '$' || c.is_ascii_digit() || c == '.' {
            // A variable, a number or a duration (1d, 0.5, 2 * 3600).
            i += 1;
            while i < chars.len() && (is_ident(chars[i]) || chars[i] == '.') {
                i += 1;
            }
        } else if is_ident_start(c) {
            let start = i;
            while i < chars.len() && is_ident(chars[i]) {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            let next = chars[i..].iter().find(|c| !c.is_whitespace()).copied();
            if let Some(m) = in_matchers {
                refs.metrics[m].1.insert(word);
            } else if in_grouping {
                refs.grouping.insert(word);
            } else if KEYWORDS.contains(&word.as_str()) {
                after_grouping_keyword = matches!(
                    word.as_str(),
                    "by" | "without" | "on" | "ignoring" | "group_left" | "group_right"
                );
            } else if next != Some('(') {
                refs.metrics.push((word, BTreeSet::new()));
            }
        } else {
            match c {
                '{' => {
                    // `{` right after a metric name, or a selector without one (`{__name__=...}`).
                    if refs.metrics.is_empty() || chars[..i].last().is_some_and(|p| !is_ident(*p)) {
                        refs.metrics.push((String::new(), BTreeSet::new()));
                    }
                    in_matchers = Some(refs.metrics.len() - 1);
                }
                '}' => in_matchers = None,
                '(' if after_grouping_keyword => {
                    in_grouping = true;
                    after_grouping_keyword = false;
                }
                ')' => in_grouping = false,
                _ => {}
            }
            i += 1;
        }
    }
    refs
}

#[test]
fn references_reads_the_promql_of_the_rules() {
    let r = references(
        r#"sum by (le, name) (increase(renewd_x_bucket{result="a}b", instance=~"$instance"}[$window]))
           and ignoring(result) up == 0 unless on(job) time() - 2 * 3600 > renewd_y"#,
    );
    let metrics: Vec<(&str, Vec<&str>)> = r
        .metrics
        .iter()
        .map(|(m, l)| (m.as_str(), l.iter().map(String::as_str).collect()))
        .collect();
    assert_eq!(
        metrics,
        vec![
            ("renewd_x_bucket", vec!["instance", "result"]),
            ("up", vec![]),
            ("renewd_y", vec![])
        ]
    );
    let grouping: Vec<&str> = r.grouping.iter().map(String::as_str).collect();
    assert_eq!(grouping, vec!["job", "le", "name", "result"]);
}

/// Sample name → the label names it carries in renewd's output (job and instance added, as a scrape
/// adds them).
fn label_names(samples: &[Sample]) -> BTreeMap<String, BTreeSet<String>> {
    let mut names: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for s in samples {
        let set = names.entry(s.name.clone()).or_default();
        set.extend(s.labels.keys().cloned());
        set.extend(TARGET_LABELS.map(String::from));
    }
    for (metric, labels) in OTHER_METRICS {
        names.insert(
            metric.to_string(),
            labels.iter().map(|l| l.to_string()).collect(),
        );
    }
    names
}

/// The value of the line `PREFIX VALUE` in an exposition.
fn line_value(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(prefix)?.strip_prefix(' ')?.parse().ok())
}

/// One input series of a promtool test: `name{labels}` with the scrape's job and instance.
fn series(name: &str, labels: &BTreeMap<String, String>) -> String {
    let mut all = labels.clone();
    all.insert("job".into(), JOB.into());
    all.insert("instance".into(), INSTANCE.into());
    let inner: Vec<String> = all
        .iter()
        .map(|(k, v)| format!("{k}=\"{}\"", v.replace('\\', "\\\\").replace('"', "\\\"")))
        .collect();
    format!("{name}{{{}}}", inner.join(","))
}

/// A real renewd (one certificate issued, one whose zone refuses renewd's key) exports what the rules,
/// the dashboard and the rules' unit tests refer to, with the same labels; and promtool, given that
/// real output as series, fires exactly RenewdRenewalsFailing for the failing certificate, and the
/// "not exporting" alerts once the series stop.
#[test]
fn rules_and_dashboard_match_a_real_daemons_metrics() {
    let topo = Topology::start(TopologyOptions {
        n_hosts: 1,
        denied_hosts: vec!["denied1".into()],
        ..Default::default()
    });
    let file = topo.dir().join("renewd.prom");
    let file_line = format!(
        "metrics_file: {}",
        serde_json::to_string(file.to_str().unwrap()).unwrap()
    );
    let r = Renewd::with_global(
        &topo,
        "30s",
        &[
            SpecFixture::new("host1", &[&domain("host1")]),
            SpecFixture::new("locked", &[&domain("denied1")]),
        ],
        &[&file_line],
    );
    let log = topo.dir().join("daemon.log");
    let daemon = r.spawn_logged(&["run"], &log, &[]);
    let attempts = |name: &str, result: &str| {
        format!("renewd_renewal_attempts_total{{name=\"{name}\",account=\"pebble\",result=\"{result}\"}}")
    };
    let text = poll_until(Duration::from_secs(60), Duration::from_millis(50), || {
        let text = fs::read_to_string(&file).ok()?;
        let done = line_value(&text, &attempts("host1", "success")).is_some_and(|v| v >= 1.0)
            && line_value(&text, &attempts("locked", "failure")).is_some_and(|v| v >= 1.0);
        done.then_some(text)
    })
    .unwrap_or_else(|| {
        panic!(
            "no success of host1 and failure of locked in the metrics:\n{}\ndaemon log:\n{}",
            fs::read_to_string(&file).unwrap_or_default(),
            log_text(&log)
        )
    });
    let scraped = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    stop_daemon(daemon, &log);
    let samples = parse(&text, "openmetrics");
    let ready = |name: &str| {
        samples
            .iter()
            .find(|s| s.name == "renewd_certificate_ready" && s.labels["name"] == name)
            .map(|s| s.value)
    };
    assert_eq!(
        (ready("host1"), ready("locked")),
        (Some(1.0), Some(0.0)),
        "{text}"
    );

    check_names_and_labels(&samples, &text);
    promtool_on_real_output(&samples, scraped, &text);
}

/// Every metric and label the rules, the dashboard and the rules' unit tests refer to is in renewd's
/// output `samples` (`text`), with the same labels; every metric renewd exports is used somewhere.
fn check_names_and_labels(samples: &[Sample], text: &str) {
    // Names and labels: the rules, the dashboard and the unit tests' input series.
    let real = label_names(samples);
    // renewd's labels (le included, from the histograms) and the scrape's.
    let all_labels: BTreeSet<String> = samples
        .iter()
        .flat_map(|s| s.labels.keys().cloned())
        .chain(TARGET_LABELS.map(String::from))
        .collect();
    let mut exprs: Vec<(String, String)> = rules()
        .iter()
        .map(|r| {
            (
                format!("rule {}", r["alert"]),
                r["expr"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let dashboard: Value =
        serde_json::from_str(&fs::read_to_string(repo(DASHBOARD)).unwrap()).unwrap();
    exprs.extend(
        dashboard_queries(&dashboard)
            .into_iter()
            .map(|e| ("dashboard".to_string(), substitute(&e))),
    );
    let mut seen = BTreeSet::new();
    for (what, expr) in &exprs {
        let refs = references(expr);
        assert!(!refs.metrics.is_empty(), "{what}: no metric in {expr}");
        for (metric, labels) in &refs.metrics {
            let have = real
                .get(metric)
                .unwrap_or_else(|| panic!("{what}: {metric} is not in renewd's output:\n{text}"));
            assert!(
                labels.is_subset(have),
                "{what}: {metric} has the labels {have:?}, not all of {labels:?}"
            );
            seen.insert(metric.clone());
        }
        assert!(
            refs.grouping.is_subset(&all_labels),
            "{what}: groups by {:?}; the labels are {all_labels:?}",
            refs.grouping
        );
    }
    // Everything renewd exports is on the dashboard or in a rule (histograms through their series).
    for family in [
        "renewd_certificate_expiration_timestamp_seconds",
        "renewd_certificate_renewal_timestamp_seconds",
        "renewd_certificate_ready",
        "renewd_certificate_info",
        "renewd_renewal_attempts_total",
        "renewd_renewal_duration_seconds_bucket",
        "renewd_dns_propagation_seconds_bucket",
    ] {
        assert!(seen.contains(family), "{family} is used nowhere");
    }
    for rule in rules() {
        for text in rule["annotations"].as_object().unwrap().values() {
            for part in text.as_str().unwrap().split("$labels.").skip(1) {
                let label: String = part
                    .chars()
                    .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                    .collect();
                assert!(
                    all_labels.contains(&label),
                    "{}: $labels.{label}",
                    rule["alert"]
                );
            }
        }
    }
    for case in yaml(RULE_TESTS)["tests"].as_array().unwrap() {
        for s in case["input_series"].as_array().unwrap() {
            let text = s["series"].as_str().unwrap();
            let (metric, rest) = text.split_once('{').unwrap();
            let labels: BTreeSet<String> = rest
                .trim_end_matches('}')
                .split(',')
                .map(|kv| kv.split_once('=').unwrap().0.to_string())
                .collect();
            let have = real.get(metric).unwrap_or_else(|| {
                panic!("unit test series {text}: no {metric} in renewd's output")
            });
            assert_eq!(&labels, have, "unit test series {text}: renewd's labels");
            if let Some(result) = rest.split("result=\"").nth(1) {
                let result = result.split('"').next().unwrap();
                assert!(
                    samples
                        .iter()
                        .any(|s| s.labels.get("result").map(String::as_str) == Some(result)),
                    "unit test series {text}: renewd exports no result={result:?}"
                );
            }
        }
    }
}

/// promtool on renewd's real output as input series (time 0 is the scrape at `scraped`, every
/// `*_timestamp_seconds` shifted by it): exactly RenewdRenewalsFailing fires, for the failing
/// certificate; when the series stop, RenewdTargetDown and RenewdMetricsAbsent.
fn promtool_on_real_output(samples: &[Sample], scraped: f64, text: &str) {
    let tmp = tempfile::tempdir().unwrap();
    let mut rules_doc = yaml(RULES);
    for group in rules_doc["groups"].as_array_mut().unwrap() {
        for rule in group["rules"].as_array_mut().unwrap() {
            // Annotations are the hand-written tests' business; here only which alerts fire.
            rule.as_object_mut().unwrap().remove("annotations");
        }
    }
    fs::write(tmp.path().join("rules.json"), rules_doc.to_string()).unwrap();
    let input = |samples_per_series: usize| -> Vec<Value> {
        let mut input: Vec<Value> = samples
            .iter()
            .map(|s| {
                let v = if s.name.ends_with("_timestamp_seconds") {
                    s.value - scraped
                } else {
                    s.value
                };
                json!({
                    "series": series(&s.name, &s.labels),
                    "values": format!("{v}x{samples_per_series}"),
                })
            })
            .collect();
        input.push(json!({
            "series": series("up", &BTreeMap::new()),
            "values": format!("1x{samples_per_series} 0x60"),
        }));
        input
    };
    let expect = |firing: &[(&str, Value)]| -> Vec<Value> {
        alert_names()
            .iter()
            .map(|name| {
                let exp: Vec<Value> = firing
                    .iter()
                    .filter(|(a, _)| a == name)
                    .map(|(_, labels)| json!({"exp_labels": labels}))
                    .collect();
                json!({"eval_time": "40m", "alertname": name, "exp_alerts": exp})
            })
            .collect()
    };
    let failing = json!({
        "severity": "warning", "name": "locked", "account": "pebble", "job": JOB, "instance": INSTANCE,
    });
    let down = json!({"severity": "warning", "job": JOB, "instance": INSTANCE});
    let absent = json!({"severity": "warning"});
    let tests = json!({
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [
            {"name": "as scraped", "interval": "1m", "input_series": input(60),
             "alert_rule_test": expect(&[("RenewdRenewalsFailing", failing)])},
            {"name": "stops at 10m", "interval": "1m", "input_series": input(10),
             "alert_rule_test": expect(&[("RenewdTargetDown", down), ("RenewdMetricsAbsent", absent)])},
        ],
    });
    fs::write(tmp.path().join("tests.json"), tests.to_string()).unwrap();
    let out = promtool(&["test", "rules", "tests.json"], tmp.path());
    assert!(
        out.status.success(),
        "promtool on renewd's real output:\n{}\nseries:\n{text}",
        output_text(&out)
    );
}
