//! Object storage over the S3 protocol (aws-sdk-s3), and the embedded S3-protocol server used
//! when no endpoint is configured: s3s-fs over a local folder, with SigV4 credentials, on
//! loopback. The SDK talks to it over real HTTP exactly as it would to AWS, and its presigned
//! URLs work with any HTTP client (`curl -T file "$url"`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use application::{ByteChunks, ObjectReader, ObjectStore, PresignedRequest, PutStreamError};
use async_trait::async_trait;
use aws_sdk_s3::config::{BehaviorVersion, Credentials, Region};
use aws_sdk_s3::presigning::PresigningConfig;
use chrono::{DateTime, Utc};
use futures::StreamExt;
use hyper_util::rt::TokioIo;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub struct S3Settings {
    pub endpoint: String,
    pub region: String,
    pub access_key: String,
    pub secret_key: String,
    pub bucket: String,
    /// Sign payloads even over a trusted transport (`S3_SIGN_PAYLOADS`).
    pub sign_payloads: bool,
}

#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    /// TLS, or the loopback interface: the transport keeps a body intact, so parts go
    /// unsigned (`UNSIGNED-PAYLOAD`; the request itself is still signed) instead of hashing
    /// every byte twice, here and in the store.
    trusted_transport: bool,
}

/// Whether `endpoint`'s transport keeps a request body intact on its own: `https`, or plain
/// HTTP that never leaves the machine.
fn is_trusted_transport(endpoint: &str) -> bool {
    let Some((scheme, rest)) = endpoint.split_once("://") else {
        return false;
    };
    let host = rest.split(['/', '?']).next().unwrap_or_default();
    let host = match host.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    };
    scheme.eq_ignore_ascii_case("https")
        || (scheme.eq_ignore_ascii_case("http")
            && (host == "localhost"
                || host == "[::1]"
                || host
                    .parse::<std::net::Ipv4Addr>()
                    .is_ok_and(|ip| ip.is_loopback())))
}

impl S3Store {
    pub fn new(settings: &S3Settings) -> S3Store {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .endpoint_url(&settings.endpoint)
            .region(Region::new(settings.region.clone()))
            .credentials_provider(Credentials::new(
                settings.access_key.clone(),
                settings.secret_key.clone(),
                None,
                None,
                "brightrun-config",
            ))
            .force_path_style(true)
            .build();
        S3Store {
            client: aws_sdk_s3::Client::from_conf(config),
            bucket: settings.bucket.clone(),
            trusted_transport: !settings.sign_payloads && is_trusted_transport(&settings.endpoint),
        }
    }

    /// Creates the bucket unless it exists.
    pub async fn ensure_bucket(&self) -> anyhow::Result<()> {
        if self
            .client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .is_ok()
        {
            return Ok(());
        }
        match self
            .client
            .create_bucket()
            .bucket(&self.bucket)
            .send()
            .await
        {
            Ok(_) => Ok(()),
            Err(err) => {
                let owned = err.as_service_error().is_some_and(|e| {
                    e.is_bucket_already_owned_by_you() || e.is_bucket_already_exists()
                });
                if owned {
                    Ok(())
                } else {
                    Err(anyhow::anyhow!(
                        "cannot create bucket {}: {}",
                        self.bucket,
                        aws_sdk_s3::error::DisplayErrorContext(err)
                    ))
                }
            }
        }
    }
}

/// What a client must send: the SDK's presigned request in the port's terms.
fn presigned_request(
    presigned: &aws_sdk_s3::presigning::PresignedRequest,
    valid_for: Duration,
    now: DateTime<Utc>,
) -> anyhow::Result<PresignedRequest> {
    Ok(PresignedRequest {
        url: presigned.uri().to_string(),
        method: presigned.method().to_string(),
        headers: presigned
            .headers()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        expires_at: now + chrono::Duration::from_std(valid_for)?,
    })
}

#[async_trait]
impl ObjectStore for S3Store {
    async fn presign_put(
        &self,
        key: &str,
        content_length: u64,
        valid_for: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<PresignedRequest> {
        let length = i64::try_from(content_length).context("content length too large")?;
        let presigned = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(length)
            .presigned(PresigningConfig::expires_in(valid_for)?)
            .await
            .context("cannot presign the upload")?;
        presigned_request(&presigned, valid_for, now)
    }

    async fn presign_get(
        &self,
        key: &str,
        valid_for: Duration,
        now: DateTime<Utc>,
    ) -> anyhow::Result<PresignedRequest> {
        let presigned = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .presigned(PresigningConfig::expires_in(valid_for)?)
            .await
            .context("cannot presign the download")?;
        presigned_request(&presigned, valid_for, now)
    }

    async fn size_of(&self, key: &str) -> anyhow::Result<Option<u64>> {
        match self
            .client
            .head_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(head) => Ok(Some(head.content_length().unwrap_or(0).max(0) as u64)),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_not_found()) => Ok(None),
            Err(err) => Err(anyhow::anyhow!(
                "cannot read object {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
            )),
        }
    }

    async fn read(&self, key: &str) -> anyhow::Result<Option<ObjectReader>> {
        match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(object) => Ok(Some(Box::new(object.body.into_async_read()))),
            Err(err) if err.as_service_error().is_some_and(|e| e.is_no_such_key()) => Ok(None),
            Err(err) => Err(anyhow::anyhow!(
                "cannot read object {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
            )),
        }
    }

    async fn put(&self, key: &str, bytes: Vec<u8>) -> anyhow::Result<()> {
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes));
        let sent = if self.trusted_transport {
            request.customize().disable_payload_signing().send().await
        } else {
            request.send().await
        };
        sent.map_err(|err| {
            anyhow::anyhow!(
                "cannot store object {key}: {}",
                aws_sdk_s3::error::DisplayErrorContext(err)
            )
        })?;
        Ok(())
    }

    async fn put_stream(
        &self,
        key: &str,
        mut body: ByteChunks<'_>,
        expected: u64,
    ) -> Result<u64, PutStreamError> {
        if self.trusted_transport && expected <= SINGLE_PUT_MAX_BYTES {
            return self.put_streamed(key, body, expected).await;
        }
        let mut buffer: Vec<u8> = Vec::new();
        let mut received: u64 = 0;
        let mut upload: Option<MultipartUpload> = None;
        // One part is stored while the next is received (at most two parts held).
        let mut in_flight: Option<PartUpload> = None;
        let outcome: Result<(), PutStreamError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(PutStreamError::Body)?;
                received += chunk.len() as u64;
                if received > expected {
                    return Err(PutStreamError::TooLarge { limit: expected });
                }
                buffer.extend_from_slice(&chunk);
                if buffer.len() >= PART_BYTES {
                    let rest = buffer.split_off(PART_BYTES);
                    let part = std::mem::replace(&mut buffer, rest);
                    if upload.is_none() {
                        upload = Some(self.start_multipart(key).await?);
                    }
                    if let Some(upload) = upload.as_mut() {
                        if let Some(previous) = in_flight.take() {
                            upload.parts.push(previous.finish(key).await?);
                        }
                        in_flight = Some(self.spawn_part(key, upload, part));
                    }
                }
            }
            if received != expected {
                return Err(PutStreamError::SizeMismatch { expected, received });
            }
            Ok(())
        }
        .await;
        if let Err(err) = outcome {
            if let Some(upload) = upload {
                if let Some(part) = in_flight {
                    let _ = part.finish(key).await;
                }
                self.abort_multipart(key, &upload).await;
            }
            return Err(err);
        }
        match upload {
            None => self
                .put(key, std::mem::take(&mut buffer))
                .await
                .map_err(PutStreamError::Store)?,
            Some(mut upload) => {
                let finished = async {
                    if let Some(part) = in_flight {
                        upload.parts.push(part.finish(key).await?);
                    }
                    if !buffer.is_empty() {
                        let part = self.spawn_part(key, &upload, std::mem::take(&mut buffer));
                        upload.parts.push(part.finish(key).await?);
                    }
                    self.complete_multipart(key, &upload).await
                }
                .await;
                if let Err(err) = finished {
                    self.abort_multipart(key, &upload).await;
                    return Err(err);
                }
            }
        }
        Ok(received)
    }

    async fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|err| {
                anyhow::anyhow!(
                    "cannot delete object {key}: {}",
                    aws_sdk_s3::error::DisplayErrorContext(err)
                )
            })?;
        Ok(())
    }
}

/// The largest object S3 stores with one PUT.
const SINGLE_PUT_MAX_BYTES: u64 = 5 * 1024 * 1024 * 1024;

/// A request body fed through a channel (the SDK wants a `'static` body; the caller's stream
/// borrows its request).
struct ChannelBody(tokio::sync::mpsc::Receiver<Result<bytes::Bytes, std::io::Error>>);

impl http_body::Body for ChannelBody {
    type Data = bytes::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| c.map(http_body::Frame::data)))
    }
}

/// Parts of a streamed upload (S3 wants at least 5 MiB but for the last).
const PART_BYTES: usize = 8 * 1024 * 1024;

struct MultipartUpload {
    id: String,
    parts: Vec<aws_sdk_s3::types::CompletedPart>,
}

/// A part being stored.
struct PartUpload(tokio::task::JoinHandle<Result<aws_sdk_s3::types::CompletedPart, String>>);

impl PartUpload {
    async fn finish(self, key: &str) -> Result<aws_sdk_s3::types::CompletedPart, PutStreamError> {
        match self.0.await {
            Ok(Ok(part)) => Ok(part),
            Ok(Err(e)) => Err(PutStreamError::Store(anyhow::anyhow!(
                "cannot upload a part of {key}: {e}"
            ))),
            Err(e) => Err(PutStreamError::Store(anyhow::anyhow!(
                "the upload of a part of {key} stopped: {e}"
            ))),
        }
    }
}

fn store_error(
    what: &str,
    key: &str,
    err: impl std::error::Error + Send + Sync + 'static,
) -> PutStreamError {
    PutStreamError::Store(anyhow::anyhow!(
        "cannot {what} {key}: {}",
        aws_sdk_s3::error::DisplayErrorContext(err)
    ))
}

impl S3Store {
    async fn start_multipart(&self, key: &str) -> Result<MultipartUpload, PutStreamError> {
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| store_error("start the upload of", key, e))?;
        let id = created
            .upload_id()
            .ok_or_else(|| PutStreamError::Store(anyhow::anyhow!("no upload id for {key}")))?;
        Ok(MultipartUpload {
            id: id.to_string(),
            parts: Vec::new(),
        })
    }

    /// Streams `body` to the store in one unsigned PUT of its declared length (a trusted
    /// transport only): no part is buffered or concatenated. A body that breaks off, or is
    /// longer or shorter than `expected`, fails the PUT, so nothing is stored.
    async fn put_streamed(
        &self,
        key: &str,
        mut body: ByteChunks<'_>,
        expected: u64,
    ) -> Result<u64, PutStreamError> {
        let (tx, rx) = tokio::sync::mpsc::channel(8);
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_length(expected as i64)
            .body(aws_sdk_s3::primitives::ByteStream::from_body_1_x(
                ChannelBody(rx),
            ));
        let stored = tokio::spawn(async move {
            // The transport keeps the body intact: no checksum trailer either (it would
            // wrap the body in aws-chunked frames for the store to unwrap and check).
            let plain = aws_sdk_s3::config::Builder::default().request_checksum_calculation(
                aws_sdk_s3::config::RequestChecksumCalculation::WhenRequired,
            );
            request
                .customize()
                .disable_payload_signing()
                .config_override(plain)
                .send()
                .await
                .map(|_| ())
                .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
        });
        let mut received: u64 = 0;
        let fed: Result<(), PutStreamError> = async {
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(PutStreamError::Body)?;
                received += chunk.len() as u64;
                if received > expected {
                    return Err(PutStreamError::TooLarge { limit: expected });
                }
                if tx.send(Ok(chunk)).await.is_err() {
                    break; // the store stopped reading: its answer says why
                }
            }
            if received != expected {
                return Err(PutStreamError::SizeMismatch { expected, received });
            }
            Ok(())
        }
        .await;
        if let Err(err) = fed {
            // The PUT fails with the body; should the store have taken all `expected` bytes
            // before the excess showed, the object it stored goes.
            let _ = tx.send(Err(std::io::Error::other("upload refused"))).await;
            drop(tx);
            if matches!(stored.await, Ok(Ok(()))) {
                if let Err(e) = self.delete(key).await {
                    tracing::warn!(key, error = %format!("{e:#}"), "cannot remove a refused upload");
                }
            }
            return Err(err);
        }
        drop(tx);
        match stored.await {
            Ok(Ok(())) => Ok(received),
            Ok(Err(e)) => Err(PutStreamError::Store(anyhow::anyhow!(
                "cannot store object {key}: {e}"
            ))),
            Err(e) => Err(PutStreamError::Store(anyhow::anyhow!(
                "the upload of {key} stopped: {e}"
            ))),
        }
    }

    /// Starts storing the next part of `upload` (its number follows the parts recorded).
    fn spawn_part(&self, key: &str, upload: &MultipartUpload, bytes: Vec<u8>) -> PartUpload {
        let number = upload.parts.len() as i32 + 1;
        let request = self
            .client
            .upload_part()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload.id)
            .part_number(number)
            .body(aws_sdk_s3::primitives::ByteStream::from(bytes));
        let unsigned = self.trusted_transport;
        PartUpload(tokio::spawn(async move {
            let sent = if unsigned {
                request.customize().disable_payload_signing().send().await
            } else {
                request.send().await
            };
            sent.map(|part| {
                aws_sdk_s3::types::CompletedPart::builder()
                    .part_number(number)
                    .set_e_tag(part.e_tag().map(str::to_string))
                    .build()
            })
            .map_err(|e| aws_sdk_s3::error::DisplayErrorContext(e).to_string())
        }))
    }

    async fn complete_multipart(
        &self,
        key: &str,
        upload: &MultipartUpload,
    ) -> Result<(), PutStreamError> {
        self.client
            .complete_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload.id)
            .multipart_upload(
                aws_sdk_s3::types::CompletedMultipartUpload::builder()
                    .set_parts(Some(upload.parts.clone()))
                    .build(),
            )
            .send()
            .await
            .map_err(|e| store_error("complete the upload of", key, e))?;
        Ok(())
    }

    /// Best effort: a failed abort leaves parts the store's lifecycle rules expire.
    async fn abort_multipart(&self, key: &str, upload: &MultipartUpload) {
        if let Err(err) = self
            .client
            .abort_multipart_upload()
            .bucket(&self.bucket)
            .key(key)
            .upload_id(&upload.id)
            .send()
            .await
        {
            tracing::warn!(key, error = %aws_sdk_s3::error::DisplayErrorContext(err), "cannot abort a multipart upload");
        }
    }
}

/// The file in a data folder that keeps its embedded store's keys.
pub const CREDENTIALS_FILE: &str = "object-store-credentials";

/// The keys of the embedded object store over `data_dir`: the configured ones, or the folder's
/// own, made at random on first use and kept in `<data_dir>/object-store-credentials` (mode
/// 0600), so a restart (and `brightrun object-store` over the same folder) signs with the
/// same keys and no two folders share them.
pub fn embedded_credentials(
    data_dir: &std::path::Path,
    configured: (Option<&str>, Option<&str>),
) -> anyhow::Result<(String, String)> {
    if let (Some(access), Some(secret)) = configured {
        return Ok((access.to_string(), secret.to_string()));
    }
    let path = data_dir.join(CREDENTIALS_FILE);
    std::fs::create_dir_all(data_dir)
        .with_context(|| format!("cannot create the data folder {}", data_dir.display()))?;
    let made = format!(
        "{}\n{}{}\n",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    );
    let created = {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .and_then(|mut file| {
                file.write_all(made.as_bytes())?;
                file.sync_all()
            })
    };
    match created {
        Ok(()) => {}
        // Another process over the same folder made them first: theirs are the keys.
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e).with_context(|| format!("cannot write {}", path.display())),
    }
    // A file being written by another process reads short for a moment: wait for both lines.
    for _ in 0..50 {
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        if let (Some(access), Some(secret), true) =
            (lines.next(), lines.next(), text.ends_with('\n'))
        {
            return Ok((access.to_string(), secret.to_string()));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    anyhow::bail!(
        "{} does not hold an access key and a secret, a line each: remove it to make new ones",
        path.display()
    )
}

/// The embedded S3-protocol server: s3s-fs over `root`, SigV4 with the given credentials.
pub struct EmbeddedS3 {
    pub endpoint: String,
    task: JoinHandle<()>,
}

impl EmbeddedS3 {
    pub async fn start(
        root: PathBuf,
        addr: SocketAddr,
        access_key: &str,
        secret_key: &str,
        header_read_timeout: std::time::Duration,
        console_origins: &[String],
    ) -> anyhow::Result<EmbeddedS3> {
        tokio::fs::create_dir_all(&root)
            .await
            .with_context(|| format!("cannot create the object store folder {}", root.display()))?;
        let fs = s3s_fs::FileSystem::new(&root)
            .map_err(|e| anyhow::anyhow!("cannot open {}: {e:?}", root.display()))?;
        let mut builder = S3ServiceBuilder::new(fs);
        builder.set_auth(SimpleAuth::from_single(access_key, secret_key));
        // Browsers PUT and GET presigned URLs from the console's pages: only the console's
        // origins may (a page elsewhere holding a leaked URL cannot read the answer); nothing
        // is allowed without a valid signature anyway.
        let origins: Vec<axum::http::HeaderValue> = console_origins
            .iter()
            .filter_map(|o| axum::http::HeaderValue::from_str(o).ok())
            .collect();
        let cors = tower_http::cors::CorsLayer::new()
            .allow_origin(tower_http::cors::AllowOrigin::list(origins))
            .allow_methods([
                axum::http::Method::GET,
                axum::http::Method::PUT,
                axum::http::Method::HEAD,
            ])
            .allow_headers(tower_http::cors::Any)
            .expose_headers([axum::http::header::ETAG, axum::http::header::CONTENT_LENGTH])
            .max_age(std::time::Duration::from_secs(3600));
        let service = hyper_util::service::TowerToHyperService::new(
            tower::ServiceBuilder::new()
                .layer(cors)
                .service(builder.build()),
        );
        let listener = TcpListener::bind(addr)
            .await
            .with_context(|| format!("cannot listen on {addr}"))?;
        let local = listener.local_addr()?;
        let task = tokio::spawn(async move {
            let http = crate::http_connections(header_read_timeout);
            loop {
                let Ok((socket, _)) = listener.accept().await else {
                    continue;
                };
                let conn = http
                    .serve_connection(TokioIo::new(socket), service.clone())
                    .into_owned();
                tokio::spawn(async move {
                    let _ = conn.await;
                });
            }
        });
        tracing::info!(endpoint = %format!("http://{local}"), root = %root.display(), "embedded S3-protocol server");
        Ok(EmbeddedS3 {
            endpoint: format!("http://{local}"),
            task,
        })
    }
}

impl Drop for EmbeddedS3 {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[cfg(test)]
mod transport_tests {
    use super::is_trusted_transport;

    #[test]
    fn only_tls_or_loopback_counts_as_a_trusted_transport() {
        for trusted in [
            "https://s3.eu-west-1.amazonaws.com",
            "http://127.0.0.1:9000",
            "http://localhost:9000/",
            "http://[::1]:9000",
        ] {
            assert!(is_trusted_transport(trusted), "{trusted}");
        }
        for untrusted in [
            "http://minio.internal:9000",
            "http://10.0.0.5",
            "http://127.0.0.1.evil.example",
            "s3.example.com",
        ] {
            assert!(!is_trusted_transport(untrusted), "{untrusted}");
        }
    }
}
