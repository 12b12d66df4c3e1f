//! Every example in `testdata/configs/` loads, and every file in `testdata/configs/invalid/`
//! fails with the key and problem its first line announces (`# expect: KEY: PROBLEM`).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};

use mediagate_config::{Config, ErrorKind};
use mediagate_sip::{Target, VoipSecurity};
use mediagate_sip_proto::TransportKind;

fn dir(sub: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../testdata/configs")
        .join(sub)
}

fn toml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    files.sort();
    files
}

#[test]
fn every_example_loads() {
    let files = toml_files(&dir(""));
    let names: Vec<String> = files
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for needed in ["minimal.toml", "enterprise.toml", "lab.toml"] {
        assert!(names.iter().any(|n| n == needed), "{needed} missing");
    }
    for f in &files {
        let c = Config::load(f).unwrap_or_else(|e| panic!("{e}"));
        assert!(!c.listen.advertised().is_empty(), "{}", f.display());
    }
}

#[test]
fn the_enterprise_example_has_every_mode_and_static_hosts() {
    let c = Config::load(&dir("enterprise.toml")).unwrap();
    assert_eq!(c.media.wakeup_coalesce_us, 1000);
    let policy = c.policy();
    let mode_of = |peer: &str| {
        policy
            .dial_plan(&policy.peer(peer).unwrap().dial_plan)
            .unwrap()
            .security
    };
    assert_eq!(mode_of("pbx"), VoipSecurity::Secured);
    assert_eq!(mode_of("carrier"), VoipSecurity::Secured);
    assert_eq!(mode_of("branch-gw"), VoipSecurity::SipSecured);
    assert_eq!(mode_of("legacy-gw"), VoipSecurity::Unsecured);
    assert_eq!(
        policy.peer("legacy-gw").unwrap().transport,
        TransportKind::Udp
    );
    assert_eq!(
        policy.peer("branch-gw").unwrap().transport,
        TransportKind::Tls
    );
    let pbx = policy.dial_plan("pbx").unwrap();
    assert_eq!(
        pbx.route("0049301234"),
        Some(&Target::Peer("carrier".into()))
    );
    assert_eq!(
        pbx.route("0301234"),
        Some(&Target::Peer("branch-gw".into()))
    );
    assert_eq!(pbx.route("991"), Some(&Target::Echo));
    assert_eq!(pbx.route("1234"), None);
    assert_eq!(c.hosts.len(), 2);
    assert_eq!(c.cert_dir(), Path::new("/var/lib/mediagate/certs"));
    assert_eq!(c.trust_dir(), Path::new("/etc/mediagate/trust"));
}

#[test]
fn the_lab_example_names_the_compose_services() {
    let c = Config::load(&dir("lab.toml")).unwrap();
    assert_eq!(c.gateway.fqdn, "gateway");
    assert!(c.peer("pbx").is_some() && c.peer("farend").is_some());
    assert!(c.hosts.contains_key("pbx") && c.hosts.contains_key("farend"));
    assert_eq!(c.listen.advertise, Some("172.28.0.10".parse().unwrap()));
}

#[test]
fn every_invalid_example_fails_as_announced() {
    let files = toml_files(&dir("invalid"));
    assert!(files.len() >= 20, "{} invalid examples", files.len());
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap();
        let expect = text
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("# expect: "))
            .unwrap_or_else(|| {
                panic!(
                    "{}: first line is not `# expect: KEY: PROBLEM`",
                    f.display()
                )
            });
        let (key, problem) = expect.split_once(": ").unwrap();
        let e = match Config::load(f) {
            Ok(_) => panic!("{}: accepted", f.display()),
            Err(e) => e,
        };
        assert_ne!(e.kind, ErrorKind::Io, "{e}");
        assert_eq!(e.file, *f);
        assert_eq!(e.key, key, "{}: {e}", f.display());
        assert!(
            e.problem.contains(problem.trim()),
            "{}: problem {:?} lacks {problem:?}",
            f.display(),
            e.problem
        );
        assert!(
            e.to_string()
                .starts_with(&format!("{}: {key}: ", f.display()))
        );
    }
}
