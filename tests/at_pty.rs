//! End-to-end tests of the AT engine over real pseudo-terminals: the engine drives the pty slave (as it would
//! /dev/ttyUSB2), a scripted peer on the master side reads what the engine writes and answers like a modem.

use std::sync::Arc;
use std::time::Duration;

use smsgw::channel::modem::at::{AtError, AtPort, Response, Urc, UrcReceiver};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::timeout;
use tokio_serial::{SerialPort, SerialStream};

const LONG: Duration = Duration::from_secs(5);

/// The modem side of the pty pair.
struct Peer {
    io: SerialStream,
    buf: Vec<u8>,
}

impl Peer {
    async fn fill(&mut self) {
        let mut chunk = [0u8; 512];
        let n = timeout(LONG, self.io.read(&mut chunk)).await.expect("peer: nothing from the engine").expect("read");
        assert!(n > 0, "peer: engine side closed");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// Bytes up to and including `end`.
    async fn read_until(&mut self, end: u8) -> Vec<u8> {
        loop {
            if let Some(pos) = self.buf.iter().position(|&b| b == end) {
                return self.buf.drain(..=pos).collect();
            }
            self.fill().await;
        }
    }

    /// Next command written by the engine (without its "\r").
    async fn recv_cmd(&mut self) -> String {
        let mut bytes = self.read_until(b'\r').await;
        bytes.pop();
        String::from_utf8(bytes).expect("engine writes UTF-8 commands")
    }

    async fn expect(&mut self, cmd: &str) {
        assert_eq!(self.recv_cmd().await, cmd);
    }

    async fn send(&mut self, bytes: &[u8]) {
        self.io.write_all(bytes).await.expect("peer write");
    }

    /// Assert the engine writes nothing for `d`.
    async fn silent_for(&mut self, d: Duration) {
        assert!(self.buf.is_empty(), "unexpected bytes already buffered: {:?}", self.buf);
        let mut chunk = [0u8; 64];
        if let Ok(Ok(n)) = timeout(d, self.io.read(&mut chunk)).await {
            panic!("engine wrote {:?} while it should have been silent", &chunk[..n]);
        }
    }

    /// Read a command, check it, echo it if `echo`, then send `reply`.
    async fn answer(&mut self, cmd: &str, echo: bool, reply: &str) {
        self.expect(cmd).await;
        if echo {
            self.send(format!("{cmd}\r").as_bytes()).await;
        }
        self.send(reply.as_bytes()).await;
    }
}

fn setup() -> (AtPort, UrcReceiver, Peer) {
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let (port, urcs) = AtPort::from_stream(slave);
    (port, urcs, Peer { io: master, buf: Vec::new() })
}

fn lines(resp: &Response) -> Vec<&str> {
    resp.lines.iter().map(String::as_str).collect()
}

async fn next_urc(urcs: &mut UrcReceiver) -> Urc {
    timeout(LONG, urcs.recv()).await.expect("no URC in time").expect("URC channel closed")
}

fn no_more_urcs(urcs: &mut UrcReceiver) {
    if let Ok(urc) = urcs.0.try_recv() {
        panic!("unexpected URC {urc:?}");
    }
}

#[tokio::test]
async fn ok_error_and_error_codes() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.answer("AT", false, "\r\nOK\r\n").await;
        peer.answer("AT+CSQ", false, "\r\n+CSQ: 17,99\r\n\r\nOK\r\n").await;
        peer.answer("AT+WHAT", false, "\r\nERROR\r\n").await;
        peer.answer("AT+CPIN?", false, "\r\n+CME ERROR: 10\r\n").await;
        peer.answer("AT+CPIN?", false, "\r\n+CME ERROR: SIM not inserted\r\n").await;
        peer.answer("AT+CSCA?", false, "\r\n+CME ERROR: 14\r\n").await;
        peer.answer("AT+CMMS=2", false, "\r\n+CMS ERROR: 38\r\n").await;
        peer.answer("AT+CMMS=2", false, "\r\n+CMS ERROR: 330\r\n").await;
        peer.answer("AT+CMMS=2", false, "\r\n+CMS ERROR: 500\r\n").await;
        peer.answer("AT+CMMS=2", false, "\r\n+CMS ERROR:\r\n").await;
        peer.answer("AT+CMMS=2", false, "\r\n+CMS ERROR: 1\r\n").await;
        peer.answer("AT^ICCID?", false, "\r\nCME Error: unknown\r\n").await;
        peer.answer("AT+WIND?", false, "\r\nCOMMAND NOT SUPPORT\r\n").await;
        peer
    });

    // Duration::MAX means "no limit" and must not overflow the deadline
    assert_eq!(port.command("AT", Duration::MAX).await, Ok(Response { lines: vec![] }));
    let csq = port.command("AT+CSQ", LONG).await.expect("CSQ");
    assert_eq!(csq.value("+CSQ"), Some("17,99"));
    assert_eq!(port.command("AT+WHAT", LONG).await, Err(AtError::Error { cmd: "AT+WHAT".into() }));

    let cme = port.command("AT+CPIN?", LONG).await.unwrap_err();
    assert_eq!(cme, AtError::Cme { cmd: "AT+CPIN?".into(), code: 10, reason: "SIM not inserted" });
    assert_eq!(cme.to_string(), "AT+CPIN?: +CME ERROR 10 (SIM not inserted)");
    let textual = port.command("AT+CPIN?", LONG).await.unwrap_err();
    assert_eq!(textual, cme, "textual CME maps to the same code");
    let busy = port.command("AT+CSCA?", LONG).await.unwrap_err();
    assert!(matches!(busy, AtError::Cme { code: 14, reason: "SIM busy", .. }));
    assert!(busy.temporary());

    let e38 = port.command("AT+CMMS=2", LONG).await.unwrap_err();
    assert!(matches!(e38, AtError::Cms { code: 38, reason: "network out of order", .. }), "{e38:?}");
    assert!(e38.temporary());
    let e330 = port.command("AT+CMMS=2", LONG).await.unwrap_err();
    assert!(matches!(e330, AtError::Cms { code: 330, reason: "SMSC address unknown", .. }), "{e330:?}");
    let e500 = port.command("AT+CMMS=2", LONG).await.unwrap_err();
    assert!(matches!(e500, AtError::Cms { code: 500, reason: "unknown error", .. }), "{e500:?}");
    let empty = port.command("AT+CMMS=2", LONG).await.unwrap_err();
    assert!(matches!(empty, AtError::Cms { code: 500, .. }), "SIM7000G +CMS ERROR without code: {empty:?}");
    let e1 = port.command("AT+CMMS=2", LONG).await.unwrap_err();
    assert!(matches!(e1, AtError::Cms { code: 1, reason: "unassigned (unallocated) number", .. }));
    assert!(!e1.temporary());
    let m26 = port.command("AT^ICCID?", LONG).await.unwrap_err();
    assert!(matches!(m26, AtError::Cme { code: 100, reason: "unknown", .. }), "{m26:?}");
    let huawei = port.command("AT+WIND?", LONG).await.unwrap_err();
    assert_eq!(huawei, AtError::Rejected { cmd: "AT+WIND?".into(), result: "COMMAND NOT SUPPORT".into() });
    modem.await.expect("peer script");
}

#[tokio::test]
async fn echo_on_and_off() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        // echo on (SIM800 after ATZ): the answer to ATE0 still carries the echo
        peer.answer("AT+CSQ", true, "\r\n+CSQ: 17,99\r\n\r\nOK\r\n").await;
        peer.answer("AT+CGMI", true, "\r\nSIMCOM_Ltd\r\n\r\nOK\r\n").await;
        peer.answer("ATE0", true, "\r\nOK\r\n").await;
        // echo off
        peer.answer("AT+CSQ", false, "\r\n+CSQ: 20,99\r\n\r\nOK\r\n").await;
        peer.answer("AT+CGMM", false, "\r\n MULTIBAND  900E  1800 \r\n\r\nOK\r\n").await;
        peer
    });
    let r = port.command("AT+CSQ", LONG).await.expect("CSQ with echo");
    assert_eq!(lines(&r), ["+CSQ: 17,99"]);
    let r = port.command("AT+CGMI", LONG).await.expect("CGMI with echo");
    assert_eq!(lines(&r), ["SIMCOM_Ltd"]);
    assert_eq!(port.command("ATE0", LONG).await.expect("ATE0").lines, Vec::<String>::new());
    let r = port.command("AT+CSQ", LONG).await.expect("CSQ without echo");
    assert_eq!(lines(&r), ["+CSQ: 20,99"]);
    let r = port.command("AT+CGMM", LONG).await.expect("CGMM");
    assert_eq!(lines(&r), ["MULTIBAND  900E  1800"]);
    modem.await.expect("peer script");
}

const PDU: &str = "0011000B916407281553F80000AA0AE8329BFD4697D9EC37";

/// One AT+CMGS exchange with the given prompt bytes; checks the payload only goes out after the prompt.
async fn cmgs_with_prompt(prompt: &'static [u8], echo: bool) {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CMGS=23").await;
        if echo {
            peer.send(b"AT+CMGS=23\r").await;
        }
        // nothing may be written before the prompt
        peer.silent_for(Duration::from_millis(150)).await;
        peer.send(prompt).await;
        let payload = peer.read_until(0x1a).await;
        assert_eq!(payload, format!("{PDU}\x1a").as_bytes());
        if echo {
            peer.send(&payload).await;
        }
        peer.send(b"\r\n+CMGS: 12\r\n\r\nOK\r\n").await;
        peer
    });
    let r = port.command_with_prompt("AT+CMGS=23", PDU, LONG).await.expect("CMGS");
    assert_eq!(lines(&r), ["+CMGS: 12"]);
    assert_eq!(r.value("+CMGS"), Some("12"));
    modem.await.expect("peer script");
}

#[tokio::test]
async fn cmgs_prompt_with_space_after_crlf() {
    cmgs_with_prompt(b"\r\n> ", false).await;
}

#[tokio::test]
async fn cmgs_prompt_with_space_no_crlf_echo_on() {
    cmgs_with_prompt(b"> ", true).await;
}

#[tokio::test]
async fn cmgs_bare_prompt_sim7670g() {
    // SIM7670G: 0d 0a 3e 0d 0a
    cmgs_with_prompt(b"\r\n>\r\n", false).await;
}

#[tokio::test]
async fn cmgs_bare_prompt_without_line_end() {
    cmgs_with_prompt(b">", true).await;
}

#[tokio::test]
async fn cmgs_refused_instead_of_prompt() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.answer("AT+CMGS=23", false, "\r\n+CMS ERROR: 330\r\n").await;
        // no payload, no Ctrl-Z, no ESC
        peer.silent_for(Duration::from_millis(300)).await;
        peer.answer("AT+CMGS=23", true, "\r\nERROR\r\n").await;
        peer.silent_for(Duration::from_millis(300)).await;
        peer
    });
    let e = port.command_with_prompt("AT+CMGS=23", PDU, LONG).await.unwrap_err();
    assert!(matches!(&e, AtError::Cms { code: 330, reason: "SMSC address unknown", .. }), "{e:?}");
    // give the peer time to check that nothing followed the refusal
    tokio::time::sleep(Duration::from_millis(400)).await;
    let e = port.command_with_prompt("AT+CMGS=23", PDU, LONG).await.unwrap_err();
    assert_eq!(e, AtError::Error { cmd: "AT+CMGS=23".into() });
    modem.await.expect("peer script");
}

#[tokio::test]
async fn cmgs_prompt_never_comes_sends_esc() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CMGS=23").await;
        // say nothing; the engine must give up and send ESC
        let esc = peer.read_until(0x1b).await;
        assert_eq!(esc, [0x1b], "only ESC after the command, no payload");
        // a modem answers the cancelled edit with OK: that late OK must not complete the next command
        peer.send(b"\r\nOK\r\n").await;
        peer.answer("AT+CSQ", false, "\r\n+CSQ: 9,99\r\n\r\nOK\r\n").await;
        peer
    });
    let started = tokio::time::Instant::now();
    let e = port.command_with_prompt("AT+CMGS=23", PDU, Duration::from_millis(400)).await.unwrap_err();
    assert!(matches!(e, AtError::Timeout { ref cmd, .. } if cmd == "AT+CMGS=23"), "{e:?}");
    assert!(e.temporary());
    assert!(started.elapsed() >= Duration::from_millis(400));
    let r = port.command("AT+CSQ", LONG).await.expect("next command after the timeout");
    assert_eq!(lines(&r), ["+CSQ: 9,99"]);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn cmgs_payload_sent_but_no_answer_is_unconfirmed() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CMGS=23").await;
        peer.send(b"\r\n> ").await;
        peer.read_until(0x1a).await;
        // ESC after the timeout: a modem that lost part of the payload still
        // waits for the rest, and one that got it all ignores the ESC.
        assert_eq!(peer.read_until(0x1b).await, [0x1b]);
        peer.answer("AT", false, "\r\nOK\r\n").await;
        peer
    });
    let e = port.command_with_prompt("AT+CMGS=23", PDU, Duration::from_millis(300)).await.unwrap_err();
    assert!(matches!(e, AtError::Unconfirmed { .. }), "{e:?}");
    assert!(!e.temporary());
    port.command("AT", LONG).await.expect("the next command after the ESC");
    modem.await.expect("peer script");
}

#[tokio::test]
async fn escape_ends_a_half_typed_payload_and_its_ok_is_not_taken_for_the_next_answer() {
    let (port, _urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        assert_eq!(peer.read_until(0x1b).await, [0x1b]);
        // The modem was in a payload: ESC cancels it, and it says OK.
        peer.send(b"\r\nOK\r\n").await;
        peer.answer("AT+CSQ", false, "\r\n+CSQ: 17,99\r\n\r\nOK\r\n").await;
        peer
    });
    port.escape().await.expect("ESC written");
    let r = port.command("AT+CSQ", LONG).await.expect("answer");
    assert_eq!(lines(&r), ["+CSQ: 17,99"]);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn plain_command_without_final_result_times_out_wavecom_cpin() {
    let (port, mut urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.answer("AT+CPIN?", false, "\r\n+CPIN: READY\r\n").await;
        peer.answer("AT", false, "\r\nOK\r\n").await;
        peer
    });
    let e = port.command("AT+CPIN?", Duration::from_millis(300)).await.unwrap_err();
    assert_eq!(e, AtError::Timeout { cmd: "AT+CPIN?".into(), secs: 0.3 });
    assert_eq!(e.to_string(), "AT+CPIN?: no answer within 0.3 s");
    port.command("AT", LONG).await.expect("the engine is usable after a timeout");
    no_more_urcs(&mut urcs);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn huawei_urcs_inside_a_response() {
    let (port, mut urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CPMS=\"SM\",\"SM\"").await;
        peer.send(b"\r\n^RSSI:14\r\n").await;
        peer.send(b"\r\n+CPMS: 0,50,0,50,0,50\r\n\r\n^MODE:5,4\r\n\r\n^SRVST:0\r\n\r\nOK\r\n").await;
        peer.expect("AT^SYSINFO").await;
        peer.send(b"\r\n^SYSINFO:2,3,0,5,1\r\n^RSSI:15\r\n\r\nOK\r\n").await;
        peer
    });
    let r = port.command("AT+CPMS=\"SM\",\"SM\"", LONG).await.expect("CPMS");
    assert_eq!(lines(&r), ["+CPMS: 0,50,0,50,0,50"]);
    assert_eq!(next_urc(&mut urcs).await, Urc::Vendor("^RSSI:14".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Vendor("^MODE:5,4".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Vendor("^SRVST:0".into()));
    let r = port.command("AT^SYSINFO", LONG).await.expect("SYSINFO");
    assert_eq!(lines(&r), ["^SYSINFO:2,3,0,5,1"], "a ^ answer the command asked for stays in the response");
    assert_eq!(next_urc(&mut urcs).await, Urc::Vendor("^RSSI:15".into()));
    no_more_urcs(&mut urcs);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn cmti_in_the_middle_of_a_response() {
    let (port, mut urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CMGL=4").await;
        peer.send(
            format!("\r\n+CMGL: 1,0,,23\r\n{PDU}\r\n+CMTI: \"SM\",3\r\n+CMTI: \"ME\",0\r\n\r\nOK\r\n").as_bytes(),
        )
        .await;
        peer
    });
    let r = port.command("AT+CMGL=4", LONG).await.expect("CMGL");
    assert_eq!(lines(&r), ["+CMGL: 1,0,,23", PDU]);
    assert_eq!(next_urc(&mut urcs).await, Urc::NewMessage { storage: "SM".into(), index: 3 });
    assert_eq!(next_urc(&mut urcs).await, Urc::NewMessage { storage: "ME".into(), index: 0 });
    modem.await.expect("peer script");
}

const SR_PDU: &str = "0006D60B911326880736F4111011719551401110117195714000";

#[tokio::test]
async fn status_reports_and_deliveries_with_pdu_lines() {
    let (port, mut urcs, mut peer) = setup();
    // idle: +CDS with its PDU, +CMT with its PDU, +CDSI
    peer.send(format!("\r\n+CDS: 25\r\n{SR_PDU}\r\n").as_bytes()).await;
    assert_eq!(next_urc(&mut urcs).await, Urc::StatusReport { pdu: SR_PDU.into() });
    peer.send(format!("\r\n+CMT: ,24\r\n{PDU}\r\n").as_bytes()).await;
    assert_eq!(next_urc(&mut urcs).await, Urc::Deliver { pdu: PDU.into() });
    peer.send(b"\r\n+CDSI: \"SM\",0\r\n").await;
    assert_eq!(next_urc(&mut urcs).await, Urc::StatusReportStored { storage: "SM".into(), index: 0 });

    let modem = tokio::spawn(async move {
        // mid-command, the header and the PDU arrive in separate writes
        peer.expect("AT+CSQ").await;
        peer.send(b"\r\n+CDS: 25\r\n").await;
        tokio::time::sleep(Duration::from_millis(50)).await;
        peer.send(format!("{SR_PDU}\r\n\r\n+CSQ: 17,99\r\n\r\nOK\r\n").as_bytes()).await;
        peer
    });
    let r = port.command("AT+CSQ", LONG).await.expect("CSQ");
    assert_eq!(lines(&r), ["+CSQ: 17,99"], "the PDU line is not part of the response");
    assert_eq!(next_urc(&mut urcs).await, Urc::StatusReport { pdu: SR_PDU.into() });
    no_more_urcs(&mut urcs);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn creg_query_versus_unsolicited_creg() {
    let (port, mut urcs, mut peer) = setup();
    peer.send(b"\r\n+CREG: 5\r\n").await;
    assert_eq!(next_urc(&mut urcs).await, Urc::Registration { stat: 5 });
    let modem = tokio::spawn(async move {
        peer.answer("AT+CREG?", false, "\r\n+CREG: 2,1,\"2AF5\",\"0B88E350\",2\r\n\r\nOK\r\n").await;
        peer.expect("AT+CSQ").await;
        peer.send(b"\r\n+CREG: 1, E006B, ABE0016\r\n+CSQ: 17,99\r\n\r\nOK\r\n").await;
        peer.answer("AT+CREG=2", false, "\r\nOK\r\n\r\n+CGREG: 0\r\n").await;
        peer
    });
    let r = port.command("AT+CREG?", LONG).await.expect("CREG?");
    assert_eq!(r.value("+CREG"), Some("2,1,\"2AF5\",\"0B88E350\",2"));
    no_more_urcs(&mut urcs);
    let r = port.command("AT+CSQ", LONG).await.expect("CSQ");
    assert_eq!(lines(&r), ["+CSQ: 17,99"]);
    assert_eq!(next_urc(&mut urcs).await, Urc::Registration { stat: 1 });
    port.command("AT+CREG=2", LONG).await.expect("CREG=2");
    assert_eq!(next_urc(&mut urcs).await, Urc::Registration { stat: 0 });
    modem.await.expect("peer script");
}

#[tokio::test]
async fn boot_lines_ring_and_idle_noise_go_to_the_urc_channel() {
    let (port, mut urcs, mut peer) = setup();
    peer.send(b"\x00\xff\xff\x00\r\nRDY\r\n\r\n+CPIN: READY\r\n\r\nCall Ready\r\n\r\nSMS Ready\r\n\r\nRING\r\n").await;
    assert_eq!(next_urc(&mut urcs).await, Urc::Ready("RDY".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Ready("+CPIN: READY".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Ready("Call Ready".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Ready("SMS Ready".into()));
    assert_eq!(next_urc(&mut urcs).await, Urc::Ring);
    // a stale final result while idle is dropped, other lines are reported
    peer.send(b"\r\nOK\r\nNORMAL POWER DOWN\r\n").await;
    assert_eq!(next_urc(&mut urcs).await, Urc::Vendor("NORMAL POWER DOWN".into()));
    drop(port);
}

#[tokio::test]
async fn garbage_and_a_line_split_across_writes() {
    let (port, mut urcs, mut peer) = setup();
    let modem = tokio::spawn(async move {
        peer.expect("AT+CSQ").await;
        for part in [&b"\r\n\x00\xff\xfe\x00\r\n+C"[..], b"S", b"Q: 17", b",99\r", b"\nO", b"K", b"\r\n"] {
            peer.send(part).await;
            tokio::time::sleep(Duration::from_millis(30)).await;
        }
        peer
    });
    let r = port.command("AT+CSQ", LONG).await.expect("CSQ");
    assert_eq!(lines(&r), ["+CSQ: 17,99"]);
    no_more_urcs(&mut urcs);
    modem.await.expect("peer script");
}

#[tokio::test]
async fn far_side_closing_fails_pending_queued_and_later_commands() {
    let (port, mut urcs, mut peer) = setup();
    let port = Arc::new(port);
    let first = tokio::spawn({
        let port = port.clone();
        async move { port.command("AT+CSQ", LONG).await }
    });
    peer.expect("AT+CSQ").await;
    // queue two more behind the pending one
    let queued: Vec<_> = (0..2)
        .map(|i| {
            let port = port.clone();
            tokio::spawn(async move { port.command(&format!("AT+Q{i}"), LONG).await })
        })
        .collect();
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(!port.is_gone());
    drop(peer);

    let err = timeout(LONG, first).await.expect("pending command failed in time").expect("join").unwrap_err();
    assert!(matches!(err, AtError::Gone(_)), "{err:?}");
    assert!(err.temporary());
    for task in queued {
        let err = timeout(LONG, task).await.expect("queued command failed in time").expect("join").unwrap_err();
        assert!(matches!(err, AtError::Gone(_)), "{err:?}");
    }
    assert!(port.is_gone());
    let later = port.command("AT", LONG).await.unwrap_err();
    assert!(matches!(later, AtError::Gone(_)), "{later:?}");
    assert_eq!(timeout(LONG, urcs.recv()).await.expect("URC channel closes"), None);
}

#[tokio::test]
async fn commands_from_several_tasks_run_one_at_a_time_in_order() {
    let (port, _urcs, mut peer) = setup();
    let port = Arc::new(port);
    let mut tasks = Vec::new();
    for i in 0..6 {
        let port = port.clone();
        tasks.push(tokio::spawn(async move { port.command(&format!("AT+N{i}"), LONG).await }));
        // let task i enqueue before task i+1
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    for i in 0..6 {
        peer.expect(&format!("AT+N{i}")).await;
        // the next command must not be written while this one is unanswered
        peer.silent_for(Duration::from_millis(60)).await;
        peer.send(format!("\r\n+N{i}: {}\r\n\r\nOK\r\n", i * 10).as_bytes()).await;
    }
    for (i, task) in tasks.into_iter().enumerate() {
        let r = task.await.expect("join").expect("command");
        let want = (i * 10).to_string();
        assert_eq!(r.value(&format!("+N{i}")), Some(want.as_str()));
    }
}

#[tokio::test]
async fn open_a_real_pty_device_node_exclusively() {
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let path = slave.name().expect("the slave has a device path");
    assert!(path.starts_with("/dev/"), "{path}");
    // keep `slave` open (unused) so the pty stays up while ports come and go

    let (port, _urcs) = AtPort::open(&path, 115_200).await.expect("open the pty slave");
    let mut peer = Peer { io: master, buf: Vec::new() };
    let modem = tokio::spawn(async move {
        peer.answer("AT", false, "\r\nOK\r\n").await;
        peer
    });
    port.command("AT", LONG).await.expect("AT over the opened device");
    let mut peer = modem.await.expect("peer script");

    match AtPort::open(&path, 115_200).await {
        Err(AtError::Open { path: p, reason }) => {
            assert_eq!(p, path);
            assert!(!reason.is_empty());
        }
        Err(other) => panic!("wrong error {other:?}"),
        Ok(_) => panic!("second open of {path} succeeded: not exclusive"),
    }

    // dropping the AtPort releases the device
    drop(port);
    let mut reopened = None;
    for _ in 0..50 {
        if let Ok(p) = AtPort::open(&path, 115_200).await {
            reopened = Some(p);
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (port, _urcs) = reopened.expect("reopen after drop");
    let modem = tokio::spawn(async move {
        peer.answer("ATI", false, "\r\nSIMCOM\r\n\r\nOK\r\n").await;
        peer
    });
    assert_eq!(lines(&port.command("ATI", LONG).await.expect("ATI")), ["SIMCOM"]);
    modem.await.expect("peer script");
    drop(slave);
}

#[tokio::test]
async fn open_a_missing_device_fails_cleanly() {
    let e = AtPort::open("/dev/does-not-exist-smsgw", 9600).await.err().expect("must fail");
    assert!(matches!(&e, AtError::Open { path, .. } if path == "/dev/does-not-exist-smsgw"), "{e:?}");
    assert!(e.temporary());
}

#[tokio::test]
async fn invalid_input_is_refused_before_writing() {
    let (port, _urcs, mut peer) = setup();
    let e = port.command("AT\r+CSQ", LONG).await.unwrap_err();
    assert!(matches!(e, AtError::Invalid { .. }), "{e:?}");
    let e = port.command_with_prompt("AT+CMGS=\"+1\"", "hi\x1b", LONG).await.unwrap_err();
    assert!(matches!(e, AtError::Invalid { .. }), "{e:?}");
    peer.silent_for(Duration::from_millis(100)).await;
}

/// A modem that floods `+CMTI` while the driver is busy elsewhere: the engine
/// stops reading the port once its URC queue is full (the modem's writes
/// block, nothing piles up in memory), a command still gets its answer
/// through the flood, and every URC arrives, in order.
#[tokio::test]
async fn a_urc_flood_is_held_in_the_port_and_a_command_still_gets_its_answer() {
    const FLOOD: u32 = 20_000;
    let (master, slave) = SerialStream::pair().expect("pty pair");
    let (port, mut urcs) = AtPort::from_stream(slave);
    let (mut rd, mut wr) = tokio::io::split(master);
    let (heard, hear) = tokio::sync::oneshot::channel::<()>();
    let written = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let w = written.clone();
    let writer = tokio::spawn(async move {
        for i in 0..FLOOD {
            wr.write_all(format!("\r\n+CMTI: \"SM\",{i}\r\n").as_bytes()).await.expect("peer write");
            w.store(i + 1, std::sync::atomic::Ordering::Relaxed);
        }
        hear.await.expect("the command was read");
        wr.write_all(b"\r\n+CSQ: 20,99\r\n\r\nOK\r\n").await.expect("peer write");
        wr // kept open: a closed master hangs the port up
    });
    let reader = tokio::spawn(async move {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"AT+CSQ\r") {
            rd.read_exact(&mut byte).await.expect("peer read");
            got.push(byte[0]);
        }
        let _ = heard.send(());
        rd
    });
    // Nobody takes URCs: the modem's writes stop going anywhere once the
    // queue and the pty's own buffer are full.
    let mut last = u32::MAX;
    loop {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let now = written.load(std::sync::atomic::Ordering::Relaxed);
        if now == last {
            break;
        }
        last = now;
    }
    assert!(last < FLOOD / 2, "the engine read {last} of {FLOOD} URCs with nobody taking them");
    let r = port.command("AT+CSQ", Duration::from_secs(30)).await.expect("answered through the flood");
    assert_eq!(lines(&r), ["+CSQ: 20,99"]);
    let _rd = reader.await.unwrap();
    let _wr = writer.await.unwrap();
    for i in 0..FLOOD {
        let u = timeout(LONG, urcs.recv()).await.expect("URC").expect("open");
        assert_eq!(u, Urc::NewMessage { storage: "SM".into(), index: i });
    }
}
