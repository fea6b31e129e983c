//! Measuring decode speed on the running machine: the timing loop that every speed figure
//! comes from ([`speed`]) and the probe of the decode cost per block that measured speedup
//! mode plans with ([`probe`]), and lossless decoding's costs kept between runs
//! ([`draft_costs`]), and what switching between a lossless generation's decode shapes
//! costs ([`switch_costs`]). The benchmark, `run`, `plan` and the chat all measure
//! through here, so their figures mean the same thing.

pub mod draft_costs;
pub mod probe;
pub mod speed;
pub mod switch_costs;

/// The text every speed probe decodes after (the same everywhere, so runs compare).
pub const PROBE_PROMPT: &str =
    "The history of the printing press begins in the fifteenth century, when";
