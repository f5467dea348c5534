//! Real image data sets: IDX files (the MNIST format, raw or gzip), folders of PNGs (gray or
//! RGB; class subfolders give labels, as torchvision's ImageFolder) and .npy arrays of uint8
//! levels. Images are centre-cropped and resized on request, then mapped to reals at the
//! centres of their 8-bit bins ([`ImageScale`]); the data set records that quantisation so
//! that likelihoods can dequantise (SPEC section 6).

use crate::{format_err, io_err, IoError, Result};
use gud_core::{Dataset, Shape};
use image::imageops::FilterType;
use image::GrayImage;
use serde::{Deserialize, Serialize};
use std::io::Read;
use std::path::{Path, PathBuf};

/// What to do to the images after reading them.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ImageOptions {
    /// Use only the first N images.
    pub limit: Option<usize>,
    /// Centre crop to H, W.
    pub crop: Option<[usize; 2]>,
    /// Resize to H, W (after the crop).
    pub resize: Option<[usize; 2]>,
    /// How levels map to reals.
    pub scale: ImageScale,
}

impl ImageOptions {
    /// The options of an image data config.
    pub fn of(c: &ImageDataConfig) -> Self {
        ImageOptions {
            limit: c.limit,
            crop: c.crop,
            resize: c.resize,
            scale: c.scale,
        }
    }
}

/// 8-bit images, channel-first (N, C, H, W), with optional labels.
#[derive(Debug, Clone, PartialEq)]
pub struct Levels {
    /// Shape of one image.
    pub shape: Shape,
    /// The levels, (N, C, H, W).
    pub pixels: Vec<u8>,
    /// Class labels.
    pub labels: Option<Vec<u32>>,
}

/// The training or the test images of a config.
pub fn read_config_images(c: &ImageDataConfig, test: bool) -> Result<Dataset> {
    let (images, labels) = match (test, &c.test) {
        (true, Some(t)) => (t, c.test_labels.as_deref()),
        _ => (&c.train, c.train_labels.as_deref()),
    };
    read_images(images, labels, &ImageOptions::of(c))
}

/// Reads images from an IDX file, a PNG folder or a .npy file (by what `path` is), with IDX
/// labels when given, and applies the options.
pub fn read_images(path: &Path, labels: Option<&Path>, opts: &ImageOptions) -> Result<Dataset> {
    if path.extension().is_some_and(|e| e == "npy") {
        if let Some(levels) = read_npy_levels(path)? {
            return finish(path, levels, labels, opts);
        }
        let ds = crate::npy::read_dataset(path)?;
        let (h, w) = (ds.shape().h, ds.shape().w);
        let changes = |o: Option<[usize; 2]>| o.is_some_and(|r| r != [h, w]);
        if changes(opts.crop) || changes(opts.resize) || labels.is_some() {
            return Err(format_err(
                path,
                "crop, resize and labels need 8-bit images; this .npy holds floats",
            ));
        }
        return Ok(match opts.limit {
            Some(n) => ds.head(n),
            None => ds,
        });
    }
    let levels = if path.is_dir() {
        read_png_folder(path)?
    } else {
        read_idx_images(path)?
    };
    finish(path, levels, labels, opts)
}

fn finish(
    path: &Path,
    mut levels: Levels,
    labels: Option<&Path>,
    opts: &ImageOptions,
) -> Result<Dataset> {
    if let Some(l) = labels {
        let lab = read_idx_labels(l)?;
        let n = levels.pixels.len() / levels.shape.dim();
        if lab.len() != n {
            return Err(format_err(
                l,
                format!("{} labels for {n} images in {}", lab.len(), path.display()),
            ));
        }
        levels.labels = Some(lab);
    }
    if let Some(n) = opts.limit {
        let d = levels.shape.dim();
        levels.pixels.truncate(n * d);
        if let Some(l) = &mut levels.labels {
            l.truncate(n);
        }
    }
    let levels = transform(path, levels, opts)?;
    to_dataset(path, levels, opts.scale)
}

/// Level k -> the centre of its bin under the scale; labels and quantisation attached.
fn to_dataset(path: &Path, levels: Levels, scale: ImageScale) -> Result<Dataset> {
    let q = scale.quantization();
    let values = levels.pixels.iter().map(|&k| q.value(k as u32)).collect();
    let core = |error| IoError::Core {
        path: path.to_path_buf(),
        error,
    };
    let mut ds = Dataset::new(levels.shape, values)
        .map_err(core)?
        .with_quantization(q);
    if let Some(l) = levels.labels {
        ds = ds.with_labels(l).map_err(core)?;
    }
    Ok(ds)
}

/// Bytes of a file, gunzipped when it starts with the gzip magic.
fn read_maybe_gz(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .map_err(|e| format_err(path, format!("corrupt or truncated gzip stream: {e}")))?;
        Ok(out)
    } else {
        Ok(bytes)
    }
}

/// An IDX array of unsigned bytes: (dims, values).
pub fn read_idx(path: &Path) -> Result<(Vec<usize>, Vec<u8>)> {
    let b = read_maybe_gz(path)?;
    if b.len() < 4 || b[0] != 0 || b[1] != 0 {
        return Err(format_err(
            path,
            "not an IDX file: expected the magic 00 00 <type> <dims>",
        ));
    }
    if b[2] != 0x08 {
        return Err(format_err(
            path,
            format!(
                "IDX data type 0x{:02x} is not supported; expected 0x08 (unsigned byte)",
                b[2]
            ),
        ));
    }
    let ndims = b[3] as usize;
    let header = 4 + 4 * ndims;
    if ndims == 0 || b.len() < header {
        return Err(format_err(
            path,
            format!("IDX header of {ndims} dimensions is truncated or empty"),
        ));
    }
    let dims: Vec<usize> = b[4..header]
        .chunks_exact(4)
        .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]) as usize)
        .collect();
    let body = b.len() - header;
    // multiplied in 128 bits: a product that overflows is a corrupt header, not a wrap
    let count = dims
        .iter()
        .try_fold(1u128, |acc, &d| acc.checked_mul(d as u128))
        .unwrap_or(u128::MAX);
    if body as u128 != count {
        return Err(format_err(
            path,
            format!(
                "the header promises {count} values of shape {dims:?}, the file holds {body}{}",
                if (body as u128) < count {
                    " (truncated)"
                } else {
                    ""
                }
            ),
        ));
    }
    Ok((dims, b[header..].to_vec()))
}

/// IDX images (N, H, W) or (N, H, W, C).
fn read_idx_images(path: &Path) -> Result<Levels> {
    let (dims, v) = read_idx(path)?;
    let (n, shape) = match dims[..] {
        [n, h, w] => (n, Shape::new(1, h, w)),
        [n, h, w, c] => (n, Shape::new(c, h, w)),
        _ => {
            return Err(format_err(
                path,
                format!("IDX images have shape {dims:?}; expected (N, H, W) or (N, H, W, C)"),
            ))
        }
    };
    if n == 0 || shape.dim() == 0 {
        return Err(format_err(path, "the IDX file holds no images"));
    }
    let pixels = if shape.c == 1 {
        v
    } else {
        hwc_to_chw(&v, shape)
    };
    Ok(Levels {
        shape,
        pixels,
        labels: None,
    })
}

/// IDX labels (N).
pub fn read_idx_labels(path: &Path) -> Result<Vec<u32>> {
    let (dims, v) = read_idx(path)?;
    if dims.len() != 1 {
        return Err(format_err(
            path,
            format!("IDX labels have shape {dims:?}; expected (N)"),
        ));
    }
    Ok(v.into_iter().map(u32::from).collect())
}

fn hwc_to_chw(v: &[u8], s: Shape) -> Vec<u8> {
    let plane = s.h * s.w;
    let mut out = vec![0; v.len()];
    for (img, dst) in v.chunks_exact(s.dim()).zip(out.chunks_exact_mut(s.dim())) {
        for p in 0..plane {
            for c in 0..s.c {
                dst[c * plane + p] = img[p * s.c + c];
            }
        }
    }
    out
}

/// A uint8 .npy (N, H, W) or (N, C, H, W) as levels; None for other dtypes.
fn read_npy_levels(path: &Path) -> Result<Option<Levels>> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    crate::npy::check_header(path, &bytes)?;
    let npy = npyz::NpyFile::new(&bytes[..]).map_err(|e| crate::npy::bad_header(path, &e))?;
    let is_u8 = matches!(npy.dtype(), npyz::DType::Plain(ts)
        if ts.type_char() == npyz::TypeChar::Uint && ts.size_field() == 1);
    if !is_u8 {
        return Ok(None);
    }
    let dims: Vec<usize> = npy.shape().iter().map(|&s| s as usize).collect();
    let shape = match dims[..] {
        [_, h, w] => Shape::new(1, h, w),
        [_, c, h, w] => Shape::new(c, h, w),
        _ => {
            return Err(format_err(
                path,
                format!("array has shape {dims:?}; expected (N, H, W) or (N, C, H, W)"),
            ))
        }
    };
    let count = crate::npy::checked_count(path, &dims, 1, &bytes)?;
    let pixels = npy.into_vec::<u8>().map_err(|e| {
        format_err(
            path,
            format!(
                "file is truncated: the header promises {count} values of shape {dims:?} ({e})"
            ),
        )
    })?;
    if pixels.len() != count || count == 0 {
        return Err(format_err(
            path,
            format!(
                "expected {count} values for shape {dims:?}, read {}",
                pixels.len()
            ),
        ));
    }
    Ok(Some(Levels {
        shape,
        pixels,
        labels: None,
    }))
}

/// The PNG files of a folder (sorted), or of its class subfolders (sorted; label = index).
fn png_files(dir: &Path) -> Result<Vec<(PathBuf, Option<u32>)>> {
    let list = |d: &Path| -> Result<Vec<PathBuf>> {
        let mut v: Vec<PathBuf> = std::fs::read_dir(d)
            .map_err(io_err(d))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        v.sort();
        Ok(v)
    };
    let is_png = |p: &Path| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png"));
    let entries = list(dir)?;
    let subdirs: Vec<&PathBuf> = entries.iter().filter(|p| p.is_dir()).collect();
    let top: Vec<(PathBuf, Option<u32>)> = entries
        .iter()
        .filter(|p| is_png(p))
        .map(|p| (p.clone(), None))
        .collect();
    let files = if !top.is_empty() {
        top
    } else {
        let mut v = Vec::new();
        for (label, sub) in subdirs.iter().enumerate() {
            for p in list(sub)?.into_iter().filter(|p| is_png(p)) {
                v.push((p, Some(label as u32)));
            }
        }
        v
    };
    if files.is_empty() {
        return Err(format_err(
            dir,
            "no .png files in the folder or its class subfolders",
        ));
    }
    Ok(files)
}

/// A folder of PNGs: all gray -> C = 1, otherwise RGB (C = 3). Without resizing, all images
/// must have one size.
fn read_png_folder(dir: &Path) -> Result<Levels> {
    let files = png_files(dir)?;
    let mut decoded = Vec::with_capacity(files.len());
    for (p, _) in &files {
        let bytes = std::fs::read(p).map_err(io_err(p))?;
        let img = image::load_from_memory_with_format(&bytes, image::ImageFormat::Png)
            .map_err(|e| format_err(p, format!("not a readable PNG: {e}")))?;
        decoded.push(img);
    }
    let gray = decoded.iter().all(|i| !i.color().has_color());
    let c = if gray { 1 } else { 3 };
    let (w, h) = (decoded[0].width() as usize, decoded[0].height() as usize);
    let mut pixels = Vec::with_capacity(files.len() * c * h * w);
    let mut labels = Vec::with_capacity(files.len());
    for ((p, label), img) in files.iter().zip(&decoded) {
        if (img.width() as usize, img.height() as usize) != (w, h) {
            return Err(format_err(
                p,
                format!(
                    "image is {}x{}, the first of the folder {w}x{h} (W x H); the images of a data set share one size",
                    img.width(),
                    img.height()
                ),
            ));
        }
        if gray {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            let rgb = img.to_rgb8();
            pixels.extend(hwc_to_chw(rgb.as_raw(), Shape::new(3, h, w)));
        }
        labels.extend(*label);
    }
    Ok(Levels {
        shape: Shape::new(c, h, w),
        pixels,
        labels: (labels.len() == files.len()).then_some(labels),
    })
}

/// Centre crop, then resize (triangle filter = bilinear with antialiasing), per image and
/// channel, in 8-bit levels.
fn transform(path: &Path, levels: Levels, opts: &ImageOptions) -> Result<Levels> {
    if opts.crop.is_none() && opts.resize.is_none() {
        return Ok(levels);
    }
    let s = levels.shape;
    let [ch, cw] = opts.crop.unwrap_or([s.h, s.w]);
    if ch == 0 || cw == 0 || ch > s.h || cw > s.w {
        return Err(format_err(
            path,
            format!(
                "crop [{ch}, {cw}] does not fit images of {}x{} (H x W)",
                s.h, s.w
            ),
        ));
    }
    let [rh, rw] = opts.resize.unwrap_or([ch, cw]);
    if rh == 0 || rw == 0 {
        return Err(format_err(path, "resize needs a positive [H, W]"));
    }
    let (top, left) = ((s.h - ch) / 2, (s.w - cw) / 2);
    let out_shape = Shape::new(s.c, rh, rw);
    let mut pixels = Vec::with_capacity(levels.pixels.len() / s.dim() * out_shape.dim());
    for plane in levels.pixels.chunks_exact(s.h * s.w) {
        let img = GrayImage::from_raw(s.w as u32, s.h as u32, plane.to_vec())
            .expect("plane has H x W values");
        let cropped =
            image::imageops::crop_imm(&img, left as u32, top as u32, cw as u32, ch as u32)
                .to_image();
        let resized = if [rh, rw] == [ch, cw] {
            cropped
        } else {
            image::imageops::resize(&cropped, rw as u32, rh as u32, FilterType::Triangle)
        };
        pixels.extend_from_slice(resized.as_raw());
    }
    Ok(Levels {
        shape: out_shape,
        pixels,
        labels: levels.labels,
    })
}

/// How 8-bit image levels k are mapped to reals (bin centres, SPEC section 6).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImageScale {
    /// x = (k + 1/2) / 128 - 1, in (-1, 1).
    #[default]
    Symmetric,
    /// x = (k + 1/2) / 256, in (0, 1).
    Unit,
}

impl ImageScale {
    /// The quantisation of this scale.
    pub fn quantization(self) -> gud_core::Quantization {
        match self {
            ImageScale::Symmetric => gud_core::Quantization::eight_bit_symmetric(),
            ImageScale::Unit => gud_core::Quantization {
                levels: 256,
                bin_width: 1.0 / 256.0,
                origin: 0.0,
            },
        }
    }
}

/// Real images: an IDX file (MNIST format, raw or .gz), a folder of PNGs (gray or RGB; class
/// subfolders give labels) or a .npy of uint8 levels (or floats, used as they are).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageDataConfig {
    /// Training images.
    pub train: PathBuf,
    /// IDX labels of the training images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_labels: Option<PathBuf>,
    /// Held-out images (for `gud nll` and the metrics); the training set when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub test: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    /// Labels of the test images.
    pub test_labels: Option<PathBuf>,
    /// Use only the first N images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limit: Option<usize>,
    /// Centre crop to [H, W] (before resizing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[usize; 2]>,
    /// Resize to [H, W] (bilinear with antialiasing, rounded back to 8-bit levels).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resize: Option<[usize; 2]>,
    #[serde(default)]
    /// How levels map to reals.
    pub scale: ImageScale,
}
