//! The SMPP server's accounts seen from outside: `GET /v1/smpp/accounts`
//! (scope `read`) and their `/metrics` series. The server's live view comes
//! through `smpp::accounts::Accounts`, which the daemon hands over (the API
//! and the server share a layer); what the store owes each account
//! (receipts and inbound messages pending, dead) is read from the store at
//! each request.

use super::AppState;
use super::auth::Caller;
use super::problem::Problem;
use crate::config::Scope;
use crate::smpp::accounts::AccountView;
use crate::store::StoreError;
use axum::extract::State;
use axum::{Extension, Json};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct SmppAccountsOut {
    /// Every `[[smpp_server.accounts]]` entry, by system_id; empty when no
    /// SMPP server runs.
    pub accounts: Vec<AccountView>,
}

/// Every account with what the store owes it now.
pub async fn accounts(state: &AppState) -> Result<Vec<AccountView>, StoreError> {
    let Some(view) = &state.smpp else { return Ok(Vec::new()) };
    let mut accounts = view.accounts();
    let owed = state.store.smpp_outbox_counts().await?;
    for a in &mut accounts {
        let c = owed.get(&a.system_id).copied().unwrap_or_default();
        (a.receipts_owed, a.inbound_owed, a.dead) = (c.receipts_owed, c.inbound_owed, c.dead);
    }
    Ok(accounts)
}

/// The SMPP server's accounts: settings (never a password), open binds,
/// submits per second over the last minute, counters since start and what
/// is owed to each now.
#[utoipa::path(
    get, path = "/v1/smpp/accounts", tag = "smpp",
    responses(
        (status = 200, body = SmppAccountsOut),
        (status = 403, description = "The key lacks the read scope", body = Problem, content_type = "application/problem+json"),
    ),
    security(("api_key" = []))
)]
pub async fn list_accounts(
    State(state): State<Arc<AppState>>,
    Extension(caller): Extension<Arc<Caller>>,
) -> Result<Json<SmppAccountsOut>, Problem> {
    caller.require(&[Scope::Read])?;
    Ok(Json(SmppAccountsOut { accounts: accounts(&state).await? }))
}

/// Bring the `smsgw_smpp_server_*` series up to date for a scrape.
pub async fn set_gauges(state: &AppState) -> Result<(), StoreError> {
    for a in accounts(state).await? {
        let account = a.system_id.clone();
        for kind in crate::config::smpp_server::BIND_TYPES {
            let n = a.binds.iter().filter(|b| b.kind == kind).count();
            ::metrics::gauge!("smsgw_smpp_server_binds", "account" => account.clone(), "kind" => kind).set(n as f64);
        }
        let submits = |result: String| ::metrics::counter!("smsgw_smpp_server_submits_total", "account" => account.clone(), "result" => result);
        submits("accepted".into()).absolute(a.accepted);
        for (status, n) in &a.refused {
            submits(status.clone()).absolute(*n);
        }
        for (status, n) in &a.binds_refused {
            ::metrics::counter!("smsgw_smpp_server_binds_refused_total", "account" => account.clone(), "status" => status.clone())
                .absolute(*n);
        }
        ::metrics::gauge!("smsgw_smpp_server_submits_per_second", "account" => account.clone())
            .set(a.submits_per_second);
        ::metrics::counter!("smsgw_smpp_server_delivered_total", "account" => account.clone(), "kind" => "receipt")
            .absolute(a.receipts_delivered);
        ::metrics::counter!("smsgw_smpp_server_delivered_total", "account" => account.clone(), "kind" => "inbound")
            .absolute(a.inbound_delivered);
        ::metrics::gauge!("smsgw_smpp_server_receipts_owed", "account" => account.clone()).set(a.receipts_owed as f64);
        ::metrics::gauge!("smsgw_smpp_server_inbound_owed", "account" => account.clone()).set(a.inbound_owed as f64);
        ::metrics::gauge!("smsgw_smpp_server_dead", "account" => account).set(a.dead as f64);
    }
    Ok(())
}
