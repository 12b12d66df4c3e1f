//! No input makes the parser panic: arbitrary text, and valid files mutated at random (bytes
//! cut, fragments of TOML and odd values spliced in, lines dropped). Whatever parses is fully
//! usable (policy, paths, listeners).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

use mediagate_config::Config;
use proptest::prelude::*;

const EXAMPLES: &[&str] = &[
    Config::DEFAULT_TOML,
    include_str!("../../../testdata/configs/enterprise.toml"),
    include_str!("../../../testdata/configs/lab.toml"),
    include_str!("../../../testdata/configs/minimal.toml"),
];

const FRAGMENTS: &[&str] = &[
    "\n",
    "=",
    "[",
    "]",
    "[[",
    "]]",
    "\"",
    "'",
    "{",
    "}",
    ",",
    ".",
    "#",
    "\\",
    "\"\"\"",
    "[[peer]]\n",
    "[[dial_plan]]\n",
    "[hosts]\n",
    "[listen]\n",
    "[media]\n",
    "[tls]\n",
    "name = \"echo\"\n",
    "name = \"\"\n",
    "port = 0\n",
    "port = 5061\n",
    "port = 65536\n",
    "port = -1\n",
    "port = 1e3\n",
    "address = \"0.0.0.0\"\n",
    "address = \"::\"\n",
    "address = \"a..b\"\n",
    "transport = \"tls\"\n",
    "transport = \"udp\"\n",
    "voip_security = \"Secured\"\n",
    "voip_security = \"sipsecured\"\n",
    "dial_plan = \"demo-secured\"\n",
    "routes = [{ prefix = \"\", target = \"x\" }]\n",
    "tls = \"0.0.0.0:5061\"\n",
    "udp = \"[::]:0\"\n",
    "advertise = \"::\"\n",
    "port_min = 65534\n",
    "port_max = 65535\n",
    "tls_peer_ports = []\n",
    "max_connections = 18446744073709551615\n",
    "workers = 9223372036854775807\n",
    "\"\u{e9}\u{1f600}\" = \"127.0.0.1\"\n",
    "x = 1979-05-27T07:32:00Z\n",
    "\u{0}",
    "\r\n",
    "a.b.c = 1\n",
    "gateway.fqdn = \"x\"\n",
    "peer = []\n",
    "peer = 5\n",
    "dial_plan = {}\n",
];

/// Parses and, when valid, uses everything a caller would.
fn exercise(text: &str) {
    if let Ok(c) = Config::parse(text, Path::new("/etc/mediagate/mediagate.toml")) {
        let policy = c.policy();
        assert_eq!(policy.peers().len(), c.peers.len());
        assert_eq!(policy.dial_plans().len(), c.dial_plans.len());
        let _ = (c.cert_dir(), c.trust_dir(), c.listen.advertised());
        for p in &c.peers {
            assert!(c.dial_plan(&p.dial_plan).is_some());
            let _ = c.peer_transport(p);
        }
        assert!(c.media.port_min < c.media.port_max);
        assert!(!c.media.address.is_unspecified());
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Cut(usize, usize),
    Insert(usize, usize),
    Byte(usize, u8),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0usize..40).prop_map(|(at, n)| Mutation::Cut(at, n)),
        (any::<usize>(), 0..FRAGMENTS.len()).prop_map(|(at, f)| Mutation::Insert(at, f)),
        (any::<usize>(), any::<u8>()).prop_map(|(at, b)| Mutation::Byte(at, b)),
    ]
}

fn apply(text: &str, mutations: &[Mutation]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for m in mutations {
        let len = bytes.len().max(1);
        match *m {
            Mutation::Cut(at, n) => {
                let at = at % len;
                let end = (at + n).min(bytes.len());
                if at < end {
                    bytes.drain(at..end);
                }
            }
            Mutation::Insert(at, f) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, FRAGMENTS[f].bytes());
            }
            Mutation::Byte(at, b) => {
                if !bytes.is_empty() {
                    let at = at % bytes.len();
                    bytes[at] = b;
                }
            }
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,400}") {
        exercise(&text);
    }

    #[test]
    fn mutated_examples_never_panic(
        example in 0..EXAMPLES.len(),
        mutations in proptest::collection::vec(mutation(), 1..6),
    ) {
        exercise(&apply(EXAMPLES[example], &mutations));
    }
}

#[test]
fn every_line_dropped_or_doubled() {
    for example in EXAMPLES {
        let lines: Vec<&str> = example.lines().collect();
        for i in 0..lines.len() {
            let mut dropped = lines.clone();
            dropped.remove(i);
            exercise(&dropped.join("\n"));
            let mut doubled = lines.clone();
            doubled.insert(i, lines[i]);
            exercise(&doubled.join("\n"));
        }
    }
}

#[test]
fn every_fragment_at_every_line_start() {
    for example in EXAMPLES {
        let starts: Vec<usize> = std::iter::once(0)
            .chain(example.match_indices('\n').map(|(i, _)| i + 1))
            .collect();
        for at in starts {
            for f in FRAGMENTS {
                let mut text = String::from(*example);
                text.insert_str(at, f);
                exercise(&text);
            }
        }
    }
}
