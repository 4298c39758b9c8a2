//! HTTP(S) front end: one listener per host, XAPI's routing (`/jsonrpc` → JSON-RPC, any other POST → XML-RPC,
//! `OPTIONS` → CORS), exact content types, HTTP 500 for transport-level failures.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{header, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use xapi_types::{jsonrpc, xmlrpc, Ref, Type, XapiError};

use crate::rpc::{dispatch, Deferred, Outcome, Registry};
use crate::state::PoolState;

/// Largest accepted RPC body (XAPI: ~300 KiB; a little more here).
pub const MAX_BODY: usize = 4 * 1024 * 1024;

/// What one host listener needs.
#[derive(Debug)]
pub(crate) struct HostCtx {
    pub pool: Arc<PoolState>,
    pub registry: Arc<Registry>,
    pub host: Ref,
}

/// A request the fault injector wants dropped (closes the connection without an answer).
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by fault injection")]
struct Dropped;

/// A self-signed certificate for `names` (DNS names or IPs) and the matching acceptor.
pub(crate) fn tls_acceptor(names: Vec<String>) -> Result<(TlsAcceptor, String, Vec<u8>), String> {
    let ck = rcgen::generate_simple_self_signed(names).map_err(|e| e.to_string())?;
    let cert_der = ck.cert.der().to_vec();
    let cert_pem = ck.cert.pem();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(rustls::pki_types::PrivatePkcs8KeyDer::from(
        ck.key_pair.serialize_der(),
    ));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert_der.clone())],
            key,
        )
        .map_err(|e| e.to_string())?;
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((TlsAcceptor::from(Arc::new(cfg)), cert_pem, cert_der))
}

/// Accept connections until `shutdown` flips.
pub(crate) async fn serve_host(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    hc: Arc<HostCtx>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = shutdown.changed() => return,
        };
        let (stream, peer) = match accepted {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!("accept failed: {e}");
                continue;
            }
        };
        // a member ejected from the pool came back as a pool of its own
        let hc = match hc.pool.reborn(&hc.host) {
            Some((pool, host)) => Arc::new(HostCtx {
                pool,
                registry: hc.registry.clone(),
                host,
            }),
            None => hc.clone(),
        };
        let tls = tls.clone();
        let mut sd = shutdown.clone();
        tokio::spawn(async move {
            let run = async {
                // A raw `CONNECT /console…` tunnel is served before hyper sees the connection (XAPI answers it
                // in its own way); anything else goes to the HTTP server with the peeked bytes put back.
                match tls {
                    Some(acc) => match acc.accept(stream).await {
                        Ok(s) => {
                            if let Some(io) =
                                crate::console::intercept(s, hc.pool.clone(), hc.host.clone()).await
                            {
                                serve_conn(TokioIo::new(io), hc).await
                            }
                        }
                        Err(e) => tracing::debug!("TLS handshake with {peer} failed: {e}"),
                    },
                    None => {
                        if let Some(io) =
                            crate::console::intercept(stream, hc.pool.clone(), hc.host.clone())
                                .await
                        {
                            serve_conn(TokioIo::new(io), hc).await
                        }
                    }
                }
            };
            tokio::select! {
                _ = run => {}
                _ = sd.changed() => {}
            }
        });
    }
}

async fn serve_conn<I>(io: I, hc: Arc<HostCtx>)
where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
{
    let svc = service_fn(move |req| route(req, hc.clone()));
    if let Err(e) = http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, svc)
        .with_upgrades()
        .await
    {
        tracing::debug!("connection ended: {e}");
    }
}

/// Transfer handlers (`/export`, `/import`, raw VDI, RRDs) answer with streamed bodies; the rest is buffered.
async fn route(
    req: Request<Incoming>,
    hc: Arc<HostCtx>,
) -> Result<Response<crate::transfer::Body>, Dropped> {
    if *req.method() == Method::PUT && req.uri().path().trim_end_matches('/') == "/update" {
        return Ok(
            crate::transfer::update_upload::handle(req, hc.pool.clone(), hc.host.clone()).await,
        );
    }
    if crate::transfer::handles(req.method(), req.uri().path()) {
        if hc.pool.faults.take_drop() {
            return Err(Dropped);
        }
        return Ok(crate::transfer::handle(req, hc.pool.clone(), hc.host.clone()).await);
    }
    handle(req, hc).await.map(|r| r.map(crate::transfer::full))
}

fn base(status: StatusCode, content_type: &str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_str(content_type)
            .unwrap_or(header::HeaderValue::from_static("text/plain")),
    );
    h.insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache, no-store"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        header::HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        header::HeaderValue::from_static("X-Requested-With"),
    );
    r
}

/// XAPI's HTTP 500 page for transport-level failures.
fn internal_error(detail: &str) -> Response<Full<Bytes>> {
    let esc = detail
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    let body = format!(
        "<html><body><h1>HTTP 500 internal server error</h1>An unexpected error occurred; please wait a while and \
         try again. If the problem persists, please contact your support representative.<h1> Additional \
         information </h1>{esc}</body></html>"
    );
    base(
        StatusCode::INTERNAL_SERVER_ERROR,
        "text/html",
        Bytes::from(body),
    )
}

async fn handle(
    req: Request<Incoming>,
    hc: Arc<HostCtx>,
) -> Result<Response<Full<Bytes>>, Dropped> {
    if hc.pool.faults.take_drop() {
        return Err(Dropped);
    }
    if req.uri().path() == "/console" && matches!(*req.method(), Method::GET | Method::CONNECT) {
        return Ok(crate::console::handle(req, hc.pool.clone(), hc.host.clone()).await);
    }
    match *req.method() {
        Method::OPTIONS => {
            let mut r = base(StatusCode::OK, "text/plain", Bytes::new());
            let h = r.headers_mut();
            h.insert(
                header::ACCESS_CONTROL_ALLOW_METHODS,
                header::HeaderValue::from_static("POST, GET, OPTIONS"),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_HEADERS,
                header::HeaderValue::from_static("X-Requested-With, Content-Type"),
            );
            return Ok(r);
        }
        Method::POST => {}
        _ => {
            return Ok(base(
                StatusCode::NOT_FOUND,
                "text/plain",
                Bytes::from_static(b"Not found"),
            ))
        }
    }
    // XAPI routes by longest path prefix: `/jsonrpc…` is JSON-RPC, every other path (`/`, `/RPC2`, `/json`,
    // `/xmlrpc`…) XML-RPC.
    let json = req.uri().path().starts_with("/jsonrpc");
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Ok(internal_error(&format!("request body: {e}"))),
    };
    let latency = hc.pool.faults.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if json {
        let call = match jsonrpc::decode_call(&body) {
            Ok(c) => c,
            Err(e) => {
                return Ok(internal_error(&format!(
                    "Jsonrpc.Malformed_method_request: {e}"
                )))
            }
        };
        let (version, id) = (call.version, call.id);
        let bytes = run(hc, call.method, call.params, move |pool, out| {
            match &out.deferred {
                Some(d) if out.result.is_ok() => stream_json(pool, d, version, &id),
                _ => jsonrpc::encode_response(version, &id, &out.result),
            }
        })
        .await;
        Ok(match bytes {
            Ok(b) => base(StatusCode::OK, "application/json", Bytes::from(b)),
            Err(e) => internal_error(&e),
        })
    } else {
        let call = match xmlrpc::decode_call(&body) {
            Ok(c) => c,
            Err(e) => return Ok(internal_error(&format!("Xmlrpc parse error: {e}"))),
        };
        let bytes = run(hc, call.method, call.params, |pool, out| {
            match (&out.result, out.bare, &out.deferred) {
                (Ok(_), _, Some(d)) => stream_xml(pool, d),
                (Ok(v), true, _) => xmlrpc::encode_bare_response(v, &out.ty),
                _ => xmlrpc::encode_response(&out.result, &out.ty),
            }
            .into_bytes()
        })
        .await;
        Ok(match bytes {
            Ok(b) => base(StatusCode::OK, "text/xml", Bytes::from(b)),
            Err(e) => internal_error(&e),
        })
    }
}

/// Dispatch and encode on a blocking thread (handlers may block, e.g. `event.from`).
async fn run(
    hc: Arc<HostCtx>,
    method: String,
    params: Vec<Value>,
    encode: impl FnOnce(&PoolState, Outcome) -> Vec<u8> + Send + 'static,
) -> Result<Vec<u8>, String> {
    let res = tokio::task::spawn_blocking(move || {
        // A panicking handler is a bug, but the caller still gets an API error, not a dropped connection.
        let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            dispatch(&hc.pool, &hc.registry, &hc.host, &method, params)
        }))
        .unwrap_or_else(|_| {
            Outcome::err(XapiError::internal(format!("{method}: handler panicked")))
        });
        if let Err(e) = &out.result {
            tracing::debug!(method = %method, code = %e.code, "call failed");
        }
        encode(&hc.pool, out)
    })
    .await;
    res.map_err(|e| format!("encoding failed: {e}"))
}

/// A deferred result written straight from the DB (no copy of the whole table / batch).
fn stream_json(pool: &PoolState, d: &Deferred, version: jsonrpc::Version, id: &Value) -> Vec<u8> {
    let mut out = Vec::with_capacity(1024);
    out.extend_from_slice(match version {
        jsonrpc::Version::V1 => br#"{"result":"#.as_slice(),
        jsonrpc::Version::V2 => br#"{"jsonrpc":"2.0","result":"#.as_slice(),
    });
    // Writing JSON into a Vec cannot fail.
    pool.read(|db| match d {
        Deferred::AllRecords { class, expr } => {
            out.push(b'{');
            let mut first = true;
            for (r, rec) in db.all(class) {
                if expr.as_ref().is_some_and(|e| !e.eval(rec)) {
                    continue;
                }
                if !first {
                    out.push(b',');
                }
                first = false;
                let _ = serde_json::to_writer(&mut out, r.as_str());
                out.push(b':');
                let _ = serde_json::to_writer(&mut out, rec);
            }
            out.push(b'}');
        }
        Deferred::Events(b) => {
            out.extend_from_slice(br#"{"events":["#);
            let mut first = true;
            for stub in &b.stubs {
                let snapshot = match stub.op {
                    "del" => None,
                    _ => match db.get(stub.class, &stub.r) {
                        Some(rec) => Some(rec),
                        None => continue,
                    },
                };
                if !first {
                    out.push(b',');
                }
                first = false;
                out.extend_from_slice(br#"{"id":"#);
                let _ = serde_json::to_writer(&mut out, &stub.id.to_string());
                out.extend_from_slice(br#","timestamp":"0.0","class":"#);
                let _ = serde_json::to_writer(&mut out, &stub.class.to_ascii_lowercase());
                out.extend_from_slice(br#","operation":"#);
                let _ = serde_json::to_writer(&mut out, stub.op);
                out.extend_from_slice(br#","ref":"#);
                let _ = serde_json::to_writer(&mut out, stub.r.as_str());
                if let Some(rec) = snapshot {
                    out.extend_from_slice(br#","snapshot":"#);
                    let _ = serde_json::to_writer(&mut out, rec);
                }
                out.push(b'}');
            }
            out.extend_from_slice(br#"],"valid_ref_counts":"#);
            let _ = serde_json::to_writer(&mut out, &b.valid_ref_counts);
            out.extend_from_slice(br#","token":"#);
            let _ = serde_json::to_writer(&mut out, &b.token);
            out.push(b'}');
        }
    });
    if version == jsonrpc::Version::V1 {
        out.extend_from_slice(br#","error":null"#);
    }
    out.extend_from_slice(br#","id":"#);
    let _ = serde_json::to_writer(&mut out, id);
    out.push(b'}');
    out
}

/// The XML-RPC `Success` envelope around a deferred result, each record / event encoded on its own by the codec.
fn stream_xml(pool: &PoolState, d: &Deferred) -> String {
    const MARK: &str = "XAPI-SIM-DEFERRED-MARK";
    let mut out = String::with_capacity(1024);
    match d {
        Deferred::AllRecords { class, expr } => {
            let envelope = xmlrpc::encode_response(&Ok(Value::String(MARK.into())), &Type::String);
            let marked = format!("<value>{MARK}</value>");
            let (prefix, suffix) = envelope
                .split_once(&marked)
                .unwrap_or((envelope.as_str(), ""));
            let ty = Type::Record(class);
            out.push_str(prefix);
            out.push_str("<value><struct>");
            pool.read(|db| {
                for (r, rec) in db.all(class) {
                    if expr.as_ref().is_some_and(|e| !e.eval(rec)) {
                        continue;
                    }
                    out.push_str("<member><name>");
                    out.push_str(&xml_escape(r.as_str()));
                    out.push_str("</name>");
                    out.push_str(&xmlrpc::encode_value(&Value::Object(rec.clone()), &ty));
                    out.push_str("</member>");
                }
            });
            out.push_str("</struct></value>");
            out.push_str(suffix);
        }
        Deferred::Events(b) => {
            // The envelope of the same batch with no events; the events go inside its first (events) array.
            let mut empty = serde_json::Map::new();
            empty.insert("events".into(), Value::Array(Vec::new()));
            empty.insert("valid_ref_counts".into(), b.valid_ref_counts.clone());
            empty.insert("token".into(), Value::String(b.token.clone()));
            let envelope = xmlrpc::encode_response(&Ok(Value::Object(empty)), &Type::EventBatch);
            let (prefix, suffix) = match envelope.find("<data></data>") {
                Some(i) => envelope.split_at(i + "<data>".len()),
                None => (envelope.as_str(), ""),
            };
            out.push_str(prefix);
            pool.read(|db| {
                for stub in &b.stubs {
                    if let Some(ev) = stub.to_event(db) {
                        let one = xmlrpc::encode_value(&Value::Array(vec![ev]), &Type::EventSet);
                        let inner = one
                            .strip_prefix("<value><array><data>")
                            .and_then(|x| x.strip_suffix("</data></array></value>"))
                            .unwrap_or(&one);
                        out.push_str(inner);
                    }
                }
            });
            out.push_str(suffix);
        }
    }
    out
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// Bind `addr`, then every slave address on the same port. With port 0 the master's port is reused; on a clash
/// the whole set is retried a few times.
pub(crate) async fn bind_all(
    addrs: &[std::net::IpAddr],
    port: u16,
) -> std::io::Result<Vec<TcpListener>> {
    let mut last_err = None;
    for _ in 0..8 {
        let first = TcpListener::bind(SocketAddr::new(addrs[0], port)).await?;
        let p = first.local_addr()?.port();
        let mut out = vec![first];
        let mut ok = true;
        for ip in &addrs[1..] {
            match TcpListener::bind(SocketAddr::new(*ip, p)).await {
                Ok(l) => out.push(l),
                Err(e) => {
                    last_err = Some(e);
                    ok = false;
                    break;
                }
            }
        }
        if ok {
            return Ok(out);
        }
        if port != 0 {
            break;
        }
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("bind failed")))
}
