//! What each decode shape of a lossless generation costs, two ways: repeated with nothing
//! in between (the raw cost of the shape, what llama.cpp's `llama-bench` measures) and right
//! after the shape that precedes it in a lossless generation (the cost the controller sees:
//! a verification after a one-row draft, a draft after a verification, a plain step after
//! a round). The difference is what switching costs the engine: graph rebuilds, and on a
//! GPU the capture of a new device graph.
//!
//! Every sample decodes at the same position (the sequence is cut back to the prompt before
//! each decode), reads the logits it asked for (so a GPU has finished), and the two ways are
//! interleaved shape by shape, round by round, so load on the machine falls on both alike.

use std::time::Instant;

use serde::Serialize;

use uniskip_engine::hook::GraphStats;
use uniskip_engine::{BatchToken, LlamaToken, Result, Session};
use uniskip_skip::Mask;

/// One decode shape: `rows` tokens of one sequence under `mask`.
#[derive(Debug, Clone)]
pub struct Shape {
    /// What it is in a lossless generation (`verify 3 rows`, `draft 15/30 blocks`).
    pub name: String,
    /// The mask it decodes under.
    pub mask: Mask,
    /// Tokens in the batch, each with logits.
    pub rows: usize,
    /// The shape that precedes it in a lossless generation.
    pub after: Option<Box<Shape>>,
}

/// The two costs of one shape.
#[derive(Debug, Clone, Serialize)]
pub struct ShapeCost {
    /// The shape's name.
    pub shape: String,
    /// What precedes it in the switched measurement.
    pub after: String,
    /// Median milliseconds repeated (raw).
    pub raw_ms: f64,
    /// Median milliseconds right after `after`.
    pub switched_ms: f64,
    /// `raw_ms` over a plain step's raw time.
    pub raw_steps: f64,
    /// `switched_ms` over a plain step's raw time.
    pub switched_steps: f64,
}

impl ShapeCost {
    /// How much more the shape costs after a switch than repeated (0.1 = 10% more).
    pub fn overhead(&self) -> f64 {
        self.switched_ms / self.raw_ms - 1.0
    }
}

/// The cost report of one model and setting.
#[derive(Debug, Clone, Serialize)]
pub struct SwitchCosts {
    /// Median milliseconds of a plain full-depth step, repeated.
    pub plain_ms: f64,
    /// Measured rounds (samples per shape and way).
    pub rounds: usize,
    /// Per shape.
    pub shapes: Vec<ShapeCost>,
    /// What llama.cpp did with its graphs over the measurement.
    pub graph_slots: GraphStatsReport,
}

/// [`GraphStats`] for reports.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct GraphStatsReport {
    /// Decodes whose shape found its own graph slot.
    pub kept: u64,
    /// Decodes whose shape took another's slot (or an unused one).
    pub new_slot: u64,
    /// Decodes that ran the previous graph unchanged.
    pub reused: u64,
}

impl From<GraphStats> for GraphStatsReport {
    fn from(s: GraphStats) -> Self {
        GraphStatsReport {
            kept: s.kept,
            new_slot: s.new_slot,
            reused: s.reused,
        }
    }
}

/// The shapes of lossless generations at `verify_rows` verification sizes and with drafts
/// under each of `draft_masks` (named by the caller).
pub fn lossless_shapes(n_layer: usize, verify_rows: &[usize], draft_masks: &[Mask]) -> Vec<Shape> {
    let full = Mask::full(n_layer);
    let draft = |mask: &Mask| Shape {
        name: format!("draft, {}/{n_layer} blocks", mask.n_active()),
        mask: mask.clone(),
        rows: 1,
        after: None,
    };
    let verify = |rows: usize| Shape {
        name: format!("verify {rows} rows"),
        mask: full.clone(),
        rows,
        after: None,
    };
    // The mask a verification follows: the first (usually the fastest) drafting mask.
    let first_draft = draft_masks.first().map(draft);
    let mut shapes = vec![Shape {
        name: "plain step after a round".into(),
        mask: full.clone(),
        rows: 1,
        after: Some(Box::new(verify(2))),
    }];
    for &rows in verify_rows {
        shapes.push(Shape {
            after: first_draft.clone().map(Box::new),
            ..verify(rows)
        });
    }
    for mask in draft_masks {
        shapes.push(Shape {
            after: Some(Box::new(verify(2))),
            ..draft(mask)
        });
    }
    shapes
}

/// Decodes `shape` on sequence 0 at position `at` (cutting the sequence back first) and
/// returns the seconds it took to have its logits.
fn timed(session: &mut Session<'_>, text: &[LlamaToken], at: usize, shape: &Shape) -> Result<f64> {
    session.truncate(0, at)?;
    let batch = BatchToken::run_of(0, text[at..at + shape.rows].iter().copied(), true);
    let start = Instant::now();
    let rows = session.decode(&batch, Some(&shape.mask))?;
    // Reading the last row waits for the backend to finish (a GPU runs asynchronously).
    let last = session.logits(*rows.last().expect("rows asked for logits"))[0];
    let secs = start.elapsed().as_secs_f64();
    std::hint::black_box(last);
    Ok(secs)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    let n = xs.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        xs[n / 2]
    } else {
        (xs[n / 2 - 1] + xs[n / 2]) / 2.0
    }
}

/// Measures every shape of `shapes` after `text[..at]` (prefilled at full depth here)
/// `rounds` times each way, after `warmup` unrecorded rounds; `progress` hears each round.
pub fn measure(
    session: &mut Session<'_>,
    text: &[LlamaToken],
    at: usize,
    shapes: &[Shape],
    rounds: usize,
    warmup: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<SwitchCosts> {
    let n_layer = session.model().n_layer();
    let plain = Shape {
        name: "plain step".into(),
        mask: Mask::full(n_layer),
        rows: 1,
        after: None,
    };
    session.clear();
    session.prefill(0, &text[..at], Some(&plain.mask))?;
    let before = session.graph_slots();
    let mut plain_raw = Vec::new();
    let mut raw = vec![Vec::new(); shapes.len()];
    let mut switched = vec![Vec::new(); shapes.len()];
    for round in 0..warmup + rounds {
        let keep = round >= warmup;
        // Raw: the shape twice in a row, the second timed.
        timed(session, text, at, &plain)?;
        let p = timed(session, text, at, &plain)?;
        if keep {
            plain_raw.push(p);
        }
        for (i, shape) in shapes.iter().enumerate() {
            timed(session, text, at, shape)?;
            let r = timed(session, text, at, shape)?;
            // Switched: the shape that precedes it in a generation, then the shape, timed.
            let preceding = shape.after.as_deref().unwrap_or(&plain);
            timed(session, text, at, preceding)?;
            let s = timed(session, text, at, shape)?;
            if keep {
                raw[i].push(r);
                switched[i].push(s);
            }
        }
        progress(round + 1, warmup + rounds);
    }
    let after = session.graph_slots();
    let plain_ms = median(plain_raw) * 1e3;
    let shapes = shapes
        .iter()
        .zip(raw.into_iter().zip(switched))
        .map(|(shape, (r, s))| {
            let raw_ms = median(r) * 1e3;
            let switched_ms = median(s) * 1e3;
            ShapeCost {
                shape: shape.name.clone(),
                after: shape
                    .after
                    .as_ref()
                    .map_or("a plain step".into(), |a| a.name.clone()),
                raw_ms,
                switched_ms,
                raw_steps: raw_ms / plain_ms,
                switched_steps: switched_ms / plain_ms,
            }
        })
        .collect();
    Ok(SwitchCosts {
        plain_ms,
        rounds,
        shapes,
        graph_slots: GraphStatsReport {
            kept: after.kept - before.kept,
            new_slot: after.new_slot - before.new_slot,
            reused: after.reused - before.reused,
        },
    })
}

impl SwitchCosts {
    /// The report as a Markdown table.
    pub fn markdown(&self) -> String {
        let mut out = format!(
            "A plain step: {:.3} ms (median of {} rounds). Costs in plain steps.\n\n\
             | shape | repeated (raw) | after | right after it | switching adds |\n\
             |---|---:|---|---:|---:|\n",
            self.plain_ms, self.rounds
        );
        for s in &self.shapes {
            out.push_str(&format!(
                "| {} | {:.3} ({:.3} ms) | {} | {:.3} ({:.3} ms) | {:+.1}% |\n",
                s.shape,
                s.raw_steps,
                s.raw_ms,
                s.after,
                s.switched_steps,
                s.switched_ms,
                100.0 * s.overhead()
            ));
        }
        let g = self.graph_slots;
        out.push_str(&format!(
            "\nGraph slots over the measurement: {} decodes found their shape's own slot, {} took \
             another's, {} ran the previous graph unchanged.\n",
            g.kept, g.new_slot, g.reused
        ));
        out
    }
}
