//! End-to-end tests of `/console`: CONNECT tunnels (plain and TLS) and the WebSocket form, driven by a small RFB
//! client written here that decodes Raw and Hextile updates and reads the text back from the pixels.

use std::sync::Arc;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;
use xapi_sim::console::font;
use xapi_sim::{RunningPool, Sim};
use xapi_types::Ref;

/// Safety net against hangs (never a timing assertion).
const LONG: Duration = Duration::from_secs(20);

trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

struct Env {
    pool: RunningPool,
    session: String,
    vm: Ref,
    console: Ref,
    /// `ip:port` of the host the VM runs on.
    addr: String,
    tls: bool,
}

async fn env(tls: bool) -> Env {
    let pool = Sim::builder()
        .hosts(2)
        .vms(6)
        .build()
        .expect("build")
        .serve("127.0.0.1:0".parse().unwrap(), tls)
        .await
        .expect("serve");
    let session = pool
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root")],
        )
        .unwrap()
        .as_str()
        .unwrap()
        .to_owned();
    let (vm, console) = pool.state().read(|db| {
        let vm = db
            .find("VM", |r| {
                r["power_state"] == json!("Running")
                    && r["is_control_domain"] == json!(false)
                    && r["is_a_template"] == json!(false)
            })
            .into_iter()
            .min()
            .expect("a running VM");
        let console = db
            .find("console", |c| {
                c["VM"] == json!(vm.as_str()) && c["protocol"] == json!("rfb")
            })
            .into_iter()
            .next()
            .expect("an rfb console");
        (vm, console)
    });
    let addr = vm_addr(&pool, &vm);
    Env {
        pool,
        session,
        vm,
        console,
        addr,
        tls,
    }
}

fn vm_addr(pool: &RunningPool, vm: &Ref) -> String {
    let ip = pool.state().read(|db| {
        let host = db.get("VM", vm).unwrap()["resident_on"]
            .as_str()
            .unwrap()
            .to_owned();
        db.get("host", &Ref::from(host.as_str())).unwrap()["address"]
            .as_str()
            .unwrap()
            .to_owned()
    });
    format!("{ip}:{}", pool.port())
}

impl Env {
    fn name(&self) -> String {
        self.field(&self.vm, "name_label")
    }

    fn field(&self, vm: &Ref, f: &str) -> String {
        self.pool.state().read(|db| {
            db.get("VM", vm).unwrap()[f]
                .as_str()
                .unwrap_or("")
                .to_owned()
        })
    }

    fn call(&self, method: &str, mut params: Vec<Value>) -> Value {
        params.insert(0, json!(self.session));
        self.pool.call(method, params).expect(method)
    }

    async fn stream_to(&self, addr: &str) -> Box<dyn Io> {
        let tcp = TcpStream::connect(addr).await.expect("connect");
        if !self.tls {
            return Box::new(tcp);
        }
        let mut roots = rustls::RootCertStore::empty();
        roots
            .add(rustls::pki_types::CertificateDer::from(
                self.pool.certificate_der().unwrap().to_vec(),
            ))
            .unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let ip: std::net::IpAddr = addr.split(':').next().unwrap().parse().unwrap();
        let name = rustls::pki_types::ServerName::IpAddress(ip.into());
        let s = tokio_rustls::TlsConnector::from(Arc::new(cfg))
            .connect(name, tcp)
            .await
            .expect("TLS");
        Box::new(s)
    }

    /// Send `CONNECT /console?<query>` (plus optional headers); the status, the head and the stream after it.
    async fn connect_to(&self, addr: &str, query: &str, extra: &str) -> (u16, String, Box<dyn Io>) {
        let mut s = self.stream_to(addr).await;
        let req = format!("CONNECT /console?{query} HTTP/1.0\r\nHost: {addr}\r\n{extra}\r\n");
        s.write_all(req.as_bytes()).await.unwrap();
        let head = read_head(&mut s).await;
        let status = head
            .split(' ')
            .nth(1)
            .and_then(|c| c.parse().ok())
            .unwrap_or(0);
        (status, head, s)
    }

    async fn connect(&self, query: &str, extra: &str) -> (u16, String, Box<dyn Io>) {
        self.connect_to(&self.addr, query, extra).await
    }

    fn query(&self) -> String {
        format!("ref={}&session_id={}", self.console.as_str(), self.session)
    }

    /// An RFB session on the VM's console over CONNECT.
    async fn rfb(&self, minor: u8) -> Rfb {
        let (status, head, s) = self.connect(&self.query(), "").await;
        assert_eq!(status, 200, "{head}");
        Rfb::handshake(s, minor).await
    }
}

/// Read an HTTP answer head byte by byte (so nothing after it is consumed).
async fn read_head<S: AsyncRead + Unpin>(s: &mut S) -> String {
    let mut head = Vec::new();
    let mut b = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match tokio::time::timeout(LONG, s.read(&mut b))
            .await
            .expect("head in time")
        {
            Ok(1) => head.push(b[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// Wait for the server to close: EOF (or reset) within the safety timeout, skipping whatever arrives first.
async fn closed<S: AsyncRead + Unpin>(s: &mut S) -> bool {
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout(LONG, s.read(&mut buf)).await {
            Err(_) => return false,
            Ok(Ok(0)) | Ok(Err(_)) => return true,
            Ok(Ok(_)) => {}
        }
    }
}

/// A minimal RFB client keeping a framebuffer of pixel values in the negotiated format.
struct Rfb {
    io: Box<dyn Io>,
    width: usize,
    height: usize,
    name: String,
    fb: Vec<u32>,
    bpp: usize,
    big_endian: bool,
    colour_map: Option<Vec<(u16, u16, u16)>>,
}

impl Rfb {
    async fn handshake(mut io: Box<dyn Io>, minor: u8) -> Rfb {
        let mut v = [0u8; 12];
        io.read_exact(&mut v).await.unwrap();
        assert_eq!(&v, b"RFB 003.008\n");
        io.write_all(format!("RFB 003.00{minor}\n").as_bytes())
            .await
            .unwrap();
        if minor == 3 {
            assert_eq!(io.read_u32().await.unwrap(), 1, "3.3: security type None");
        } else {
            let n = io.read_u8().await.unwrap();
            let mut types = vec![0u8; n as usize];
            io.read_exact(&mut types).await.unwrap();
            assert_eq!(types, [1]);
            io.write_all(&[1]).await.unwrap();
            if minor >= 8 {
                assert_eq!(io.read_u32().await.unwrap(), 0, "SecurityResult OK");
            }
        }
        io.write_all(&[1]).await.unwrap();
        let width = io.read_u16().await.unwrap() as usize;
        let height = io.read_u16().await.unwrap() as usize;
        let mut pf = [0u8; 16];
        io.read_exact(&mut pf).await.unwrap();
        assert_eq!(
            &pf[..4],
            &[32, 24, 0, 1],
            "32 bpp, depth 24, little endian, true colour"
        );
        let len = io.read_u32().await.unwrap() as usize;
        let mut name = vec![0u8; len];
        io.read_exact(&mut name).await.unwrap();
        Rfb {
            io,
            width,
            height,
            name: String::from_utf8(name).unwrap(),
            fb: vec![0; width * height],
            bpp: 4,
            big_endian: false,
            colour_map: None,
        }
    }

    async fn set_encodings(&mut self, encs: &[i32]) {
        let mut m = vec![2, 0];
        m.extend_from_slice(&(encs.len() as u16).to_be_bytes());
        for e in encs {
            m.extend_from_slice(&e.to_be_bytes());
        }
        self.io.write_all(&m).await.unwrap();
    }

    #[allow(clippy::too_many_arguments)]
    async fn set_pixel_format(
        &mut self,
        bpp: u8,
        depth: u8,
        big_endian: bool,
        true_colour: bool,
        max: (u16, u16, u16),
        shift: (u8, u8, u8),
    ) {
        let mut m = vec![0, 0, 0, 0, bpp, depth, big_endian as u8, true_colour as u8];
        for v in [max.0, max.1, max.2] {
            m.extend_from_slice(&v.to_be_bytes());
        }
        m.extend_from_slice(&[shift.0, shift.1, shift.2, 0, 0, 0]);
        self.io.write_all(&m).await.unwrap();
        self.bpp = bpp as usize / 8;
        self.big_endian = big_endian;
        self.fb = vec![0; self.width * self.height];
    }

    async fn request(&mut self, incremental: bool) {
        let mut m = vec![3, incremental as u8, 0, 0, 0, 0];
        m.extend_from_slice(&(self.width as u16).to_be_bytes());
        m.extend_from_slice(&(self.height as u16).to_be_bytes());
        self.io.write_all(&m).await.unwrap();
    }

    async fn key(&mut self, sym: u32) {
        for down in [1u8, 0] {
            let mut m = vec![4, down, 0, 0];
            m.extend_from_slice(&sym.to_be_bytes());
            self.io.write_all(&m).await.unwrap();
        }
    }

    async fn type_text(&mut self, s: &str) {
        for c in s.bytes() {
            self.key(c as u32).await;
        }
    }

    async fn pixel(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.io.read_exact(&mut b[..self.bpp]).await.unwrap();
        let b = &b[..self.bpp];
        match (self.bpp, self.big_endian) {
            (1, _) => b[0] as u32,
            (2, false) => u16::from_le_bytes([b[0], b[1]]) as u32,
            (2, true) => u16::from_be_bytes([b[0], b[1]]) as u32,
            (_, false) => u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            (_, true) => u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
        }
    }

    /// Read server messages until a FramebufferUpdate has been applied; its rectangles (x, y, w, h, encoding).
    async fn update(&mut self) -> Vec<(usize, usize, usize, usize, i32)> {
        tokio::time::timeout(LONG, self.update_inner())
            .await
            .expect("an update in time")
    }

    async fn update_inner(&mut self) -> Vec<(usize, usize, usize, usize, i32)> {
        loop {
            let t = self.io.read_u8().await.unwrap();
            match t {
                0 => break,
                1 => {
                    self.io.read_u8().await.unwrap();
                    let _first = self.io.read_u16().await.unwrap();
                    let n = self.io.read_u16().await.unwrap();
                    let mut map = Vec::new();
                    for _ in 0..n {
                        let r = self.io.read_u16().await.unwrap();
                        let g = self.io.read_u16().await.unwrap();
                        let b = self.io.read_u16().await.unwrap();
                        map.push((r, g, b));
                    }
                    self.colour_map = Some(map);
                }
                other => panic!("unexpected server message {other}"),
            }
        }
        self.io.read_u8().await.unwrap();
        let n = self.io.read_u16().await.unwrap();
        let mut rects = Vec::new();
        for _ in 0..n {
            let x = self.io.read_u16().await.unwrap() as usize;
            let y = self.io.read_u16().await.unwrap() as usize;
            let w = self.io.read_u16().await.unwrap() as usize;
            let h = self.io.read_u16().await.unwrap() as usize;
            let enc = self.io.read_i32().await.unwrap();
            match enc {
                0 => {
                    for yy in y..y + h {
                        for xx in x..x + w {
                            let p = self.pixel().await;
                            self.fb[yy * self.width + xx] = p;
                        }
                    }
                }
                1 => {
                    let sx = self.io.read_u16().await.unwrap() as usize;
                    let sy = self.io.read_u16().await.unwrap() as usize;
                    let snapshot = self.fb.clone();
                    for yy in 0..h {
                        for xx in 0..w {
                            self.fb[(y + yy) * self.width + x + xx] =
                                snapshot[(sy + yy) * self.width + sx + xx];
                        }
                    }
                }
                5 => self.hextile(x, y, w, h).await,
                other => panic!("unexpected encoding {other}"),
            }
            rects.push((x, y, w, h, enc));
        }
        rects
    }

    async fn hextile(&mut self, x: usize, y: usize, w: usize, h: usize) {
        let (mut bg, mut fg) = (0u32, 0u32);
        for ty in (y..y + h).step_by(16) {
            let th = (y + h - ty).min(16);
            for tx in (x..x + w).step_by(16) {
                let tw = (x + w - tx).min(16);
                let flags = self.io.read_u8().await.unwrap();
                if flags & 1 != 0 {
                    for yy in ty..ty + th {
                        for xx in tx..tx + tw {
                            let p = self.pixel().await;
                            self.fb[yy * self.width + xx] = p;
                        }
                    }
                    continue;
                }
                if flags & 2 != 0 {
                    bg = self.pixel().await;
                }
                if flags & 4 != 0 {
                    fg = self.pixel().await;
                }
                for yy in ty..ty + th {
                    for xx in tx..tx + tw {
                        self.fb[yy * self.width + xx] = bg;
                    }
                }
                if flags & 8 != 0 {
                    let n = self.io.read_u8().await.unwrap();
                    for _ in 0..n {
                        let colour = if flags & 16 != 0 {
                            self.pixel().await
                        } else {
                            fg
                        };
                        let xy = self.io.read_u8().await.unwrap() as usize;
                        let wh = self.io.read_u8().await.unwrap() as usize;
                        let (sx, sy, sw, sh) = (xy >> 4, xy & 15, (wh >> 4) + 1, (wh & 15) + 1);
                        for yy in ty + sy..ty + sy + sh {
                            for xx in tx + sx..tx + sx + sw {
                                self.fb[yy * self.width + xx] = colour;
                            }
                        }
                    }
                }
            }
        }
    }

    /// Read the text back from the framebuffer: per 8x16 cell, pixels unlike the cell's dominant colour form the
    /// glyph, matched against the font.
    fn text(&self) -> Vec<String> {
        let (cols, rows) = (self.width / font::WIDTH, self.height / font::HEIGHT);
        (0..rows)
            .map(|r| {
                let line: String = (0..cols)
                    .map(|c| {
                        let px = |gx: usize, gy: usize| {
                            self.fb[(r * font::HEIGHT + gy) * self.width + c * font::WIDTH + gx]
                        };
                        let mut counts = std::collections::HashMap::new();
                        for gy in 0..font::HEIGHT {
                            for gx in 0..font::WIDTH {
                                *counts.entry(px(gx, gy)).or_insert(0) += 1;
                            }
                        }
                        let bg = counts.into_iter().max_by_key(|(_, n)| *n).unwrap().0;
                        let mut rows = [0u8; font::HEIGHT];
                        for (gy, row) in rows.iter_mut().enumerate() {
                            for gx in 0..font::WIDTH {
                                if px(gx, gy) != bg {
                                    *row |= 0x80 >> gx;
                                }
                            }
                        }
                        font::recognise(&rows).map_or('\u{fffd}', |b| b as char)
                    })
                    .collect();
                line.trim_end().to_owned()
            })
            .collect()
    }

    fn distinct_pixels(&self) -> usize {
        let mut v = self.fb.clone();
        v.sort_unstable();
        v.dedup();
        v.len()
    }
}

fn lines_of(env: &Env) -> Vec<String> {
    xapi_sim::console::screen_lines(env.pool.state(), &env.vm).expect("screen")
}

#[tokio::test(flavor = "multi_thread")]
async fn rfb_3_8_over_tls_shows_the_vm_console_in_raw() {
    let env = env(true).await;
    let mut rfb = env.rfb(8).await;
    assert_eq!((rfb.width, rfb.height), (640, 400));
    assert_eq!(rfb.name, env.name());
    rfb.set_encodings(&[0]).await;
    rfb.request(false).await;
    let rects = rfb.update().await;
    assert_eq!(rects, vec![(0, 0, 640, 400, 0)]);
    assert!(
        rfb.distinct_pixels() >= 3,
        "a drawn screen, not a blank one"
    );
    assert!(rfb.fb.iter().any(|p| *p != 0));
    let text = rfb.text();
    assert_eq!(text[0].trim(), env.name());
    assert!(
        text.iter().any(|l| l.contains("Linux version")),
        "{text:#?}"
    );
    assert!(text.iter().any(|l| l.ends_with("login:")), "{text:#?}");
    assert_eq!(text, lines_of(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn rfb_3_3_over_plain_connect_in_hextile() {
    let env = env(false).await;
    let mut rfb = env.rfb(3).await;
    rfb.set_encodings(&[16, 5, 0, -223]).await;
    rfb.request(false).await;
    let rects = rfb.update().await;
    assert_eq!(rects, vec![(0, 0, 640, 400, 5)]);
    assert_eq!(rfb.text(), lines_of(&env));
    // An RFB 3.7 client gets the 3.7 security flow (no SecurityResult for None).
    let (status, _, s) = env.connect(&env.query(), "").await;
    assert_eq!(status, 200);
    let mut rfb = Rfb::handshake(s, 7).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), lines_of(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn key_events_change_the_framebuffer_and_persist_across_connections() {
    let env = env(true).await;
    let mut rfb = env.rfb(8).await;
    rfb.set_encodings(&[5]).await;
    rfb.request(false).await;
    rfb.update().await;
    let before = rfb.fb.clone();
    let prompt_row = rfb
        .text()
        .iter()
        .rposition(|l| l.ends_with("login:"))
        .unwrap();
    rfb.type_text("rooX").await;
    rfb.key(0xFF08).await; // BackSpace
    rfb.type_text("t").await;
    rfb.key(0xFF0D).await; // Return
    rfb.type_text("ls -l").await;
    // Incremental requests answer only changed regions; keep asking until the text is there.
    let mut changed = Vec::new();
    for _ in 0..20 {
        rfb.request(true).await;
        changed.extend(rfb.update().await);
        if rfb.text().iter().any(|l| l == "ls -l") {
            break;
        }
    }
    let text = rfb.text();
    assert!(text[prompt_row].ends_with("login: root"), "{text:#?}");
    assert_eq!(text[prompt_row + 1], "ls -l");
    assert!(changed.iter().all(|&(x, y, w, h, enc)| {
        enc == 5 && x + w <= 640 && y + h <= 400 && (w, h) != (640, 400)
    }));
    // Pixels outside the touched text rows are unchanged.
    let top = prompt_row * 16;
    assert_eq!(&rfb.fb[..top * 640], &before[..top * 640]);
    assert_ne!(
        &rfb.fb[top * 640..(top + 32) * 640],
        &before[top * 640..(top + 32) * 640]
    );
    drop(rfb);
    // A new connection sees the same text.
    let mut again = env.rfb(8).await;
    again.request(false).await;
    again.update().await;
    assert_eq!(again.text(), text);
    assert_eq!(lines_of(&env), text);
}

#[tokio::test(flavor = "multi_thread")]
async fn typing_scrolls_the_screen() {
    let env = env(false).await;
    let mut rfb = env.rfb(8).await;
    for i in 0..30 {
        rfb.type_text(&format!("echo {i}")).await;
        rfb.key(0xFF0D).await;
    }
    rfb.type_text("last").await;
    rfb.request(false).await;
    rfb.update().await;
    let text = rfb.text();
    assert_eq!(text[0].trim(), env.name(), "title bar stays");
    assert_eq!(text[24], "last");
    assert_eq!(text[23], "echo 29");
    assert!(
        !text.iter().any(|l| l.contains("Linux version")),
        "boot log scrolled away"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn pixel_formats_16_and_8_bpp_and_colour_map() {
    let env = env(false).await;
    let mut rfb = env.rfb(8).await;
    let expect = lines_of(&env);
    // RGB565 big endian.
    rfb.set_pixel_format(16, 16, true, true, (31, 63, 31), (11, 5, 0))
        .await;
    rfb.set_encodings(&[5, 0]).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), expect);
    assert!(rfb.fb.contains(&0xFFFF), "white title text in RGB565");
    // BGR233 (8 bpp true colour), raw.
    rfb.set_pixel_format(8, 8, false, true, (7, 7, 3), (0, 3, 6))
        .await;
    rfb.set_encodings(&[0]).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), expect);
    assert!(rfb.fb.iter().all(|p| *p <= 0xFF));
    // 32 bpp big endian.
    rfb.set_pixel_format(32, 24, true, true, (255, 255, 255), (16, 8, 0))
        .await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), expect);
    assert!(rfb.fb.contains(&0x00FF_FFFF));
    // 8 bpp colour map: the server sends SetColourMapEntries first.
    rfb.set_pixel_format(8, 8, false, false, (0, 0, 0), (0, 0, 0))
        .await;
    rfb.request(false).await;
    rfb.update().await;
    let map = rfb.colour_map.clone().expect("colour map sent");
    assert!(map.len() >= 2);
    assert!(rfb.fb.iter().all(|p| (*p as usize) < map.len()));
    assert_eq!(rfb.text(), expect);
    // A format the server cannot produce ends the session.
    rfb.set_pixel_format(24, 24, false, true, (255, 255, 255), (16, 8, 0))
        .await;
    assert!(closed(&mut rfb.io).await);
}

/// A WebSocket client connection to `/console`, bridged to a byte stream for the RFB client.
async fn ws_connect(
    env: &Env,
    query: &str,
    cookie: Option<&str>,
) -> Result<(http::Response<Option<Vec<u8>>>, Box<dyn Io>), tokio_tungstenite::tungstenite::Error> {
    let tcp = env.stream_to(&env.addr).await;
    let mut req = format!("ws://{}/console?{query}", env.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "binary".parse().unwrap());
    if let Some(c) = cookie {
        req.headers_mut().insert("Cookie", c.parse().unwrap());
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, tcp).await?;
    let (mine, mut theirs) = tokio::io::duplex(1 << 16);
    tokio::spawn(async move {
        let (mut sink, mut stream) = ws.split();
        let mut buf = vec![0u8; 1 << 16];
        loop {
            tokio::select! {
                m = stream.next() => match m {
                    Some(Ok(Message::Binary(b))) => {
                        if theirs.write_all(&b).await.is_err() { break; }
                    }
                    Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                    Some(Ok(_)) => {}
                },
                n = theirs.read(&mut buf) => match n {
                    Ok(0) | Err(_) => { let _ = sink.send(Message::Close(None)).await; break; }
                    Ok(n) => { if sink.send(Message::binary(buf[..n].to_vec())).await.is_err() { break; } }
                },
            }
        }
    });
    Ok((resp, Box::new(mine)))
}

#[tokio::test(flavor = "multi_thread")]
async fn websocket_form_carries_rfb_in_binary_frames() {
    let env = env(false).await;
    let cookie = format!("session_id={}", env.session);
    let (resp, io) = ws_connect(
        &env,
        &format!("ref={}", env.console.as_str()),
        Some(&cookie),
    )
    .await
    .expect("upgrade");
    assert_eq!(resp.status(), 101);
    assert_eq!(
        resp.headers().get("sec-websocket-protocol").unwrap(),
        "binary"
    );
    let mut rfb = Rfb::handshake(io, 8).await;
    rfb.set_encodings(&[5]).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), lines_of(&env));
    rfb.type_text("via ws").await;
    rfb.request(true).await;
    rfb.update().await;
    assert!(lines_of(&env).iter().any(|l| l.ends_with("login: via ws")));
    // uuid form (the VM's uuid selects its rfb console), session in the query.
    let uuid = env.field(&env.vm, "uuid");
    let (resp, io) = ws_connect(
        &env,
        &format!("uuid={uuid}&session_id={}", env.session),
        None,
    )
    .await
    .expect("upgrade");
    assert_eq!(resp.status(), 101);
    let mut rfb = Rfb::handshake(io, 3).await;
    rfb.request(false).await;
    rfb.update().await;
    assert!(rfb.text().iter().any(|l| l.ends_with("login: via ws")));
    // Bad session: 401 before any upgrade.
    let err = ws_connect(
        &env,
        &format!("ref={}&session_id=OpaqueRef:nope", env.console.as_str()),
        None,
    )
    .await
    .err()
    .expect("refused");
    match err {
        tokio_tungstenite::tungstenite::Error::Http(r) => assert_eq!(r.status(), 401),
        other => panic!("unexpected {other:?}"),
    }
    // A plain GET (no upgrade) on /console is not implemented.
    let mut s = TcpStream::connect(&env.addr).await.unwrap();
    let req = format!(
        "GET /console?{} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        env.query(),
        env.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 501"));
}

#[tokio::test(flavor = "multi_thread")]
async fn vm_ref_uuid_and_cookie_forms() {
    let env = env(true).await;
    let cookie = format!("Cookie: session_id={}\r\n", env.session);
    for query in [
        format!("ref={}", env.vm.as_str()),
        format!("uuid={}", env.field(&env.vm, "uuid")),
        format!(
            "uuid={}",
            env.pool
                .state()
                .read(|db| db.get("console", &env.console).unwrap()["uuid"].clone())
                .as_str()
                .unwrap()
        ),
    ] {
        let (status, head, s) = env.connect(&query, &cookie).await;
        assert_eq!(status, 200, "{query}: {head}");
        assert!(head.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(head.contains("Cache-Control: no-cache, no-store"));
        let mut rfb = Rfb::handshake(s, 8).await;
        rfb.request(false).await;
        rfb.update().await;
        assert_eq!(rfb.text()[0].trim(), env.name());
    }
    // The cookie wins over a bad query session; a URL-encoded session works too.
    let (status, _, _) = env
        .connect(
            &format!("ref={}&session_id=OpaqueRef:bad", env.console.as_str()),
            &cookie,
        )
        .await;
    assert_eq!(status, 200);
    let enc = env.session.replace(':', "%3A");
    let (status, _, _) = env
        .connect(
            &format!("ref={}&session_id={enc}", env.console.as_str()),
            "",
        )
        .await;
    assert_eq!(status, 200);
}

#[tokio::test(flavor = "multi_thread")]
async fn host_console_of_dom0() {
    let env = env(false).await;
    let (dom0, console) = env.pool.state().read(|db| {
        let dom0 = db
            .find("VM", |r| r["is_control_domain"] == json!(true))
            .into_iter()
            .next()
            .unwrap();
        let console = db
            .find("console", |c| c["VM"] == json!(dom0.as_str()))
            .into_iter()
            .next()
            .unwrap();
        (dom0, console)
    });
    let addr = vm_addr(&env.pool, &dom0);
    let (status, head, s) = env
        .connect_to(
            &addr,
            &format!("ref={}&session_id={}", console.as_str(), env.session),
            "",
        )
        .await;
    assert_eq!(status, 200, "{head}");
    let mut rfb = Rfb::handshake(s, 8).await;
    rfb.request(false).await;
    rfb.update().await;
    assert!(rfb.text().iter().any(|l| l.contains("XCP-ng")));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_sessions_are_401() {
    let env = env(true).await;
    let c = env.console.as_str();
    for (query, extra) in [
        (format!("ref={c}"), String::new()),
        (format!("ref={c}&session_id=OpaqueRef:nope"), String::new()),
        (
            format!("ref={c}"),
            "Cookie: session_id=OpaqueRef:nope\r\n".to_owned(),
        ),
    ] {
        let (status, head, mut s) = env.connect(&query, &extra).await;
        assert_eq!(status, 401, "{query} {extra}: {head}");
        assert!(head.contains("WWW-Authenticate: Basic realm="));
        assert!(closed(&mut s).await);
    }
    // A session that logged out is no longer accepted.
    let s2 = env
        .pool
        .call(
            "session.login_with_password",
            vec![json!("root"), json!("root")],
        )
        .unwrap();
    let q = format!("ref={c}&session_id={}", s2.as_str().unwrap());
    assert_eq!(env.connect(&q, "").await.0, 200);
    env.pool.call("session.logout", vec![s2]).unwrap();
    assert_eq!(env.connect(&q, "").await.0, 401);
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_consoles_and_halted_vms_fail_like_xapi() {
    let env = env(false).await;
    let s = &env.session;
    // Unknown ref, missing ref, a ref of another class: XAPI's Failure → 500.
    for query in [
        format!("ref=OpaqueRef:00000000-0000-0000-0000-000000000000&session_id={s}"),
        format!("session_id={s}"),
        format!("uuid=no-such-uuid&session_id={s}"),
        format!("ref={}&session_id={s}", env.pool.host_refs()[0].as_str()),
    ] {
        let (status, head, _) = env.connect(&query, "").await;
        assert_eq!(status, 500, "{query}: {head}");
    }
    // The right console asked of the wrong host.
    let other = env
        .pool
        .host_urls()
        .into_iter()
        .map(|u| {
            u.trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned()
        })
        .find(|a| *a != env.addr)
        .unwrap();
    assert_eq!(env.connect_to(&other, &env.query(), "").await.0, 500);
    // Halt the VM: its console row is gone and the VM has no console any more.
    env.call("VM.hard_shutdown", vec![json!(env.vm.as_str())]);
    assert_eq!(env.connect(&env.query(), "").await.0, 500);
    assert_eq!(
        env.connect(&format!("ref={}&session_id={s}", env.vm.as_str()), "")
            .await
            .0,
        500
    );
    assert!(xapi_sim::console::screen_lines(env.pool.state(), &env.vm).is_none());
    let cookie = format!("session_id={s}");
    let err = ws_connect(&env, &format!("ref={}", env.vm.as_str()), Some(&cookie))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 500));
}

#[tokio::test(flavor = "multi_thread")]
async fn halting_the_vm_ends_open_sessions_and_a_restart_gives_a_fresh_console() {
    let env = env(true).await;
    let mut rfb = env.rfb(8).await;
    rfb.type_text("typed before halt").await;
    rfb.request(false).await;
    rfb.update().await;
    assert!(rfb.text().iter().any(|l| l.ends_with("typed before halt")));
    let cookie = format!("session_id={}", env.session);
    let (_, mut ws) = ws_connect(&env, &format!("ref={}", env.vm.as_str()), Some(&cookie))
        .await
        .unwrap();
    env.call("VM.hard_shutdown", vec![json!(env.vm.as_str())]);
    assert!(closed(&mut rfb.io).await, "CONNECT stream ends");
    assert!(closed(&mut ws).await, "WebSocket stream ends");
    env.call(
        "VM.start",
        vec![json!(env.vm.as_str()), json!(false), json!(false)],
    );
    let console = env.pool.state().read(|db| {
        db.find("console", |c| {
            c["VM"] == json!(env.vm.as_str()) && c["protocol"] == json!("rfb")
        })
        .into_iter()
        .next()
        .unwrap()
    });
    assert_ne!(console, env.console);
    let addr = vm_addr(&env.pool, &env.vm);
    let (status, _, s) = env
        .connect_to(
            &addr,
            &format!("ref={}&session_id={}", console.as_str(), env.session),
            "",
        )
        .await;
    assert_eq!(status, 200);
    let mut rfb = Rfb::handshake(s, 8).await;
    rfb.request(false).await;
    rfb.update().await;
    assert!(!rfb.text().iter().any(|l| l.contains("typed before halt")));
}

#[tokio::test(flavor = "multi_thread")]
async fn garbage_closes_the_connection_cleanly() {
    let env = env(false).await;
    // Garbage instead of a ProtocolVersion.
    let (status, _, mut s) = env.connect(&env.query(), "").await;
    assert_eq!(status, 200);
    let mut v = [0u8; 12];
    s.read_exact(&mut v).await.unwrap();
    s.write_all(b"HELLO WORLD!\n\n\n").await.unwrap();
    assert!(closed(&mut s).await);
    // Refusing security type None (3.8) gets a failed SecurityResult.
    let (_, _, mut s) = env.connect(&env.query(), "").await;
    s.read_exact(&mut v).await.unwrap();
    s.write_all(b"RFB 003.008\n").await.unwrap();
    let mut types = [0u8; 2];
    s.read_exact(&mut types).await.unwrap();
    s.write_all(&[2]).await.unwrap();
    assert_eq!(s.read_u32().await.unwrap(), 1);
    assert!(closed(&mut s).await);
    // Unknown message types, oversized lists, truncated messages after a good handshake.
    for junk in [
        vec![0xEEu8, 1, 2, 3],
        vec![2, 0, 0xFF, 0xFF],
        vec![6, 0, 0, 0, 0xFF, 0xFF, 0xFF, 0xFF],
        vec![3, 0, 0],
    ] {
        let mut rfb = env.rfb(8).await;
        rfb.io.write_all(&junk).await.unwrap();
        rfb.io.shutdown().await.unwrap();
        assert!(closed(&mut rfb.io).await);
    }
    // Broken CONNECT heads.
    for head in [
        "CONNECT /elsewhere HTTP/1.0\r\n\r\n",
        "CONNECT\r\n\r\n",
        "CONNECT /console?ref=x HTTP/1.0 extra\r\n\r\n",
    ] {
        let mut s = TcpStream::connect(&env.addr).await.unwrap();
        s.write_all(head.as_bytes()).await.unwrap();
        let answer = read_head(&mut s).await;
        assert!(
            answer.starts_with("HTTP/1.1 400") || answer.starts_with("HTTP/1.1 404"),
            "{head:?}: {answer}"
        );
        assert!(closed(&mut s).await);
    }
    let mut s = TcpStream::connect(&env.addr).await.unwrap();
    s.write_all(b"CONNECT ").await.unwrap();
    s.write_all(&vec![b'a'; 20_000]).await.unwrap();
    assert!(read_head(&mut s).await.starts_with("HTTP/1.1 400"));
    // The server is still fine.
    let mut rfb = env.rfb(8).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), lines_of(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn connect_after_a_call_on_a_kept_alive_connection() {
    let env = env(false).await;
    let mut s: Box<dyn Io> = env.stream_to(&env.addr).await;
    let body =
        r#"{"jsonrpc":"2.0","id":1,"method":"session.get_all_subject_identifiers","params":[]}"#;
    let req = format!(
        "POST /jsonrpc HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        env.addr,
        body.len()
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .unwrap();
    let mut b = vec![0u8; len];
    s.read_exact(&mut b).await.unwrap();
    let req = format!(
        "CONNECT /console?{} HTTP/1.1\r\nHost: {}\r\n\r\n",
        env.query(),
        env.addr
    );
    s.write_all(req.as_bytes()).await.unwrap();
    let head = read_head(&mut s).await;
    assert!(head.starts_with("HTTP/1.1 200 OK"), "{head}");
    let mut rfb = Rfb::handshake(s, 8).await;
    rfb.request(false).await;
    rfb.update().await;
    assert_eq!(rfb.text(), lines_of(&env));
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_console_sessions_admits_one_connection() {
    let env = env(true).await;
    let pool_ref = env.pool.state().pool_ref();
    env.call(
        "pool.set_limit_console_sessions",
        vec![json!(pool_ref.as_str()), json!(true)],
    );
    let first = env.rfb(8).await;
    let (status, head, mut s) = env.connect(&env.query(), "").await;
    assert_eq!(status, 503, "{head}");
    assert!(head.starts_with("HTTP/1.1 503 Connection Limit Exceeded"));
    let mut body = String::new();
    s.read_to_string(&mut body).await.unwrap();
    assert!(
        body.contains("User 'root' is currently connected"),
        "{body}"
    );
    // XAPI's WebSocket path refuses outright while the limit is set.
    let cookie = format!("session_id={}", env.session);
    let err = ws_connect(&env, &format!("ref={}", env.vm.as_str()), Some(&cookie))
        .await
        .err()
        .expect("refused");
    assert!(matches!(err, tokio_tungstenite::tungstenite::Error::Http(r) if r.status() == 503));
    // Once the first viewer leaves, the slot frees up (the server notices the close asynchronously).
    drop(first);
    let mut admitted = false;
    for _ in 0..400 {
        let (status, _, _) = env.connect(&env.query(), "").await;
        if status == 200 {
            admitted = true;
            break;
        }
        assert_eq!(status, 503);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(admitted);
}

#[tokio::test(flavor = "multi_thread")]
async fn console_idle_timeout_closes_quiet_sessions() {
    let env = env(false).await;
    let pool_ref = env.pool.state().pool_ref();
    env.call(
        "pool.set_vm_console_idle_timeout",
        vec![json!(pool_ref.as_str()), json!(1)],
    );
    let mut rfb = env.rfb(8).await;
    rfb.request(false).await;
    rfb.update().await;
    assert!(
        closed(&mut rfb.io).await,
        "quiet session closed by the idle timeout"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn scrolling_uses_copyrect_both_ways() {
    let env = env(false).await;
    let mut rfb = env.rfb(8).await;
    rfb.set_encodings(&[1, 5]).await;
    rfb.request(false).await;
    rfb.update().await;
    // Fill the screen so that each Return scrolls.
    for i in 0..30 {
        rfb.type_text(&format!("fill {i}")).await;
        rfb.key(0xFF0D).await;
    }
    rfb.request(true).await;
    rfb.update().await;
    assert_eq!(rfb.text(), lines_of(&env));
    // One more line: rows move up by CopyRect, the new bottom rows are drawn.
    rfb.type_text("one more").await;
    rfb.key(0xFF0D).await;
    for _ in 0..20 {
        rfb.request(true).await;
        rfb.update().await;
        if rfb.text() == lines_of(&env) {
            break;
        }
    }
    assert_eq!(rfb.text(), lines_of(&env));
    // A line wrapping onto a new row scrolls up; BackSpace back across the wrap scrolls down again.
    rfb.type_text(&"w".repeat(81)).await;
    let mut seen_up = false;
    for _ in 0..20 {
        rfb.request(true).await;
        let r = rfb.update().await;
        seen_up |= r
            .iter()
            .any(|&(_, y, w, _, enc)| enc == 1 && w == 640 && y == 16);
        if rfb.text() == lines_of(&env) {
            break;
        }
    }
    assert!(seen_up, "a CopyRect moving rows up");
    assert_eq!(rfb.text(), lines_of(&env));
    rfb.key(0xFF08).await;
    rfb.key(0xFF08).await;
    let mut seen_down = false;
    for _ in 0..20 {
        rfb.request(true).await;
        let r = rfb.update().await;
        seen_down |= r
            .iter()
            .any(|&(_, y, w, _, enc)| enc == 1 && w == 640 && y > 16);
        if rfb.text() == lines_of(&env) {
            break;
        }
    }
    assert!(seen_down, "a CopyRect moving rows down");
    assert_eq!(rfb.text(), lines_of(&env));
    assert!(lines_of(&env)[24].starts_with("www"));
}
