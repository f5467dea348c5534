//! Image loaders (issue 7): the committed fixtures load with the right shape, range, count and
//! labels; damaged files give errors that name the file and what was expected.

use gud_io::images::ImageScale;
use gud_io::images::{read_idx, read_images, ImageOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

fn fixture(p: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(p)
}

fn images() -> PathBuf {
    fixture("fashion-mnist/t10k-64-images-idx3-ubyte.gz")
}
fn labels() -> PathBuf {
    fixture("fashion-mnist/t10k-64-labels-idx1-ubyte.gz")
}

fn min_max(v: &[f64]) -> (f64, f64) {
    v.iter()
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &x| {
            (a.min(x), b.max(x))
        })
}

fn on_bin_centres(ds: &gud_core::Dataset) {
    let q = ds.quantization().unwrap();
    for &x in ds.as_slice() {
        let k = (x - q.origin) / q.bin_width - 0.5;
        assert!((k - k.round()).abs() < 1e-9, "{x} is not a bin centre");
    }
}

#[test]
fn idx_fixture_loads_with_shape_range_count_and_labels() {
    let ds = read_images(&images(), Some(&labels()), &ImageOptions::default()).unwrap();
    assert_eq!(ds.len(), 64);
    assert_eq!(ds.shape(), gud_core::Shape::new(1, 28, 28));
    let (lo, hi) = min_max(ds.as_slice());
    // levels 0 and 255 at their bin centres in (-1, 1)
    assert_eq!(lo, -1.0 + 1.0 / 256.0);
    assert_eq!(hi, 1.0 - 1.0 / 256.0);
    assert_eq!(&ds.labels().unwrap()[..8], &[9, 2, 1, 1, 6, 1, 4, 6]);
    let q = ds.quantization().unwrap();
    assert_eq!((q.levels, q.bin_width), (256, 2.0 / 256.0));
    on_bin_centres(&ds);
    let unit = ImageOptions {
        scale: ImageScale::Unit,
        limit: Some(10),
        ..ImageOptions::default()
    };
    let ds = read_images(&images(), Some(&labels()), &unit).unwrap();
    assert_eq!((ds.len(), ds.labels().unwrap().len()), (10, 10));
    let (lo, hi) = min_max(ds.as_slice());
    assert!(lo > 0.0 && hi < 1.0);
}

#[test]
fn crop_and_resize_keep_8_bit_levels() {
    let opts = ImageOptions {
        crop: Some([20, 24]),
        resize: Some([10, 12]),
        ..ImageOptions::default()
    };
    let ds = read_images(&images(), None, &opts).unwrap();
    assert_eq!((ds.shape().h, ds.shape().w, ds.len()), (10, 12, 64));
    on_bin_centres(&ds);
    let too_big = ImageOptions {
        crop: Some([29, 10]),
        ..ImageOptions::default()
    };
    let e = read_images(&images(), None, &too_big)
        .unwrap_err()
        .to_string();
    assert!(e.contains("crop") && e.contains("28x28"), "{e}");
}

#[test]
fn png_folders_gray_with_classes_and_rgb() {
    let gray = read_images(&fixture("png-gray"), None, &ImageOptions::default()).unwrap();
    assert_eq!((gray.len(), gray.shape().c, gray.shape().h), (6, 1, 28));
    // sorted class folders class1, class2, class6, class9 -> labels 0..3
    assert_eq!(gray.labels().unwrap(), &[0, 0, 0, 1, 2, 3]);
    // the PNGs are images 2, 3, 5, 1, 4, 0 of the IDX fixture
    let idx = read_images(&images(), None, &ImageOptions::default()).unwrap();
    for (k, src) in [2, 3, 5, 1, 4, 0].into_iter().enumerate() {
        assert_eq!(gray.sample(k), idx.sample(src), "png {k}");
    }
    let rgb = read_images(&fixture("png-rgb"), None, &ImageOptions::default()).unwrap();
    let s = rgb.shape();
    assert_eq!((rgb.len(), s.c, s.h, s.w), (3, 3, 6, 8));
    assert!(rgb.labels().is_none());
    let q = rgb.quantization().unwrap();
    // image 1: red at (x = 2, y = 0) = 65; green at y = 5 = 255; blue alternates 255, 0
    let px = rgb.sample(1);
    assert_eq!(px[2], q.value(65));
    assert_eq!(px[48 + 5 * 8], q.value(255));
    assert_eq!(px[96], q.value(255));
    assert_eq!(px[97], q.value(0));
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::File::create(&p).unwrap().write_all(bytes).unwrap();
    p
}

fn gunzip(p: &Path) -> Vec<u8> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(p).unwrap())
        .read_to_end(&mut out)
        .unwrap();
    out
}

fn load_err(p: &Path) -> String {
    read_images(p, None, &ImageOptions::default())
        .unwrap_err()
        .to_string()
}

#[test]
fn damaged_files_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let raw = gunzip(&images());
    // raw (not gzipped) IDX reads the same
    let p = write(dir.path(), "raw-idx3-ubyte", &raw);
    assert_eq!(read_idx(&p).unwrap().1.len(), 64 * 784);
    let p = write(dir.path(), "cut-idx3-ubyte", &raw[..5000]);
    let e = load_err(&p);
    assert!(
        e.contains("cut-idx3-ubyte") && e.contains("truncated") && e.contains("50176"),
        "{e}"
    );
    let gz = std::fs::read(images()).unwrap();
    let p = write(dir.path(), "cut.gz", &gz[..gz.len() / 2]);
    let e = load_err(&p);
    assert!(e.contains("cut.gz") && e.contains("gzip"), "{e}");
    let p = write(dir.path(), "text.idx", b"hello, not an idx file");
    assert!(load_err(&p).contains("not an IDX file"));
    let mut float = raw.clone();
    float[2] = 0x0d;
    let p = write(dir.path(), "float-idx3", &float);
    assert!(load_err(&p).contains("0x0d"));
    // labels that do not match the images
    let short = [0u8, 0, 8, 1, 0, 0, 0, 3, 1, 2, 3];
    let p = write(dir.path(), "short-labels", &short);
    let e = read_images(&images(), Some(&p), &ImageOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("short-labels") && e.contains("3 labels for 64 images"),
        "{e}"
    );
    // a corrupt PNG in a folder
    let pngs = dir.path().join("pngs");
    std::fs::create_dir(&pngs).unwrap();
    std::fs::copy(fixture("png-rgb/0.png"), pngs.join("a.png")).unwrap();
    let good = std::fs::read(fixture("png-rgb/1.png")).unwrap();
    write(&pngs, "b.png", &good[..good.len() - 20]);
    let e = load_err(&pngs);
    assert!(e.contains("b.png") && e.contains("PNG"), "{e}");
    // an empty folder
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    assert!(load_err(&empty).contains("no .png files"));
    // a truncated uint8 npy
    let mut npy = b"\x93NUMPY\x01\x00".to_vec();
    let header = "{'descr': '|u1', 'fortran_order': False, 'shape': (4, 2, 2), }";
    let padded = format!("{header:<117}\n");
    npy.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    npy.extend_from_slice(padded.as_bytes());
    npy.extend_from_slice(&[1, 2, 3]);
    let p = write(dir.path(), "x.npy", &npy);
    let e = load_err(&p);
    assert!(e.contains("x.npy") && e.contains("16"), "{e}");
    // the same, complete, loads as 8-bit levels
    npy.extend_from_slice(&[0; 13]);
    let p = write(dir.path(), "ok.npy", &npy);
    let ds = read_images(&p, None, &ImageOptions::default()).unwrap();
    assert_eq!((ds.len(), ds.quantization().is_some()), (4, true));
}
