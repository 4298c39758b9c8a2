//! A scripted XAPI server for wire tests: hyper on 127.0.0.1, JSON-RPC and XML-RPC decoded with xapi-types'
//! codecs, answers chosen by a per-test closure; records every request it sees.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use xapi_types::{jsonrpc, xmlrpc, Type, XapiError};

/// One decoded request.
#[derive(Debug, Clone)]
pub struct Seen {
    pub path: String,
    /// `"json"` or `"xml"`.
    pub protocol: &'static str,
    pub method: String,
    pub params: Vec<Value>,
    /// The raw body (to check the wire shape).
    pub body: String,
}

/// What the server answers.
pub enum Reply {
    Rpc(Result<Value, XapiError>),
    Raw {
        status: u16,
        content_type: &'static str,
        body: String,
    },
    Delay(Duration, Box<Reply>),
}

pub fn ok(v: Value) -> Reply {
    Reply::Rpc(Ok(v))
}

pub fn fail(code: &str, params: &[&str]) -> Reply {
    Reply::Rpc(Err(XapiError::new(code, params.iter().copied())))
}

/// How `/jsonrpc` behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonMode {
    Served,
    /// 404 with an HTML body, as servers without JSON-RPC.
    NotFound,
    /// 200 with `text/html`.
    Html,
}

pub type Handler = Arc<dyn Fn(&Seen) -> Reply + Send + Sync>;

pub struct Server {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    pub in_flight_max: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Server {
    pub fn url(&self, scheme: &str) -> String {
        format!("{scheme}://{}", self.addr)
    }

    pub fn methods(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .map(|s| s.method.clone())
            .collect()
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// A self-signed certificate for `127.0.0.1`/`localhost`: (cert DER, key DER).
pub fn self_signed() -> (Vec<u8>, Vec<u8>) {
    let ck =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .unwrap();
    (ck.cert.der().to_vec(), ck.key_pair.serialize_der())
}

pub async fn serve(
    json: JsonMode,
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> Server {
    serve_on(
        "127.0.0.1:0".parse().unwrap(),
        json,
        None,
        Arc::new(handler),
    )
    .await
    .unwrap()
}

pub async fn serve_tls(
    json: JsonMode,
    handler: impl Fn(&Seen) -> Reply + Send + Sync + 'static,
) -> Server {
    let (cert, key) = self_signed();
    serve_on(
        "127.0.0.1:0".parse().unwrap(),
        json,
        Some((cert, key)),
        Arc::new(handler),
    )
    .await
    .unwrap()
}

pub async fn serve_on(
    addr: SocketAddr,
    json: JsonMode,
    tls: Option<(Vec<u8>, Vec<u8>)>,
    handler: Handler,
) -> std::io::Result<Server> {
    let listener = TcpListener::bind(addr).await?;
    let addr = listener.local_addr()?;
    let seen = Arc::new(Mutex::new(Vec::new()));
    let in_flight = Arc::new(AtomicUsize::new(0));
    let in_flight_max = Arc::new(AtomicUsize::new(0));
    let acceptor = tls.map(|(cert, key)| {
        let cfg = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![rustls::pki_types::CertificateDer::from(cert)],
            rustls::pki_types::PrivateKeyDer::try_from(key).unwrap(),
        )
        .unwrap();
        tokio_rustls::TlsAcceptor::from(Arc::new(cfg))
    });
    let (seen2, max2) = (seen.clone(), in_flight_max.clone());
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (seen, handler, acceptor) = (seen2.clone(), handler.clone(), acceptor.clone());
            let (in_flight, max) = (in_flight.clone(), max2.clone());
            tokio::spawn(async move {
                let svc = service_fn(move |req: Request<hyper::body::Incoming>| {
                    let (seen, handler) = (seen.clone(), handler.clone());
                    let (in_flight, max) = (in_flight.clone(), max.clone());
                    async move {
                        let now = in_flight.fetch_add(1, Ordering::SeqCst) + 1;
                        max.fetch_max(now, Ordering::SeqCst);
                        let r = answer(req, json, &seen, &handler).await;
                        in_flight.fetch_sub(1, Ordering::SeqCst);
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let builder = hyper::server::conn::http1::Builder::new();
                match acceptor {
                    None => {
                        let _ = builder.serve_connection(TokioIo::new(tcp), svc).await;
                    }
                    Some(acc) => {
                        if let Ok(tls) = acc.accept(tcp).await {
                            let _ = builder.serve_connection(TokioIo::new(tls), svc).await;
                        }
                    }
                }
            });
        }
    });
    Ok(Server {
        addr,
        seen,
        in_flight_max,
        task,
    })
}

fn response(status: u16, content_type: &str, body: impl Into<Bytes>) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", content_type)
        .body(Full::new(body.into()))
        .unwrap()
}

async fn answer(
    req: Request<hyper::body::Incoming>,
    json: JsonMode,
    seen: &Mutex<Vec<Seen>>,
    handler: &Handler,
) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let body = req.into_body().collect().await.unwrap().to_bytes();
    let is_json = path == "/jsonrpc";
    if is_json {
        match json {
            JsonMode::Served => {}
            JsonMode::NotFound => {
                return response(404, "text/html", "<html><body>404 Not Found</body></html>")
            }
            JsonMode::Html => return response(200, "text/html", "<html><body>XAPI</body></html>"),
        }
        let Ok(call) = jsonrpc::decode_call(&body) else {
            return response(500, "text/html", "<html>bad request</html>");
        };
        let s = Seen {
            path,
            protocol: "json",
            method: call.method.clone(),
            params: call.params.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        seen.lock().unwrap().push(s.clone());
        match resolve(handler(&s)).await {
            Ok(result) => response(
                200,
                "application/json",
                jsonrpc::encode_response(call.version, &call.id, &result),
            ),
            Err((status, ct, body)) => response(status, ct, body),
        }
    } else {
        let Ok(call) = xmlrpc::decode_call(&body) else {
            return response(500, "text/html", "<html>bad request</html>");
        };
        let s = Seen {
            path,
            protocol: "xml",
            method: call.method.clone(),
            params: call.params.clone(),
            body: String::from_utf8_lossy(&body).into_owned(),
        };
        seen.lock().unwrap().push(s.clone());
        match resolve(handler(&s)).await {
            Ok(result) => {
                let out = if call.method == "system.listMethods" {
                    xmlrpc::encode_bare_response(result.as_ref().unwrap(), &Type::Any)
                } else {
                    xmlrpc::encode_response(&result, &Type::Any)
                };
                response(200, "text/xml", out)
            }
            Err((status, ct, body)) => response(status, ct, body),
        }
    }
}

type Raw = (u16, &'static str, String);

async fn resolve(mut reply: Reply) -> Result<Result<Value, XapiError>, Raw> {
    loop {
        match reply {
            Reply::Rpc(r) => return Ok(r),
            Reply::Raw {
                status,
                content_type,
                body,
            } => return Err((status, content_type, body)),
            Reply::Delay(d, inner) => {
                tokio::time::sleep(d).await;
                reply = *inner;
            }
        }
    }
}

/// Standard login handling: `session.login_with_password` → `OpaqueRef:session-<n>` (n counts logins).
pub fn login_counter() -> (Arc<AtomicUsize>, impl Fn() -> Value) {
    let n = Arc::new(AtomicUsize::new(0));
    let n2 = n.clone();
    (n, move || {
        Value::String(format!(
            "OpaqueRef:session-{}",
            n2.fetch_add(1, Ordering::SeqCst) + 1
        ))
    })
}
