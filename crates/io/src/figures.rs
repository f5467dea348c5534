//! PNG figures drawn with plotters into memory, encoded as PNG and written atomically:
//! schedule curves (GUD fig. 2) and forward-process strips (GUD fig. 4).

use crate::atomic::write_atomic;
use crate::{IoError, Result};
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};
use plotters::style::{register_font, FontStyle};
use std::path::Path;
use std::sync::Once;

static FONT: Once = Once::new();

/// Registers the embedded DejaVu Sans as "sans-serif" (no system fonts needed).
fn ensure_font() {
    FONT.call_once(|| {
        let bytes: &'static [u8] = include_bytes!("../assets/DejaVuSans.ttf");
        // The embedded font is valid; a failure would only lose text, never the plot.
        let _ = register_font("sans-serif", FontStyle::Normal, bytes);
    });
}

fn fig_err(path: &Path) -> impl Fn(String) -> IoError + '_ {
    move |reason| IoError::Figure {
        path: path.to_path_buf(),
        reason,
    }
}

/// Renders with `draw` on a w x h RGB canvas and writes it as PNG to `path` atomically.
fn render_png(
    path: &Path,
    (w, h): (u32, u32),
    draw: impl FnOnce(&DrawingArea<BitMapBackend<'_>, plotters::coord::Shift>) -> Result<(), String>,
) -> Result<()> {
    ensure_font();
    let mut rgb = vec![255u8; (w * h * 3) as usize];
    {
        let root = BitMapBackend::with_buffer(&mut rgb, (w, h)).into_drawing_area();
        draw(&root).map_err(fig_err(path))?;
        root.present().map_err(|e| fig_err(path)(e.to_string()))?;
    }
    let mut png = Vec::new();
    image::ImageEncoder::write_image(
        image::codecs::png::PngEncoder::new(&mut png),
        &rgb,
        w,
        h,
        image::ColorType::Rgb8,
    )
    .map_err(|e| fig_err(path)(e.to_string()))?;
    write_atomic(path, &png)
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
    render_png(path, (1500, 520), |root| {
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
    })
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

/// A grid of images (rows x cols panels, row-major). One channel: diverging colours on a
/// symmetric scale shared by all panels (`scale`, or the 99th percentile of |value|); three
/// channels: RGB, mapping [-scale, scale] to [0, 255].
pub fn plot_panels(
    path: &Path,
    title: &str,
    rows: usize,
    panels: &[Panel],
    scale: Option<f64>,
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
    let size = (cols as u32 * cell_w + 20, rows as u32 * (cell + 28) + 50);
    render_png(path, size, |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(45);
        top.titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
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
                        diverging(p.data[y * p.width + x] / scale)
                    };
                    let (x0, y0) = ((x as f64 * dx) as i32, (y as f64 * dy) as i32);
                    let (x1, y1) = (((x + 1) as f64 * dx) as i32, ((y + 1) as f64 * dy) as i32);
                    img.draw(&Rectangle::new([(x0, y0), (x1, y1)], color.filled()))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
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
        plot_schedule(&p, "test", &t, &[curve.clone(), curve]).unwrap();
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
        plot_panels(&p2, "strip", 1, &[panel.clone(), panel], None).unwrap();
        assert_eq!(&std::fs::read(&p2).unwrap()[1..4], b"PNG");
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
}

/// A chart of lines side by side with others (e.g. power spectra and their log-ratio).
#[derive(Debug, Clone)]
pub struct LinePanel {
    /// Panel title.
    pub title: String,
    /// Label of the x axis.
    pub x_label: String,
    /// Plot log10(y) (only positive values are drawn).
    pub log_y: bool,
    /// The lines.
    pub series: Vec<Series>,
}

/// Panels of labelled lines in one row.
pub fn plot_lines(path: &Path, title: &str, panels: &[LinePanel]) -> Result<()> {
    let width = 520 * panels.len().max(1) as u32;
    render_png(path, (width, 480), |root| {
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
            let ys: Vec<f64> = p
                .series
                .iter()
                .flat_map(|s| s.y.iter().map(|&v| ty(v)))
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
                .y_desc(if p.log_y { "log10" } else { "" })
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
    })
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
}

/// Heat maps side by side, each cell labelled with its value. Cell (c, r) is centred on the
/// integer point (c, r), so that integer ticks carry the grid coordinates.
pub fn plot_heatmaps(path: &Path, title: &str, maps: &[HeatMap]) -> Result<()> {
    let width = 560 * maps.len().max(1) as u32;
    render_png(path, (width, 480), |root| {
        root.fill(&WHITE).map_err(|e| e.to_string())?;
        let (top, body) = root.split_vertically(40);
        top.titled(title, ("sans-serif", 20))
            .map_err(|e| e.to_string())?;
        for (area, m) in body.split_evenly((1, maps.len().max(1))).iter().zip(maps) {
            let (nx, ny) = (m.xs.len() as f64, m.ys.len() as f64);
            let (lo, hi) = finite_range(m.values.iter().flatten());
            let mut chart = ChartBuilder::on(area)
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
                        ViridisRGB::get_color_normalized(v, lo, hi.max(lo + 1e-12))
                    } else {
                        RGBColor(200, 200, 200)
                    };
                    let (x, y) = (c as f64, r as f64);
                    let cell = [(x - 0.5, y - 0.5), (x + 0.5, y + 0.5)];
                    chart
                        .draw_series(std::iter::once(Rectangle::new(cell, color.filled())))
                        .map_err(|e| e.to_string())?;
                    let text = Text::new(
                        format!("{v:.4}"),
                        (x, y),
                        ("sans-serif", 13)
                            .into_font()
                            .color(&RED)
                            .pos(Pos::new(HPos::Center, VPos::Center)),
                    );
                    chart
                        .draw_series(std::iter::once(text))
                        .map_err(|e| e.to_string())?;
                }
            }
        }
        Ok(())
    })
}
