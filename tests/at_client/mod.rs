//! A small AT client for the tests: opens the modem's link with tokio-serial as the gateway opens
//! a real port (exclusive, raw), writes command lines and reads bytes with deadlines. It never calls `flush()`: tokio-serial
//! implements it with a blocking `tcdrain()`, which would stall the test's runtime and the modem in it. It keeps
//! what it has read but not yet consumed, so URCs that arrive between answers are not lost.

#![allow(dead_code)]

use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::time::{Instant, timeout};
use tokio_serial::{SerialPortBuilderExt, SerialStream};

pub const CTRL_Z: u8 = 0x1A;
pub const ESC: u8 = 0x1B;

pub struct AtClient {
    port: SerialStream,
    buf: Vec<u8>,
}

/// How a read attempt ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Gone {
    /// EOF or an I/O error: the device went away.
    Closed(String),
    /// Nothing arrived in time.
    Timeout,
}

impl AtClient {
    pub fn open(path: &Path) -> std::io::Result<AtClient> {
        let port = tokio_serial::new(path.to_string_lossy(), 115_200).open_native_async()?;
        Ok(AtClient { port, buf: Vec::new() })
    }

    pub async fn write(&mut self, bytes: &[u8]) {
        self.port.write_all(bytes).await.expect("write to the modem");
    }

    /// Read once, waiting at most `within`.
    pub async fn read_some(&mut self, within: Duration) -> Result<usize, Gone> {
        let mut chunk = [0u8; 4096];
        match timeout(within, self.port.read(&mut chunk)).await {
            Err(_) => Err(Gone::Timeout),
            Ok(Ok(0)) => Err(Gone::Closed("EOF".into())),
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(n)
            }
            Ok(Err(e)) => Err(Gone::Closed(e.to_string())),
        }
    }

    /// Everything that arrives within `within` (consumed), plus what was already buffered.
    pub async fn drain(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            if self.read_some(left).await.is_err() {
                break;
            }
        }
        String::from_utf8_lossy(&std::mem::take(&mut self.buf)).into_owned()
    }

    /// Raw bytes received so far, consumed.
    pub fn take_raw(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.buf)
    }

    /// Wait until the received text contains `needle`; consume and return everything up to and
    /// including it. Panics (failing the test) after `within`.
    pub async fn expect(&mut self, needle: &str, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(pos) = find(&self.buf, needle.as_bytes()) {
                let rest = self.buf.split_off(pos + needle.len());
                let got = std::mem::replace(&mut self.buf, rest);
                return String::from_utf8_lossy(&got).into_owned();
            }
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            if let Err(e) = self.read_some(left).await {
                panic!("waiting for {needle:?}: {e:?}; got {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }

    /// Send `line` + CR and read up to the final result (OK, ERROR, +CME/+CMS ERROR, COMMAND
    /// NOT SUPPORT); returns the raw text of the answer (echo included). Panics after 3 s.
    pub async fn command(&mut self, line: &str) -> String {
        self.write(format!("{line}\r").as_bytes()).await;
        self.until_final(Duration::from_secs(3)).await
    }

    /// As [`AtClient::command`] but the answer's non-empty lines other than the echo.
    pub async fn lines(&mut self, line: &str) -> Vec<String> {
        let raw = self.command(line).await;
        answer_lines(&raw, line)
    }

    pub async fn until_final(&mut self, within: Duration) -> String {
        let deadline = Instant::now() + within;
        loop {
            if let Some(end) = final_end(&self.buf) {
                let rest = self.buf.split_off(end);
                let got = std::mem::replace(&mut self.buf, rest);
                return String::from_utf8_lossy(&got).into_owned();
            }
            let left = deadline.checked_duration_since(Instant::now()).unwrap_or_default();
            if let Err(e) = self.read_some(left).await {
                panic!("no final result: {e:?}; got {:?}", String::from_utf8_lossy(&self.buf));
            }
        }
    }
}

/// The non-empty lines of an answer, without the echo of `command`.
pub fn answer_lines(raw: &str, command: &str) -> Vec<String> {
    raw.split(['\r', '\n']).map(str::trim_end).filter(|l| !l.is_empty() && *l != command).map(String::from).collect()
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() {
        return Some(0);
    }
    hay.windows(needle.len()).position(|w| w == needle)
}

/// End (after its CR LF) of the first complete line that is a final result.
fn final_end(buf: &[u8]) -> Option<usize> {
    let mut start = 0;
    while let Some(rel) = find(&buf[start..], b"\r\n") {
        let line = String::from_utf8_lossy(&buf[start..start + rel]);
        let line = line.trim_matches(['\r', '\n']);
        let is_final = line == "OK"
            || line == "ERROR"
            || line == "COMMAND NOT SUPPORT"
            || line.starts_with("+CME ERROR")
            || line.starts_with("+CMS ERROR");
        start += rel + 2;
        if is_final {
            return Some(start);
        }
    }
    None
}
