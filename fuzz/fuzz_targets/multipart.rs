//! A multipart/form-data body, read as the mnist server reads an upload
//! (multer, the `images` field, a size limit), in chunks whose size the
//! first byte picks; the field's bytes then go down the image path
//! (`fuzz_support::image`).
#![no_main]

use std::convert::Infallible;

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;

const BOUNDARY: &str = "fuzz-boundary";
const MAX: u64 = 1 << 20;

fuzz_target!(|data: &[u8]| {
    let Some((&first, body)) = data.split_first() else {
        return;
    };
    let chunk = 1 + first as usize * 16;
    let chunks: Vec<Result<Bytes, Infallible>> = body
        .chunks(chunk)
        .map(|c| Ok(Bytes::copy_from_slice(c)))
        .collect();
    let constraints = multer::Constraints::new().size_limit(
        multer::SizeLimit::new()
            .per_field(MAX)
            .whole_stream(MAX + 64 * 1024),
    );
    let mut form = multer::Multipart::with_constraints(
        futures_util::stream::iter(chunks),
        BOUNDARY,
        constraints,
    );
    let image = runtime().block_on(async {
        while let Ok(Some(mut field)) = form.next_field().await {
            if field.name() != Some("images") {
                continue;
            }
            let mut bytes = Vec::new();
            while let Ok(Some(c)) = field.chunk().await {
                bytes.extend_from_slice(&c);
                assert!(bytes.len() as u64 <= MAX, "multer passed the field limit");
            }
            return Some(bytes);
        }
        None
    });
    if let Some(image) = image {
        fuzz_support::image(&image);
    }
});

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: std::sync::OnceLock<tokio::runtime::Runtime> = std::sync::OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a tokio runtime")
    })
}
