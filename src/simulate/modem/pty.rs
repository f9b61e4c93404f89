//! The wire: a pseudo-terminal pair whose master side the modem drives, the stable symlink to its
//! slave, and the task that moves bytes between the master and the [`Engine`](super::engine).
//!
//! Facts this relies on (Linux, measured): while no one has the slave open the master polls
//! POLLHUP and reads EIO, but writes to it still succeed and are handed to the *next* opener, so
//! output is dropped here while the slave is closed (a real USB modem's bytes are lost when the
//! port is closed too). With epoll, POLLHUP is level-like and would make the master readable
//! forever, so the master is read only while the slave is open; opening is noticed by polling for
//! POLLHUP on every tick. Closing the master hangs the slave up: the gateway's reads return EOF
//! or EIO and its writes fail, as with an unplugged USB device. The slave is put in raw mode at
//! once, so whoever opens it first (even `cat`) sees no echo or line editing from the kernel.

use std::io;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};
use tokio::io::unix::AsyncFd;
use tokio::sync::oneshot;
use tokio::time::{MissedTickBehavior, interval, sleep, timeout};

use super::Inner;

/// How often time-driven behaviour runs (URCs, registration, delayed answers) and an open of the
/// slave is noticed.
const TICK: Duration = Duration::from_millis(20);
/// A gateway that reads nothing for this long while the pty buffer is full loses the rest.
const WRITE_STALL: Duration = Duration::from_secs(2);
/// Between the answer to AT+CFUN=1,1 and the device vanishing (a hang-up discards unread input).
const RESET_GRACE: Duration = Duration::from_millis(150);

/// The master side of a pty pair, non-blocking, and the slave's device path.
pub(super) struct Pty {
    master: AsyncFd<OwnedFd>,
    slave_path: PathBuf,
}

impl Pty {
    /// A new pty pair in raw mode; the slave is closed again, ready for the gateway to open.
    pub(super) fn open() -> io::Result<Pty> {
        let pair = nix::pty::openpty(None, None)?;
        let mut termios = tcgetattr(&pair.slave)?;
        cfmakeraw(&mut termios);
        tcsetattr(&pair.slave, SetArg::TCSANOW, &termios)?;
        let slave_path = nix::unistd::ttyname(&pair.slave)?;
        drop(pair.slave);
        // openpty(3) does not set close-on-exec: a process started later (the gateway under
        // test) would inherit the master, and an unplug would no longer hang the slave up.
        fcntl(&pair.master, FcntlArg::F_SETFD(FdFlag::FD_CLOEXEC))?;
        let flags = OFlag::from_bits_truncate(fcntl(&pair.master, FcntlArg::F_GETFL)?);
        fcntl(&pair.master, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        // SAFETY: an OwnedFd owns its descriptor: it stays open and the same until the AsyncFd,
        // which owns the OwnedFd, is dropped.
        let master = unsafe { AsyncFd::register(pair.master) }.map_err(|e| e.into_parts().1)?;
        Ok(Pty { master, slave_path })
    }

    pub(super) fn slave_path(&self) -> &Path {
        &self.slave_path
    }

    /// Whether someone has the slave open (no POLLHUP on the master).
    fn slave_open(&self) -> bool {
        let mut fds = [PollFd::new(self.master.get_ref().as_fd(), PollFlags::POLLOUT)];
        match poll(&mut fds, PollTimeout::ZERO) {
            Ok(_) => !fds[0].revents().is_some_and(|r| r.contains(PollFlags::POLLHUP)),
            Err(_) => false,
        }
    }

    /// Register the master with the reactor afresh. Tokio keeps a hang-up it once saw (the slave
    /// closed) for good, so the master would look readable forever and every read give EAGAIN;
    /// this is done whenever the slave is opened again.
    fn reregister(self) -> io::Result<Pty> {
        let fd = self.master.into_inner();
        // SAFETY: as in `open`.
        let master = unsafe { AsyncFd::register(fd) }.map_err(|e| e.into_parts().1)?;
        Ok(Pty { master, slave_path: self.slave_path })
    }

    /// Read what is there. `Ok(None)`: the slave was closed (EIO).
    async fn read(&self, buf: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            let mut guard = self.master.readable().await?;
            match guard.try_io(|fd| nix::unistd::read(fd.get_ref(), buf).map_err(io::Error::from)) {
                Ok(Ok(n)) if n > 0 => return Ok(Some(n)),
                Ok(Ok(_)) => return Ok(None),
                Ok(Err(e)) if e.raw_os_error() == Some(Errno::EIO as i32) => return Ok(None),
                Ok(Err(e)) => return Err(e),
                // A stale hang-up keeps the fd "readable": never spin on it.
                Err(_would_block) => sleep(TICK).await,
            }
        }
    }

    /// Write all of `bytes` unless the slave is closed or the reader stalls.
    async fn write_all(&self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if !self.slave_open() {
                return;
            }
            let Ok(Ok(mut guard)) = timeout(WRITE_STALL, self.master.writable()).await else {
                tracing::debug!(dropped = bytes.len(), "virtual modem: reader stalled, output dropped");
                return;
            };
            match guard.try_io(|fd| nix::unistd::write(fd.get_ref(), bytes).map_err(io::Error::from)) {
                Ok(Ok(n)) if n > 0 => bytes = &bytes[n..],
                Ok(Ok(_)) => sleep(TICK).await,
                Ok(Err(_)) => return,
                Err(_would_block) => {}
            }
        }
    }
}

/// Point `link` at `target`, atomically replacing a symlink already there.
pub(super) fn link(target: &Path, link: &Path) -> io::Result<()> {
    if let Some(dir) = link.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    match std::fs::symlink_metadata(link) {
        Ok(meta) if !meta.file_type().is_symlink() => {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} exists and is not a symlink", link.display()),
            ));
        }
        _ => {}
    }
    let name = link.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = link.with_file_name(format!(".{name}.{}.tmp", std::process::id()));
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)?;
    std::fs::rename(&tmp, link).inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Remove `link` if it is a symlink to `target` (or to anything, when `target` is unknown).
pub(super) fn unlink_if_ours(link: &Path, target: Option<&Path>) {
    let ours = match (std::fs::read_link(link), target) {
        (Ok(points_to), Some(target)) => points_to == target,
        (Ok(_), None) => true,
        (Err(_), _) => false,
    };
    if ours {
        let _ = std::fs::remove_file(link);
    }
}

/// Serve one plugged-in device until `stop` fires: read commands, run the engine's clock, write
/// its output. An AT+CFUN=1,1 with [`super::Quirks::usb_reset_ms`] swaps the pty here.
pub(super) async fn serve(inner: Arc<Inner>, mut pty: Pty, mut stop: oneshot::Receiver<()>) {
    let mut ticker = interval(TICK);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut open = false;
    let mut buf = [0u8; 4096];
    loop {
        tokio::select! {
            biased;
            _ = &mut stop => break,
            read = pty.read(&mut buf), if open => match read {
                Ok(Some(n)) => inner.engine().feed(&buf[..n], Instant::now()),
                Ok(None) => {
                    open = false;
                    inner.engine().set_attached(false, Instant::now());
                }
                Err(e) => {
                    tracing::warn!(error = %e, fd = pty.master.get_ref().as_raw_fd(), "virtual modem: pty read failed");
                    open = false;
                }
            },
            _ = ticker.tick() => {
                let now = Instant::now();
                let now_open = pty.slave_open();
                if now_open && !open {
                    pty = match pty.reregister() {
                        Ok(p) => p,
                        Err(e) => {
                            tracing::warn!(error = %e, "virtual modem: cannot watch the pty");
                            return;
                        }
                    };
                }
                let mut engine = inner.engine();
                if now_open != open {
                    open = now_open;
                    engine.set_attached(open, now);
                }
                engine.tick(now);
            }
            _ = inner.notify.notified() => {}
        }
        let (out, usb_reset) = inner.engine().take_output();
        if open && !out.is_empty() {
            pty.write_all(&out).await;
        }
        if let Some(after) = usb_reset {
            // The module resets and re-enumerates: the device node goes away and comes back. A
            // moment first, so that the answer (OK) is read before the hang-up flushes it.
            tokio::select! {
                _ = &mut stop => break,
                _ = sleep(RESET_GRACE) => {}
            }
            unlink_if_ours(&inner.link, Some(pty.slave_path()));
            *super::lock(&inner.slave) = None;
            drop(pty);
            inner.engine().power_off();
            tokio::select! {
                _ = &mut stop => return,
                _ = sleep(after) => {}
            }
            match Pty::open().and_then(|p| link(p.slave_path(), &inner.link).map(|()| p)) {
                Ok(p) => pty = p,
                Err(e) => {
                    tracing::warn!(error = %e, "virtual modem: cannot re-create the pty after reset");
                    return;
                }
            }
            *super::lock(&inner.slave) = Some(pty.slave_path().to_path_buf());
            inner.engine().power_up(Instant::now());
            open = false;
        }
    }
    unlink_if_ours(&inner.link, Some(pty.slave_path()));
}
