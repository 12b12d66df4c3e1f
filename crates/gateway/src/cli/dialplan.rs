//! `mediagate dialplan …`: list, show, set a dial plan's VoIP security mode (R-OPS-4, R-MODE-4).

use std::path::Path;

use clap::Subcommand;
use mediagate_config::edit::{self, DialPlanView};
use mediagate_config::{parse_voip_security, transport_name};
use mediagate_sip::{Route, Target, VoipSecurity};

use super::CliError;
use super::config_cmd::{PICKED_UP, config_error, table};

#[derive(Debug, Subcommand)]
pub(crate) enum DialplanCommand {
    /// List the dial plans: name, VoIP security mode, peers, routes.
    List,
    /// Show one dial plan: its mode and what it means, its peers, its routes.
    Show {
        /// The dial plan's name.
        name: String,
    },
    /// Set a dial plan's VoIP security mode. New calls use it once the gateway has reloaded
    /// the file; calls in progress keep the mode they started with.
    Set {
        /// The dial plan's name.
        name: String,
        /// Unsecured, SIPSecured or Secured (any case).
        #[arg(long, value_name = "MODE", value_parser = parse_voip_security)]
        voip_security: VoipSecurity,
    },
}

pub(crate) fn run(cmd: DialplanCommand, config: &Path) -> Result<(), CliError> {
    match cmd {
        DialplanCommand::List => list(config),
        DialplanCommand::Show { name } => show(config, &name),
        DialplanCommand::Set {
            name,
            voip_security,
        } => set(config, &name, voip_security),
    }
}

/// `7* -> pbx`, `* -> echo`.
pub(crate) fn route(r: &Route) -> String {
    let target = match &r.target {
        Target::Echo => "echo",
        Target::Peer(p) => p.as_str(),
    };
    format!("{}* -> {target}", r.prefix)
}

fn meaning(mode: VoipSecurity) -> &'static str {
    match mode {
        VoipSecurity::Unsecured => "SIP over TCP/UDP, plain RTP",
        VoipSecurity::SipSecured => "SIP over mutual TLS, plain RTP",
        VoipSecurity::Secured => "SIP over mutual TLS, SRTP media with SDES keys",
    }
}

fn list(config: &Path) -> Result<(), CliError> {
    let plans = edit::list_dial_plans(config).map_err(config_error)?;
    if plans.is_empty() {
        println!("No dial plans in {}.", config.display());
        return Ok(());
    }
    let mut rows = vec![vec![
        "NAME".to_owned(),
        "MODE".to_owned(),
        "PEERS".to_owned(),
        "ROUTES".to_owned(),
    ]];
    for DialPlanView { plan, peers } in &plans {
        let peers: Vec<&str> = peers.iter().map(|p| p.name.as_str()).collect();
        let routes: Vec<String> = plan.routes.iter().map(route).collect();
        rows.push(vec![
            plan.name.clone(),
            plan.voip_security.to_string(),
            if peers.is_empty() {
                "-".to_owned()
            } else {
                peers.join(", ")
            },
            if routes.is_empty() {
                "-".to_owned()
            } else {
                routes.join(", ")
            },
        ]);
    }
    print!("{}", table(&rows));
    Ok(())
}

fn show(config: &Path, name: &str) -> Result<(), CliError> {
    let DialPlanView { plan, peers } = edit::show_dial_plan(config, name).map_err(config_error)?;
    println!("Dial plan {}", plan.name);
    println!(
        "  VoIP security: {} ({})",
        plan.voip_security,
        meaning(plan.voip_security)
    );
    if peers.is_empty() {
        println!("  Peers: none");
    } else {
        println!("  Peers:");
        for p in &peers {
            println!(
                "    {}  {}:{}  {}",
                p.name,
                p.address,
                p.port,
                transport_name(p.transport_in(plan.voip_security))
            );
        }
    }
    if plan.routes.is_empty() {
        println!("  Routes: none (calls from its peers get 404)");
    } else {
        println!("  Routes (longest prefix wins):");
        for r in &plan.routes {
            println!("    {}", route(r));
        }
    }
    Ok(())
}

fn set(config: &Path, name: &str, mode: VoipSecurity) -> Result<(), CliError> {
    let before = edit::set_voip_security(config, name, mode).map_err(config_error)?;
    if before == mode {
        println!(
            "Dial plan {name:?} is {mode} already; {} is unchanged.",
            config.display()
        );
    } else {
        println!(
            "Dial plan {name:?}: VoIP security {before} -> {mode} ({}) in {}.\nNew calls use it; \
             calls in progress keep the mode they started with. {PICKED_UP}",
            meaning(mode),
            config.display()
        );
    }
    Ok(())
}
