//! The test report: one [`Step`] per stage, rendered for people (`PASS`/`FAIL`/`SKIP` lines and
//! a summary) or as JSON for scripts.
//!
//! Each step carries a one-line summary, optional detail lines, and machine-readable fields
//! (times in milliseconds as numbers, counters, tokens) that only the JSON form shows in full.

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use mediagate_pki::CertFacts;
use mediagate_pki::facts::format_time;
use serde_json::{Map, Value, json};

/// How a step ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// It worked.
    Pass,
    /// It did not; the summary says why.
    Fail,
    /// Not run, because an earlier step failed.
    Skip,
}

impl Outcome {
    fn word(self) -> &'static str {
        match self {
            Self::Pass => "PASS",
            Self::Fail => "FAIL",
            Self::Skip => "SKIP",
        }
    }
}

/// One stage of the test.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Step {
    /// Its name: `resolve`, `connect`, `tls`, `options`, `invite`, `media`, `bye`.
    pub(crate) name: &'static str,
    /// How it ended.
    pub(crate) outcome: Outcome,
    /// One line: what was measured, or why it failed.
    pub(crate) summary: String,
    /// Further lines (certificate facts, per-request results).
    pub(crate) details: Vec<String>,
    /// Machine-readable fields for `--json`.
    pub(crate) data: Map<String, Value>,
}

impl Step {
    fn new(name: &'static str, outcome: Outcome, summary: impl Into<String>) -> Self {
        Self {
            name,
            outcome,
            summary: summary.into(),
            details: Vec::new(),
            data: Map::new(),
        }
    }

    /// A step that passed.
    pub(crate) fn pass(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Outcome::Pass, summary)
    }

    /// A step that failed.
    pub(crate) fn fail(name: &'static str, summary: impl Into<String>) -> Self {
        Self::new(name, Outcome::Fail, summary)
    }

    /// Adds a detail line.
    pub(crate) fn detail(mut self, line: impl Into<String>) -> Self {
        self.details.push(line.into());
        self
    }

    /// Adds a machine-readable field.
    pub(crate) fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.data.insert(key.to_owned(), value.into());
        self
    }

    /// Adds a certificate's facts: detail lines and a JSON object under `key`.
    pub(crate) fn certificate(
        mut self,
        key: &str,
        title: &str,
        facts: &CertFacts,
        now: SystemTime,
    ) -> Self {
        let days_left = mediagate_pki::expiry::days_left(facts.not_after, now);
        self.details.push(format!("{title}:"));
        for line in cert_lines(facts, days_left) {
            self.details.push(format!("  {line}"));
        }
        self.data
            .insert(key.to_owned(), cert_json(facts, days_left));
        self
    }
}

/// Subject alternative names as `DNS:…`, `IP:…`.
fn sans(f: &CertFacts) -> Vec<String> {
    f.dns_names
        .iter()
        .map(|d| format!("DNS:{d}"))
        .chain(f.ip_addresses.iter().map(|i| format!("IP:{i}")))
        .collect()
}

fn cert_lines(f: &CertFacts, days_left: i64) -> Vec<String> {
    vec![
        format!("subject:     {}", f.subject),
        format!("issuer:      {}", f.issuer),
        format!("serial:      {}", f.serial),
        format!("thumbprint:  {} (SHA-1)", f.sha1_thumbprint),
        format!("SANs:        {}", sans(f).join(", ")),
        format!(
            "not after:   {} ({})",
            format_time(f.not_after),
            if days_left >= 0 {
                format!("{days_left} days left")
            } else {
                format!("expired {} days ago", -days_left - 1)
            }
        ),
    ]
}

fn cert_json(f: &CertFacts, days_left: i64) -> Value {
    json!({
        "subject": f.subject,
        "issuer": f.issuer,
        "serial": f.serial,
        "sha1_thumbprint": f.sha1_thumbprint,
        "sha256_fingerprint": f.sha256_fingerprint,
        "subject_alt_names": sans(f),
        "not_before": format_time(f.not_before),
        "not_after": format_time(f.not_after),
        "days_left": days_left,
        "self_signed": f.self_signed,
    })
}

/// Milliseconds as a JSON-friendly number (microsecond resolution).
pub(crate) fn ms(d: Duration) -> f64 {
    (d.as_micros() as f64) / 1000.0
}

/// `1.234 ms`.
pub(crate) fn fmt_ms(d: Duration) -> String {
    format!("{:.3} ms", ms(d))
}

/// The whole report.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Report {
    /// The Request-URI tested.
    pub(crate) target: String,
    /// `TCP` or `TLS`.
    pub(crate) transport: &'static str,
    /// Whether media was to be SRTP.
    pub(crate) srtp: bool,
    /// The address connected to, once resolved.
    pub(crate) address: Option<SocketAddr>,
    /// The steps in the order they ran (skipped ones last).
    pub(crate) steps: Vec<Step>,
    planned: Vec<&'static str>,
}

impl Report {
    /// An empty report for a test that plans to run the steps in `planned`.
    pub(crate) fn new(
        target: String,
        transport: &'static str,
        srtp: bool,
        address: Option<SocketAddr>,
        planned: Vec<&'static str>,
    ) -> Self {
        Self {
            target,
            transport,
            srtp,
            address,
            steps: Vec::new(),
            planned,
        }
    }

    /// Appends a step.
    pub(crate) fn push(&mut self, step: Step) {
        self.steps.push(step);
    }

    /// Turns the passed step `name` into a failure found out later (a TLS 1.3 far end that
    /// refuses our certificate says so only after the handshake). Its old summary becomes a
    /// detail; `data` is added to its fields.
    pub(crate) fn revise_as_failed(&mut self, name: &str, summary: String, data: &[(&str, Value)]) {
        if let Some(step) = self.steps.iter_mut().find(|s| s.name == name) {
            let old = std::mem::replace(&mut step.summary, summary);
            step.outcome = Outcome::Fail;
            step.details.insert(0, old);
            for (k, v) in data {
                step.data.insert((*k).to_owned(), v.clone());
            }
        }
    }

    /// Marks every planned step that did not run as skipped.
    pub(crate) fn finish(&mut self) {
        let first_failed = self
            .steps
            .iter()
            .find(|s| s.outcome == Outcome::Fail)
            .map(|s| s.name);
        for name in self.planned.clone() {
            if !self.steps.iter().any(|s| s.name == name) {
                let why = match first_failed {
                    Some(f) => format!("not run: {f} failed"),
                    None => "not run".to_owned(),
                };
                self.steps.push(Step::new(name, Outcome::Skip, why));
            }
        }
    }

    /// True when every step ran and passed: the exit code is 0 only then.
    pub(crate) fn passed(&self) -> bool {
        !self.steps.is_empty() && self.steps.iter().all(|s| s.outcome == Outcome::Pass)
    }

    /// The first failed step, if any.
    pub(crate) fn failure(&self) -> Option<&Step> {
        self.steps.iter().find(|s| s.outcome == Outcome::Fail)
    }

    fn verdict(&self) -> String {
        let passed = self
            .steps
            .iter()
            .filter(|s| s.outcome == Outcome::Pass)
            .count();
        match self.failure() {
            None if self.passed() => {
                format!("PASS: {passed} of {} steps passed", self.steps.len())
            }
            None => "FAIL: not every step ran".to_owned(),
            Some(f) => format!("FAIL at {}: {}", f.name, f.summary),
        }
    }

    /// The report for people.
    pub(crate) fn human(&self) -> String {
        let mut out = String::new();
        let _ = write!(
            out,
            "Testing connectivity to {} over {}{}",
            self.target,
            self.transport,
            if self.srtp {
                " with SRTP media"
            } else {
                ", plain RTP media"
            }
        );
        if let Some(a) = self.address {
            let _ = write!(out, " ({a})");
        }
        out.push('\n');
        for s in &self.steps {
            let _ = writeln!(out, "{} {:<8} {}", s.outcome.word(), s.name, s.summary);
            for d in &s.details {
                let _ = writeln!(out, "              {d}");
            }
        }
        let _ = writeln!(out, "SUMMARY {}", self.verdict());
        out
    }

    /// The report for scripts.
    pub(crate) fn json(&self) -> Value {
        let steps: Vec<Value> = self
            .steps
            .iter()
            .map(|s| {
                let mut m = Map::new();
                m.insert("step".into(), s.name.into());
                m.insert(
                    "result".into(),
                    s.outcome.word().to_ascii_lowercase().into(),
                );
                m.insert("summary".into(), s.summary.clone().into());
                if !s.details.is_empty() {
                    m.insert("details".into(), s.details.clone().into());
                }
                for (k, v) in &s.data {
                    m.insert(k.clone(), v.clone());
                }
                Value::Object(m)
            })
            .collect();
        json!({
            "target": self.target,
            "transport": self.transport,
            "srtp": self.srtp,
            "address": self.address.map(|a| a.to_string()),
            "passed": self.passed(),
            "summary": self.verdict(),
            "steps": steps,
        })
    }
}

#[cfg(test)]
mod tests {
    use mediagate_pki::testpki::TestPki;

    use super::*;

    fn report() -> Report {
        Report::new(
            "sip:echo@127.0.0.1:5060".into(),
            "TCP",
            false,
            Some("127.0.0.1:5060".parse().unwrap()),
            vec!["connect", "options", "invite"],
        )
    }

    #[test]
    fn all_passed_means_pass() {
        let mut r = report();
        r.push(Step::pass("connect", "in 0.100 ms").with("connect_ms", 0.1));
        r.push(Step::pass("options", "3 of 3"));
        r.push(Step::pass("invite", "200 OK"));
        r.finish();
        assert!(r.passed());
        let text = r.human();
        assert!(text.contains("PASS connect  in 0.100 ms\n"), "{text}");
        assert!(
            text.ends_with("SUMMARY PASS: 3 of 3 steps passed\n"),
            "{text}"
        );
        let j = r.json();
        assert_eq!(j["passed"], true);
        assert_eq!(j["steps"][0]["connect_ms"], 0.1);
        assert_eq!(j["steps"][0]["result"], "pass");
    }

    #[test]
    fn a_failure_skips_the_rest_and_fails_the_report() {
        let mut r = report();
        r.push(Step::fail("connect", "connection refused").detail("hint"));
        r.finish();
        assert!(!r.passed());
        assert_eq!(r.failure().unwrap().name, "connect");
        let text = r.human();
        assert!(
            text.contains("FAIL connect  connection refused\n"),
            "{text}"
        );
        assert!(text.contains("              hint\n"), "{text}");
        assert!(
            text.contains("SKIP options  not run: connect failed\n"),
            "{text}"
        );
        assert!(
            text.contains("SUMMARY FAIL at connect: connection refused"),
            "{text}"
        );
        let j = r.json();
        assert_eq!(j["passed"], false);
        assert_eq!(j["steps"][2]["result"], "skip");
        // Nothing ran at all: not a pass.
        let mut empty = Report::new("x".into(), "TCP", false, None, vec![]);
        empty.finish();
        assert!(!empty.passed());
    }

    #[test]
    fn a_late_failure_revises_a_passed_step() {
        let mut r = report();
        r.push(Step::pass("connect", "TLSv1.3 handshake in 1 ms"));
        r.revise_as_failed(
            "connect",
            "refused our certificate".into(),
            &[("refusal", "refused_by_far_end".into())],
        );
        r.finish();
        assert!(!r.passed());
        let text = r.human();
        assert!(
            text.contains(
                "FAIL connect  refused our certificate\n              TLSv1.3 handshake in 1 ms\n"
            ),
            "{text}"
        );
        assert!(
            text.contains("SKIP options  not run: connect failed"),
            "{text}"
        );
        assert_eq!(r.json()["steps"][0]["refusal"], "refused_by_far_end");
    }

    #[test]
    fn certificate_facts_are_listed_with_days_left() {
        let pki = TestPki::generate(SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000));
        let facts = CertFacts::from_der(&pki.server.chain()[0]).unwrap();
        let s =
            Step::pass("tls", "ok").certificate("peer_certificate", "far end", &facts, pki.now());
        let text = s.details.join("\n");
        assert!(text.contains("subject:     CN=server.test"), "{text}");
        assert!(
            text.contains(&format!("thumbprint:  {} (SHA-1)", facts.sha1_thumbprint)),
            "{text}"
        );
        assert!(
            text.contains("SANs:        DNS:server.test, IP:127.0.0.1"),
            "{text}"
        );
        assert!(text.contains("(90 days left)"), "{text}");
        assert_eq!(s.data["peer_certificate"]["days_left"], 90);
        assert_eq!(
            s.data["peer_certificate"]["sha1_thumbprint"],
            facts.sha1_thumbprint.as_str()
        );
    }
}
