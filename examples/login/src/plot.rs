//! RTT over time, like the paper's figures 10 and 11: one point per request,
//! phases shaded and labelled. PNG (bitmap, text drawn with a system TTF
//! font) or SVG, chosen by the file's extension.

use crate::load::{RunSpec, Sample};
use anyhow::{Context, Result};
use plotters::coord::Shift;
use plotters::prelude::*;
use std::path::Path;
use std::sync::OnceLock;

/// Fonts tried for the PNG's text (the SVG names a family and needs none).
const FONTS: &[&str] = &[
    "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/TTF/DejaVuSans.ttf",
    "/usr/share/fonts/dejavu/DejaVuSans.ttf",
    "/usr/share/fonts/truetype/liberation2/LiberationSans-Regular.ttf",
    "/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf",
];

/// Registers a sans-serif font for the bitmap backend, once.
fn font() -> Result<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        let bytes = FONTS
            .iter()
            .find_map(|p| std::fs::read(p).ok())
            .ok_or_else(|| format!("no TTF font found (tried {})", FONTS.join(", ")))?;
        let bytes: &'static [u8] = Box::leak(bytes.into_boxed_slice());
        plotters::style::register_font("sans-serif", FontStyle::Normal, bytes)
            .map_err(|_| "the font did not load".to_string())
    })
    .clone()
    .map_err(anyhow::Error::msg)
}

const SHADES: [RGBColor; 2] = [RGBColor(235, 242, 250), RGBColor(252, 240, 228)];

/// Writes the RTT plot of `spec`'s samples to `path` (`.png` or `.svg`).
pub fn rtt_plot(path: &Path, spec: &RunSpec, samples: &[Sample]) -> Result<()> {
    let svg = path.extension().is_some_and(|e| e == "svg");
    let size = (1200, 600);
    if svg {
        let root = SVGBackend::new(path, size).into_drawing_area();
        draw(&root, spec, samples)
    } else {
        font().context("the png needs a font")?;
        let root = BitMapBackend::new(path, size).into_drawing_area();
        draw(&root, spec, samples)
    }
}

fn draw<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    spec: &RunSpec,
    samples: &[Sample],
) -> Result<()>
where
    DB::ErrorType: 'static,
{
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| anyhow::anyhow!("{e:?}");
    root.fill(&WHITE).map_err(err)?;
    let pts: Vec<(f64, f64, usize)> = samples
        .iter()
        .filter(|s| s.run == spec.name)
        .map(|s| (s.t_s, s.rtt_ms, s.phase))
        .collect();
    let t_max = pts.iter().map(|p| p.0).fold(1.0, f64::max);
    // The y axis stops at 1.25 x the 99.9th percentile so that a few
    // retransmissions do not flatten the rest; clipped points sit on top.
    let rtts: Vec<f64> = pts.iter().map(|p| p.1).collect();
    let top = crate::stats::quantile(&rtts, 0.999).unwrap_or(1.0) * 1.25;
    let clipped = rtts.iter().filter(|&&r| r > top).count();
    let caption = if clipped > 0 {
        format!(
            "{} ({clipped} above the axis, drawn at its top)",
            spec.title
        )
    } else {
        spec.title.to_string()
    };
    let mut chart = ChartBuilder::on(root)
        .caption(caption, ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d(0.0..t_max * 1.01, 0.0..top)
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_desc("time since the run's first request (s)")
        .y_desc("RTT (ms)")
        .light_line_style(WHITE.mix(0.0))
        .label_style(("sans-serif", 15))
        .draw()
        .map_err(err)?;
    // Phase bands: from the phase's first request to the next phase's.
    for (i, phase) in spec.phases.iter().enumerate() {
        let start = pts.iter().find(|p| p.2 == i).map(|p| p.0);
        let end = pts
            .iter()
            .find(|p| p.2 > i)
            .map(|p| p.0)
            .unwrap_or(t_max * 1.01);
        let Some(start) = start else { continue };
        let shade = SHADES[i % 2];
        chart
            .draw_series(std::iter::once(Rectangle::new(
                [(start, 0.0), (end, top)],
                shade.filled(),
            )))
            .map_err(err)?;
        // The names say whether CLT is on; the points' colour too.
        let label = format!("{}. {}", i + 1, phase.name);
        chart
            .draw_series(std::iter::once(Text::new(
                label,
                (start + (end - start) * 0.03, top * 0.96),
                ("sans-serif", 17).into_font().color(&BLACK),
            )))
            .map_err(err)?;
    }
    let colour = |clt: bool| {
        if clt {
            RGBColor(200, 60, 40)
        } else {
            RGBColor(30, 90, 170)
        }
    };
    chart
        .draw_series(pts.iter().map(|&(t, r, ph)| {
            let clt = spec.phases.get(ph).is_some_and(|p| p.clt);
            Circle::new((t, r.min(top)), 2, colour(clt).mix(0.6).filled())
        }))
        .map_err(err)?;
    root.present().map_err(err)?;
    Ok(())
}
