use std::os::unix::fs::PermissionsExt as _;

use mediagate_sip::PeerAddress;
use mediagate_sip_proto::TransportKind;

use super::*;

struct File {
    _dir: tempfile::TempDir,
    path: PathBuf,
}

impl File {
    fn new(text: &str) -> File {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mediagate.toml");
        fs::write(&path, text).unwrap();
        File { _dir: dir, path }
    }
    fn text(&self) -> String {
        fs::read_to_string(&self.path).unwrap()
    }
    /// Names in the directory other than the file itself (left-over temporary files).
    fn others(&self) -> Vec<String> {
        fs::read_dir(self.path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n != "mediagate.toml")
            .collect()
    }
}

fn peer(name: &str, address: &str, port: u16, plan: &str) -> PeerConfig {
    PeerConfig {
        name: name.into(),
        address: PeerAddress::parse(address),
        port,
        transport: None,
        dial_plan: plan.into(),
        media_source: Default::default(),
        media_latching: Default::default(),
    }
}

#[test]
fn list_and_show() {
    let f = File::new(Config::DEFAULT_TOML);
    let plans = list_dial_plans(&f.path).unwrap();
    let summary: Vec<(&str, VoipSecurity, Vec<&str>)> = plans
        .iter()
        .map(|v| {
            (
                v.plan.name.as_str(),
                v.plan.voip_security,
                v.peers.iter().map(|p| p.name.as_str()).collect(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("demo-unsecured", VoipSecurity::Unsecured, vec!["local"]),
            ("demo-secured", VoipSecurity::Secured, vec!["localhost"]),
            ("demo-sipsecured", VoipSecurity::SipSecured, vec![]),
        ]
    );
    let v = show_dial_plan(&f.path, "demo-secured").unwrap();
    assert_eq!(
        v.peers[0].transport_in(v.plan.voip_security),
        TransportKind::Tls
    );
    let e = show_dial_plan(&f.path, "nope").unwrap_err();
    assert_eq!(e.key, "dial_plan[nope]");
    assert_eq!(
        e.problem,
        "no such dial plan (there are: demo-unsecured, demo-secured, demo-sipsecured)"
    );
    let peers: Vec<String> = list_peers(&f.path)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(peers, ["local", "localhost"]);
}

#[test]
fn set_voip_security_keeps_every_comment() {
    let f = File::new(Config::DEFAULT_TOML);
    let before = f.text();
    let old = set_voip_security(&f.path, "demo-secured", VoipSecurity::SipSecured).unwrap();
    assert_eq!(old, VoipSecurity::Secured);
    let after = f.text();
    // Exactly one line changed.
    let changed: Vec<(&str, &str)> = before
        .lines()
        .zip(after.lines())
        .filter(|(a, b)| a != b)
        .collect();
    assert_eq!(
        changed,
        [(
            "voip_security = \"Secured\"",
            "voip_security = \"SIPSecured\""
        )]
    );
    assert_eq!(before.lines().count(), after.lines().count());
    let c = Config::load(&f.path).unwrap();
    assert_eq!(
        c.dial_plan("demo-secured").unwrap().voip_security,
        VoipSecurity::SipSecured
    );
    assert!(f.others().is_empty(), "{:?}", f.others());

    // Same mode: nothing written (not even rewritten identically).
    let mtime = fs::metadata(&f.path).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    assert_eq!(
        set_voip_security(&f.path, "demo-secured", VoipSecurity::SipSecured).unwrap(),
        VoipSecurity::SipSecured
    );
    assert_eq!(fs::metadata(&f.path).unwrap().modified().unwrap(), mtime);
}

#[test]
fn set_voip_security_keeps_a_trailing_comment_and_adds_a_missing_key() {
    let f = File::new(
        "[listen]\ntcp = \"127.0.0.1:5060\"\ntls = \"127.0.0.1:5061\"\n\n\
         [[dial_plan]]\nname = \"a\"\nvoip_security = \"Unsecured\"   # was the PBX default\n\n\
         # plan b has no mode line\n[[dial_plan]]\nname = \"b\"\n",
    );
    set_voip_security(&f.path, "a", VoipSecurity::Secured).unwrap();
    set_voip_security(&f.path, "b", VoipSecurity::SipSecured).unwrap();
    assert_eq!(
        f.text(),
        "[listen]\ntcp = \"127.0.0.1:5060\"\ntls = \"127.0.0.1:5061\"\n\n\
         [[dial_plan]]\nname = \"a\"\nvoip_security = \"Secured\"   # was the PBX default\n\n\
         # plan b has no mode line\n[[dial_plan]]\nname = \"b\"\nvoip_security = \"SIPSecured\"\n"
    );
}

#[test]
fn an_edit_that_would_invalidate_the_file_is_refused_and_the_file_left_alone() {
    let f = File::new(Config::DEFAULT_TOML);
    let before = f.text();
    // "local" is 127.0.0.1:5060 over TCP: not a Secured peer (R-PEER-3).
    let e = set_voip_security(&f.path, "demo-unsecured", VoipSecurity::Secured).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Invalid);
    assert_eq!(e.key, "peer[local].address");
    assert!(e.problem.contains("must be configured with an FQDN"), "{e}");
    assert!(
        e.problem
            .ends_with("(change refused; the file is unchanged)"),
        "{e}"
    );
    assert_eq!(f.text(), before);
    assert!(f.others().is_empty(), "{:?}", f.others());

    // Add a route to a new peer by hand, then try to remove the peer.
    add_peer(
        &f.path,
        peer("pbx", "pbx.example.com", 5061, "demo-sipsecured"),
    )
    .unwrap();
    let text = f.text().replace(
        "name = \"demo-sipsecured\"\nvoip_security = \"SIPSecured\"\nroutes = [{ prefix = \"\", target = \"echo\" }]",
        "name = \"demo-sipsecured\"\nvoip_security = \"SIPSecured\"\nroutes = [{ prefix = \"\", target = \"echo\" }, { prefix = \"9\", target = \"pbx\" }]",
    );
    fs::write(&f.path, &text).unwrap();
    let e = remove_peer(&f.path, "pbx").unwrap_err();
    assert_eq!(e.key, "dial_plan[demo-sipsecured].routes[1].target");
    assert!(e.problem.contains("unknown peer \"pbx\""), "{e}");
    assert_eq!(f.text(), text);
    assert!(f.others().is_empty(), "{:?}", f.others());
}

#[test]
fn add_and_remove_peers() {
    let f = File::new(Config::DEFAULT_TOML);
    let original = f.text();
    let mut pbx = peer("pbx", "PBX.Example.com", 5061, "demo-sipsecured");
    add_peer(&f.path, pbx.clone()).unwrap();
    let text = f.text();
    // After the last peer ("localhost"), before the comments of the next dial plan.
    let added = "dial_plan = \"demo-secured\"\n\n[[peer]]\nname = \"pbx\"\naddress = \"pbx.example.com\"\n\
                 port = 5061\ndial_plan = \"demo-sipsecured\"\n\n# No peer yet.";
    assert!(text.contains(added), "{text}");
    // Every comment of the original is still there.
    for line in original.lines().filter(|l| l.trim_start().starts_with('#')) {
        assert!(text.contains(line), "lost {line:?}");
    }
    let c = Config::load(&f.path).unwrap();
    pbx.address = PeerAddress::Fqdn("pbx.example.com".into());
    assert_eq!(c.peer("pbx"), Some(&pbx));
    assert_eq!(c.peer_transport(&pbx), TransportKind::Tls);

    let e = add_peer(
        &f.path,
        peer("pbx", "other.example.com", 5061, "demo-sipsecured"),
    )
    .unwrap_err();
    assert_eq!((e.key.as_str(), e.kind), ("peer[pbx]", ErrorKind::Invalid));
    let e = add_peer(&f.path, peer("gw", "192.0.2.7", 5061, "demo-secured")).unwrap_err();
    assert_eq!(e.key, "peer[gw].address");
    let e = add_peer(&f.path, peer("gw", "gw.example.com", 5061, "nope")).unwrap_err();
    assert_eq!(e.key, "peer[gw].dial_plan");
    let mut udp = peer("gw", "192.0.2.7", 5060, "demo-unsecured");
    udp.transport = Some(TransportKind::Udp);
    add_peer(&f.path, udp).unwrap();
    // Next to the other peer of its plan.
    let text = f.text();
    assert!(
        text.contains(
            "dial_plan = \"demo-unsecured\"\n\n[[peer]]\nname = \"gw\"\naddress = \"192.0.2.7\"\n\
             port = 5060\ntransport = \"udp\"\ndial_plan = \"demo-unsecured\"\n\n[[dial_plan]]\nname = \"demo-secured\""
        ),
        "{text}"
    );
    assert_eq!(
        list_peers(&f.path)
            .unwrap()
            .iter()
            .map(|p| p.name.as_str())
            .collect::<Vec<_>>(),
        ["local", "gw", "localhost", "pbx"]
    );

    assert_eq!(remove_peer(&f.path, "pbx").unwrap().name, "pbx");
    assert_eq!(remove_peer(&f.path, "gw").unwrap().port, 5060);
    assert_eq!(f.text(), original, "add then remove gives the file back");
    let e = remove_peer(&f.path, "gw").unwrap_err();
    assert_eq!(e.problem, "no such peer (there are: local, localhost)");
}

#[test]
fn peers_are_added_to_a_file_without_any_and_to_inline_arrays() {
    let f = File::new(
        "# comment\n[listen]\ntls = \"127.0.0.1:5061\"\n\n[[dial_plan]]\nname = \"s\"\nvoip_security = \"Secured\"\n",
    );
    add_peer(&f.path, peer("pbx", "pbx.example.com", 5061, "s")).unwrap();
    assert_eq!(
        f.text(),
        "# comment\n[listen]\ntls = \"127.0.0.1:5061\"\n\n[[dial_plan]]\nname = \"s\"\nvoip_security = \"Secured\"\n\n\
         [[peer]]\nname = \"pbx\"\naddress = \"pbx.example.com\"\nport = 5061\ndial_plan = \"s\"\n"
    );
    remove_peer(&f.path, "pbx").unwrap();
    assert_eq!(Config::load(&f.path).unwrap().peers, []);

    let f = File::new(
        "peer = [{ name = \"a\", address = \"a.example.com\", port = 5061, dial_plan = \"s\" }]\n\
         [listen]\ntls = \"127.0.0.1:5061\"\n[[dial_plan]]\nname = \"s\"\nvoip_security = \"Secured\"\n",
    );
    add_peer(&f.path, peer("b", "b.example.com", 5061, "s")).unwrap();
    let names: Vec<String> = list_peers(&f.path)
        .unwrap()
        .into_iter()
        .map(|p| p.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    set_voip_security(&f.path, "s", VoipSecurity::SipSecured).unwrap();
    remove_peer(&f.path, "a").unwrap();
    let c = Config::load(&f.path).unwrap();
    assert_eq!(c.peers.len(), 1);
    assert_eq!(c.dial_plans[0].voip_security, VoipSecurity::SipSecured);
}

#[test]
fn edits_keep_permissions_and_follow_symlinks() {
    let f = File::new(Config::DEFAULT_TOML);
    fs::set_permissions(&f.path, fs::Permissions::from_mode(0o640)).unwrap();
    set_voip_security(&f.path, "demo-secured", VoipSecurity::SipSecured).unwrap();
    assert_eq!(
        fs::metadata(&f.path).unwrap().permissions().mode() & 0o7777,
        0o640
    );
    fs::set_permissions(&f.path, fs::Permissions::from_mode(0o604)).unwrap();
    set_voip_security(&f.path, "demo-secured", VoipSecurity::Secured).unwrap();
    assert_eq!(
        fs::metadata(&f.path).unwrap().permissions().mode() & 0o7777,
        0o604
    );

    let link = f.path.with_file_name("link.toml");
    std::os::unix::fs::symlink(&f.path, &link).unwrap();
    set_voip_security(&link, "demo-secured", VoipSecurity::SipSecured).unwrap();
    assert!(
        fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(f.text().contains("voip_security = \"SIPSecured\""));
}

#[test]
fn a_file_changed_meanwhile_is_not_overwritten() {
    let f = File::new(Config::DEFAULT_TOML);
    fs::write(&f.path, "# someone else's edit\n").unwrap();
    let e = write_atomically(&f.path, Config::DEFAULT_TOML, "x = 1\n").unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(e.problem.contains("changed while this edit"), "{e}");
    assert_eq!(f.text(), "# someone else's edit\n");
    assert!(f.others().is_empty(), "{:?}", f.others());
}

#[test]
fn edits_refuse_an_invalid_or_missing_file() {
    let f = File::new("[listen]\n");
    let e = set_voip_security(&f.path, "a", VoipSecurity::Secured).unwrap_err();
    assert_eq!(e.key, "listen");
    assert_eq!(f.text(), "[listen]\n");
    let missing = f.path.with_file_name("missing.toml");
    let e = add_peer(&missing, peer("a", "a", 5060, "b")).unwrap_err();
    assert_eq!(e.kind, ErrorKind::Io);
    assert!(!missing.exists());
}
