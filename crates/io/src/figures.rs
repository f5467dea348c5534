//! Figures drawn with plotters, as PNG (anti-aliased), SVG or PDF by the output's file name,
//! written atomically:
//! schedule curves (GUD fig. 2), image grids and forward-process strips (GUD fig. 4) with a
//! colour bar, line charts and heat maps.

use crate::atomic::write_atomic;
use crate::{IoError, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();
/// DejaVu Sans, embedded: every figure's text (no system fonts needed).
const FONT_BYTES: &[u8] = include_bytes!("../assets/DejaVuSans.ttf");

/// Registers the embedded DejaVu Sans as "sans-serif" for plotters' text layout.
fn ensure_font() {
    FONT.call_once(|| {
        // The embedded font is valid; a failure would only lose text, never the plot.
        let _ = register_font("sans-serif", FontStyle::Normal, FONT_BYTES);
    });
}

fn fig_err(path: &Path) -> impl Fn(String) -> IoError + '_ {
    move |reason| IoError::Figure {
        path: path.to_path_buf(),
        reason,
    }
}

/// A figure that draws itself on any plotters backend (PNG bitmap or SVG).
trait Draw {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String>;
}

type Area<DB> = DrawingArea<DB, plotters::coord::Shift>;

/// Anything plotters reports, as text.
fn text<E: std::fmt::Display>(e: E) -> String {
    e.to_string()
}

/// The output format of a figure, from its file name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// PNG: the SVG rasterised with anti-aliasing (resvg).
    Png,
    /// SVG as plotters draws it (vector).
    Svg,
    /// PDF converted from the SVG (vector, fonts embedded).
    Pdf,
}

/// The format named by the extension of `path`: `.png`, `.svg` or `.pdf`.
fn format_of(path: &Path) -> Result<Format> {
    // staged temporaries keep the extension of their final name (atomic::temp_path)
    match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => Ok(Format::Png),
        Some("svg") => Ok(Format::Svg),
        Some("pdf") => Ok(Format::Pdf),
        _ => Err(fig_err(path)(
            "expected a file name ending in .png, .svg or .pdf (the figure's format)".into(),
        )),
    }
}

/// The SVG text parsed for rendering, with the embedded font as every family.
fn svg_tree(svg: &str) -> Result<svg2pdf::usvg::Tree, String> {
    use svg2pdf::usvg;
    let mut opt = usvg::Options {
        font_family: "DejaVu Sans".into(),
        ..Default::default()
    };
    let db = std::sync::Arc::make_mut(&mut opt.fontdb);
    db.load_font_data(FONT_BYTES.to_vec());
    db.set_sans_serif_family("DejaVu Sans");
    usvg::Tree::from_str(svg, &opt).map_err(text)
}

/// The figure as an anti-aliased RGB PNG of w x h pixels.
fn rasterise(tree: &svg2pdf::usvg::Tree, (w, h): (u32, u32)) -> Result<Vec<u8>, String> {
    let mut pixmap = resvg::tiny_skia::Pixmap::new(w, h).ok_or("an empty canvas")?;
    pixmap.fill(resvg::tiny_skia::Color::WHITE);
    resvg::render(
        tree,
        resvg::tiny_skia::Transform::identity(),
        &mut pixmap.as_mut(),
    );
    // opaque (white background): premultiplied RGBA is RGBA
    let rgb: Vec<u8> = pixmap
        .data()
        .chunks_exact(4)
        .flat_map(|p| [p[0], p[1], p[2]])
        .collect();
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        w,
        h,
        image::ColorType::Rgb8,
    )
    .map_err(text)?;
    Ok(png)
}

/// Draws `fig` on a w x h canvas and writes it to `path` atomically, as PNG, SVG or PDF by the
/// file name. One drawing for all three: plotters' SVG, rasterised anti-aliased for PNG
/// (resvg) or converted for PDF (svg2pdf).
fn render(path: &Path, (w, h): (u32, u32), fig: &impl Draw) -> Result<()> {
    ensure_font();
    let format = format_of(path)?;
    let mut svg = String::new();
    {
        let root = SVGBackend::with_string(&mut svg, (w, h)).into_drawing_area();
        root.fill(&WHITE)
            .map_err(|e| fig_err(path)(e.to_string()))?;
        fig.draw(&root).map_err(fig_err(path))?;
        root.present().map_err(|e| fig_err(path)(e.to_string()))?;
    }
    let bytes = match format {
        Format::Svg => svg.into_bytes(),
        Format::Png => {
            rasterise(&svg_tree(&svg).map_err(fig_err(path))?, (w, h)).map_err(fig_err(path))?
        }
        Format::Pdf => svg2pdf::to_pdf(
            &svg_tree(&svg).map_err(fig_err(path))?,
            svg2pdf::ConversionOptions::default(),
            svg2pdf::PageOptions::default(),
        )
        .map_err(|e| fig_err(path)(e.to_string()))?,
    };
    write_atomic(path, &bytes)
}

/// A vertical colour bar in `area`: the map `color(v)` from `lo` (bottom) to `hi` (top), with
/// the end values and the middle written beside it.
fn colour_bar<DB: DrawingBackend>(
    area: &Area<DB>,
    lo: f64,
    hi: f64,
    color: impl Fn(f64) -> RGBColor,
) -> Result<(), String> {
    let (w, h) = area.dim_in_pixel();
    let (top, bottom) = (12i32, h as i32 - 12);
    let (x0, x1) = (4i32, 4 + (w as i32 / 4).clamp(8, 18));
    let steps = 64;
    for k in 0..steps {
        let f = (k as f64 + 0.5) / steps as f64;
        let y0 = bottom - ((bottom - top) as f64 * (k + 1) as f64 / steps as f64) as i32;
        let y1 = bottom - ((bottom - top) as f64 * k as f64 / steps as f64) as i32;
        area.draw(&Rectangle::new(
            [(x0, y0), (x1, y1)],
            color(lo + f * (hi - lo)).filled(),
        ))
        .map_err(text)?;
    }
    area.draw(&Rectangle::new(
        [(x0, top), (x1, bottom)],
        BLACK.stroke_width(1),
    ))
    .map_err(text)?;
    let style = ("sans-serif", 12)
        .into_font()
        .color(&BLACK)
        .pos(Pos::new(HPos::Left, VPos::Center));
    for (v, y) in [
        (hi, top),
        (0.5 * (lo + hi), (top + bottom) / 2),
        (lo, bottom),
    ] {
        area.draw(&Text::new(format!("{v:.3}"), (x1 + 4, y), style.clone()))
            .map_err(text)?;
    }
    Ok(())
}

/// One component's curves over the time grid.
#[derive(Debug, Clone)]
pub struct ScheduleCurve {
    /// Legend label.
    pub label: String,
    /// sigma_i(t).
    pub sigma: Vec<f64>,
    /// gamma_i(t).
    pub gamma: Vec<f64>,
    /// log SNR_i(t).
    pub log_snr: Vec<f64>,
}

fn finite_range<'a>(vals: impl Iterator<Item = &'a f64>) -> (f64, f64) {
    let (lo, hi) = vals
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(a, b), &v| {
            (a.min(v), b.max(v))
        });
    if !lo.is_finite() {
        return (0.0, 1.0);
    }
    let pad = 0.05 * (hi - lo).max(1e-9);
    (lo - pad, hi + pad)
}

/// Three panels: sigma_i(t), gamma_i(t) and log SNR_i(t), one line per component.
pub fn plot_schedule(path: &Path, title: &str, t: &[f64], curves: &[ScheduleCurve]) -> Result<()> {
    render(path, (1500, 520), &ScheduleFigure { title, t, curves })
}

struct ScheduleFigure<'a> {
    title: &'a str,
    t: &'a [f64],
    curves: &'a [ScheduleCurve],
}

impl Draw for ScheduleFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String> {
        let (title, t, curves) = (self.title, self.t, self.curves);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(40);
        top.titled(title, ("sans-serif", 22))
            .map_err(|e| e.to_string())?;
        let panels = body.split_evenly((1, 3));
        type Getter = fn(&ScheduleCurve) -> &Vec<f64>;
        let specs: [(&str, Getter); 3] = [
            ("sigma_i(t)", |c| &c.sigma),
            ("gamma_i(t)", |c| &c.gamma),
            ("log SNR_i(t)", |c| &c.log_snr),
        ];
        let n = curves.len().max(2);
        for (panel, (name, get)) in panels.iter().zip(specs) {
            let (lo, hi) = finite_range(curves.iter().flat_map(|c| get(c).iter()));
            let mut chart = ChartBuilder::on(panel)
                .caption(name, ("sans-serif", 18))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(50)
                .build_cartesian_2d(t[0]..t[t.len() - 1], lo..hi)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc("t")
                .y_desc(name)
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            for (k, c) in curves.iter().enumerate() {
                let color = ViridisRGB::get_color_normalized(k as f64, 0.0, (n - 1) as f64);
                let pts = t
                    .iter()
                    .zip(get(c))
                    .filter(|(_, y)| y.is_finite())
                    .map(|(&x, &y)| (x, y));
                let series = chart
                    .draw_series(LineSeries::new(pts, color.stroke_width(2)))
                    .map_err(|e| e.to_string())?;
                if name.starts_with("sigma") {
                    series.label(c.label.clone()).legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                }
            }
            if name.starts_with("sigma") {
                chart
                    .configure_series_labels()
                    .position(SeriesLabelPosition::LowerRight)
                    .label_font(("sans-serif", 12))
                    .background_style(WHITE.mix(0.8))
                    .border_style(BLACK)
                    .draw()
                    .map_err(|e| e.to_string())?;
            }
        }
        Ok(())
    }
}

/// One image of a strip: C x H x W values and a caption.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Caption under the image.
    pub caption: String,
    /// Channels.
    pub channels: usize,
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// Values, (C, H, W).
    pub data: Vec<f64>,
}

/// A diverging blue-white-red map for v in [-1, 1].
fn diverging(v: f64) -> RGBColor {
    let v = v.clamp(-1.0, 1.0);
    let (r, g, b) = if v < 0.0 {
        let s = 1.0 + v;
        (0.13 + 0.87 * s, 0.30 + 0.70 * s, 0.75 + 0.25 * s)
    } else {
        let s = 1.0 - v;
        (0.70 + 0.30 * s, 0.09 + 0.91 * s, 0.15 + 0.85 * s)
    };
    RGBColor((r * 255.0) as u8, (g * 255.0) as u8, (b * 255.0) as u8)
}

/// How one-channel images are coloured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Colormap {
    /// Blue-white-red on a symmetric scale [-s, s]: signed fields (lattice configurations,
    /// noise).
    Diverging,
    /// Black to white over [-s, s]: images.
    Grey,
}

impl Colormap {
    fn color(self, v: f64) -> RGBColor {
        match self {
            Colormap::Diverging => diverging(v),
            Colormap::Grey => {
                let g = ((v.clamp(-1.0, 1.0) + 1.0) * 127.5) as u8;
                RGBColor(g, g, g)
            }
        }
    }
}

/// A grid of images (rows x cols panels, row-major) with a colour bar. One channel: `map` on a
/// symmetric scale [-s, s] shared by all panels (`scale`, or the 99th percentile of |value|);
/// three channels: RGB, mapping [-s, s] to [0, 255].
pub fn plot_panels(
    path: &Path,
    title: &str,
    rows: usize,
    panels: &[Panel],
    scale: Option<f64>,
    map: Colormap,
) -> Result<()> {
    let cols = panels.len().div_ceil(rows.max(1)).max(1);
    // cells keep the images' aspect ratio (wide images, e.g. from `gud extend`, get wide cells)
    let aspect = panels
        .first()
        .map_or(1.0, |p| p.width as f64 / p.height.max(1) as f64)
        .clamp(0.25, 8.0);
    let (cell_w, cell) = if aspect >= 1.0 {
        ((180.0 * aspect) as u32, 180u32)
    } else {
        (180u32, (180.0 / aspect) as u32)
    };
    let scale = scale.unwrap_or_else(|| {
        let mut abs: Vec<f64> = panels
            .iter()
            .flat_map(|p| p.data.iter().map(|v| v.abs()))
            .collect();
        abs.sort_by(f64::total_cmp);
        abs.get(abs.len() * 99 / 100)
            .copied()
            .unwrap_or(1.0)
            .max(1e-12)
    });
    let size = (
        cols as u32 * cell_w + 20 + BAR,
        rows as u32 * (cell + 28) + 50,
    );
    let fig = PanelsFigure {
        title,
        rows,
        cols,
        panels,
        scale,
        map,
    };
    render(path, size, &fig)
}

/// Pixels reserved right of a grid for its colour bar.
const BAR: u32 = 80;

struct PanelsFigure<'a> {
    title: &'a str,
    rows: usize,
    cols: usize,
    panels: &'a [Panel],
    scale: f64,
    map: Colormap,
}

impl Draw for PanelsFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String> {
        let (title, rows, cols, panels, scale) =
            (self.title, self.rows, self.cols, self.panels, self.scale);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(45);
        top.titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        let (body, bar) = body.split_horizontally(body.dim_in_pixel().0 - BAR);
        let map = self.map;
        if panels.first().is_some_and(|p| p.channels < 3) {
            colour_bar(&bar.margin(20, 20, 0, 0), -scale, scale, |v| {
                map.color(v / scale)
            })?;
        }
        let body = body.margin(0, 0, 10, 10);
        let areas = body.split_evenly((rows, cols));
        for (area, p) in areas.iter().zip(panels) {
            let (cap, img) = area.split_vertically(26);
            cap.titled(&p.caption, ("sans-serif", 14))
                .map_err(|e| e.to_string())?;
            let img = img.margin(2, 6, 6, 6);
            let (pw, ph) = img.dim_in_pixel();
            // square pixels: the largest size at which the whole image fits
            let px = (pw as f64 / p.width as f64).min(ph as f64 / p.height as f64);
            let (dx, dy) = (px, px);
            let plane = p.height * p.width;
            for y in 0..p.height {
                for x in 0..p.width {
                    let color = if p.channels >= 3 {
                        let c = |ch: usize| {
                            ((p.data[ch * plane + y * p.width + x] / scale + 1.0) * 127.5)
                                .clamp(0.0, 255.0) as u8
                        };
                        RGBColor(c(0), c(1), c(2))
                    } else {
                        map.color(p.data[y * p.width + x] / scale)
                    };
                    let (x0, y0) = ((x as f64 * dx) as i32, (y as f64 * dy) as i32);
                    let (x1, y1) = (((x + 1) as f64 * dx) as i32, ((y + 1) as f64 * dy) as i32);
                    img.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled()))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_png_files() {
        let dir = tempfile::tempdir().unwrap();
        let t: Vec<f64> = (0..11).map(|i| i as f64 / 10.0).collect();
        let curve = ScheduleCurve {
            label: "k=0".into(),
            sigma: t.clone(),
            gamma: t.iter().map(|x| 2.0 * x - 1.0).collect(),
            log_snr: t.iter().map(|x| 1.0 - 2.0 * x).collect(),
        };
        let p = dir.path().join("s.png");
        plot_schedule(&p, "test", &t, &[curve.clone(), curve.clone()]).unwrap();
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(&bytes[1..4], b"PNG");
        let panel = Panel {
            caption: "t=0".into(),
            channels: 1,
            height: 4,
            width: 4,
            data: (0..16).map(|i| i as f64 - 8.0).collect(),
        };
        let p2 = dir.path().join("n.png");
        plot_panels(
            &p2,
            "strip",
            1,
            &[panel.clone(), panel.clone()],
            None,
            Colormap::Grey,
        )
        .unwrap();
        assert_eq!(&std::fs::read(&p2).unwrap()[1..4], b"PNG");
        // the same as SVG, by the file name; another extension is an error naming the file
        let p3 = dir.path().join("n.svg");
        plot_panels(
            &p3,
            "strip",
            1,
            std::slice::from_ref(&panel),
            None,
            Colormap::Diverging,
        )
        .unwrap();
        let svg = std::fs::read_to_string(&p3).unwrap();
        assert!(
            svg.starts_with("<svg") && svg.contains("strip"),
            "{}",
            &svg[..100]
        );
        plot_schedule(
            &dir.path().join("s.svg"),
            "test",
            &t,
            std::slice::from_ref(&curve),
        )
        .unwrap();
        // PDF: a vector file with the font embedded
        let pdf = dir.path().join("s.pdf");
        plot_schedule(&pdf, "test", &t, &[curve]).unwrap();
        let bytes = std::fs::read(&pdf).unwrap();
        assert!(bytes.starts_with(b"%PDF-"));
        assert!(
            bytes.windows(9).any(|w| w == b"/FontFile"),
            "no embedded font"
        );
        let e = plot_panels(
            &dir.path().join("n.eps"),
            "x",
            1,
            &[panel],
            None,
            Colormap::Grey,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("n.eps") && e.contains(".pdf"), "{e}");
    }

    /// RGB pixels of a PNG.
    fn pixels(png: &[u8]) -> Vec<[u8; 3]> {
        let img = image::load_from_memory(png).unwrap().to_rgb8();
        img.pixels().map(|p| p.0).collect()
    }

    #[test]
    fn png_lines_are_anti_aliased_and_text_is_drawn_with_the_embedded_font() {
        ensure_font();
        // a diagonal line: anti-aliasing leaves pixels between black and white along it
        let line = r#"<svg xmlns="http://www.w3.org/2000/svg" width="40" height="40">
            <rect width="40" height="40" fill="white"/>
            <line x1="0" y1="3" x2="40" y2="29" stroke="black" stroke-width="1"/></svg>"#;
        let px = pixels(&rasterise(&svg_tree(line).unwrap(), (40, 40)).unwrap());
        let grey = px.iter().filter(|p| p[0] > 20 && p[0] < 235).count();
        assert!(grey >= 40, "{grey} intermediate pixels: not anti-aliased");
        // text in the family plotters writes ("sans-serif") is rendered, not dropped
        let text = r#"<svg xmlns="http://www.w3.org/2000/svg" width="80" height="30">
            <text x="2" y="22" font-family="sans-serif" font-size="20">gud</text></svg>"#;
        let px = pixels(&rasterise(&svg_tree(text).unwrap(), (80, 30)).unwrap());
        let dark = px.iter().filter(|p| p[0] < 128).count();
        assert!(dark > 30, "{dark} dark pixels: the text was not drawn");
    }
}

/// One labelled line of a [`LinePanel`].
#[derive(Debug, Clone)]
pub struct Series {
    /// Legend label.
    pub label: String,
    /// Abscissae.
    pub x: Vec<f64>,
    /// Ordinates.
    pub y: Vec<f64>,
    /// Standard errors of the ordinates, drawn as a shaded band of +-1 error (optional).
    pub error: Option<Vec<f64>>,
}

/// A chart of lines side by side with others (e.g. power spectra and their log-ratio).
#[derive(Debug, Clone)]
pub struct LinePanel {
    /// Panel title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Plot log10(y) (only positive values are drawn).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// Panels of labelled lines in one row.
pub fn plot_lines(path: &Path, title: &str, panels: &[LinePanel]) -> Result<()> {
    let width = 520 * panels.len().max(1) as u32;
    render(path, (width, 480), &LinesFigure { title, panels })
}

struct LinesFigure<'a> {
    title: &'a str,
    panels: &'a [LinePanel],
}

impl Draw for LinesFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String> {
        let (title, panels) = (self.title, self.panels);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(40);
        top.titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        for (area, p) in body
            .split_evenly((1, panels.len().max(1)))
            .iter()
            .zip(panels)
        {
            let ty = |v: f64| if p.log_y { v.log10() } else { v };
            // the range holds the lines and their error bands
            let ys: Vec<f64> = p
                .series
                .iter()
                .flat_map(|s| {
                    let err = s.error.clone().unwrap_or_else(|| vec![0.0; s.y.len()]);
                    s.y.iter()
                        .zip(err)
                        .flat_map(|(&v, e)| [ty(v), ty(v + e), ty(v - e)])
                        .collect::<Vec<f64>>()
                })
                .collect();
            let xs: Vec<f64> = p.series.iter().flat_map(|s| s.x.iter().copied()).collect();
            let (x0, x1) = finite_range(xs.iter());
            let (y0, y1) = finite_range(ys.iter());
            let mut chart = ChartBuilder::on(area)
                .caption(&p.title, ("sans-serif", 17))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(x0..x1, y0..y1)
                .map_err(|e| e.to_string())?;
            chart
                .configure_mesh()
                .x_desc(p.x_label.as_str())
                .y_desc(p.y_label.as_str())
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            let n = p.series.len().max(2);
            for (k, s) in p.series.iter().enumerate() {
                let color = ViridisRGB::get_color_normalized(k as f64, 0.0, (n - 1) as f64 * 1.25);
                let pts: Vec<(f64, f64)> =
                    s.x.iter()
                        .zip(&s.y)
                        .map(|(&x, &y)| (x, ty(y)))
                        .filter(|(_, y)| y.is_finite())
                        .collect();
                if let Some(err) = &s.error {
                    // the band +-1 error, transformed as the line is
                    let upper: Vec<(f64, f64)> =
                        s.x.iter()
                            .zip(&s.y)
                            .zip(err)
                            .map(|((&x, &y), &e)| (x, ty(y + e)))
                            .filter(|(_, y)| y.is_finite())
                            .collect();
                    let lower: Vec<(f64, f64)> =
                        s.x.iter()
                            .zip(&s.y)
                            .zip(err)
                            .map(|((&x, &y), &e)| (x, ty(y - e)))
                            .filter(|(_, y)| y.is_finite())
                            .collect();
                    if upper.len() == s.x.len() && lower.len() == s.x.len() {
                        let band: Vec<(f64, f64)> =
                            upper.into_iter().chain(lower.into_iter().rev()).collect();
                        chart
                            .draw_series(std::iter::once(Polygon::new(band, color.mix(0.25))))
                            .map_err(|e| e.to_string())?;
                    }
                }
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| e.to_string())?
                    .label(s.label.clone())
                    .legend(move |(x, y)| {
                        PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2))
                    });
                chart
                    .draw_series(pts.into_iter().map(|q| Circle::new(q, 3, color.filled())))
                    .map_err(|e| e.to_string())?;
            }
            chart
                .configure_series_labels()
                .position(SeriesLabelPosition::UpperRight)
                .label_font(("sans-serif", 12))
                .background_style(WHITE.mix(0.8))
                .border_style(BLACK)
                .draw()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

/// A heat map of one quantity on a grid (GUD figs. 3 and 5).
#[derive(Debug, Clone)]
pub struct HeatMap {
    /// Map title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Label of the y axis.
    pub y_label: String,
    /// Tick labels of the columns and rows.
    pub xs: Vec<String>,
    /// Row labels.
    pub ys: Vec<String>,
    /// values[row][column]; non-finite cells are drawn grey.
    pub values: Vec<Vec<f64>>,
    /// Standard errors of the values (same layout), written in the cells when given.
    pub errors: Option<Vec<Vec<f64>>>,
}

/// Heat maps side by side, each with a colour bar and each cell labelled with its value (and
/// its standard error when known). Cell (c, r) is centred on the integer point (c, r), so that
/// integer ticks carry the grid coordinates. When every difference between cells is within
/// two standard errors, the colour scale is widened to +-2 errors around the mean, so that
/// noise is not drawn as structure.
pub fn plot_heatmaps(path: &Path, title: &str, maps: &[HeatMap]) -> Result<()> {
    let width = (560 + BAR) * maps.len().max(1) as u32;
    render(path, (width, 480), &HeatFigure { title, maps })
}

struct HeatFigure<'a> {
    title: &'a str,
    maps: &'a [HeatMap],
}

/// The colour range of a heat map: its values' range, widened to mean +- 2 errors when the
/// values differ by less than their errors.
fn heat_range(m: &HeatMap) -> (f64, f64) {
    let (lo, hi) = finite_range(m.values.iter().flatten());
    let Some(errors) = &m.errors else {
        return (lo, hi);
    };
    let err = errors
        .iter()
        .flatten()
        .filter(|e| e.is_finite())
        .fold(0.0f64, |a, &e| a.max(e));
    let vals: Vec<f64> = m
        .values
        .iter()
        .flatten()
        .copied()
        .filter(|v| v.is_finite())
        .collect();
    if vals.is_empty() || err <= 0.0 {
        return (lo, hi);
    }
    let mean = vals.iter().sum::<f64>() / vals.len() as f64;
    (lo.min(mean - 2.0 * err), hi.max(mean + 2.0 * err))
}

impl Draw for HeatFigure<'_> {
    fn draw<DB: DrawingBackend>(&self, root: &Area<DB>) -> Result<(), String> {
        let (title, maps) = (self.title, self.maps);
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(40);
        top.titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        for (area, m) in body.split_evenly((1, maps.len().max(1))).iter().zip(maps) {
            let (area, bar) = area.split_horizontally(area.dim_in_pixel().0 - BAR);
            let (nx, ny) = (m.xs.len() as f64, m.ys.len() as f64);
            let (lo, hi) = heat_range(m);
            let hi = hi.max(lo + 1e-12);
            colour_bar(&bar.margin(40, 40, 0, 0), lo, hi, |v| {
                ViridisRGB::get_color_normalized(v, lo, hi)
            })?;
            let mut chart = ChartBuilder::on(&area)
                .caption(&m.title, ("sans-serif", 17))
                .margin(10)
                .x_label_area_size(35)
                .y_label_area_size(55)
                .build_cartesian_2d(-0.5..nx - 0.5, -0.5..ny - 0.5)
                .map_err(|e| e.to_string())?;
            let label = |coords: &[String], v: f64| {
                let i = v.round();
                if (v - i).abs() < 1e-9 && i >= 0.0 && (i as usize) < coords.len() {
                    coords[i as usize].clone()
                } else {
                    String::new()
                }
            };
            chart
                .configure_mesh()
                .disable_mesh()
                .x_desc(m.x_label.as_str())
                .y_desc(m.y_label.as_str())
                .x_labels(m.xs.len() * 2 + 1)
                .y_labels(m.ys.len() * 2 + 1)
                .x_label_formatter(&|v| label(&m.xs, *v))
                .y_label_formatter(&|v| label(&m.ys, *v))
                .label_style(("sans-serif", 13))
                .draw()
                .map_err(|e| e.to_string())?;
            for (r, row) in m.values.iter().enumerate() {
                for (c, &v) in row.iter().enumerate() {
                    let color = if v.is_finite() {
                        ViridisRGB::get_color_normalized(v, lo, hi)
                    } else {
                        RGBColor(200, 200, 200)
                    };
                    let (x, y) = (c as f64, r as f64);
                    let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                    chart
                        .draw_series(std::iter::once(Rectangle::new(cell, color.filled())))
                        .map_err(|e| e.to_string())?;
                    let err = m.errors.as_ref().and_then(|e| e.get(r)?.get(c).copied());
                    let lines = match err {
                        Some(e) if e.is_finite() => {
                            vec![
                                (format!("{v:.3}"), y + 0.12),
                                (format!("+-{e:.3}"), y - 0.15),
                            ]
                        }
                        _ => vec![(format!("{v:.4}"), y)],
                    };
                    let font = ("sans-serif", 13)
                        .into_font()
                        .color(&RED)
                        .pos(Pos::new(HPos::Center, VPos::Center));
                    chart
                        .draw_series(
                            lines
                                .into_iter()
                                .map(|(t, yy)| Text::new(t, (x, yy), font.clone())),
                        )
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    }
}
