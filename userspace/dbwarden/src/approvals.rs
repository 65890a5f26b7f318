//! Starting the approval machinery with the daemon: the broker (with its journal), the control
//! socket, the optional HTTP API and webhooks. Requests left pending by a previous daemon are
//! reported as denied ("daemon restarted").

use anyhow::{Context, Result};
use dbwarden_approvals::{
    bind_control, bind_http, load_or_create_token, serve_control, serve_http, ApprovalRules,
    Broker, BrokerConfig, CgroupResolver, ControlAuth, WebhookConfig, WebhookFormat, WebhookTarget,
    Webhooks,
};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Settings;

/// Who may approve: nobody inside a controlled cgroup (paths relative to the cgroup2 mount,
/// as `/proc/<pid>/cgroup` shows them), and nobody with the requesting session's uid unless
/// `[approvals] allow_self_approval = true`.
fn approver_rules(settings: &Settings) -> ApprovalRules {
    let controlled_cgroups = settings
        .cgroups
        .iter()
        .map(|c| {
            let parts: Vec<String> = std::path::Path::new(&c.name)
                .components()
                .map(|p| p.as_os_str().to_string_lossy().into_owned())
                .collect();
            format!("/{}", parts.join("/"))
        })
        .collect();
    ApprovalRules {
        allow_self_approval: settings.approvals.allow_self_approval,
        controlled_cgroups,
        cgroup_of: CgroupResolver::proc(),
    }
}

/// Opens the broker and starts its channels. Returns the broker (cheap to clone).
pub async fn start(
    settings: &Settings,
    shutdown: &CancellationToken,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
) -> Result<Broker> {
    std::fs::create_dir_all(&settings.runtime_dir).with_context(|| {
        format!(
            "creating runtime directory {}",
            settings.runtime_dir.display()
        )
    })?;
    let mut cfg = BrokerConfig::new(&settings.runtime_dir);
    cfg.rules = approver_rules(settings);
    info!(
        controlled_cgroups = ?cfg.rules.controlled_cgroups,
        allow_self_approval = cfg.rules.allow_self_approval,
        "approvers in controlled cgroups are refused"
    );
    let (broker, orphans) = Broker::open(cfg)
        .await
        .context("opening the approval journal")?;
    for o in orphans {
        warn!(
            approval = %o.id,
            session = o.session_id,
            rule = %o.rule,
            identity = %o.identity,
            decision = %o.decision.summary(),
            "approval request left pending by a previous daemon: denied"
        );
    }
    let auth = ControlAuth {
        group: settings.approvals.group.clone(),
        ..ControlAuth::default()
    };
    let sock = settings
        .runtime_dir
        .join(dbwarden_approvals::control::SOCKET_FILE);
    let listener =
        bind_control(&sock, &auth).with_context(|| format!("binding {}", sock.display()))?;
    let (b, sd) = (broker.clone(), shutdown.clone());
    tokio::spawn(async move {
        serve_control(b, listener, auth, async move { sd.cancelled().await }).await
    });
    if let Some(addr) = settings.approvals.http_listen {
        let listener = bind_http(addr)
            .await
            .with_context(|| format!("binding the approval API on {addr}"))?;
        let token = load_or_create_token(&settings.runtime_dir).context("approval API token")?;
        let (b, sd) = (broker.clone(), shutdown.clone());
        tokio::spawn(async move {
            if let Err(e) =
                serve_http(b, listener, token, async move { sd.cancelled().await }).await
            {
                warn!(error = %e, "approval API stopped");
            }
        });
        info!(%addr, token_file = %settings.runtime_dir.join("http.token").display(), "approval HTTP API listening");
    }
    if !settings.approvals.webhooks.is_empty() {
        let targets = settings
            .approvals
            .webhooks
            .iter()
            .map(|(url, slack)| WebhookTarget {
                url: url.clone(),
                format: if *slack {
                    WebhookFormat::Slack
                } else {
                    WebhookFormat::Generic
                },
            })
            .collect();
        let hooks = Webhooks::spawn(WebhookConfig::new(targets)).context("starting webhooks")?;
        let _task = hooks.attach(&broker);
        // The sender lives as long as the daemon.
        std::mem::forget(hooks);
    }
    // Every request and decision as a structured event (the audit log and metrics source).
    let mut events = broker.subscribe();
    tokio::spawn(async move {
        while let Ok(ev) = events.recv().await {
            let v = ev.approval();
            match &v.state {
                dbwarden_approvals::ApprovalState::Pending { expires_in_ms } => info!(
                    approval = %v.id, session = v.session_id, rule = %v.rule, expires_in_ms,
                    "approval requested"
                ),
                dbwarden_approvals::ApprovalState::Decided {
                    decision,
                    waited_ms,
                    ..
                } => {
                    use crate::metrics::Metrics;
                    use dbwarden_approvals::Decision;
                    Metrics::inc(match decision {
                        Decision::Approved { .. } => &metrics.approvals_approved_total,
                        Decision::Denied { .. } => &metrics.approvals_denied_total,
                        Decision::TimedOut { .. } => &metrics.approvals_timed_out_total,
                        Decision::Cancelled { .. } => &metrics.approvals_cancelled_total,
                    });
                    metrics
                        .approval_wait_ms_total
                        .fetch_add(*waited_ms, std::sync::atomic::Ordering::Relaxed);
                    info!(
                        approval = %v.id, session = v.session_id, rule = %v.rule, waited_ms,
                        outcome = decision.outcome(), approver = decision.approver().unwrap_or(""),
                        "approval decided"
                    )
                }
            }
        }
    });
    Ok(broker)
}
