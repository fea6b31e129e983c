//! Quality of one model measured against another model's full depth: a tuned file's own
//! full depth is not the model it stands in for, its base model is. The windows, the
//! prefixes and the positions are the same as in [`super::evaluate`]; only the reference
//! distributions come from the other model.

use super::{QualityAccumulator, TeacherForcing, WindowShape};
use crate::quality::metrics::Distribution;
use uniskip_engine::{LlamaToken, Model, Result};
use uniskip_skip::Mask;

impl<'m> TeacherForcing<'m> {
    /// Runs the prefixes of `windows` on `model` at full depth and scores against
    /// `reference` (one distribution per scored token, window-major, as
    /// [`TeacherForcing::into_reference`] gives them) instead of `model`'s own full depth.
    pub fn with_reference(
        model: &'m Model,
        threads: i32,
        windows: Vec<Vec<LlamaToken>>,
        shape: WindowShape,
        reference: Vec<Distribution>,
    ) -> Result<Self> {
        let mut tf = Self::prefilled(model, threads, windows, shape)?;
        assert_eq!(
            reference.len(),
            tf.scored_tokens(),
            "one reference distribution per scored token"
        );
        tf.reference = reference;
        Ok(tf)
    }

    /// The reference distributions, window-major; the session is released.
    pub fn into_reference(self) -> Vec<Distribution> {
        self.reference
    }
}

/// Scores `reference_schedules` on `reference_model` and `schedules` on `model`, all
/// against `reference_model` at full depth, on the same `windows` (tokenized by either:
/// the two must share a vocabulary), `group` windows at a time. Returns one accumulator
/// per schedule of each list. `progress(done, total)` as in [`super::evaluate`].
#[allow(clippy::too_many_arguments)]
pub fn evaluate_against(
    reference_model: &Model,
    model: &Model,
    threads: i32,
    windows: &[Vec<LlamaToken>],
    shape: WindowShape,
    group: usize,
    reference_schedules: &[Vec<Mask>],
    schedules: &[Vec<Mask>],
    progress: &mut dyn FnMut(usize, usize),
) -> Result<(Vec<QualityAccumulator>, Vec<QualityAccumulator>)> {
    let mut on_reference = vec![QualityAccumulator::default(); reference_schedules.len()];
    let mut on_model = vec![QualityAccumulator::default(); schedules.len()];
    let groups: Vec<&[Vec<LlamaToken>]> = windows.chunks(group.max(1)).collect();
    // The same work units as `evaluate`.
    let weight = |masks: &[Mask]| -> usize { masks.iter().map(|m| m.n_active() + 10).sum() };
    let per_group: usize = reference_schedules
        .iter()
        .chain(schedules)
        .map(|m| weight(m))
        .sum();
    let total = groups.len() * per_group;
    let mut done = 0;
    progress(0, total);
    for g in groups {
        let mut tf = TeacherForcing::new(reference_model, threads, g.to_vec(), shape)?;
        for (acc, masks) in on_reference.iter_mut().zip(reference_schedules) {
            acc.merge(&tf.score(masks)?);
            done += weight(masks);
            progress(done, total);
        }
        let reference = tf.into_reference();
        let mut tf = TeacherForcing::with_reference(model, threads, g.to_vec(), shape, reference)?;
        for (acc, masks) in on_model.iter_mut().zip(schedules) {
            acc.merge(&tf.score(masks)?);
            done += weight(masks);
            progress(done, total);
        }
    }
    Ok((on_reference, on_model))
}
