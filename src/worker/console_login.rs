//! The console's login threads: each takes a [`LoginJob`] from the bounded queue the
//! reactors fill, checks the password (argon2id: tens of milliseconds, so never on a
//! reactor or a worker thread) and sends the verdict to the connection's reactor,
//! which mints the token and answers (`reactor/web_console.rs`).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::Receiver;

use crate::console::Users;
use crate::handoff::Command;
use crate::reactor::ReactorHandle;
use crate::service::LoginJob;

/// Starts `threads` login threads on `jobs`; each ends when every sender of `jobs`
/// (the reactors) is gone.
pub(crate) fn spawn(
    threads: usize,
    users: Arc<Users>,
    jobs: Receiver<LoginJob>,
    reactors: Arc<[ReactorHandle]>,
) -> std::io::Result<Vec<JoinHandle<()>>> {
    (0..threads.max(1))
        .map(|i| {
            let (users, jobs, reactors) = (users.clone(), jobs.clone(), reactors.clone());
            std::thread::Builder::new()
                .name(format!("console-login-{i}"))
                .spawn(move || {
                    for job in jobs {
                        let cmd = check(&users, job);
                        answer(&reactors, cmd);
                    }
                })
        })
        .collect()
}

/// The verdict on one login.
fn check(users: &Users, job: LoginJob) -> Command {
    let verdict = users.check(&job.request).map(Box::new);
    if let Err(outcome) = verdict {
        // The name (no control characters: checked with the body) helps an operator
        // see a guessing run; the password never shows.
        tracing::info!(
            user = %job.request.username,
            outcome = outcome.label(),
            "console login refused"
        );
    } else {
        tracing::info!(user = %job.request.username, "console login");
    }
    Command::ConsoleLogin {
        conn: job.conn,
        verdict,
    }
}

fn answer(reactors: &[ReactorHandle], cmd: Command) {
    let Some(conn) = cmd.conn() else {
        return;
    };
    if let Some(r) = reactors.get(usize::from(conn.reactor))
        && r.send(cmd)
    {
        r.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ConsoleConfig, ConsoleUser};
    use crate::console::password::{SALT_BYTES, cheap_params, hash};
    use crate::console::{LoginRequest, Outcome};
    use crate::handoff::ConnId;

    #[test]
    fn a_login_is_checked_on_the_thread_and_answered_to_its_reactor() {
        let phc = hash(b"pw", &[1; SALT_BYTES], cheap_params()).unwrap();
        let config = ConsoleConfig {
            users: vec![ConsoleUser {
                name: "ann".into(),
                password_hash: phc,
                role: "agent".into(),
                groups: vec![],
                display_name: None,
                max_concurrent: None,
                tenant: String::new(),
            }],
            ..ConsoleConfig::default()
        };
        let users = Arc::new(Users::from_config(&config, &[2; SALT_BYTES]));
        let (cmd_tx, cmd_rx) = crate::queue::bounded(1024);
        let (handle, _poll) = ReactorHandle::for_test(cmd_tx).unwrap();
        let (tx, rx) = crossbeam_channel::bounded(4);
        let threads = spawn(1, users, rx, vec![handle].into()).unwrap();
        let conn = ConnId {
            reactor: 0,
            slot: 3,
            generation: 7,
        };
        for pw in ["pw", "nope"] {
            let request = LoginRequest::parse(
                format!(r#"{{"username":"ann","password":"{pw}"}}"#).as_bytes(),
            )
            .unwrap();
            tx.send(LoginJob { conn, request }).unwrap();
        }
        drop(tx);
        for t in threads {
            t.join().unwrap();
        }
        let got: Vec<Command> = cmd_rx.try_iter().collect();
        assert!(
            matches!(&got[0], Command::ConsoleLogin { conn: c, verdict: Ok(a) } if *c == conn && a.id == "ann")
        );
        assert!(matches!(
            &got[1],
            Command::ConsoleLogin {
                verdict: Err(Outcome::BadPassword),
                ..
            }
        ));
    }
}
