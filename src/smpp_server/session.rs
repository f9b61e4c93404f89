//! One SMPP connection as the server serves it: the bind and its checks,
//! submits answered after their commit (up to the account's window at
//! once), `enquire_link` answered and sent on an idle bind, `unbind` from
//! either side (ours at shutdown, its answer awaited), and `generic_nack`
//! for what cannot be read. A peer that breaks the framing or stays silent is
//! dropped; other binds are untouched.

use super::account::AccountState;
use super::query;
use super::replace;
use super::submit::{self, Refused};
use super::{Receiver, Shared};
use crate::smpp::reply::{generic_nack, header_only_command};
use crate::smpp::{FramingError, RawPdu, SmppFrame, SmppFramer, write_burst};
use futures::{SinkExt, StreamExt};
use rusmpp::pdus::{BindReceiverResp, BindTransceiverResp, BindTransmitterResp, DataSmResp, SubmitSmResp};
use rusmpp::types::COctetString;
use rusmpp::values::InterfaceVersion;
use rusmpp::{Command, CommandId, CommandStatus, Pdu};
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{Semaphore, mpsc};
use tokio_util::codec::{FramedRead, FramedWrite};
use tokio_util::task::TaskTracker;

const OUR_SYSTEM_ID: &str = "smsgw";
/// How long a bind has to answer our `unbind` at shutdown.
const UNBIND_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The bind a session holds.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Transmitter,
    Receiver,
    Transceiver,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Transmitter => "transmitter",
            Kind::Receiver => "receiver",
            Kind::Transceiver => "transceiver",
        }
    }

    fn transmits(self) -> bool {
        self != Kind::Receiver
    }
}

struct Bound {
    account: Arc<AccountState>,
    kind: Kind,
    window: Arc<Semaphore>,
}

struct Session {
    shared: Arc<Shared>,
    peer: SocketAddr,
    /// This connection's writer, sequence numbers and our requests
    /// (deliver_sm) awaiting their response; the outbox gets a clone once a
    /// receiving bind is made.
    link: Receiver,
    bound: Option<Bound>,
    tasks: TaskTracker,
}

static NEXT_SESSION: AtomicU64 = AtomicU64::new(1);

/// Serve one connection, read from `rd` and written to `wr`: the halves of
/// a TCP stream, or of a TLS stream over one.
pub(super) async fn run<R, W>(shared: Arc<Shared>, rd: R, wr: W, peer: SocketAddr, tasks: TaskTracker)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (tx, mut rx) = mpsc::unbounded_channel::<Command>();
    let writer = tokio::spawn(async move {
        let mut out = FramedWrite::new(wr, SmppFramer::default());
        while let Some(c) = rx.recv().await {
            if write_burst(&mut out, c, || rx.try_recv().ok()).await.is_err() {
                break;
            }
        }
        let _ = out.close().await;
    });
    let id = NEXT_SESSION.fetch_add(1, Ordering::Relaxed);
    let mut s = Session { shared, peer, link: Receiver::new(id, tx), bound: None, tasks };
    let why = s.read_loop(FramedRead::new(rd, SmppFramer::default())).await;
    if let Some(b) = &s.bound {
        s.shared.unregister(&b.account.cfg.system_id, s.link.session);
        s.link.pending.lock().unwrap_or_else(|e| e.into_inner()).clear();
        b.account.release_bind(s.link.session);
        // Let in-flight submits answer before the writer closes.
        let _ = b.window.acquire_many(b.account.cfg.window as u32).await;
        tracing::info!(peer = %s.peer, system_id = %b.account.cfg.system_id, bind = b.kind.name(), why, "SMPP bind ended");
    } else {
        tracing::debug!(peer = %s.peer, why, "SMPP connection closed before a bind");
    }
    drop(s);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), writer).await;
}

impl Session {
    async fn read_loop<R: AsyncRead + Unpin>(&mut self, mut reader: FramedRead<R, SmppFramer>) -> &'static str {
        let cancel = self.shared.cancel.clone();
        let every = self.shared.enquire_link;
        let mut last_heard = tokio::time::Instant::now();
        let mut tick = tokio::time::interval_at(last_heard + every, every);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    if self.bound.is_some() {
                        self.unbind(&mut reader).await;
                    }
                    return "shutdown";
                }
                _ = tick.tick() => {
                    if last_heard.elapsed() >= every * 3 {
                        return "silent for three enquire_link intervals";
                    }
                    let idle = last_heard.elapsed() >= every;
                    if self.bound.is_some() && idle {
                        self.send(Command::new(CommandStatus::EsmeRok, self.next_seq(), Pdu::EnquireLink));
                    } else if self.bound.is_none() && idle {
                        return "no bind in time";
                    }
                }
                item = reader.next() => {
                    last_heard = tokio::time::Instant::now();
                    match item {
                        None => return "peer closed",
                        Some(Err(FramingError::Length { sequence_number, .. })) => {
                            self.nack(CommandStatus::EsmeRinvcmdlen, sequence_number.unwrap_or_default());
                            return "unframeable bytes";
                        }
                        Some(Err(_)) => return "read error",
                        Some(Ok(SmppFrame::Oversized { sequence_number, .. })) => {
                            self.nack(CommandStatus::EsmeRinvcmdlen, sequence_number);
                            return "oversized PDU";
                        }
                        Some(Ok(SmppFrame::Pdu(frame))) => {
                            if let Some(end) = self.on_frame(frame) {
                                return end;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Our `unbind` at shutdown, and its `unbind_resp` awaited (bounded):
    /// receipts' responses still count, `enquire_link` is answered, a new
    /// request is refused (`ESME_RINVBNDSTS`).
    async fn unbind<R: AsyncRead + Unpin>(&mut self, reader: &mut FramedRead<R, SmppFramer>) {
        let seq = self.next_seq();
        self.send(Command::new(CommandStatus::EsmeRok, seq, Pdu::Unbind));
        let unbind = u32::from(CommandId::Unbind);
        let answered = tokio::time::timeout(UNBIND_WAIT, async {
            while let Some(Ok(SmppFrame::Pdu(frame))) = reader.next().await {
                if frame.command_id == unbind | 0x8000_0000 && frame.sequence_number == seq {
                    return true;
                }
                if frame.is_response() || frame.command_id == u32::from(CommandId::EnquireLink) {
                    self.on_frame(frame);
                } else if frame.command_id == unbind {
                    self.send(header_only_command(unbind | 0x8000_0000, 0, frame.sequence_number));
                    return true;
                } else {
                    let status = u32::from(CommandStatus::EsmeRinvbndsts);
                    self.send(header_only_command(frame.command_id | 0x8000_0000, status, frame.sequence_number));
                }
            }
            false
        })
        .await;
        if answered == Ok(true) {
            tracing::debug!(peer = %self.peer, "SMPP unbind answered");
        } else {
            tracing::debug!(peer = %self.peer, "SMPP unbind not answered before closing");
        }
    }

    fn next_seq(&self) -> u32 {
        self.link.next_seq()
    }

    fn send(&self, c: Command) {
        let _ = self.link.tx.send(c);
    }

    fn nack(&self, status: CommandStatus, seq: u32) {
        self.send(generic_nack(u32::from(status), seq));
    }

    fn on_frame(&mut self, frame: RawPdu) -> Option<&'static str> {
        let seq = frame.sequence_number;
        if frame.is_response() {
            let waiter = self.link.pending.lock().unwrap_or_else(|e| e.into_inner()).remove(&seq);
            if let Some(w) = waiter {
                let _ = w.send(frame.command_status);
            }
            return None;
        }
        match CommandId::from(frame.command_id) {
            CommandId::EnquireLink => {
                self.send(header_only_command(frame.command_id | 0x8000_0000, 0, seq));
                None
            }
            CommandId::Unbind => {
                self.send(header_only_command(frame.command_id | 0x8000_0000, 0, seq));
                Some("unbind")
            }
            CommandId::BindTransmitter | CommandId::BindReceiver | CommandId::BindTransceiver => {
                self.on_bind(&frame);
                None
            }
            CommandId::SubmitSm
            | CommandId::DataSm
            | CommandId::QuerySm
            | CommandId::CancelSm
            | CommandId::ReplaceSm => {
                self.on_request(frame);
                None
            }
            _ => {
                self.nack(CommandStatus::EsmeRinvcmdid, seq);
                None
            }
        }
    }

    fn refuse_bind(&self, frame: &RawPdu, status: CommandStatus, system_id: &str, why: &str) {
        tracing::warn!(peer = %self.peer, system_id, status = ?status, why, "SMPP bind refused");
        self.send(header_only_command(frame.command_id | 0x8000_0000, u32::from(status), frame.sequence_number));
    }

    fn on_bind(&mut self, frame: &RawPdu) {
        let seq = frame.sequence_number;
        if self.bound.is_some() {
            return self.refuse_bind(frame, CommandStatus::EsmeRalybnd, "?", "this connection is already bound");
        }
        let Ok(command) = frame.decode() else { return self.nack(CommandStatus::EsmeRinvmsglen, seq) };
        let (kind, system_id, password) = match command.pdu() {
            Some(Pdu::BindTransmitter(b)) => (Kind::Transmitter, b.system_id.to_string(), b.password.to_string()),
            Some(Pdu::BindReceiver(b)) => (Kind::Receiver, b.system_id.to_string(), b.password.to_string()),
            Some(Pdu::BindTransceiver(b)) => (Kind::Transceiver, b.system_id.to_string(), b.password.to_string()),
            _ => return self.nack(CommandStatus::EsmeRinvmsglen, seq),
        };
        let Some(account) = self.shared.accounts.get(&system_id).cloned() else {
            return self.refuse_bind(frame, CommandStatus::EsmeRinvsysid, &system_id, "unknown system_id");
        };
        let refusal = if !account.password_matches(&password) {
            Some((CommandStatus::EsmeRinvpaswd, "wrong password"))
        } else if !account.ip_allowed(self.peer.ip()) {
            Some((CommandStatus::EsmeRbindfail, "source address not allowed"))
        } else if !account.bind_type_allowed(kind.name()) {
            Some((CommandStatus::EsmeRbindfail, "bind type not allowed"))
        } else if !account.try_bind(self.link.session, kind.name(), self.peer) {
            Some((CommandStatus::EsmeRalybnd, "max_binds reached"))
        } else {
            None
        };
        if let Some((status, why)) = refusal {
            account.count_bind_refused(status);
            return self.refuse_bind(frame, status, &system_id, why);
        }
        let ours = COctetString::<1, 16>::from_str(OUR_SYSTEM_ID).unwrap_or_default();
        let v = Some(InterfaceVersion::Smpp3_4);
        let pdu = match kind {
            Kind::Transmitter => {
                Pdu::BindTransmitterResp(BindTransmitterResp::builder().system_id(ours).sc_interface_version(v).build())
            }
            Kind::Receiver => {
                Pdu::BindReceiverResp(BindReceiverResp::builder().system_id(ours).sc_interface_version(v).build())
            }
            Kind::Transceiver => {
                Pdu::BindTransceiverResp(BindTransceiverResp::builder().system_id(ours).sc_interface_version(v).build())
            }
        };
        self.send(Command::new(CommandStatus::EsmeRok, seq, pdu));
        tracing::info!(peer = %self.peer, %system_id, bind = kind.name(), "SMPP bind accepted");
        let window = Arc::new(Semaphore::new(account.cfg.window));
        if kind != Kind::Transmitter {
            self.shared.register(&system_id, self.link.clone());
        }
        self.bound = Some(Bound { account, kind, window });
    }

    /// A request that needs a transmitting bind and a window slot, answered
    /// by its own task once the store has answered (after the commit).
    fn on_request(&mut self, frame: RawPdu) {
        let seq = frame.sequence_number;
        let resp_id = frame.command_id | 0x8000_0000;
        let is_submit = matches!(CommandId::from(frame.command_id), CommandId::SubmitSm | CommandId::DataSm);
        let Some(bound) = self.bound.as_ref().filter(|b| b.kind.transmits()) else {
            self.send(header_only_command(resp_id, u32::from(CommandStatus::EsmeRinvbndsts), seq));
            return;
        };
        let account = bound.account.clone();
        let Ok(permit) = bound.window.clone().try_acquire_owned() else {
            account.count_refused(CommandStatus::EsmeRmsgqful);
            self.send(header_only_command(resp_id, u32::from(CommandStatus::EsmeRmsgqful), seq));
            return;
        };
        if is_submit && !account.admit() {
            account.count_refused(CommandStatus::EsmeRthrottled);
            self.send(header_only_command(resp_id, u32::from(CommandStatus::EsmeRthrottled), seq));
            return;
        }
        let command = match frame.into_command() {
            Ok(c) => c,
            Err(_) => {
                account.count_refused(CommandStatus::EsmeRinvmsglen);
                self.nack(CommandStatus::EsmeRinvmsglen, seq);
                return;
            }
        };
        let shared = self.shared.clone();
        let tx = self.link.tx.clone();
        let peer = self.peer;
        self.tasks.spawn(async move {
            // The window slot is given back before the answer is sent: a
            // client that keeps its window full sends the next request as
            // soon as it reads this answer, and must find the slot free.
            let Some(pdu) = command.pdu() else {
                drop(permit);
                let _ = tx.send(generic_nack(u32::from(CommandStatus::EsmeRinvmsglen), seq));
                return;
            };
            let answer = match pdu {
                Pdu::QuerySm(_) => query::query(&shared, &account, pdu).await,
                Pdu::CancelSm(_) => query::cancel(&shared, &account, pdu).await,
                Pdu::ReplaceSm(_) => replace::replace(&shared, &account, pdu).await,
                _ => match submit::accept(&shared, &account, pdu).await {
                    Ok(id) => {
                        account.count_accepted();
                        let mid =
                            COctetString::<1, 65>::from_str(&account.cfg.message_id.format(id)).unwrap_or_default();
                        Ok(if matches!(pdu, Pdu::DataSm(_)) {
                            Pdu::DataSmResp(DataSmResp::builder().message_id(mid).build())
                        } else {
                            Pdu::SubmitSmResp(SubmitSmResp::builder().message_id(mid).build())
                        })
                    }
                    Err(Refused(status, why)) => {
                        account.count_refused(status);
                        tracing::info!(%peer, system_id = %account.cfg.system_id, status = ?status, why, "SMPP submit refused");
                        Err(status)
                    }
                },
            };
            let answer = match answer {
                Ok(pdu) => Command::new(CommandStatus::EsmeRok, seq, pdu),
                Err(status) => header_only_command(resp_id, u32::from(status), seq),
            };
            drop(permit);
            let _ = tx.send(answer);
        });
    }
}
