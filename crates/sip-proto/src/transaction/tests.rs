//! Snapshot tests of the full transition tables and dot graphs (s2n style, inline snapshots).

use super::*;

fn table(rows: Vec<(&str, &str, &str)>) -> String {
    rows.iter()
        .map(|(e, f, t)| format!("{e}: {f} -> {t}\n"))
        .collect()
}

#[test]
fn invite_client_table() {
    assert_eq!(
        table(InviteClientState::transitions()),
        "on_provisional: Calling -> Proceeding\n\
         on_provisional: Proceeding -> Proceeding\n\
         on_2xx: Calling -> Terminated\n\
         on_2xx: Proceeding -> Terminated\n\
         on_final_error: Calling -> Completed\n\
         on_final_error: Proceeding -> Completed\n\
         on_timer_b: Calling -> Terminated\n\
         on_timer_d: Completed -> Terminated\n\
         on_transport_error: Calling -> Terminated\n\
         on_transport_error: Proceeding -> Terminated\n\
         on_transport_error: Completed -> Terminated\n"
    );
}

#[test]
fn non_invite_client_table() {
    assert_eq!(
        table(NonInviteClientState::transitions()),
        "on_provisional: Trying -> Proceeding\n\
         on_provisional: Proceeding -> Proceeding\n\
         on_final: Trying -> Completed\n\
         on_final: Proceeding -> Completed\n\
         on_timer_f: Trying -> Terminated\n\
         on_timer_f: Proceeding -> Terminated\n\
         on_timer_k: Completed -> Terminated\n\
         on_transport_error: Trying -> Terminated\n\
         on_transport_error: Proceeding -> Terminated\n"
    );
}

#[test]
fn invite_server_table_and_dot() {
    assert_eq!(
        table(InviteServerState::transitions()),
        "on_send_provisional: Proceeding -> Proceeding\n\
         on_send_2xx: Proceeding -> Terminated\n\
         on_send_final_error: Proceeding -> Completed\n\
         on_ack: Completed -> Confirmed\n\
         on_timer_h: Completed -> Terminated\n\
         on_timer_i: Confirmed -> Terminated\n\
         on_transport_error: Proceeding -> Terminated\n\
         on_transport_error: Completed -> Terminated\n"
    );
    let dot = InviteServerState::dot();
    assert!(dot.starts_with("digraph InviteServerState {\n"));
    assert!(dot.contains("  Completed -> Confirmed [label=\"on_ack\"];\n"));
}

#[test]
fn non_invite_server_table() {
    assert_eq!(
        table(NonInviteServerState::transitions()),
        "on_send_provisional: Trying -> Proceeding\n\
         on_send_provisional: Proceeding -> Proceeding\n\
         on_send_final: Trying -> Completed\n\
         on_send_final: Proceeding -> Completed\n\
         on_timer_j: Completed -> Terminated\n\
         on_transport_error: Trying -> Terminated\n\
         on_transport_error: Proceeding -> Terminated\n\
         on_transport_error: Completed -> Terminated\n"
    );
}

#[test]
fn invalid_transition_is_refused_and_state_kept() {
    let mut s = InviteClientState::Completed;
    assert_eq!(
        s.on_2xx(),
        Err(InvalidTransition {
            from: "Completed",
            event: "on_2xx"
        })
    );
    assert_eq!(s, InviteClientState::Completed);
}

#[test]
fn timer_table_pops_earliest_expired() {
    #[allow(clippy::disallowed_methods)] // test epoch only
    let now = std::time::Instant::now();
    let mut t = TimerTable::default();
    t.set(Timer::B, now + std::time::Duration::from_secs(32));
    t.set(Timer::A, now + std::time::Duration::from_millis(500));
    assert_eq!(t.next_timeout(), t.get(Timer::A));
    assert_eq!(t.pop_expired(now), None);
    assert_eq!(
        t.pop_expired(now + std::time::Duration::from_secs(40)),
        Some(Timer::A)
    );
    assert_eq!(
        t.pop_expired(now + std::time::Duration::from_secs(40)),
        Some(Timer::B)
    );
    assert_eq!(t.next_timeout(), None);
}
