//! The daemon's life: raise the open file limit, open the store, start the
//! routes and the dispatcher, serve the API, and on SIGTERM/SIGINT stop in
//! order — stop accepting, let in-flight hand-overs finish (bounded), close
//! the store cleanly. While it runs, it prunes the store on the configured
//! retention and delivers webhooks (started after the routes, stopped after
//! them, so their last events are fanned out before the store closes).

use crate::api::{self, AppState, Limits, auth::Keys};
use crate::channel::spec::{self, Loaded};
use crate::dispatch::Dispatcher;
use crate::store::{Retention, Store};
use crate::webhook::Deliverer;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::net::TcpListener;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct StartError(pub String);

/// Run until a stop signal. `on_listen` hears the bound address (useful with
/// port 0).
pub async fn run(
    loaded: Loaded,
    config_path: Option<PathBuf>,
    on_listen: impl FnOnce(std::net::SocketAddr),
) -> Result<(), StartError> {
    let cfg = &loaded.config;
    crate::metrics::install();
    match raise_open_files() {
        Ok(n) => tracing::debug!(open_files = n, "open file limit"),
        Err(e) => tracing::warn!(error = %e, "cannot raise the open file limit; keeping the one given"),
    }
    let store = Store::open(&cfg.store.path).map_err(|e| StartError(format!("cannot open the message store: {e}")))?;
    let listener = TcpListener::bind(loaded.listen)
        .await
        .map_err(|e| StartError(format!("cannot listen on {}: {e}", loaded.listen)))?;
    let addr = listener.local_addr().map_err(|e| StartError(format!("cannot read the bound address: {e}")))?;
    let replies = crate::dispatch::reply_rules(cfg);
    let dispatcher = Dispatcher::start(store.clone(), cfg.dispatch.clone(), cfg.policy, &cfg.routes, replies)
        .await
        .map_err(|e| StartError(format!("cannot start routes: {e}")))?;
    apply_rules(&store, &dispatcher, &cfg.rules)
        .await
        .map_err(|e| StartError(format!("cannot load the trigger rules: {e}")))?;
    let deliverer = Deliverer::start(store.clone(), &cfg.webhooks, &loaded.keys)
        .await
        .map_err(|e| StartError(format!("cannot start webhook delivery: {e}")))?;
    let smpp_server = crate::smpp_server::SmppServer::start(
        &cfg.smpp_server,
        store.clone(),
        dispatcher.clone(),
        &cfg.numbers.default_region,
        cfg.dispatch.default_validity_secs,
        cfg.server.max_segments,
    )
    .await
    .map_err(|e| StartError(e.to_string()))?;
    let state = Arc::new(AppState {
        store: store.clone(),
        dispatcher: dispatcher.clone(),
        limits: RwLock::new(Arc::new(Limits::from_config(cfg))),
        keys: RwLock::new(Keys::new(&loaded.keys, None)),
        webhooks: RwLock::new(Arc::new(cfg.webhooks.clone())),
        config_file: config_path.clone(),
        smpp: smpp_server.as_ref().map(|s| s.view()),
    });
    for n in &loaded.notes {
        tracing::warn!(note = %n, "config");
    }
    let app = api::router(state.clone());
    tracing::info!(
        listen = %addr,
        store = %cfg.store.path.display(),
        routes = cfg.routes.len(),
        "smsgw is ready"
    );
    on_listen(addr);
    crate::notify::ready(&summary(&store, &dispatcher).await);
    let supervisor = tokio::spawn(supervise(store.clone(), dispatcher.clone()));
    let every = Duration::from_secs(u64::from(cfg.store.prune_every_minutes) * 60);
    let pruner = tokio::spawn(prune_periodically(store.clone(), Retention::from_config(&cfg.store), every));
    let reloader = tokio::spawn(reload_on_hangup(config_path, loaded.clone(), state, deliverer.clone()));
    api::serve::serve(listener, app, api::serve::ServeLimits::from_config(&cfg.server), stop_signal()).await;
    crate::notify::stopping();
    supervisor.abort();
    pruner.abort();
    reloader.abort();
    tracing::info!("stopping: no new requests; finishing in-flight work");
    if let Some(s) = &smpp_server {
        s.shutdown().await;
    }
    dispatcher.shutdown().await;
    deliverer.shutdown().await;
    store.close().await;
    tracing::info!("stopped cleanly");
    Ok(())
}

/// The one-line status systemd shows: queue depth and routes up.
async fn summary(store: &Store, d: &Dispatcher) -> String {
    let queued = store.queued_total().await.map(|n| n.to_string()).unwrap_or_else(|_| "?".into());
    let routes = d.snapshot();
    let up = routes.iter().filter(|r| r.state != crate::channel::RouteState::Down).count();
    format!("{queued} queued; {up}/{} routes up", routes.len())
}

/// Prune at start and then every `every`. The store deletes in small
/// transactions, so the API and the routes keep their turn at the writer.
async fn prune_periodically(store: Store, retention: Retention, every: Duration) {
    loop {
        match store.prune(retention, crate::message::now_ms()).await {
            Ok(p) if p.rows() > 0 => tracing::info!(
                messages = p.messages,
                inbound = p.inbound,
                orphan_receipts = p.receipts,
                smpp_outbox = p.smpp,
                freed_bytes = p.freed_bytes,
                "pruned the store"
            ),
            Ok(_) => {}
            Err(e) => tracing::error!(error = %e, "pruning the store failed; will try again"),
        }
        tokio::time::sleep(every).await;
    }
}

/// Keep systemd informed: a status line every few seconds, and watchdog
/// pings only while the dispatcher makes progress and the store takes a
/// write, so a wedged daemon gets restarted.
async fn supervise(store: Store, d: Arc<Dispatcher>) {
    let watchdog = crate::notify::watchdog_interval();
    let every = watchdog.map_or(Duration::from_secs(5), |w| (w / 3).min(Duration::from_secs(5)));
    let stuck_after = watchdog.map_or(30_000, |w| w.as_millis() as i64);
    loop {
        tokio::time::sleep(every).await;
        crate::notify::status(&summary(&store, &d).await);
        if watchdog.is_none() {
            continue;
        }
        let healthy = match d.alive(stuck_after) {
            Err(e) => Err(e.to_string()),
            Ok(()) => match tokio::time::timeout(every, store.ping()).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(format!("the store does not take writes: {e}")),
                Err(_) => Err("the store did not answer a write in time".into()),
            },
        };
        match healthy {
            Ok(()) => crate::notify::watchdog(),
            Err(why) => tracing::error!(%why, "withholding the watchdog ping"),
        }
    }
}

/// `systemctl reload` (SIGHUP): read the config file again and apply it:
/// API keys, request limits, dispatch settings, policy, `[replies]`, routes' limits and
/// prefixes, routes added and removed; binds and modems of unchanged routes
/// stay up. An invalid file is refused and the running config stays. A
/// changed `[smpp_server]` is named in a warning: it applies at a restart.
async fn reload_on_hangup(path: Option<PathBuf>, mut current: Loaded, state: Arc<AppState>, hooks: Arc<Deliverer>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; reloading is off");
        return;
    };
    while hup.recv().await.is_some() {
        let Some(path) = &path else {
            tracing::warn!("SIGHUP: the built-in demo config has no file to reload");
            continue;
        };
        crate::notify::reloading();
        match spec::load_file(path) {
            Err(e) => {
                for p in &e.problems {
                    tracing::error!(problem = %p, "config reload refused; the running config stays in force");
                }
            }
            Ok(new) => {
                if new.listen != current.listen || new.config.store != current.config.store {
                    tracing::warn!("server.listen and the [store] keys change only at a restart");
                }
                if new.config.server.max_body_bytes != current.config.server.max_body_bytes {
                    tracing::warn!("server.max_body_bytes changes only at a restart");
                }
                if new.config.smpp_server != current.config.smpp_server {
                    tracing::warn!(
                        "[smpp_server] changed: its listen address and accounts (credentials, limits, policy, inbound routing) change only at a restart"
                    );
                }
                if api::serve::ServeLimits::from_config(&new.config.server)
                    != api::serve::ServeLimits::from_config(&current.config.server)
                {
                    tracing::warn!("server timeouts and max_connections change only at a restart");
                }
                match state.dispatcher.reload(new.config.dispatch.clone(), &new.config.routes).await {
                    Err(e) => tracing::error!(error = %e, "config reload refused; the running config stays in force"),
                    Ok(changes) => {
                        state.dispatcher.set_replies(crate::dispatch::reply_rules(&new.config));
                        if let Ok(mut k) = state.keys.write() {
                            let fresh = Keys::new(&new.keys, Some(&k));
                            *k = fresh;
                        }
                        for n in &new.notes {
                            tracing::warn!(note = %n, "config");
                        }
                        if let Ok(mut l) = state.limits.write() {
                            *l = Arc::new(Limits::from_config(&new.config));
                        }
                        if new.config.policy != current.config.policy {
                            state.dispatcher.set_policy(new.config.policy);
                            tracing::info!(policy = ?new.config.policy, "config reloaded: [policy] changed");
                        }
                        if let Ok(mut w) = state.webhooks.write() {
                            *w = Arc::new(new.config.webhooks.clone());
                        }
                        if let Err(e) = apply_rules(&state.store, &state.dispatcher, &new.config.rules).await {
                            tracing::error!(error = %e, "trigger rules not reloaded; the running ones stay");
                        }
                        if let Err(e) = hooks.reload(&new.config.webhooks, &new.keys).await {
                            tracing::error!(error = %e, "webhook settings not reloaded; the running ones stay");
                        }
                        for c in &changes {
                            tracing::info!(change = %c, "config reloaded");
                        }
                        tracing::info!(changes = changes.len(), file = %path.display(), "config reloaded");
                        current = new;
                    }
                }
            }
        }
        crate::notify::ready(&summary(&state.store, &state.dispatcher).await);
    }
}

/// Make the store's `config` rules match the file's, then put the store's
/// enabled rules (the file's and the API's) in force.
async fn apply_rules(
    store: &Store,
    d: &Dispatcher,
    rules: &[crate::trigger::RuleSpec],
) -> Result<usize, crate::store::StoreError> {
    let rows = rules
        .iter()
        .map(|r| crate::store::NewRule {
            name: r.name.clone(),
            spec: serde_json::to_string(r).unwrap_or_default(),
            enabled: r.enabled,
        })
        .collect();
    store.sync_rule_config(rows).await?;
    let n = d.reload_rules().await?;
    tracing::info!(rules = n, "trigger rules in force");
    Ok(n)
}

async fn stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot watch SIGTERM; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

/// Raise the soft limit on open files to the hard one: every API
/// connection, bind, modem port and the store's files are descriptors, and
/// the usual soft default (1024) is far below what the service's hard limit
/// allows. Returns the soft limit now in force.
pub fn raise_open_files() -> nix::Result<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft < hard {
        setrlimit(Resource::RLIMIT_NOFILE, hard, hard)?;
    }
    Ok(getrlimit(Resource::RLIMIT_NOFILE)?.0)
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_open_file_limit_is_raised_to_the_hard_one() {
        use nix::sys::resource::{Resource, getrlimit, setrlimit};
        let (_, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
        // Start below the hard limit, as a default service does (only just
        // below: other tests in this process keep their descriptors).
        setrlimit(Resource::RLIMIT_NOFILE, hard - 1, hard).unwrap();
        assert_eq!(super::raise_open_files().unwrap(), hard);
        assert_eq!(getrlimit(Resource::RLIMIT_NOFILE).unwrap(), (hard, hard));
    }
}
