//! The mnist app: the bundled handwritten-digit model behind the same HTTP
//! front as wrap mode (rule R2).
//!
//! `POST /` with a multipart field `images` holding a JPEG or PNG answers
//! `{"mnist_result": <digit>}`.
//!
//! Owns: the upload (multipart, size limit),
//! decoding (format and pixel-count limits, so a decompression bomb is
//! refused before anything is allocated), and the hand-off to the
//! `compute` threads, which run `preprocess` and `model`. Must not: block the
//! reactor, or let one bad upload affect another request.

use std::io::Cursor;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use futures_util::TryStreamExt;
use http_body_util::BodyStream;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ALLOW, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use image::{ImageFormat, ImageReader, Limits};

use modelarts_init::config::MnistConfig;
use modelarts_init::http::{error, json, server, App, Body, Front};
use modelarts_init::lifecycle::Lifecycle;
use modelarts_init::supervisor::signals;
use modelarts_init::{shutdown, Error};

use crate::compute::Compute;
use crate::model::{self, Model};
use modelarts_init::imaging::preprocess;

/// Runs the mnist server to the end: the bundled model behind the same
/// front and the same R8 timeline as wrap mode, without a child. Exits 0
/// after a drain.
pub fn run(config: MnistConfig) -> Result<u8, Error> {
    modelarts_init::block_on(true, serve(config))
}

async fn serve(config: MnistConfig) -> Result<u8, Error> {
    let lifecycle = Lifecycle::new();
    let signals = signals::listen()?;
    let listener = server::bind(config.front.listen)?;
    let front = Arc::new(Front::new(
        config.front.clone(),
        lifecycle.clone(),
        Mnist::new(config.max_image_bytes),
    ));
    tracing::info!(listen = %config.front.listen, "listening; loading the model");
    let served = modelarts_init::start_front(listener, front.clone());
    // /health answers 503 until the model is loaded and optimized.
    let started = std::time::Instant::now();
    let model = tokio::task::spawn_blocking(Model::load)
        .await
        .map_err(|e| Error::Model(e.to_string()))?
        .map_err(|e| Error::Model(e.to_string()))?;
    front.app.set_model(model)?;
    tracing::info!(
        elapsed_ms = started.elapsed().as_millis() as u64,
        "model loaded"
    );
    lifecycle.set_ready(true);
    shutdown::run(None, signals, &lifecycle, config.timeline, served.clone()).await;
    let _ = tokio::time::timeout(modelarts_init::FRONT_GRACE, served).await;
    Ok(0)
}

/// The multipart field that carries the image (R2's `-F images=@...`).
pub const FIELD: &str = "images";

/// Largest width or height we decode; a photo from any phone fits.
const MAX_SIDE: u32 = 16_384;

/// Most bytes a decoder may allocate (a 16k x 16k grey image, or a
/// smaller colour one).
const MAX_ALLOC: u64 = 512 * 1024 * 1024;

/// Why an upload could not be classified; each maps to a 4xx answer.
#[derive(Debug, thiserror::Error)]
pub enum UploadError {
    #[error("expected a multipart/form-data body with a field named \"images\" (curl -F images=@digit.jpg)")]
    NotMultipart,
    #[error("malformed multipart body: {0}")]
    Malformed(String),
    #[error("no field named \"images\" in the form (curl -F images=@digit.jpg)")]
    NoImage,
    #[error("the \"images\" field is empty")]
    Empty,
    #[error("the upload exceeds {0} bytes (--max-image-bytes)")]
    TooLarge(u64),
    #[error("unsupported image format; send a JPEG or PNG")]
    Unsupported,
    #[error("the image is {0}; the largest accepted side is {MAX_SIDE} px")]
    TooManyPixels(String),
    #[error("cannot decode the image (truncated or corrupt?): {0}")]
    Corrupt(String),
    #[error("no digit found in the image")]
    NoDigit,
    #[error("internal error while classifying the image (logged); please report it")]
    Internal,
}

impl UploadError {
    fn answer(&self) -> Response<Body> {
        let (status, code) = match self {
            UploadError::NotMultipart => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "not_multipart"),
            UploadError::Malformed(_) => (StatusCode::BAD_REQUEST, "malformed_multipart"),
            UploadError::NoImage => (StatusCode::BAD_REQUEST, "no_image"),
            UploadError::Empty => (StatusCode::BAD_REQUEST, "empty_image"),
            UploadError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "image_too_large"),
            UploadError::Unsupported => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_format"),
            UploadError::TooManyPixels(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_pixels"),
            UploadError::Corrupt(_) => (StatusCode::BAD_REQUEST, "corrupt_image"),
            UploadError::NoDigit => (StatusCode::UNPROCESSABLE_ENTITY, "no_digit"),
            UploadError::Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        error(status, code, &self.to_string())
    }
}

/// The mnist app.
pub struct Mnist {
    /// Set once the model is loaded; requests are served from then on.
    compute: OnceLock<Compute>,
    max_image_bytes: u64,
}

impl Mnist {
    pub fn new(max_image_bytes: u64) -> Mnist {
        Mnist {
            compute: OnceLock::new(),
            max_image_bytes,
        }
    }

    /// Starts the compute threads (one per core) on the loaded model.
    pub fn set_model(&self, model: Model) -> Result<(), Error> {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let compute = Compute::start(model, cores).map_err(|source| Error::Os {
            what: "cannot start the compute threads",
            source,
        })?;
        let _ = self.compute.set(compute);
        Ok(())
    }

    async fn classify(&self, req: Request<Incoming>) -> Result<u8, Response<Body>> {
        let bytes = self.read_upload(req).await.map_err(|e| e.answer())?;
        let Some(compute) = self.compute.get() else {
            return Err(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "not_ready",
                "the model is still loading",
            ));
        };
        let result = compute.classify(bytes).await.map_err(|e| {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "internal",
                &e.to_string(),
            )
        })?;
        result.map_err(|e| e.answer())
    }

    /// Reads the `images` field, up to `max_image_bytes`.
    async fn read_upload(&self, req: Request<Incoming>) -> Result<bytes::Bytes, UploadError> {
        let boundary = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| multer::parse_boundary(v).ok())
            .ok_or(UploadError::NotMultipart)?;
        let max = self.max_image_bytes;
        let constraints = multer::Constraints::new().size_limit(
            multer::SizeLimit::new()
                .per_field(max)
                // Room for the other fields and the multipart framing.
                .whole_stream(max.saturating_add(64 * 1024)),
        );
        let stream = BodyStream::new(req.into_body())
            .try_filter_map(|frame| async move { Ok(frame.into_data().ok()) });
        let mut form = multer::Multipart::with_constraints(stream, boundary, constraints);
        let too_large = |e: multer::Error| match e {
            multer::Error::FieldSizeExceeded { .. } | multer::Error::StreamSizeExceeded { .. } => {
                UploadError::TooLarge(max)
            }
            other => UploadError::Malformed(other.to_string()),
        };
        while let Some(field) = form.next_field().await.map_err(too_large)? {
            if field.name() == Some(FIELD) {
                let bytes = field.bytes().await.map_err(too_large)?;
                if bytes.is_empty() {
                    return Err(UploadError::Empty);
                }
                return Ok(bytes);
            }
        }
        Err(UploadError::NoImage)
    }
}

impl App for Mnist {
    async fn call(&self, req: Request<Incoming>, _peer: SocketAddr) -> Response<Body> {
        if req.uri().path() != "/" {
            return error(
                StatusCode::NOT_FOUND,
                "not_found",
                "POST an image to / (the only API path)",
            );
        }
        if req.method() != Method::POST {
            let mut resp = error(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use POST / with a multipart field \"images\"",
            );
            resp.headers_mut()
                .insert(ALLOW, HeaderValue::from_static("POST"));
            return resp;
        }
        match self.classify(req).await {
            Ok(digit) => json(
                StatusCode::OK,
                &serde_json::json!({ "mnist_result": digit }),
            ),
            Err(resp) => resp,
        }
    }
}

/// Decodes a JPEG or PNG within the limits and turns it into the model's
/// input.
pub fn decode_and_preprocess(bytes: &[u8]) -> Result<model::Input, UploadError> {
    let image = decode(bytes)?;
    preprocess::preprocess(&image).ok_or(UploadError::NoDigit)
}

/// Decodes a JPEG or PNG; the size in the header is checked against the
/// limits before any pixel buffer is allocated.
pub fn decode(bytes: &[u8]) -> Result<image::DynamicImage, UploadError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| UploadError::Corrupt(e.to_string()))?;
    match reader.format() {
        Some(ImageFormat::Jpeg) if !jpeg_is_complete(bytes) => {
            return Err(UploadError::Corrupt(
                "the JPEG ends before its end-of-image marker (truncated upload?)".into(),
            ))
        }
        Some(ImageFormat::Jpeg) => {
            if let Some(image) = decode_jpeg_luma(bytes)? {
                return Ok(image);
            }
        }
        Some(ImageFormat::Png) => {}
        _ => return Err(UploadError::Unsupported),
    }
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    let mut decoder = reader.into_decoder().map_err(classify_image_error)?;
    use image::ImageDecoder;
    let orientation = decoder.orientation().ok();
    let mut image = image::DynamicImage::from_decoder(decoder).map_err(classify_image_error)?;
    if let Some(o) = orientation {
        image.apply_orientation(o);
    }
    Ok(image)
}

/// A colour (YCbCr) or grey JPEG decoded straight to its luma, the grey
/// the model needs: the chroma planes are neither upsampled nor converted,
/// which is most of a colour JPEG's decoding time. `preprocess.py` does the
/// same (Pillow's `draft("L")`: libjpeg's luma output). `None` for the
/// other colour spaces (CMYK, RGB-coded), which take the general path.
fn decode_jpeg_luma(bytes: &[u8]) -> Result<Option<image::DynamicImage>, UploadError> {
    use zune_jpeg::zune_core::{
        bytestream::ZCursor, colorspace::ColorSpace, options::DecoderOptions,
    };
    let corrupt = |e: zune_jpeg::errors::DecodeErrors| UploadError::Corrupt(e.to_string());
    let options = DecoderOptions::default()
        .set_strict_mode(false)
        .set_max_width(usize::MAX)
        .set_max_height(usize::MAX)
        .jpeg_set_out_colorspace(ColorSpace::Luma);
    let mut decoder = zune_jpeg::JpegDecoder::new_with_options(ZCursor::new(bytes), options);
    decoder.decode_headers().map_err(corrupt)?;
    if !matches!(
        decoder.input_colorspace(),
        Some(ColorSpace::YCbCr | ColorSpace::Luma)
    ) {
        return Ok(None);
    }
    let (width, height) = decoder
        .dimensions()
        .ok_or_else(|| UploadError::Corrupt("no image size in the JPEG header".into()))?;
    if width.max(height) > MAX_SIDE as usize {
        return Err(UploadError::TooManyPixels(format!("{width}x{height} px")));
    }
    let pixels = decoder.decode().map_err(corrupt)?;
    let grey =
        image::GrayImage::from_raw(width as u32, height as u32, pixels).ok_or_else(|| {
            UploadError::Corrupt("the JPEG decoded to fewer pixels than its size".into())
        })?;
    let mut image = image::DynamicImage::ImageLuma8(grey);
    if let Some(o) = decoder
        .exif()
        .and_then(|exif| image::metadata::Orientation::from_exif_chunk(exif))
    {
        image.apply_orientation(o);
    }
    Ok(Some(image))
}

/// Whether a JPEG has an end-of-image marker after its last scan. The
/// decoder fills a truncated image with grey and reports success, which
/// would classify half a photo; an EXIF thumbnail's own markers come before
/// the main image's scans, so they do not count.
fn jpeg_is_complete(bytes: &[u8]) -> bool {
    let last_scan = bytes.windows(2).rposition(|w| w == [0xFF, 0xDA]);
    let last_end = bytes.windows(2).rposition(|w| w == [0xFF, 0xD9]);
    matches!((last_scan, last_end), (Some(scan), Some(end)) if end > scan)
}

fn classify_image_error(e: image::ImageError) -> UploadError {
    match e {
        image::ImageError::Limits(l) => UploadError::TooManyPixels(l.to_string()),
        image::ImageError::Unsupported(_) => UploadError::Unsupported,
        other => UploadError::Corrupt(other.to_string()),
    }
}
