//! End-to-end tests of the virtual modem over a real pseudo-terminal: a client opens the modem's
//! symlink with tokio-serial (exclusive, raw, like the gateway opens /dev/ttyUSB2) and speaks AT.
//! PDUs going in are built with `sms::pdu::encode_submit`, PDUs coming out are read back with
//! `sms::pdu::decode`, so each side checks the other.

mod at_client;

use std::path::PathBuf;
use std::time::Duration;

use at_client::{AtClient, CTRL_Z, ESC, Gone, answer_lines};
use smsgw::simulate::modem::{ModemConfig, Quirks, VirtualModem};
use smsgw::sms::pdu::{self, Pdu, SubmitOptions, SubmitPdu};
use smsgw::sms::text;
use tempfile::TempDir;

const SECOND: Duration = Duration::from_secs(1);
const WAIT: Duration = Duration::from_secs(3);

struct Rig {
    modem: VirtualModem,
    client: AtClient,
    _dir: TempDir,
}

async fn start(cfg: ModemConfig) -> Rig {
    let dir = tempfile::tempdir().expect("temp dir");
    let link: PathBuf = dir.path().join("dev").join("867856030456784-if02");
    let modem = VirtualModem::start(cfg, &link).await.expect("modem starts");
    let client = AtClient::open(modem.link()).expect("the link opens as a serial port");
    Rig { modem, client, _dir: dir }
}

fn with_quirks(quirks: Quirks) -> ModemConfig {
    ModemConfig { quirks, ..ModemConfig::default() }
}

fn submit(to: &str, body: &str, status_report: bool) -> Vec<SubmitPdu> {
    let opts = SubmitOptions { status_report, concat_ref: 42, ..SubmitOptions::default() };
    pdu::encode_submit(to, &text::split(body), &opts).expect("test message encodes")
}

/// AT+CMGS=<len>, the prompt, the PDU and Ctrl-Z; the answer after the prompt.
async fn send_pdu(c: &mut AtClient, p: &SubmitPdu) -> String {
    c.write(format!("AT+CMGS={}\r", p.tpdu_len).as_bytes()).await;
    c.expect("> ", WAIT).await;
    let mut data = p.hex.clone().into_bytes();
    data.push(CTRL_Z);
    c.write(&data).await;
    c.until_final(WAIT).await
}

fn mr_of(answer: &str) -> u8 {
    answer
        .lines()
        .find_map(|l| l.trim().strip_prefix("+CMGS: "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no +CMGS in {answer:?}"))
}

fn deliver_of(hex: &str) -> pdu::Deliver {
    match pdu::decode(hex, true) {
        Ok(Pdu::Deliver(d)) => d,
        other => panic!("{hex}: {other:?}"),
    }
}

fn report_of(hex: &str) -> pdu::StatusReport {
    match pdu::decode(hex, true) {
        Ok(Pdu::StatusReport(r)) => r,
        other => panic!("{hex}: {other:?}"),
    }
}

#[tokio::test]
async fn identification_echo_and_errors() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    // Echo is on after power-up: the command comes back before the answer.
    assert_eq!(c.command("AT").await, "AT\r\r\nOK\r\n");
    assert_eq!(c.lines("AT+CGMI").await, ["SIMCOM_Ltd", "OK"]);
    assert_eq!(c.lines("at+cgmm").await, ["SIMCOM_SIM800L", "OK"]);
    assert_eq!(c.lines("AT+CGMR").await, ["1418B05SIM800L24", "OK"]);
    assert_eq!(c.lines("AT+CGSN").await, ["867856030456784", "OK"]);
    assert_eq!(c.lines("AT+CIMI").await, ["250011234567890", "OK"]);
    assert_eq!(c.lines("AT+CCID").await, ["89701011234567890123", "OK"]);
    assert_eq!(c.lines("ATI").await, ["SIMCOM_Ltd", "SIMCOM_SIM800L", "Revision: 1418B05SIM800L24", "OK"]);
    // The answer to ATE0 still carries its own echo; afterwards there is none.
    assert_eq!(c.command("ATE0").await, "ATE0\r\r\nOK\r\n");
    assert_eq!(c.command("AT+CSQ").await, "\r\n+CSQ: 20,0\r\n\r\nOK\r\n");
    assert_eq!(c.command("AT+FOO").await, "\r\nERROR\r\n");
    assert_eq!(c.command("AT+CSCA?").await, "\r\n+CSCA: \"+79168999100\",145\r\n\r\nOK\r\n");
    // Chained line (smstools): basic and extended commands, one final result.
    assert_eq!(c.command("ATE0+CMEE=1;+CREG=2").await, "\r\nOK\r\n");
    assert_eq!(c.lines("AT+CMEE?").await, ["+CMEE: 1", "OK"]);
    assert_eq!(c.lines("AT+CMGR=999").await, ["+CMS ERROR: 321"]);
    assert_eq!(c.lines("AT+CMEE=2;+CMGR=999").await, ["+CMS ERROR: invalid memory index"]);
    // A lone ESC and an empty line are ignored (gammu starts so); noise before AT is skipped.
    c.write(&[ESC, b'\r']).await;
    assert_eq!(c.command("\u{1}xxAT").await, "\r\nOK\r\n");
    let cmds = r.modem.commands();
    assert_eq!(cmds.first().map(String::as_str), Some("AT"));
    assert!(cmds.contains(&"ATE0+CMEE=1;+CREG=2".to_string()), "{cmds:?}");
    r.modem.shutdown().await;
}

#[tokio::test]
async fn pin_wrong_pin_and_puk_lock() {
    let cfg = ModemConfig { pin: Some("1234".into()), ..ModemConfig::default() };
    let mut r = start(cfg).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0+CMEE=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: SIM PIN", "OK"]);
    assert_eq!(c.lines("AT+CIMI").await, ["+CME ERROR: 11"]);
    assert_eq!(c.lines("AT+CMGL=4").await, ["+CMS ERROR: 311"]);
    assert_eq!(c.lines("AT+CREG?").await, ["+CREG: 0,0", "OK"]);
    assert_eq!(c.lines("AT+CPINR=\"SIM PIN\"").await, ["+CPINR: SIM PIN,3,3", "OK"]);
    assert_eq!(c.lines("AT+CPIN=\"0000\"").await, ["+CME ERROR: 16"]);
    // TS 27.007 §8.65: the attempts left, readable before the PIN.
    assert_eq!(c.lines("AT+CPINR=\"SIM PIN\"").await, ["+CPINR: SIM PIN,2,3", "OK"]);
    assert_eq!(c.lines("AT+CPINR=\"SIM*\"").await, ["+CPINR: SIM PIN,2,3", "+CPINR: SIM PUK,10,10", "OK"]);
    assert_eq!(c.lines("AT+CPIN=\"1234\"").await, ["OK"]);
    c.expect("\r\n+CPIN: READY\r\n", WAIT).await;
    c.expect("\r\nSMS Ready\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: READY", "OK"]);
    assert_eq!(c.lines("AT+CIMI").await, ["250011234567890", "OK"]);
    assert_eq!(c.lines("AT+CPIN=\"1234\"").await, ["+CME ERROR: 3"]);

    // Power cycle: the PIN is asked again; three wrong ones lock the SIM.
    assert_eq!(c.lines("AT+CFUN=1,1").await, ["OK"]);
    c.expect("\r\nRDY\r\n\r\n+CPIN: SIM PIN\r\n", WAIT).await;
    assert_eq!(c.lines("ATE0+CMEE=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: SIM PIN", "OK"]);
    for _ in 0..3 {
        assert_eq!(c.lines("AT+CPIN=\"9999\"").await, ["+CME ERROR: 16"]);
    }
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: SIM PUK", "OK"]);
    assert_eq!(c.lines("AT+CPIN=\"1234\"").await, ["+CME ERROR: 12"]);
    assert_eq!(c.lines("AT+CIMI").await, ["+CME ERROR: 12"]);
    assert_eq!(c.lines("AT+CSCA?").await, ["+CMS ERROR: 316"]);
    // The lock is on the SIM: it survives a power cycle.
    assert_eq!(c.lines("AT+CFUN=1,1").await, ["OK"]);
    c.expect("\r\n+CPIN: SIM PUK\r\n", WAIT).await;
    assert_eq!(c.lines("ATE0+CMEE=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: SIM PUK", "OK"]);
    assert_eq!(c.lines("AT+CPIN=\"12345678\",\"4321\"").await, ["OK"]);
    c.expect("\r\nSMS Ready\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CPIN?").await, ["+CPIN: READY", "OK"]);
    assert_eq!(c.lines("AT+CIMI").await, ["250011234567890", "OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn registration_delay_and_creg_urc() {
    let cfg = ModemConfig { registration_delay_ms: 700, ..ModemConfig::default() };
    let mut r = start(cfg).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0;+CMEE=1;+CREG=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CREG?").await, ["+CREG: 1,2", "OK"]);
    assert_eq!(c.lines("AT+COPS?").await, ["+COPS: 0", "OK"]);
    // Sending before registration fails with "no network service".
    let p = &submit("+79161234567", "too early", false)[0];
    assert_eq!(answer_lines(&send_pdu(c, p).await, ""), ["+CMS ERROR: 331"]);
    c.expect("\r\n+CREG: 1\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CREG?").await, ["+CREG: 1,1", "OK"]);
    assert_eq!(c.lines("AT+CREG=2;+CREG?").await, ["+CREG: 2,1,\"2AF5\",\"0B88E350\"", "OK"]);
    assert_eq!(c.lines("AT+COPS?").await, ["+COPS: 0,0,\"MTS RUS\"", "OK"]);
    assert!(r.modem.sent().is_empty());
    // Losing coverage shows as searching again.
    r.modem.set_coverage(false);
    c.expect("+CREG: 2", WAIT).await;
    r.modem.shutdown().await;
}

#[tokio::test]
async fn cmgs_round_trip() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    assert_eq!(c.lines("AT+CMGF=0").await, ["OK"]);
    let p = &submit("+79161234567", "Hello from smsgw", true)[0];
    let answer = send_pdu(c, p).await;
    // Echo on: the PDU comes back, then +CMGS and OK.
    assert!(answer.starts_with(&p.hex), "{answer:?}");
    assert!(answer.ends_with("\r\n+CMGS: 1\r\n\r\nOK\r\n"), "{answer:?}");
    let sent = r.modem.sent();
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0].message_ref, 1);
    assert_eq!(sent[0].to, "+79161234567");
    assert_eq!(sent[0].text, "Hello from smsgw");
    assert!(sent[0].status_report);
    assert_eq!(sent[0].concat, None);
    assert_eq!(sent[0].pdu, p.hex);
    // Every send gets the next TP-MR.
    let q = &submit("89161234567", "Второе сообщение", false)[0];
    assert_eq!(mr_of(&send_pdu(c, q).await), 2);
    let sent = r.modem.sent();
    assert_eq!((sent[1].to.as_str(), sent[1].text.as_str()), ("89161234567", "Второе сообщение"));
    r.modem.shutdown().await;
}

#[tokio::test]
async fn multipart_send_gets_one_mr_per_part() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0").await, ["OK"]);
    let body: String = (0..400).map(|i| char::from(b'A' + (i % 26) as u8)).collect();
    let parts = submit("+4915201234567", &body, false);
    assert_eq!(parts.len(), 3);
    let mut mrs = Vec::new();
    for p in &parts {
        mrs.push(mr_of(&send_pdu(c, p).await));
    }
    assert_eq!(mrs, [1, 2, 3]);
    let sent = r.modem.sent();
    let joined: String = sent.iter().map(|s| s.text.as_str()).collect();
    assert_eq!(joined, body);
    for (i, s) in sent.iter().enumerate() {
        let concat = s.concat.expect("parts carry a concatenation header");
        assert_eq!((concat.reference, concat.total, usize::from(concat.seq)), (42, 3, i + 1));
    }
    r.modem.shutdown().await;
}

#[tokio::test]
async fn bad_pdus_and_cancel() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0;+CMEE=1").await, ["OK"]);
    let p = submit("+79161234567", "x", false).remove(0);
    // Length that does not match the TPDU.
    let wrong = SubmitPdu { hex: p.hex.clone(), tpdu_len: p.tpdu_len + 1 };
    assert_eq!(answer_lines(&send_pdu(c, &wrong).await, ""), ["+CMS ERROR: 304"]);
    // Not hex, and an SMS-DELIVER instead of a SUBMIT.
    let junk = SubmitPdu { hex: "00ZZ".into(), tpdu_len: 1 };
    assert_eq!(answer_lines(&send_pdu(c, &junk).await, ""), ["+CMS ERROR: 304"]);
    let deliver = smsgw::simulate::modem::pdu::encode_deliver(
        "",
        "+1",
        "x",
        chrono::DateTime::parse_from_rfc3339("2024-01-01T00:00:00Z").expect("valid time"),
        0,
    )
    .remove(0);
    let not_submit = SubmitPdu { hex: deliver.hex, tpdu_len: deliver.tpdu_len };
    assert_eq!(answer_lines(&send_pdu(c, &not_submit).await, ""), ["+CMS ERROR: 304"]);
    assert_eq!(c.lines("AT+CMGS=0").await, ["+CMS ERROR: 304"]);
    // ESC cancels the prompt: nothing is sent.
    c.write(b"AT+CMGS=20\r").await;
    c.expect("> ", WAIT).await;
    c.write(b"0011").await;
    c.write(&[ESC]).await;
    assert_eq!(answer_lines(&c.until_final(WAIT).await, ""), ["OK"]);
    assert!(r.modem.sent().is_empty());
    assert_eq!(c.lines("AT").await, ["OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn prompt_without_space_quirk() {
    let mut r = start(with_quirks(Quirks { prompt_without_space: true, ..Quirks::default() })).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0").await, ["OK"]);
    let p = &submit("+79161234567", "bare prompt", false)[0];
    c.write(format!("AT+CMGS={}\r", p.tpdu_len).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let raw = c.drain(Duration::from_millis(100)).await;
    assert_eq!(raw, "\r\n>\r\n");
    let mut data = p.hex.clone().into_bytes();
    data.push(CTRL_Z);
    c.write(&data).await;
    assert_eq!(answer_lines(&c.until_final(WAIT).await, ""), ["+CMGS: 1", "OK"]);

    // Without the quirk the prompt is CR LF "> " with nothing after it.
    let mut r2 = start(ModemConfig::default()).await;
    r2.client.write(b"ATE0\r").await;
    r2.client.until_final(WAIT).await;
    r2.client.write(format!("AT+CMGS={}\r", p.tpdu_len).as_bytes()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(r2.client.drain(Duration::from_millis(100)).await, "\r\n> ");
    r.modem.shutdown().await;
    r2.modem.shutdown().await;
}

#[tokio::test]
async fn deliver_cmti_cmgr_cmgl_cmgd() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    assert_eq!(
        c.lines("ATE0;+CMGF=0;+CNMI=2,1,0,0,0;+CPMS=\"SM\",\"SM\",\"SM\"").await.last().map(String::as_str),
        Some("OK")
    );
    r.modem.deliver("+79161112233", "Hi there");
    c.expect("\r\n+CMTI: \"SM\",1\r\n", WAIT).await;
    r.modem.deliver("MyBank", "Code 1234");
    c.expect("\r\n+CMTI: \"SM\",2\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CPMS?").await, ["+CPMS: \"SM\",2,30,\"SM\",2,30,\"SM\",2,30", "OK"]);

    let lines = c.lines("AT+CMGR=1").await;
    assert_eq!(lines.len(), 3, "{lines:?}");
    let d = deliver_of(&lines[1]);
    assert_eq!((d.sender.value.as_str(), d.text.as_str()), ("+79161112233", "Hi there"));
    assert_eq!(d.smsc.as_deref(), Some("+79168999100"));
    assert_eq!(lines[0], format!("+CMGR: 0,,{}", lines[1].len() / 2 - 8));
    assert_eq!(lines[2], "OK");
    // Read once: now REC READ.
    assert!(c.lines("AT+CMGR=1").await[0].starts_with("+CMGR: 1,,"));
    assert_eq!(
        r.modem.stored().iter().map(|(i, s, _)| (*i, s.as_str())).collect::<Vec<_>>(),
        [(1, "REC READ"), (2, "REC UNREAD")]
    );

    // Unread only, then all.
    let unread = c.lines("AT+CMGL=0").await;
    assert_eq!(unread.len(), 3, "{unread:?}");
    assert!(unread[0].starts_with("+CMGL: 2,0,,"));
    let d = deliver_of(&unread[1]);
    assert_eq!((d.sender.value.as_str(), d.text.as_str()), ("MyBank", "Code 1234"));
    let all = c.lines("AT+CMGL=4").await;
    assert_eq!(all.len(), 5, "{all:?}");
    assert!(all[0].starts_with("+CMGL: 1,1,,") && all[2].starts_with("+CMGL: 2,1,,"));

    assert_eq!(c.lines("AT+CMGD=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CMGR=1").await, ["OK"]);
    assert_eq!(r.modem.stored().len(), 1);
    assert_eq!(c.lines("AT+CMGD=1,4").await, ["OK"]);
    assert!(r.modem.stored().is_empty());
    let cmds = r.modem.commands();
    let read = cmds.iter().position(|c| c == "AT+CMGR=1").expect("read");
    let deleted = cmds.iter().position(|c| c == "AT+CMGD=1").expect("deleted");
    assert!(read < deleted);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn long_deliver_arrives_in_parts() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0").await;
    let body = "Длинное сообщение, которое не помещается в одну часть. ".repeat(3);
    r.modem.deliver("+79161112233", &body);
    c.expect("+CMTI: \"SM\",3", WAIT).await;
    let all = c.lines("AT+CMGL=4").await;
    let mut joined = String::new();
    for (i, hex) in all.iter().skip(1).step_by(2).take(3).enumerate() {
        let d = deliver_of(hex);
        let concat = d.concat.expect("concatenated");
        assert_eq!((concat.total, usize::from(concat.seq)), (3, i + 1));
        joined.push_str(&d.text);
    }
    assert_eq!(joined, body);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn cmt_inline_and_cnma() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0;+CMEE=1;+CNMI=2,2,0,0,0").await.last().map(String::as_str), Some("OK"));
    r.modem.deliver("+79161112233", "inline");
    let got = c.expect("\r\n+CMT: ,", WAIT).await;
    assert!(got.ends_with("+CMT: ,"), "{got:?}");
    let tail = c.drain(Duration::from_millis(300)).await;
    let lines = answer_lines(&tail, "");
    let d = deliver_of(&lines[1]);
    assert_eq!(d.text, "inline");
    assert_eq!(lines[0], (lines[1].len() / 2 - 8).to_string());
    assert!(r.modem.stored().is_empty(), "routed, not stored");
    // With AT+CSMS=1 each +CMT is acknowledged once; a second AT+CNMA is an error.
    assert_eq!(c.lines("AT+CSMS=1").await, ["+CSMS: 1,1,1", "OK"]);
    r.modem.deliver("+79161112233", "ack me");
    c.expect("+CMT: ", WAIT).await;
    c.drain(Duration::from_millis(200)).await;
    assert_eq!(c.lines("AT+CNMA").await, ["OK"]);
    assert_eq!(c.lines("AT+CNMA").await, ["+CMS ERROR: 340"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn status_report_inline_cds() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,1,0").await;
    let mr = mr_of(&send_pdu(c, &submit("+79161234567", "report me", true)[0]).await);
    r.modem.status_report(mr, "+79161234567", 0x00);
    c.expect("\r\n+CDS: ", WAIT).await;
    let lines = answer_lines(&c.drain(Duration::from_millis(300)).await, "");
    let report = report_of(&lines[1]);
    assert_eq!((report.message_ref, report.status), (mr, 0));
    assert_eq!(report.recipient.value, "+79161234567");
    assert!(report.discharged >= report.submitted);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn status_report_stored_cdsi() {
    // Quectel style: "SR" memory.
    let mut r = start(with_quirks(Quirks { status_reports_stored: true, ..Quirks::default() })).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,2,0").await;
    assert_eq!(c.lines("AT+CPMS=?").await, ["+CPMS: (\"ME\",\"SM\",\"SR\"),(\"ME\",\"SM\"),(\"ME\",\"SM\")", "OK"]);
    r.modem.status_report(7, "+79161234567", 0x46);
    c.expect("\r\n+CDSI: \"SR\",1\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CPMS=\"SR\"").await, ["+CPMS: 1,50,0,30,0,30", "OK"]);
    let lines = c.lines("AT+CMGR=1").await;
    let report = report_of(&lines[1]);
    assert_eq!((report.message_ref, report.status), (7, 0x46));
    assert_eq!(r.modem.stored_in("SR").len(), 1);
    assert!(r.modem.stored().is_empty());
    r.modem.shutdown().await;

    // SIM800 style: stored with the messages, in mem3.
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,2,0").await;
    r.modem.status_report(9, "+79161234567", 0);
    c.expect("\r\n+CDSI: \"SM\",1\r\n", WAIT).await;
    assert_eq!(report_of(&r.modem.stored()[0].2).message_ref, 9);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn full_memory_holds_status_reports_in_the_network() {
    let mut r = start(ModemConfig { sim_capacity: 1, ..ModemConfig::default() }).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,2,0").await;
    r.modem.status_report(1, "+79161234567", 0);
    r.modem.status_report(2, "+79161234567", 0);
    c.expect("\r\n+CDSI: \"SM\",1\r\n", WAIT).await;
    assert_eq!(c.drain(Duration::from_millis(300)).await, "", "no room: the second report waits");
    assert_eq!(r.modem.stored().len(), 1);
    assert_eq!(c.lines("AT+CMGD=1").await, ["OK"]);
    c.expect("\r\n+CDSI: \"SM\",1\r\n", WAIT).await;
    assert_eq!(report_of(&r.modem.stored()[0].2).message_ref, 2);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn auto_reports_follow_sends_that_asked() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,1,0").await;
    r.modem.set_auto_reports(Some(Duration::from_millis(200)));
    let quiet = mr_of(&send_pdu(c, &submit("+79161234567", "no report", false)[0]).await);
    let asked = mr_of(&send_pdu(c, &submit("+79161234568", "report", true)[0]).await);
    assert_ne!(quiet, asked);
    c.expect("\r\n+CDS: ", WAIT).await;
    let lines = answer_lines(&c.drain(SECOND).await, "");
    assert_eq!(lines.len(), 2, "exactly one report: {lines:?}");
    let report = report_of(&lines[1]);
    assert_eq!((report.message_ref, report.recipient.value.as_str(), report.status), (asked, "+79161234568", 0));
    r.modem.shutdown().await;
}

#[tokio::test]
async fn a_report_due_during_a_send_comes_after_its_answer() {
    // TS 27.005 §3.4.1: while AT+CMGS has not given its final result the link is reserved, and
    // what the modem has to say (here the report, due 100 ms into a 1 s send) waits for it.
    let mut r = start(ModemConfig { send_delay_ms: 1000, ..ModemConfig::default() }).await;
    let c = &mut r.client;
    c.lines("ATE0;+CNMI=2,1,0,2,0").await;
    r.modem.set_auto_reports(Some(Duration::from_millis(100)));
    let answer = send_pdu(c, &submit("+79161234567", "report me", true)[0]).await;
    assert_eq!(answer_lines(&answer, ""), [format!("+CMGS: {}", mr_of(&answer)), "OK".to_string()]);
    c.expect("\r\n+CDSI: \"SM\",1\r\n", WAIT).await;
    r.modem.shutdown().await;
}

#[tokio::test]
async fn packet_domain_attach_and_operator_formats() {
    let mut r = start(ModemConfig { registration_delay_ms: 500, ..ModemConfig::default() }).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0").await, ["OK"]);
    assert_eq!(c.lines("AT+CGATT=?").await, ["+CGATT: (0,1)", "OK"]);
    assert_eq!(c.lines("AT+CGATT?").await, ["+CGATT: 0", "OK"]);
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(c.lines("AT+CGATT?").await, ["+CGATT: 1", "OK"]);
    assert_eq!(c.lines("AT+CGATT=0").await, ["OK"]);
    assert_eq!(c.lines("AT+CGATT?").await, ["+CGATT: 0", "OK"]);
    assert_eq!(c.lines("AT+CGATT=2").await, ["ERROR"]);
    // The operator by number (MCC and MNC) after AT+COPS=3,2, by name again after AT+COPS=3,0.
    assert_eq!(c.lines("AT+COPS=3,2").await, ["OK"]);
    assert_eq!(c.lines("AT+COPS?").await, ["+COPS: 0,2,\"25001\"", "OK"]);
    assert_eq!(c.lines("AT+COPS=3,0").await, ["OK"]);
    assert_eq!(c.lines("AT+COPS?").await, ["+COPS: 0,0,\"MTS RUS\"", "OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn fail_next_sends() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0;+CMEE=1").await;
    r.modem.fail_next_sends(2, 38);
    let p = &submit("+79161234567", "fails", false)[0];
    assert_eq!(answer_lines(&send_pdu(c, p).await, ""), ["+CMS ERROR: 38"]);
    assert_eq!(answer_lines(&send_pdu(c, p).await, ""), ["+CMS ERROR: 38"]);
    assert_eq!(mr_of(&send_pdu(c, p).await), 1);
    // CMEE=0: a plain ERROR, unless the modem reports +CMS ERROR regardless (SIM800).
    c.lines("AT+CMEE=0").await;
    r.modem.fail_next_sends(1, 500);
    assert_eq!(answer_lines(&send_pdu(c, p).await, ""), ["ERROR"]);
    assert_eq!(r.modem.sent().len(), 1);
    r.modem.shutdown().await;

    let mut r = start(with_quirks(Quirks { cms_errors_ignore_cmee: true, ..Quirks::default() })).await;
    r.client.lines("ATE0").await;
    r.modem.fail_next_sends(1, 500);
    assert_eq!(answer_lines(&send_pdu(&mut r.client, p).await, ""), ["+CMS ERROR: 500"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn hung_modem_answers_nothing() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0").await;
    r.modem.set_hung(true);
    c.write(b"AT\r").await;
    assert_eq!(c.read_some(Duration::from_millis(600)).await, Err(Gone::Timeout));
    r.modem.deliver("+79161112233", "while hung");
    assert_eq!(c.read_some(Duration::from_millis(300)).await, Err(Gone::Timeout));
    r.modem.set_hung(false);
    // The held-back message arrives once the modem lives again.
    c.expect("+CMTI: \"SM\",1", WAIT).await;
    assert_eq!(c.lines("AT").await, ["OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn unplug_and_replug() {
    let mut r = start(ModemConfig::default()).await;
    let link = r.modem.link().to_path_buf();
    let first = r.modem.device_path().expect("plugged in");
    assert_eq!(std::fs::read_link(&link).expect("symlink"), first);
    // The port is exclusive, as real ones are.
    assert!(AtClient::open(&link).is_err(), "second open must fail");
    r.client.lines("ATE0").await;
    r.modem.deliver("+79161112233", "kept on the SIM");
    r.client.expect("+CMTI", WAIT).await;

    r.modem.unplug().await;
    match r.client.read_some(WAIT).await {
        Err(Gone::Closed(_)) => {}
        other => panic!("expected EOF or an error after unplug, got {other:?}"),
    }
    assert!(std::fs::symlink_metadata(&link).is_err(), "symlink removed");
    assert!(r.modem.device_path().is_none());
    // Messages from the network wait while the modem is away.
    r.modem.deliver("+79161112233", "while unplugged");
    drop(r.client);

    r.modem.replug().await.expect("replug");
    assert!(std::fs::read_link(&link).is_ok());
    let mut c = AtClient::open(&link).expect("the same link opens again");
    // Fresh power-up state: echo is on again; storage was kept.
    assert_eq!(c.command("AT").await, "AT\r\r\nOK\r\n");
    // The message reached the SIM while no one had the port open: its +CMTI went nowhere,
    // only a listing finds it.
    let listed = c.lines("AT+CMGL=4").await;
    assert_eq!(listed.len(), 5, "{listed:?}");
    let stored = r.modem.stored();
    assert_eq!(stored.len(), 2);
    assert_eq!(deliver_of(&stored[0].2).text, "kept on the SIM");
    assert_eq!(deliver_of(&stored[1].2).text, "while unplugged");
    r.modem.shutdown().await;
    assert!(std::fs::symlink_metadata(&link).is_err(), "shutdown removes the symlink");
}

#[tokio::test]
async fn huawei_urcs_until_curc_off() {
    let cfg = ModemConfig::profile("huawei-e1752").expect("profile");
    let mut r = start(cfg).await;
    let c = &mut r.client;
    let is_urc = |l: &str| l.starts_with("^RSSI:") || l.starts_with("^MODE:") || l.starts_with("^SRVST:");
    let mut inside = 0;
    for _ in 0..30 {
        let raw = c.command("AT+CPMS?").await;
        let lines = answer_lines(&raw, "AT+CPMS?");
        let cpms = lines.iter().position(|l| l.starts_with("+CPMS:")).expect("+CPMS line");
        // A URC between the information line and OK is inside the answer.
        if lines[cpms + 1..].iter().any(|l| is_urc(l)) {
            inside += 1;
        }
    }
    assert!(inside > 0, "no URC inside an answer in 30 tries");
    assert_eq!(answer_lines(&c.command("AT^CURC=0").await, "AT^CURC=0").last().map(String::as_str), Some("OK"));
    // Anything already on its way is read; then there are no more.
    c.drain(Duration::from_millis(100)).await;
    for _ in 0..20 {
        let lines = answer_lines(&c.command("AT+CPMS?").await, "AT+CPMS?");
        assert!(!lines.iter().any(|l| is_urc(l)), "{lines:?}");
    }
    let quiet = c.drain(Duration::from_secs(2)).await;
    assert!(!answer_lines(&quiet, "").iter().any(|l| is_urc(l)), "{quiet:?}");
    // The E1752 also answers unknown commands its own way and frames with an empty line.
    assert_eq!(c.command("AT+WIND?").await, "AT+WIND?\r\r\nCOMMAND NOT SUPPORT\r\n");
    r.modem.shutdown().await;
}

#[tokio::test]
async fn sms_ready_delay() {
    let mut r = start(with_quirks(Quirks { sms_ready_delay_ms: 800, ..Quirks::default() })).await;
    let c = &mut r.client;
    assert_eq!(c.lines("ATE0;+CMEE=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CMGF=0").await, ["+CMS ERROR: 302"]);
    r.modem.deliver("+79161112233", "waits for SMS Ready");
    c.expect("\r\nCall Ready\r\n\r\nSMS Ready\r\n", WAIT).await;
    c.expect("\r\n+CMTI: \"SM\",1\r\n", WAIT).await;
    assert_eq!(c.lines("AT+CMGF=0").await, ["OK"]);
    r.modem.shutdown().await;

    let quirks = Quirks { sms_ready_delay_ms: 5000, sms_ready_plain_error: true, ..Quirks::default() };
    let mut r = start(with_quirks(quirks)).await;
    assert_eq!(r.client.lines("ATE0;+CMEE=1").await, ["OK"]);
    assert_eq!(r.client.lines("AT+CMGF=1").await, ["ERROR"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn garbage_on_open() {
    let mut r = start(with_quirks(Quirks { garbage_on_open: true, ..Quirks::default() })).await;
    r.client.read_some(WAIT).await.expect("noise arrives without a command");
    tokio::time::sleep(Duration::from_millis(100)).await;
    let _ = r.client.read_some(Duration::from_millis(50)).await;
    let noise = r.client.take_raw();
    assert!(noise.contains(&0x00) && noise.contains(&0xFF), "{noise:02X?}");
    assert!(!noise.windows(2).any(|w| w == b"OK"));
    assert_eq!(r.client.lines("AT").await, ["OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn wavecom_cpin_without_ok_and_padding() {
    let mut r = start(ModemConfig::profile("wavecom").expect("profile")).await;
    let c = &mut r.client;
    c.lines("ATE0").await;
    c.write(b"AT+CPIN?\r").await;
    let raw = c.drain(Duration::from_millis(500)).await;
    assert_eq!(raw, "\r\n+CPIN: READY\r\n");
    assert_eq!(c.command("AT+CGMM").await, "\r\n MULTIBAND  900E  1800 \r\n\r\n\r\nOK\r\n");
    // Busy for two commands right after AT+CFUN=1.
    assert_eq!(c.lines("AT+CFUN=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CMEE=1").await, ["ERROR"]);
    assert_eq!(c.lines("AT+CMEE=1").await, ["ERROR"]);
    assert_eq!(c.lines("AT+CMEE=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CFUN=1").await, ["OK"]);
    assert_eq!(c.lines("AT+CMEE?").await, ["+CME ERROR: 515"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn text_mode_send_and_read() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0;+CMGF=1;+CSMP=49,167,0,0").await;
    c.write(b"AT+CMGS=\"+391234567\"\r").await;
    c.expect("\r\n> ", WAIT).await;
    c.write(b"line one\r").await;
    // Every CR inside the text brings a new prompt.
    c.expect("\r\n> ", WAIT).await;
    c.write(b"line two").await;
    c.write(&[CTRL_Z]).await;
    assert_eq!(answer_lines(&c.until_final(WAIT).await, ""), ["+CMGS: 1", "OK"]);
    let sent = r.modem.sent();
    assert_eq!(
        (sent[0].to.as_str(), sent[0].text.as_str(), sent[0].pdu.as_str()),
        ("+391234567", "line one\nline two", "")
    );
    assert!(sent[0].status_report);

    r.modem.deliver("+79161112233", "text mode read");
    c.expect("+CMTI: \"SM\",1", WAIT).await;
    let lines = c.lines("AT+CMGR=1").await;
    assert!(lines[0].starts_with("+CMGR: \"REC UNREAD\",\"+79161112233\",,\""), "{lines:?}");
    assert_eq!(lines[1], "text mode read");
    assert_eq!(c.lines("AT+CMGL=\"ALL\"").await.len(), 3);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn usb_reset_re_enumerates() {
    let mut r = start(with_quirks(Quirks { usb_reset_ms: 300, ..Quirks::default() })).await;
    let link = r.modem.link().to_path_buf();
    assert_eq!(r.client.lines("AT+CFUN=1,1").await, ["OK"]);
    match r.client.read_some(WAIT).await {
        Err(Gone::Closed(_)) => {}
        other => panic!("expected the port to vanish, got {other:?}"),
    }
    drop(r.client);
    let deadline = tokio::time::Instant::now() + WAIT;
    while std::fs::read_link(&link).is_err() {
        assert!(tokio::time::Instant::now() < deadline, "the device did not come back");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut c = AtClient::open(&link).expect("reopen after reset");
    assert_eq!(c.lines("AT").await, ["OK"]);
    r.modem.shutdown().await;
}

#[tokio::test]
async fn full_storage_holds_messages_in_the_network() {
    let cfg = ModemConfig { sim_capacity: 2, ..ModemConfig::default() };
    let mut r = start(cfg).await;
    let c = &mut r.client;
    c.lines("ATE0").await;
    for text in ["one", "two", "three"] {
        r.modem.deliver("+79161112233", text);
    }
    c.expect("+CMTI: \"SM\",2", WAIT).await;
    assert_eq!(r.modem.stored().len(), 2);
    assert_eq!(c.lines("AT+CMGD=1").await, ["OK"]);
    c.expect("+CMTI: \"SM\",1", WAIT).await;
    assert_eq!(deliver_of(&r.modem.stored()[0].2).text, "three");
    r.modem.shutdown().await;
}

#[tokio::test]
async fn survives_hostile_input() {
    let mut r = start(ModemConfig::default()).await;
    let c = &mut r.client;
    c.lines("ATE0").await;
    let mut junk: Vec<u8> = (0..=255u8).cycle().take(5000).filter(|&b| b != b'\r' && b != ESC && b != CTRL_Z).collect();
    junk.push(b'\r');
    c.write(&junk).await;
    c.write(b"AT+CMGS=\"\"\r").await;
    c.write(&vec![b'A'; 3000]).await;
    c.write(b"\r\xff\xfe\r").await;
    c.drain(Duration::from_millis(500)).await;
    assert_eq!(c.lines("AT").await, ["OK"]);
    assert!(r.modem.sent().is_empty());
    r.modem.shutdown().await;
}

#[tokio::test]
async fn profiles_and_config_from_json() {
    for name in [
        "sim800",
        "sim7670g",
        "sim7600",
        "ec25",
        "huawei-e1752",
        "huawei-e3372",
        "wavecom",
        "mc55i",
        "telit",
        "zte",
        "nokia",
    ] {
        assert!(ModemConfig::profile(name).is_some(), "{name}");
    }
    assert!(ModemConfig::profile("nope").is_none());
    let cfg: ModemConfig =
        serde_json::from_str(r#"{"model": "EC25", "pin": "1111", "quirks": {"huawei_urcs": true}}"#).expect("parses");
    assert_eq!((cfg.model.as_str(), cfg.manufacturer.as_str()), ("EC25", "SIMCOM_Ltd"));
    assert!(cfg.quirks.huawei_urcs);
    assert!(serde_json::from_str::<ModemConfig>(r#"{"modle": "x"}"#).is_err());
    assert!(serde_json::from_str::<ModemConfig>(r#"{"quirks": {"nope": 1}}"#).is_err());
}
