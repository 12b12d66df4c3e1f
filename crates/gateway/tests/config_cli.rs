//! `mediagate config|dialplan|peer …` end to end: the real binary against files in temporary
//! directories (R-OPS-1, R-OPS-4).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use mediagate_config::Config;

const BIN: &str = env!("CARGO_BIN_EXE_mediagate");

struct Env {
    _root: tempfile::TempDir,
    dir: PathBuf,
}

impl Env {
    fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().to_owned();
        Self { _root: root, dir }
    }

    /// Runs in the temporary directory, with no MEDIAGATE_CONFIG from outside.
    fn run(&self, args: &[&str]) -> Output {
        self.command(args).output().expect("run mediagate")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(BIN);
        c.args(args)
            .current_dir(&self.dir)
            .env_remove("MEDIAGATE_CONFIG");
        c
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn read(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap()
    }

    /// `config init` into ./mediagate.toml.
    fn init(&self) {
        assert_exit(&self.run(&["config", "init"]), 0);
    }
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[track_caller]
fn assert_exit(o: &Output, code: i32) {
    assert_eq!(
        o.status.code(),
        Some(code),
        "exit code\nstdout:\n{}\nstderr:\n{}",
        stdout(o),
        stderr(o)
    );
}

#[test]
fn init_writes_the_default_once_and_check_accepts_it() {
    let env = Env::new();
    let o = env.run(&["config", "init"]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("./mediagate.toml"), "{}", stdout(&o));
    assert_eq!(env.read("mediagate.toml"), Config::DEFAULT_TOML);
    assert_eq!(
        std::fs::metadata(env.path("mediagate.toml"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o644
    );

    // Never overwritten: exit 3 and the file as it was.
    std::fs::write(env.path("mediagate.toml"), "# mine\n").unwrap();
    let o = env.run(&["config", "init"]);
    assert_exit(&o, 3);
    assert!(stderr(&o).contains("already exists"), "{}", stderr(&o));
    assert_eq!(env.read("mediagate.toml"), "# mine\n");

    // An explicit file.
    assert_exit(&env.run(&["config", "init", "other.toml"]), 0);
    let o = env.run(&["config", "check", "other.toml"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.starts_with("other.toml: valid\n"), "{out}");
    assert!(
        out.contains("listeners:    udp 127.0.0.1:5060, tcp 127.0.0.1:5060, tls 127.0.0.1:5061"),
        "{out}"
    );
    assert!(
        out.contains("dial plan demo-secured: Secured, 1 peer, 1 route"),
        "{out}"
    );
    assert!(out.contains("certificates: data/certs"), "{out}");
}

#[test]
fn show_default_prints_the_embedded_file() {
    let env = Env::new();
    let o = env.run(&["config", "show-default"]);
    assert_exit(&o, 0);
    assert_eq!(stdout(&o), Config::DEFAULT_TOML);
}

#[test]
fn check_reports_file_key_and_problem() {
    let env = Env::new();
    std::fs::write(
        env.path("bad.toml"),
        "[listen]\ntcp = \"127.0.0.1:5060\"\n[media]\nport_min = 30001\n",
    )
    .unwrap();
    let o = env.run(&["config", "check", "bad.toml"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("bad.toml: media.port_min: 30001 is odd"),
        "{}",
        stderr(&o)
    );
    // Through --config and through MEDIAGATE_CONFIG too.
    assert_exit(&env.run(&["--config", "bad.toml", "config", "check"]), 2);
    let o = env
        .command(&["config", "check"])
        .env("MEDIAGATE_CONFIG", "bad.toml")
        .output()
        .unwrap();
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("bad.toml: media.port_min"),
        "{}",
        stderr(&o)
    );

    std::fs::write(env.path("syntax.toml"), "[listen\n").unwrap();
    let o = env.run(&["config", "check", "syntax.toml"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("syntax.toml: line 1, column "),
        "{}",
        stderr(&o)
    );

    // A missing file is the environment, with a hint.
    let o = env.run(&["config", "check"]);
    assert_exit(&o, 3);
    assert!(
        stderr(&o).contains("./mediagate.toml: cannot read"),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("mediagate config init"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn dialplan_list_show_and_set() {
    let env = Env::new();
    env.init();
    let o = env.run(&["dialplan", "list"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "NAME             MODE        PEERS      ROUTES\n\
         demo-unsecured   Unsecured   local      * -> echo\n\
         demo-secured     Secured     localhost  * -> echo\n\
         demo-sipsecured  SIPSecured  -          * -> echo\n"
    );

    let o = env.run(&["dialplan", "show", "demo-secured"]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("VoIP security: Secured (SIP over mutual TLS, SRTP"),
        "{out}"
    );
    assert!(out.contains("localhost  localhost:5061  tls"), "{out}");
    assert!(out.contains("* -> echo"), "{out}");
    let o = env.run(&["dialplan", "show", "nope"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("dial_plan[nope]: no such dial plan"),
        "{}",
        stderr(&o)
    );

    let before = env.read("mediagate.toml");
    let o = env.run(&[
        "dialplan",
        "set",
        "demo-secured",
        "--voip-security",
        "sipsecured",
    ]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(out.contains("VoIP security Secured -> SIPSecured"), "{out}");
    assert!(out.contains("picks the change up on its own"), "{out}");
    let after = env.read("mediagate.toml");
    assert_eq!(
        after,
        before.replacen(
            "name = \"demo-secured\"\nvoip_security = \"Secured\"",
            "name = \"demo-secured\"\nvoip_security = \"SIPSecured\"",
            1
        ),
        "only that value changed; every comment is kept"
    );
    let o = env.run(&[
        "dialplan",
        "set",
        "demo-secured",
        "--voip-security",
        "SIPSecured",
    ]);
    assert_exit(&o, 0);
    assert!(stdout(&o).contains("SIPSecured already"), "{}", stdout(&o));

    // Refused: "local" is an IP-addressed TCP peer, not allowed in Secured (R-PEER-3).
    let o = env.run(&[
        "dialplan",
        "set",
        "demo-unsecured",
        "--voip-security",
        "Secured",
    ]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("mediagate.toml: peer[local].address: "),
        "{}",
        stderr(&o)
    );
    assert!(
        stderr(&o).contains("the file is unchanged"),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.read("mediagate.toml"), after);

    // A bad mode is a usage error.
    let o = env.run(&["dialplan", "set", "demo-secured", "--voip-security", "SRTP"]);
    assert_exit(&o, 1);
    assert!(
        stderr(&o).contains("Unsecured, SIPSecured or Secured"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn peer_list_add_remove() {
    let env = Env::new();
    env.init();
    let original = env.read("mediagate.toml");

    let o = env.run(&[
        "peer",
        "add",
        "pbx",
        "--address",
        "pbx.example.com",
        "--port",
        "5061",
        "--dial-plan",
        "demo-sipsecured",
    ]);
    assert_exit(&o, 0);
    let out = stdout(&o);
    assert!(
        out.contains("Added peer \"pbx\" (pbx.example.com:5061 over tls) to dial plan \"demo-sipsecured\" (SIPSecured)"),
        "{out}"
    );
    assert!(out.contains("No route targets it yet"), "{out}");
    assert!(out.contains("picks the change up on its own"), "{out}");
    let o = env.run(&[
        "peer",
        "add",
        "gw",
        "--address",
        "192.0.2.7",
        "--port",
        "5060",
        "--dial-plan",
        "demo-unsecured",
        "--transport",
        "udp",
    ]);
    assert_exit(&o, 0);

    let o = env.run(&["peer", "list"]);
    assert_exit(&o, 0);
    assert_eq!(
        stdout(&o),
        "NAME       ADDRESS          PORT  TRANSPORT  DIAL PLAN        MODE\n\
         local      127.0.0.1        5060  tcp        demo-unsecured   Unsecured\n\
         gw         192.0.2.7        5060  udp        demo-unsecured   Unsecured\n\
         localhost  localhost        5061  tls        demo-secured     Secured\n\
         pbx        pbx.example.com  5061  tls        demo-sipsecured  SIPSecured\n"
    );
    assert_exit(&env.run(&["config", "check"]), 0);

    // Refusals: exit 2, file unchanged.
    let now = env.read("mediagate.toml");
    for (args, message) in [
        (
            vec![
                "peer",
                "add",
                "pbx",
                "--address",
                "b.example.com",
                "--port",
                "5061",
                "--dial-plan",
                "demo-secured",
            ],
            "peer[pbx]: a peer with this name exists already",
        ),
        (
            vec![
                "peer",
                "add",
                "x",
                "--address",
                "192.0.2.9",
                "--port",
                "5061",
                "--dial-plan",
                "demo-secured",
            ],
            "peer[x].address: peer \"x\" is in Secured dial plan \"demo-secured\" and must be configured with an FQDN",
        ),
        (
            vec![
                "peer",
                "add",
                "x",
                "--address",
                "x.example.com",
                "--port",
                "5060",
                "--dial-plan",
                "demo-secured",
            ],
            "peer[x].port: ",
        ),
        (
            vec![
                "peer",
                "add",
                "x",
                "--address",
                "x.example.com",
                "--port",
                "5061",
                "--dial-plan",
                "nope",
            ],
            "peer[x].dial_plan: ",
        ),
        (
            vec![
                "peer",
                "add",
                "echo",
                "--address",
                "192.0.2.9",
                "--port",
                "5060",
                "--dial-plan",
                "demo-unsecured",
            ],
            "peer[echo].name: \"echo\" is reserved",
        ),
        (vec!["peer", "remove", "nope"], "peer[nope]: no such peer"),
    ] {
        let o = env.run(&args);
        assert_exit(&o, 2);
        assert!(stderr(&o).contains(message), "{args:?}: {}", stderr(&o));
        assert_eq!(env.read("mediagate.toml"), now, "{args:?}");
    }

    // A route to a peer keeps it from being removed.
    std::fs::write(
        env.path("mediagate.toml"),
        now.replacen(
            "routes = [{ prefix = \"\", target = \"echo\" }]",
            "routes = [{ prefix = \"\", target = \"echo\" }, { prefix = \"9\", target = \"gw\" }]",
            1,
        ),
    )
    .unwrap();
    let routed = env.read("mediagate.toml");
    let o = env.run(&["peer", "remove", "gw"]);
    assert_exit(&o, 2);
    assert!(
        stderr(&o).contains("dial_plan[demo-unsecured].routes[1].target: dial plan \"demo-unsecured\": route \"9\" targets unknown peer \"gw\""),
        "{}",
        stderr(&o)
    );
    assert_eq!(env.read("mediagate.toml"), routed);
    std::fs::write(env.path("mediagate.toml"), &now).unwrap();

    for name in ["gw", "pbx"] {
        let o = env.run(&["peer", "remove", name]);
        assert_exit(&o, 0);
        assert!(
            stdout(&o).contains(&format!("Removed peer \"{name}\"")),
            "{}",
            stdout(&o)
        );
    }
    assert_eq!(env.read("mediagate.toml"), original);
}

#[test]
fn commands_without_a_file_say_how_to_make_one() {
    let env = Env::new();
    for args in [
        vec!["dialplan", "list"],
        vec!["peer", "list"],
        vec!["dialplan", "set", "a", "--voip-security", "Secured"],
        vec!["peer", "remove", "a"],
    ] {
        let o = env.run(&args);
        assert_exit(&o, 3);
        assert!(
            stderr(&o).contains("mediagate config init"),
            "{args:?}: {}",
            stderr(&o)
        );
    }
    assert!(!Path::new(&env.path("mediagate.toml")).exists());
}
