//! The Rust preprocessing (`modelarts_init::imaging`: the server's decode
//! and preprocess) against its specification, `examples/mnist/preprocess.py`,
//! value by value: `tests/tools/preprocess_reference.py` runs the Python on
//! photo-like images (`make_photos.py`), the sample images and its edge
//! cases (alpha, palette, 16-bit, blank, tiny, wide, cut by the border), and
//! writes Pillow-decoded PNG copies of the JPEGs, so that the port is held
//! against the same pixels (PNG) and end to end (JPEG, where the decoders
//! differ by a few grey levels).

use modelarts_init::imaging::decode::{decode_within, Limits};
use modelarts_init::imaging::preprocess::preprocess;

use super::*;

/// The largest difference of one case's 28x28, and whether both found ink.
fn compare(path: &Path, want: Option<Vec<f64>>) -> Result<f64, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let image = decode_within(&bytes, &Limits::default()).map_err(|e| e.to_string())?;
    match (preprocess(&image), want) {
        (None, None) => Ok(0.0),
        (Some(got), Some(want)) => Ok(got
            .iter()
            .zip(&want)
            .map(|(&g, &w)| (g as f64 - w).abs())
            .fold(0.0, f64::max)),
        (got, want) => Err(format!(
            "Rust found ink: {}, Python: {}",
            got.is_some(),
            want.is_some()
        )),
    }
}

#[test]
fn preprocessing_matches_preprocess_py() {
    let dir = TempDir::new("mnist-reference");
    let made = Command::new(python())
        .arg(repo().join("tests/tools/make_photos.py"))
        .args(["--out", &dir.join("photos").to_string_lossy()])
        .args(["--count", "60", "--seed", "4242", "--sample"])
        .arg(repo().join("tests/data/mnist-test-sample.bin.gz"))
        .status()
        .expect("run make_photos.py");
    assert!(made.success());
    let reference = dir.join("ref.json");
    let ran = Command::new(python())
        .arg(repo().join("tests/tools/preprocess_reference.py"))
        .arg("--out")
        .arg(&reference)
        .arg("--edge-cases")
        .arg(dir.join("edge"))
        .arg("--pillow-png")
        .arg(dir.join("pillow"))
        .arg(dir.join("photos"))
        .arg(repo().join("examples/images"))
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run preprocess_reference.py");
    assert!(ran.success());
    let cases: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(&reference).unwrap()).unwrap();
    let cases = cases["cases"].as_array().expect("cases");
    // (worst difference, its case) for the same pixels (PNG) and end to end (JPEG)
    let (mut png, mut jpeg) = ((0.0, String::new()), (0.0, String::new()));
    let mut failed = Vec::new();
    for case in cases {
        let name = case["name"].as_str().unwrap().to_owned();
        let want = case["output"]
            .as_array()
            .map(|v| v.iter().map(|x| x.as_f64().unwrap()).collect::<Vec<f64>>());
        match compare(Path::new(case["path"].as_str().unwrap()), want) {
            Ok(diff) => {
                let worst = if name.ends_with(".png") {
                    &mut png
                } else {
                    &mut jpeg
                };
                if diff > worst.0 {
                    *worst = (diff, name);
                }
            }
            Err(e) => failed.push(format!("{name}: {e}")),
        }
    }
    eprintln!(
        "Rust vs preprocess.py over {} cases: max abs difference {:.3e} on the same pixels (PNG, {}), {:.3e} end to end (JPEG, {})",
        cases.len(),
        png.0,
        png.1,
        jpeg.0,
        jpeg.1
    );
    assert!(cases.len() > 100, "only {} cases", cases.len());
    assert!(failed.is_empty(), "{}", failed.join("\n"));
    // float rounding only; decoders differ by a few grey levels
    assert!(png.0 < 1e-4, "same pixels, {}: {:.3e}", png.1, png.0);
    assert!(jpeg.0 < 0.05, "end to end, {}: {:.3e}", jpeg.1, jpeg.0);
}
