//! `mediagate peer …`: list, add, remove peers (IP gateways, IP PBXs) (R-OPS-4, R-PEER-1).

use std::path::Path;

use clap::Subcommand;
use mediagate_config::{
    PeerConfig, edit, parse_media_latching, parse_media_source, parse_transport, transport_name,
};
use mediagate_sip::{MediaLatching, MediaSource, PeerAddress, Target};
use mediagate_sip_proto::TransportKind;

use super::CliError;
use super::config_cmd::{PICKED_UP, config_error, load, table};

#[derive(Debug, Subcommand)]
pub(crate) enum PeerCommand {
    /// List the peers: name, address, port, transport, dial plan and its mode.
    List,
    /// Add a peer to a dial plan. Secured and SIPSecured peers need an FQDN (the name their
    /// certificate carries) and port 5061 (R-PEER-3).
    Add {
        /// A new, unique name.
        name: String,
        /// FQDN, or IP address (Unsecured dial plans only).
        #[arg(long, value_name = "FQDN|IP")]
        address: String,
        /// Its SIP port: 5061 for TLS, usually 5060 otherwise.
        #[arg(long, value_name = "PORT")]
        port: u16,
        /// The dial plan it belongs to.
        #[arg(long, value_name = "NAME")]
        dial_plan: String,
        /// tls, tcp or udp (default: tls in SIPSecured/Secured plans, tcp in Unsecured ones;
        /// left out of the file, so it follows the plan's mode).
        #[arg(long, value_name = "TRANSPORT", value_parser = parse_transport)]
        transport: Option<TransportKind>,
        /// Where its plain RTP may come from before the relay latches: sdp (only the address
        /// in its SDP, the default) or peer-address (also its own signaling address: a peer
        /// behind NAT).
        #[arg(long, value_name = "SOURCE", value_parser = parse_media_source)]
        media_source: Option<MediaSource>,
        /// strict (stay with the first source, the default) or follow (move with a NAT
        /// binding, within --media-source).
        #[arg(long, value_name = "LATCHING", value_parser = parse_media_latching)]
        media_latching: Option<MediaLatching>,
    },
    /// Remove a peer (refused while a route targets it).
    Remove {
        /// The peer's name.
        name: String,
    },
}

pub(crate) fn run(cmd: PeerCommand, config: &Path) -> Result<(), CliError> {
    match cmd {
        PeerCommand::List => list(config),
        PeerCommand::Add {
            name,
            address,
            port,
            dial_plan,
            transport,
            media_source,
            media_latching,
        } => add(
            config,
            PeerConfig {
                name,
                address: PeerAddress::parse(&address),
                port,
                transport,
                dial_plan,
                media_source: media_source.unwrap_or_default(),
                media_latching: media_latching.unwrap_or_default(),
            },
        ),
        PeerCommand::Remove { name } => remove(config, &name),
    }
}

fn list(config: &Path) -> Result<(), CliError> {
    let c = load(config)?;
    if c.peers.is_empty() {
        println!("No peers in {}.", config.display());
        return Ok(());
    }
    let mut rows = vec![
        ["NAME", "ADDRESS", "PORT", "TRANSPORT", "DIAL PLAN", "MODE"]
            .map(str::to_owned)
            .to_vec(),
    ];
    for p in &c.peers {
        let mode = c
            .dial_plan(&p.dial_plan)
            .map(|d| d.voip_security.to_string())
            .unwrap_or_default();
        rows.push(vec![
            p.name.clone(),
            p.address.to_string(),
            p.port.to_string(),
            transport_name(c.peer_transport(p)).to_owned(),
            p.dial_plan.clone(),
            mode,
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

fn add(config: &Path, peer: PeerConfig) -> Result<(), CliError> {
    let name = peer.name.clone();
    edit::add_peer(config, peer).map_err(config_error)?;
    let c = load(config)?;
    let Some(p) = c.peer(&name) else {
        return Err(CliError::Environment(format!(
            "{}: peer {name:?} was written but is not there any more (changed meanwhile?)",
            config.display()
        )));
    };
    let mode = c
        .dial_plan(&p.dial_plan)
        .map(|d| d.voip_security)
        .unwrap_or_default();
    let transport = c.peer_transport(p);
    println!(
        "Added peer {name:?} ({}:{} over {}) to dial plan {:?} ({mode}) in {}.",
        p.address,
        p.port,
        transport_name(transport),
        p.dial_plan,
        config.display()
    );
    if transport == TransportKind::Tls {
        println!(
            "Over mutual TLS it must present a certificate naming {} that chains to a root in \
             the trust store (`mediagate trust import`), and trust ours (`mediagate cert \
             export`).",
            p.address
        );
    }
    let routed = c.dial_plans.iter().any(|d| {
        d.routes
            .iter()
            .any(|r| matches!(&r.target, Target::Peer(t) if *t == name))
    });
    if !routed {
        println!(
            "No route targets it yet: its calls are accepted, but to send calls to it add a \
             route such as {{ prefix = \"...\", target = \"{name}\" }} to a dial plan."
        );
    }
    println!("{PICKED_UP}");
    Ok(())
}

fn remove(config: &Path, name: &str) -> Result<(), CliError> {
    let p = edit::remove_peer(config, name).map_err(config_error)?;
    println!(
        "Removed peer {name:?} ({}:{}, dial plan {:?}) from {}.\nIts calls in progress continue; \
         new requests from it are refused (403). {PICKED_UP}",
        p.address,
        p.port,
        p.dial_plan,
        config.display()
    );
    Ok(())
}
