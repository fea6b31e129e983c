//! Lossless decoding: whatever drafts, the output is full depth's — token for token when
//! greedy, in distribution when sampling.
//!
//! Tolerance: verification computes logits in batches of up to (draft length + 1) tokens
//! per sequence, where plain decoding computes one token at a time; llama.cpp's results
//! can differ between batch shapes by float rounding, which could flip a near-tie. The
//! shapes here stay small (drafts of at most 4-6 tokens, at most 3 sequences, caches far
//! below 256 cells). SmolLM2's logits are bit-identical across them, and its comparisons
//! are exact everywhere. Gemma 3's move by up to 0.65 between shapes, so its outputs may
//! part from full depth's only at a position where full depth's two best logits are closer
//! than [`GEMMA3_NEAR_TIE`]; a difference anywhere else fails, and so does a run where
//! fewer than half the tokens came before such a parting.

use std::cell::RefCell;
use std::ops::ControlFlow;

use crate::common::*;
use uniskip::engine::speculative::DraftCosts;
use uniskip::engine::{
    Drafter, Generation, LlamaToken, Lossless, Model, PrefillPolicy, Request, Sampling, generate,
};
use uniskip::quality::{Corpus, Slice};
use uniskip::skip::{Depth, Mask, StrategySpec, plan};

/// A copy-heavy prompt: the continuation repeats material from the prompt.
const LIST_PROMPT: &str = "Fruits: apple, banana, cherry, grape, lemon, mango, orange, peach, pear, plum. \
Again, the same fruits: apple, banana, cherry,";

/// Gap between full depth's two best logits under which Gemma 3 may choose either token
/// in a batch of another shape.
const GEMMA3_NEAR_TIE: f32 = 0.5;

/// Gap between full depth's two best logits under which a sequence whose cells sit out of
/// position order (several sequences drafting in one cache) may choose either token.
const OUT_OF_ORDER_NEAR_TIE: f32 = 0.5;

/// Prompts for plain continuation (no chat template needed).
const PLAIN_PROMPTS: [&str; 3] = [
    PROMPT,
    LIST_PROMPT,
    "def add(a, b):\n    return a + b\n\ndef",
];

fn unified(model: &Model, ratio: f64) -> Mask {
    plan(
        &StrategySpec::Unified,
        model.n_layer(),
        Depth::Ratio(ratio),
        0,
    )
    .unwrap()
}

/// Generates from `prompts` (one sequence each) with every decode step's mask `mask` and
/// lossless decoding as given.
fn run(
    model: &Model,
    prompts: &[Vec<LlamaToken>],
    max_tokens: usize,
    sampling: &Sampling,
    mask: &Mask,
    lossless: Option<Lossless<'_>>,
) -> Generation {
    let mut session = model.session(&ctx(prompts.len() as u32)).unwrap();
    generate(
        &mut session,
        &Request {
            prompts,
            max_tokens,
            prefill: PrefillPolicy::Full,
            sampling,
            interrupt: None,
            lossless,
        },
        &mut |_| mask.clone(),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap()
}

fn lossless(drafter: Drafter, draft_max: usize) -> Option<Lossless<'static>> {
    Some(Lossless {
        drafter,
        draft_max,
        draft_model: None,
        draft_mask: None,
        costs: None,
    })
}

/// Full depth's margin at each token of `reference` (the greedy full-depth continuation
/// of `prompt`): how far its logit is above the best other one, decoded one token at a
/// time as plain generation does.
fn margins(model: &Model, prompt: &[LlamaToken], reference: &[LlamaToken]) -> Vec<f32> {
    let full = Mask::full(model.n_layer());
    let mut session = model.session(&ctx(1)).unwrap();
    session
        .prefill(0, &prompt[..prompt.len() - 1], None)
        .unwrap();
    let mut last = *prompt.last().unwrap();
    let mut out = Vec::new();
    for &want in reference {
        let logits = step(&mut session, last, Some(&full));
        let second = logits
            .iter()
            .enumerate()
            .filter(|&(i, _)| i != want.0 as usize)
            .map(|(_, &x)| x)
            .fold(f32::NEG_INFINITY, f32::max);
        out.push(logits[want.0 as usize] - second);
        last = want;
    }
    out
}

/// Asserts that `got` equals `want`, except that it may part from it at a near-tie: a
/// position where full depth's margin is below `tolerance` (past that point the two
/// texts continue different contexts). Returns how many tokens were equal.
fn assert_same(
    got: &[LlamaToken],
    want: &[LlamaToken],
    margins: &[f32],
    tolerance: f32,
    what: &str,
) -> usize {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        None => {
            assert_eq!(got.len(), want.len(), "{what}: lengths differ");
            want.len()
        }
        Some(j) => {
            assert!(
                margins[j] < tolerance,
                "{what}: lossless output differs from full depth at token {j}, where full \
                 depth's margin is {:.3} (not a near-tie below {tolerance})\n got {got:?}\nwant {want:?}",
                margins[j]
            );
            j
        }
    }
}

/// Greedy lossless output of every drafter equals plain full depth's, one sequence at a
/// time and all together; with a `tolerance` above 0, they may part at a near-tie closer
/// than that (in logits), and all together at one closer than `batch_tolerance`.
fn greedy_equals_full_depth(
    model: &Model,
    prompts: &[Vec<LlamaToken>],
    draft_ratio: f64,
    tolerance: f32,
    batch_tolerance: f32,
) {
    let greedy = Sampling::greedy();
    let full = Mask::full(model.n_layer());
    let reference: Vec<Vec<LlamaToken>> = prompts
        .iter()
        .map(|p| run(model, std::slice::from_ref(p), 40, &greedy, &full, None).tokens[0].clone())
        .collect();
    let margins: Vec<Vec<f32>> = prompts
        .iter()
        .zip(&reference)
        .map(|(p, r)| margins(model, p, r))
        .collect();
    let (mut equal, mut total) = (0, 0);
    let drafting = unified(model, draft_ratio);
    for drafter in [Drafter::Mask, Drafter::Lookup, Drafter::MaskLookup] {
        let mut drafted = 0;
        for ((p, want), m) in prompts.iter().zip(&reference).zip(&margins) {
            let got = run(
                model,
                std::slice::from_ref(p),
                40,
                &greedy,
                &drafting,
                lossless(drafter, 6),
            );
            total += want.len();
            equal += assert_same(
                &got.tokens[0],
                want,
                m,
                tolerance,
                &format!("{drafter:?} on {:?}", text_of(model, p)),
            );
            drafted += got.speculation.unwrap().draft_tokens;
        }
        assert!(
            drafted > 0,
            "{drafter:?} never drafted: nothing was checked"
        );
        let together = run(model, prompts, 40, &greedy, &drafting, lossless(drafter, 4));
        for ((got, want), m) in together.tokens.iter().zip(&reference).zip(&margins) {
            total += want.len();
            equal += assert_same(
                got,
                want,
                m,
                batch_tolerance,
                &format!("{drafter:?}, batch of {}", prompts.len()),
            );
        }
        assert!(together.speculation.unwrap().draft_tokens > 0);
    }
    eprintln!("{equal} of {total} tokens equal to full depth's before any near-tie parting");
    assert!(
        equal * 2 >= total,
        "only {equal} of {total} tokens came before a near-tie: too few exact comparisons"
    );
}

fn text_of(model: &Model, tokens: &[LlamaToken]) -> String {
    let bytes: Vec<u8> = tokens.iter().flat_map(|&t| model.token_bytes(t)).collect();
    String::from_utf8_lossy(&bytes).into_owned()
}

fn tokenize_all(model: &Model, texts: &[&str]) -> Vec<Vec<LlamaToken>> {
    texts
        .iter()
        .map(|t| model.tokenize(t, true).unwrap())
        .collect()
}

#[test]
fn smollm2_greedy_lossless_output_equals_full_depth_for_every_drafter() {
    let model = load("smollm2");
    let mut prompts = tokenize_all(&model, &PLAIN_PROMPTS[..2]);
    let chat = model
        .apply_chat_template(&[uniskip::engine::ChatMessage {
            role: "user".into(),
            content: "Repeat this list, with kiwi instead of lemon: apple, banana, lemon, pear."
                .into(),
        }])
        .unwrap();
    prompts.push(model.tokenize(&chat, true).unwrap());
    // A prompt past 256 positions: a lone token's cells are no longer split across threads.
    let corpus = Corpus::load(Some(model_path("shakespeare").to_str().unwrap())).unwrap();
    prompts.push(corpus.windows(&model, Slice::Evaluation, 1, 270).unwrap()[0].clone());
    // SmolLM2's logits are bit-identical across these batch shapes (the `cache_layout`
    // tests): exact, one prompt at a time. All four together, a sequence's cells can come
    // out of position order, which changes its attention sums in F32's last bits; once in
    // a while that moves a quantized activation by a step, and a near-tie may part (seen
    // once at a margin of 0.106).
    greedy_equals_full_depth(&model, &prompts, 1.5, 0.0, OUT_OF_ORDER_NEAR_TIE);
}

#[test]
fn gemma3_greedy_lossless_output_equals_full_depth_for_every_drafter() {
    let model = load("gemma3");
    let prompts = tokenize_all(&model, &PLAIN_PROMPTS);
    // Gemma 3's repacked Q4_K weights are multiplied in groups of four rows from 4 rows
    // on: its logits move by up to 0.65 between batch shapes (measured: one token at a
    // time against 16 in one batch), about 0.13 in the gap between the two best; a gap
    // under 0.5 counts as a near-tie.
    greedy_equals_full_depth(&model, &prompts, 1.5, GEMMA3_NEAR_TIE, GEMMA3_NEAR_TIE);
}

/// Greedy output of `model` on `prompt` (32 tokens) at full depth, and with `draft`
/// drafting for it (4 tokens at most, under `draft_mask` when given): `(full depth,
/// lossless)`.
fn with_draft_model(
    model: &Model,
    draft: &Model,
    prompt: &[LlamaToken],
    draft_mask: Option<&Mask>,
) -> (Generation, Generation) {
    let greedy = Sampling::greedy();
    let full = Mask::full(model.n_layer());
    let prompts = vec![prompt.to_vec()];
    let want = run(model, &prompts, 32, &greedy, &full, None);
    let got = run(
        model,
        &prompts,
        32,
        &greedy,
        &full,
        Some(Lossless {
            drafter: Drafter::Model,
            draft_max: 4,
            draft_model: Some((draft, ctx(1))),
            draft_mask,
            costs: None,
        }),
    );
    (want, got)
}

#[test]
fn a_draft_model_with_the_same_vocabulary_drafts_and_the_output_stays_full_depths() {
    let model = load("smollm2");
    // The model itself as its own draft model: the mechanism (a second context kept level
    // with the text) is what is tested; its drafts are all right.
    let draft = load("smollm2");
    let prompts = tokenize_all(&model, &PLAIN_PROMPTS[..2]);
    for p in &prompts {
        let (want, got) = with_draft_model(&model, &draft, p, None);
        assert_eq!(got.tokens, want.tokens);
        let s = got.speculation.unwrap();
        assert!(s.draft_tokens > 0);
        assert_eq!(
            s.accepted_tokens, s.draft_tokens,
            "a model agrees with itself"
        );
    }
}

/// A draft model tuned for a mask drafts under it (as `--draft-model TUNED` sets up): the
/// model drafting for itself under a 2x mask no longer agrees with itself on every draft,
/// which shows the mask applies, and the output stays full depth's.
#[test]
fn a_draft_model_drafts_under_its_own_mask_and_the_output_stays_full_depths() {
    let model = load("smollm2");
    let draft = load("smollm2");
    let prompts = tokenize_all(&model, &PLAIN_PROMPTS[..2]);
    let spec = uniskip::skip::StrategySpec::Unified;
    let draft_mask = uniskip::skip::plan(&spec, 30, uniskip::skip::Depth::Ratio(2.0), 0).unwrap();
    let mut refused = 0;
    for p in &prompts {
        let (want, got) = with_draft_model(&model, &draft, p, Some(&draft_mask));
        assert_eq!(got.tokens, want.tokens);
        let s = got.speculation.unwrap();
        assert!(s.draft_tokens > 0);
        refused += s.draft_tokens - s.accepted_tokens;
    }
    assert!(
        refused > 0,
        "a 2x mask's drafts all equal full depth's: no mask applied?"
    );
}

#[test]
fn a_draft_model_with_another_vocabulary_is_refused() {
    let model = load("smollm2");
    let draft = load("gemma3");
    let prompts = tokenize_all(&model, &[PROMPT]);
    let mut session = model.session(&ctx(1)).unwrap();
    let err = generate(
        &mut session,
        &Request {
            prompts: &prompts,
            max_tokens: 4,
            prefill: PrefillPolicy::Full,
            sampling: &Sampling::greedy(),
            interrupt: None,
            lossless: Some(Lossless {
                drafter: Drafter::Model,
                draft_max: 4,
                draft_model: Some((&draft, ctx(1))),
                draft_mask: None,
                costs: None,
            }),
        },
        &mut |_| Mask::full(model.n_layer()),
        &mut |_| ControlFlow::Continue(()),
    )
    .unwrap_err();
    assert!(err.to_string().contains("vocabulary"), "{err}");
}

#[test]
fn ignore_eos_decodes_exactly_the_token_limit() {
    let model = load("smollm2");
    // A mask this deep emits end of text early; with ignore_eos it never may.
    let prompts = tokenize_all(&model, &[PROMPT]);
    let mut sampling = Sampling::greedy();
    sampling.ignore_eos = true;
    for lossless in [None, lossless(Drafter::MaskLookup, 4)] {
        let g = run(
            &model,
            &prompts,
            48,
            &sampling,
            &unified(&model, 3.0),
            lossless,
        );
        assert_eq!(g.tokens[0].len(), 48);
        assert!(
            g.tokens[0].iter().all(|&t| !model.is_end_of_generation(t)),
            "an end-of-generation token was chosen"
        );
    }
}

/// Two-sample chi-square statistic over categories with enough counts; rarer ones pooled.
fn two_sample_chi_square(a: &[u64], b: &[u64]) -> (f64, usize) {
    let (mut chi2, mut cells) = (0.0, 0usize);
    let (mut rest_a, mut rest_b) = (0u64, 0u64);
    for (&x, &y) in a.iter().zip(b) {
        if x + y >= 10 {
            chi2 += (x as f64 - y as f64).powi(2) / (x + y) as f64;
            cells += 1;
        } else {
            rest_a += x;
            rest_b += y;
        }
    }
    if rest_a + rest_b > 0 {
        chi2 += (rest_a as f64 - rest_b as f64).powi(2) / (rest_a + rest_b) as f64;
        cells += 1;
    }
    (chi2, cells.saturating_sub(1))
}

/// Upper 0.1% point of the chi-square distribution with `df` degrees of freedom
/// (Wilson-Hilferty).
fn chi_square_critical_999(df: usize) -> f64 {
    let k = df.max(1) as f64;
    let z = 3.09;
    k * (1.0 - 2.0 / (9.0 * k) + z * (2.0 / (9.0 * k)).sqrt()).powi(3)
}

#[test]
fn sampled_lossless_tokens_follow_full_depths_distribution() {
    let model = load("smollm2");
    let prompts = tokenize_all(&model, &["My favourite animal is the"]);
    let full = Mask::full(model.n_layer());
    // A mild mask drafts tokens close to, but not equal to, full depth's distribution:
    // the acceptance rule and the residual draw both matter.
    let drafting = unified(&model, 1.25);
    let mut sampling = Sampling::greedy();
    sampling.temperature = 1.0;
    sampling.top_k = 8;
    const SEEDS: u32 = 300;
    const POSITIONS: usize = 4;
    let n_vocab = model.n_vocab();
    let mut plain_counts = vec![0u64; POSITIONS * n_vocab];
    let mut lossless_counts = vec![0u64; POSITIONS * n_vocab];
    let mut drafted = 0;
    let mut session = model.session(&ctx(1)).unwrap();
    for seed in 0..SEEDS {
        sampling.seed = seed;
        for (counts, config, mask) in [
            (&mut plain_counts, None, &full),
            (&mut lossless_counts, lossless(Drafter::Mask, 3), &drafting),
        ] {
            let g = generate(
                &mut session,
                &Request {
                    prompts: &prompts,
                    max_tokens: POSITIONS,
                    prefill: PrefillPolicy::Full,
                    sampling: &sampling,
                    interrupt: None,
                    lossless: config,
                },
                &mut |_| mask.clone(),
                &mut |_| ControlFlow::Continue(()),
            )
            .unwrap();
            if let Some(s) = g.speculation {
                drafted += s.draft_tokens;
            }
            for (i, t) in g.tokens[0].iter().enumerate() {
                counts[i * n_vocab + t.0 as usize] += 1;
            }
        }
    }
    assert!(
        drafted > SEEDS as u64,
        "too few drafts to test the rule: {drafted}"
    );
    // Position 0 comes from the prompt's logits in both: the later ones are the test.
    let (chi2, df) = two_sample_chi_square(&plain_counts[n_vocab..], &lossless_counts[n_vocab..]);
    let critical = chi_square_critical_999(df);
    eprintln!(
        "chi2 {chi2:.1} on {df} degrees of freedom (critical {critical:.1}); {drafted} drafted"
    );
    assert!(
        chi2 < critical,
        "lossless sampling differs from full depth: chi2 {chi2:.1} > {critical:.1} ({df} df)"
    );
}

/// Lossless decoding of `prompt` (40 tokens) with `drafter` under `mask`, starting from
/// and updating `costs`.
fn with_costs(
    model: &Model,
    prompt: &[LlamaToken],
    mask: &Mask,
    drafter: Drafter,
    costs: &RefCell<DraftCosts>,
) -> Generation {
    let config = Lossless {
        costs: Some(costs),
        ..lossless(drafter, 4).unwrap()
    };
    run(
        model,
        &[prompt.to_vec()],
        40,
        &Sampling::greedy(),
        mask,
        Some(config),
    )
}

#[test]
fn a_generation_hands_back_the_costs_it_measured_and_the_next_one_starts_from_them() {
    let model = load("smollm2");
    let prompt = &tokenize_all(&model, &PLAIN_PROMPTS[..1])[0];
    let mask = unified(&model, 1.5);
    let blocks = mask.n_active();
    let costs = RefCell::new(DraftCosts::default());
    // Costs are relative to a warm plain step: a generation that drafts from its second
    // step to its end (drafting never paused, as on a loaded machine) hands nothing back.
    // Each generation checks its side of that rule; a few see the other side.
    let mut handed_back = false;
    for _ in 0..4 {
        *costs.borrow_mut() = DraftCosts::default();
        let first = with_costs(&model, prompt, &mask, Drafter::Mask, &costs);
        let stats = first.speculation.unwrap();
        assert!(stats.draft_tokens > 0);
        let measured = costs.borrow().clone();
        let verified: Vec<usize> = (2..measured.verify.len())
            .filter(|&n| measured.verify[n].is_some())
            .collect();
        if stats.plain_tokens_per_s.is_none() {
            assert!(verified.is_empty(), "handed back against a cold step");
            continue;
        }
        assert!(!verified.is_empty(), "no verification cost handed back");
        assert!(verified.iter().all(|&n| measured.verify[n].unwrap() > 0.0));
        assert!(measured.mask.get(&blocks).is_some_and(|&c| c > 0.0));
        handed_back = true;
        break;
    }
    assert!(handed_back, "no generation measured a warm plain step");

    // Costs that rule this mask out (a draft decode as dear as 3 plain steps): the next
    // generation does not draft with it at all, and its output is still full depth's.
    costs.borrow_mut().mask.insert(blocks, 3.0);
    let second = with_costs(&model, prompt, &mask, Drafter::Mask, &costs);
    let stats = second.speculation.unwrap();
    assert_eq!(
        stats.draft_tokens, 0,
        "drafted under a mask its costs rule out"
    );
    assert_eq!(stats.pauses, 1);
    let full = run(
        &model,
        &[prompt.to_vec()],
        40,
        &Sampling::greedy(),
        &Mask::full(model.n_layer()),
        None,
    );
    assert_eq!(second.tokens, full.tokens);
}
