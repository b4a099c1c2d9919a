//! A minimal HTTP/1.1 endpoint for `/metrics`, `/healthz` and `/readyz`.
//!
//! Three GET routes with no bodies in: a small hand-written responder is enough and
//! keeps an HTTP framework out of the dependency tree.

use std::net::SocketAddr;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// Binds `addr` and serves until the task is dropped. Returns the bound address (useful
/// with port 0).
pub async fn serve(addr: SocketAddr) -> std::io::Result<(SocketAddr, tokio::task::JoinHandle<()>)> {
    let listener = TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let handle = tokio::spawn(async move {
        loop {
            match listener.accept().await {
                Ok((stream, _)) => {
                    tokio::spawn(handle_conn(stream));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "Metrics endpoint accept failed.");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    });
    Ok((local, handle))
}

async fn handle_conn(mut stream: TcpStream) {
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    // Read until the end of the request headers (or the buffer is full).
    loop {
        match tokio::time::timeout(std::time::Duration::from_secs(5), stream.read(&mut buf[len..])).await {
            Ok(Ok(0)) | Err(_) | Ok(Err(_)) => break,
            Ok(Ok(n)) => {
                len += n;
                if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") || len == buf.len() {
                    break;
                }
            }
        }
    }
    let request = String::from_utf8_lossy(&buf[..len]);
    let mut parts = request.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or("");
    let stopped = super::failed_partitions();
    let (status, ctype, body) = match (method, path) {
        ("GET" | "HEAD", "/metrics") => {
            ("200 OK", "text/plain; version=0.0.4; charset=utf-8", super::metrics().render())
        }
        ("GET" | "HEAD", "/healthz") => ("200 OK", "text/plain", "ok\n".to_string()),
        ("GET" | "HEAD", "/readyz") if !stopped.is_empty() => {
            let lines: String = stopped.iter().map(|l| format!("{l}\n")).collect();
            ("503 Service Unavailable", "text/plain", format!("not ready: input partitions stopped\n{lines}"))
        }
        ("GET" | "HEAD", "/readyz") if super::is_ready() => ("200 OK", "text/plain", "ready\n".to_string()),
        ("GET" | "HEAD", "/readyz") => ("503 Service Unavailable", "text/plain", "not ready\n".to_string()),
        ("GET" | "HEAD", _) => ("404 Not Found", "text/plain", "try /metrics, /healthz or /readyz\n".to_string()),
        _ => ("405 Method Not Allowed", "text/plain", "GET only\n".to_string()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes()).await;
    if method != "HEAD" {
        let _ = stream.write_all(body.as_bytes()).await;
    }
    let _ = stream.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.unwrap();
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn routes() {
        let (addr, task) = serve("127.0.0.1:0".parse().unwrap()).await.unwrap();
        super::super::metrics().events_total.with_label_values(&["t.http"]).inc();
        let m = get(addr, "/metrics").await;
        assert!(m.starts_with("HTTP/1.1 200"), "{m}");
        assert!(m.contains("cs_pulse_events_total{topic=\"t.http\"}"), "{m}");
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        super::super::set_ready(false);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 503"));
        super::super::set_ready(true);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        super::super::set_partition_failed(7, Some("partition 7 stopped at cs.usage.v1 offset 42".into()));
        let r = get(addr, "/readyz").await;
        assert!(r.starts_with("HTTP/1.1 503") && r.contains("partition 7 stopped at cs.usage.v1 offset 42"), "{r}");
        super::super::set_partition_failed(7, None);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        task.abort();
    }
}
