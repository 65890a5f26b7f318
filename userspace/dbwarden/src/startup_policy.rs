//! The startup packet judged before it reaches the server: every run-time setting it carries
//! (outside what drivers normally send) is the `SET` it is equivalent to and gets the policy's
//! verdict; server switches in `options` and invalid names are refused. A setting the policy
//! would hold for approval is refused too: a connection cannot wait at startup for a human
//! (the agent can connect and run the SET, which is then held like any statement).

use std::sync::Arc;

use dbwarden_policy::Action;

use crate::pipeline::{Pipeline, SessionInfo};

/// Why a startup packet is refused.
#[derive(Debug)]
pub struct StartupRefusal {
    /// For the client (FATAL 42501) and the log; names the parameter and the rule.
    pub message: String,
    /// The statement judged and the verdict, when the policy refused one.
    pub judged: Option<(String, Arc<dbwarden_policy::Verdict>)>,
}

/// Judges the startup `params` of a PostgreSQL session.
///
/// # Errors
/// The first setting or option refused.
pub fn judge_startup(
    pipeline: &Pipeline,
    params: &[(String, String)],
    session: &SessionInfo,
) -> Result<(), StartupRefusal> {
    let request = dbwarden_wire_pg::startup_options::parse_startup(params);
    let sets =
        dbwarden_policy::startup::startup_statements(&request.settings, &request.other_options)
            .map_err(|message| StartupRefusal {
                message,
                judged: None,
            })?;
    if sets.is_empty() {
        return Ok(());
    }
    let target = Pipeline::pg_target(session);
    for set in sets {
        let verdict = pipeline.engine.decide(
            &set.sql,
            dbwarden_policy::Dialect::Postgres,
            &session.policy_ident,
            &target,
        );
        let verdict = Arc::new(verdict);
        let refused = match verdict.action {
            Action::Allow => None,
            Action::Deny => Some(verdict.message.clone()),
            Action::RequireApproval { .. } => Some(format!(
                "{} (approval required; a startup parameter cannot wait for one: connect, then run the SET)",
                verdict.message
            )),
        };
        Pipeline::log_verdict(&verdict, session);
        if let Some(why) = refused {
            return Err(StartupRefusal {
                message: format!(
                    "dbwarden: startup parameter \"{}\" refused: {why}",
                    set.name
                ),
                judged: Some((set.sql, verdict)),
            });
        }
    }
    Ok(())
}
