//! An RFB (VNC) server for one console connection: protocol 3.3 / 3.7 / 3.8 with security type None, ServerInit,
//! SetPixelFormat, SetEncodings (Raw, Hextile), FramebufferUpdateRequest (incremental or not), KeyEvent (applied
//! to the shared [`Screen`]), PointerEvent and ClientCutText (ignored). Anything malformed ends the session.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;

use super::encode;
use super::pixel::PixelFormat;
use super::screen::{Attr, Grid, COLS, HEIGHT, PALETTE, ROWS, WIDTH};
use super::Screen;
use crate::console::font;

/// Largest ClientCutText accepted (its bytes are read and dropped); a longer one ends the session.
const MAX_CUT_TEXT: u32 = 1 << 20;
/// Largest SetEncodings list accepted.
const MAX_ENCODINGS: u16 = 1024;

/// Why a session ended abnormally.
#[derive(Debug, thiserror::Error)]
pub enum RfbError {
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("protocol: {0}")]
    Protocol(String),
}

/// A decoded client-to-server message (those the writer side acts on).
#[derive(Debug)]
enum ClientMsg {
    SetPixelFormat(PixelFormat),
    SetEncodings(Vec<i32>),
    Update {
        incremental: bool,
        x: u16,
        y: u16,
        w: u16,
        h: u16,
    },
}

/// Serve one RFB session on `io` until the client leaves, sends garbage, `alive()` turns false (checked every
/// `poll`, during the handshake too), or — with `idle` — no key or pointer event came for that long (XAPI's console
/// idle timeout). The stream is shut down at the end.
pub async fn serve<S, F>(
    mut io: S,
    screen: Arc<Screen>,
    alive: F,
    poll: Duration,
    idle: Option<Duration>,
) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
    F: Fn() -> bool,
{
    let start = tokio::time::Instant::now();
    let last_input = AtomicU64::new(0);
    let watchdog = async {
        let mut tick = tokio::time::interval(poll);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if !alive() {
                tracing::debug!("console gone; closing the RFB session");
                return;
            }
            let last = Duration::from_millis(last_input.load(Ordering::Relaxed));
            if idle.is_some_and(|limit| start.elapsed().saturating_sub(last) > limit) {
                tracing::debug!("console idle timeout; closing the RFB session");
                return;
            }
        }
    };
    let input = || last_input.store(start.elapsed().as_millis() as u64, Ordering::Relaxed);
    let out = tokio::select! {
        r = session(&mut io, &screen, &input) => r,
        _ = watchdog => Ok(()),
    };
    let _ = io.shutdown().await;
    out
}

async fn session<S>(io: &mut S, screen: &Screen, input: &impl Fn()) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    handshake(io, &screen.name).await?;
    let (mut rd, mut wr) = tokio::io::split(io);
    let (tx, rx) = mpsc::channel::<ClientMsg>(64);
    let reader = async {
        loop {
            match read_msg(&mut rd, screen, input).await? {
                Some(m) => {
                    if tx.send(m).await.is_err() {
                        return Ok(());
                    }
                }
                None => return Ok(()),
            }
        }
    };
    let writer = write_loop(&mut wr, screen, rx);
    tokio::select! {
        r = reader => r,
        w = writer => w,
    }
}

async fn handshake<S>(io: &mut S, name: &str) -> Result<(), RfbError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    io.write_all(b"RFB 003.008\n").await?;
    io.flush().await?;
    let mut v = [0u8; 12];
    io.read_exact(&mut v).await?;
    let minor = parse_version(&v)?;
    if minor >= 7 {
        io.write_all(&[1, 1]).await?;
        io.flush().await?;
        let mut choice = [0u8; 1];
        io.read_exact(&mut choice).await?;
        if choice[0] != 1 {
            if minor >= 8 {
                let reason = b"security type not offered";
                io.write_all(&1u32.to_be_bytes()).await?;
                io.write_all(&(reason.len() as u32).to_be_bytes()).await?;
                io.write_all(reason).await?;
                io.flush().await?;
            }
            return Err(RfbError::Protocol(format!(
                "client chose security type {}",
                choice[0]
            )));
        }
        if minor >= 8 {
            io.write_all(&0u32.to_be_bytes()).await?;
        }
    } else {
        io.write_all(&1u32.to_be_bytes()).await?;
    }
    io.flush().await?;
    let mut shared = [0u8; 1];
    io.read_exact(&mut shared).await?;
    let mut init = Vec::with_capacity(24 + name.len());
    init.extend_from_slice(&WIDTH.to_be_bytes());
    init.extend_from_slice(&HEIGHT.to_be_bytes());
    init.extend_from_slice(&PixelFormat::NATIVE.to_bytes());
    init.extend_from_slice(&(name.len() as u32).to_be_bytes());
    init.extend_from_slice(name.as_bytes());
    io.write_all(&init).await?;
    io.flush().await?;
    Ok(())
}

/// The minor version of a 3.x ProtocolVersion message (3.4-3.6 count as 3.3, anything above 3.8 as 3.8).
fn parse_version(v: &[u8; 12]) -> Result<u32, RfbError> {
    let bad = || RfbError::Protocol("bad ProtocolVersion".into());
    if &v[..4] != b"RFB " || v[7] != b'.' || v[11] != b'\n' {
        return Err(bad());
    }
    let num = |s: &[u8]| -> Result<u32, RfbError> {
        if !s.iter().all(u8::is_ascii_digit) {
            return Err(bad());
        }
        std::str::from_utf8(s)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(bad)
    };
    let (major, minor) = (num(&v[4..7])?, num(&v[8..11])?);
    if major != 3 || minor < 3 {
        return Err(RfbError::Protocol(format!(
            "unsupported RFB version {major}.{minor}"
        )));
    }
    Ok(match minor {
        3..=6 => 3,
        7 => 7,
        _ => 8,
    })
}

/// Read one client message the writer acts on; `None` on a clean end of stream between messages. Key events are
/// applied to the screen here; pointer events and cut text are read and dropped.
async fn read_msg<R>(
    rd: &mut R,
    screen: &Screen,
    input: &impl Fn(),
) -> Result<Option<ClientMsg>, RfbError>
where
    R: AsyncRead + Unpin,
{
    loop {
        let mut t = [0u8; 1];
        if rd.read(&mut t).await? == 0 {
            return Ok(None);
        }
        match t[0] {
            0 => {
                let mut b = [0u8; 19];
                rd.read_exact(&mut b).await?;
                let mut raw = [0u8; 16];
                raw.copy_from_slice(&b[3..]);
                let pf = PixelFormat::parse(&raw).map_err(RfbError::Protocol)?;
                return Ok(Some(ClientMsg::SetPixelFormat(pf)));
            }
            2 => {
                let mut b = [0u8; 3];
                rd.read_exact(&mut b).await?;
                let n = u16::from_be_bytes([b[1], b[2]]);
                if n > MAX_ENCODINGS {
                    return Err(RfbError::Protocol(format!("{n} encodings")));
                }
                let mut list = vec![0u8; usize::from(n) * 4];
                rd.read_exact(&mut list).await?;
                let encs = list
                    .chunks_exact(4)
                    .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
                return Ok(Some(ClientMsg::SetEncodings(encs)));
            }
            3 => {
                let mut b = [0u8; 9];
                rd.read_exact(&mut b).await?;
                let u = |i: usize| u16::from_be_bytes([b[i], b[i + 1]]);
                return Ok(Some(ClientMsg::Update {
                    incremental: b[0] != 0,
                    x: u(1),
                    y: u(3),
                    w: u(5),
                    h: u(7),
                }));
            }
            4 => {
                let mut b = [0u8; 7];
                rd.read_exact(&mut b).await?;
                let sym = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                screen.key(b[0] != 0, sym);
                input();
            }
            5 => {
                let mut b = [0u8; 5];
                rd.read_exact(&mut b).await?;
                input();
            }
            6 => {
                let mut b = [0u8; 7];
                rd.read_exact(&mut b).await?;
                let len = u32::from_be_bytes([b[3], b[4], b[5], b[6]]);
                if len > MAX_CUT_TEXT {
                    return Err(RfbError::Protocol(format!("ClientCutText of {len} bytes")));
                }
                let mut limited = (&mut *rd).take(u64::from(len));
                let copied = tokio::io::copy(&mut limited, &mut tokio::io::sink()).await?;
                if copied != u64::from(len) {
                    return Err(RfbError::Protocol("truncated ClientCutText".into()));
                }
            }
            other => {
                return Err(RfbError::Protocol(format!(
                    "unknown client message type {other}"
                )))
            }
        }
    }
}

/// Text rows below the title bar (the part that scrolls).
const TEXT_ROWS: usize = ROWS - 1;

/// What the client currently shows, per cell (`None` = never sent), and the grid `top` it was last sent from (a
/// hint for CopyRect; correctness only relies on `cells`).
struct ClientView {
    cells: Vec<Option<(u8, Attr)>>,
    top: Option<u64>,
}

impl ClientView {
    /// Track a CopyRect that moves the text rows up by `d` rows (down for negative `d`): destination rows whose
    /// source is on screen take the source's cells; others keep theirs.
    fn scroll(&mut self, d: i64) {
        let old = self.cells.clone();
        for r in 0..TEXT_ROWS as i64 {
            let src = r + d;
            if (0..TEXT_ROWS as i64).contains(&src) {
                let (dst, src) = ((r as usize + 1) * COLS, (src as usize + 1) * COLS);
                self.cells[dst..dst + COLS].copy_from_slice(&old[src..src + COLS]);
            }
        }
    }

    /// Pixel bounding box of the cells inside (x, y, w, h) that differ from `grid`, clipped to that region.
    fn dirty(&self, grid: &Grid, x: u16, y: u16, w: u16, h: u16) -> Option<(u16, u16, u16, u16)> {
        let (x1, y1) = (x + w, y + h);
        let (c_lo, c_hi) = (
            x as usize / font::WIDTH,
            (x1 as usize).div_ceil(font::WIDTH),
        );
        let (r_lo, r_hi) = (
            y as usize / font::HEIGHT,
            (y1 as usize).div_ceil(font::HEIGHT),
        );
        let (mut c0, mut r0, mut c1, mut r1) = (usize::MAX, usize::MAX, 0, 0);
        for r in r_lo..r_hi.min(ROWS) {
            for c in c_lo..c_hi.min(COLS) {
                if self.cells[r * COLS + c] != Some(grid.cell(c, r)) {
                    c0 = c0.min(c);
                    r0 = r0.min(r);
                    c1 = c1.max(c + 1);
                    r1 = r1.max(r + 1);
                }
            }
        }
        if c0 == usize::MAX {
            return None;
        }
        let px0 = ((c0 * font::WIDTH) as u16).max(x);
        let py0 = ((r0 * font::HEIGHT) as u16).max(y);
        let px1 = ((c1 * font::WIDTH) as u16).min(x1);
        let py1 = ((r1 * font::HEIGHT) as u16).min(y1);
        (px1 > px0 && py1 > py0).then_some((px0, py0, px1 - px0, py1 - py0))
    }

    /// Record that the pixel rectangle was sent from `grid` (cells only partly covered stay unknown).
    fn sent(&mut self, grid: &Grid, x: u16, y: u16, w: u16, h: u16) {
        let (x1, y1) = (usize::from(x + w), usize::from(y + h));
        for r in 0..ROWS {
            for c in 0..COLS {
                let (cx, cy) = (c * font::WIDTH, r * font::HEIGHT);
                let inside = cx >= usize::from(x)
                    && cy >= usize::from(y)
                    && cx + font::WIDTH <= x1
                    && cy + font::HEIGHT <= y1;
                if inside {
                    self.cells[r * COLS + c] = Some(grid.cell(c, r));
                } else if cx < x1
                    && cx + font::WIDTH > usize::from(x)
                    && cy < y1
                    && cy + font::HEIGHT > usize::from(y)
                {
                    self.cells[r * COLS + c] = None;
                }
            }
        }
    }
}

/// Clip a requested rectangle to the framebuffer; `None` when empty.
fn clip(x: u16, y: u16, w: u16, h: u16) -> Option<(u16, u16, u16, u16)> {
    if x >= WIDTH || y >= HEIGHT {
        return None;
    }
    let w = w.min(WIDTH - x);
    let h = h.min(HEIGHT - y);
    (w > 0 && h > 0).then_some((x, y, w, h))
}

async fn write_loop<W>(
    wr: &mut W,
    screen: &Screen,
    mut rx: mpsc::Receiver<ClientMsg>,
) -> Result<(), RfbError>
where
    W: AsyncWrite + Unpin,
{
    let mut pf = PixelFormat::NATIVE;
    let mut encoding = encode::RAW;
    let mut copy_rect = false;
    let mut view = ClientView {
        cells: vec![None; COLS * ROWS],
        top: None,
    };
    let mut pending: Option<(u16, u16, u16, u16)> = None;
    let mut changes = screen.subscribe();
    loop {
        tokio::select! {
            msg = rx.recv() => {
                let Some(msg) = msg else { return Ok(()) };
                match msg {
                    ClientMsg::SetPixelFormat(p) => {
                        pf = p;
                        if !pf.true_colour {
                            wr.write_all(&colour_map()).await?;
                            wr.flush().await?;
                        }
                    }
                    ClientMsg::SetEncodings(list) => {
                        copy_rect = list.contains(&encode::COPY_RECT);
                        encoding = list
                            .into_iter()
                            .find(|e| *e == encode::RAW || *e == encode::HEXTILE)
                            .unwrap_or(encode::RAW);
                    }
                    ClientMsg::Update { incremental, x, y, w, h } => {
                        let Some(region) = clip(x, y, w, h) else {
                            // Nothing to draw: answer with an empty update so the client keeps going.
                            if !incremental {
                                wr.write_all(&[0, 0, 0, 0]).await?;
                                wr.flush().await?;
                            }
                            continue;
                        };
                        let grid = screen.grid();
                        let plan = plan(&mut view, &grid, region, incremental, copy_rect);
                        if plan == (None, None) {
                            pending = Some(region);
                        } else {
                            pending = None;
                            send_update(wr, &mut view, &grid, plan, pf, encoding).await?;
                        }
                    }
                }
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
                if let Some(region) = pending {
                    let grid = screen.grid();
                    let plan = plan(&mut view, &grid, region, true, copy_rect);
                    if plan != (None, None) {
                        pending = None;
                        send_update(wr, &mut view, &grid, plan, pf, encoding).await?;
                    }
                }
            }
        }
    }
}

/// SetColourMapEntries for the whole palette (colour-map pixel formats use palette indices as pixel values).
fn colour_map() -> Vec<u8> {
    let mut m = vec![1, 0, 0, 0];
    m.extend_from_slice(&(PALETTE.len() as u16).to_be_bytes());
    for (r, g, b) in PALETTE {
        for c in [r, g, b] {
            m.extend_from_slice(&(u16::from(c) * 257).to_be_bytes());
        }
    }
    m
}

/// What to send: a CopyRect scroll of the text rows by `d` rows, then a rectangle to draw.
type Plan = (Option<i64>, Option<(u16, u16, u16, u16)>);

/// Decide an update for `region`: when the client asked incrementally for the whole screen, supports CopyRect and
/// the text scrolled by less than a screen since it was last sent, move the rows it already has; then draw what
/// still differs (everything in `region` when not incremental). The view is updated for the scroll.
fn plan(
    view: &mut ClientView,
    grid: &Grid,
    region: (u16, u16, u16, u16),
    incremental: bool,
    copy_rect: bool,
) -> Plan {
    let mut copy = None;
    if incremental && copy_rect && region == (0, 0, WIDTH, HEIGHT) {
        if let Some(top) = view.top {
            let d = grid.top as i64 - top as i64;
            if d != 0 && d.unsigned_abs() < TEXT_ROWS as u64 {
                view.scroll(d);
                copy = Some(d);
            }
        }
    }
    let rect = if incremental {
        view.dirty(grid, region.0, region.1, region.2, region.3)
    } else {
        Some(region)
    };
    (copy, rect)
}

async fn send_update<W>(
    wr: &mut W,
    view: &mut ClientView,
    grid: &Grid,
    (copy, rect): Plan,
    pf: PixelFormat,
    encoding: i32,
) -> Result<(), RfbError>
where
    W: AsyncWrite + Unpin,
{
    let n = u16::from(copy.is_some()) + u16::from(rect.is_some());
    let mut msg = vec![0, 0];
    msg.extend_from_slice(&n.to_be_bytes());
    let header = |msg: &mut Vec<u8>, x: u16, y: u16, w: u16, h: u16, enc: i32| {
        for v in [x, y, w, h] {
            msg.extend_from_slice(&v.to_be_bytes());
        }
        msg.extend_from_slice(&enc.to_be_bytes());
    };
    if let Some(d) = copy {
        let rows = (TEXT_ROWS - d.unsigned_abs() as usize) as u16;
        let fh = font::HEIGHT as u16;
        let shift = d.unsigned_abs() as u16 * fh;
        let (dst_y, src_y) = if d > 0 {
            (fh, fh + shift)
        } else {
            (fh + shift, fh)
        };
        header(&mut msg, 0, dst_y, WIDTH, rows * fh, encode::COPY_RECT);
        msg.extend_from_slice(&0u16.to_be_bytes());
        msg.extend_from_slice(&src_y.to_be_bytes());
    }
    if let Some((x, y, w, h)) = rect {
        let px = grid.render(x, y, w, h);
        msg.reserve(12 + px.len() * pf.bytes());
        header(&mut msg, x, y, w, h, encoding);
        if encoding == encode::HEXTILE {
            encode::hextile(pf, &px, w, h, &mut msg);
        } else {
            encode::raw(pf, &px, &mut msg);
        }
        view.sent(grid, x, y, w, h);
    }
    view.top = Some(grid.top);
    wr.write_all(&msg).await?;
    wr.flush().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(parse_version(b"RFB 003.003\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.005\n").unwrap(), 3);
        assert_eq!(parse_version(b"RFB 003.007\n").unwrap(), 7);
        assert_eq!(parse_version(b"RFB 003.008\n").unwrap(), 8);
        assert_eq!(parse_version(b"RFB 003.889\n").unwrap(), 8);
        assert!(parse_version(b"RFB 004.000\n").is_err());
        assert!(parse_version(b"GET / HTTP/1").is_err());
        assert!(parse_version(b"RFB 0x3.008\n").is_err());
    }

    #[test]
    fn clipping_and_dirty_regions() {
        assert_eq!(clip(0, 0, 65535, 65535), Some((0, 0, WIDTH, HEIGHT)));
        assert_eq!(clip(WIDTH, 0, 1, 1), None);
        let t = super::super::screen::ConsoleText::new("t", &[], "$ ");
        let g = t.grid();
        let mut v = ClientView {
            cells: vec![None; COLS * ROWS],
            top: None,
        };
        assert_eq!(
            v.dirty(&g, 0, 0, WIDTH, HEIGHT),
            Some((0, 0, WIDTH, HEIGHT))
        );
        v.sent(&g, 0, 0, WIDTH, HEIGHT);
        assert_eq!(v.dirty(&g, 0, 0, WIDTH, HEIGHT), None);
        v.sent(&g, 3, 3, 2, 2);
        assert_eq!(v.dirty(&g, 0, 0, WIDTH, HEIGHT), Some((0, 0, 8, 16)));
        assert_eq!(v.dirty(&g, 4, 4, 100, 100), Some((4, 4, 4, 12)));
    }
}
