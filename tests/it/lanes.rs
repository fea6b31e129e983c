//! Lanes (continuous batching in the engine): sequences that join a running session at
//! step boundaries, under different masks and one losslessly, each give the text that
//! `generate` gives them alone.

use std::ops::ControlFlow;

use crate::common;
use uniskip::engine::{
    ChatMessage, Drafter, LanePhase, LaneSpec, Lanes, LlamaToken, Lossless, Model, PrefillPolicy,
    Request, Sampling, Session, generate,
};
use uniskip::skip::{Mask, Plan, PlanSettings, Strategy};

const MAX_TOKENS: usize = 20;

fn prompt(model: &Model, text: &str) -> Vec<LlamaToken> {
    let chat = model
        .apply_chat_template(&[ChatMessage {
            role: "user".into(),
            content: text.into(),
        }])
        .expect("template");
    model.tokenize(&chat, true).expect("tokens")
}

fn plan(model: &Model, speedup: f64) -> Plan {
    Plan::new(
        PlanSettings::new(Strategy::Unified, speedup),
        model.n_layer(),
    )
    .expect("plan")
}

/// `generate` alone on a fresh session.
fn solo(model: &Model, text: &str, plan: &Plan, lossless: bool) -> String {
    let mut session = model.session(&common::ctx(1)).expect("session");
    let prompts = vec![prompt(model, text)];
    let generation = generate(
        &mut session,
        &Request {
            prompts: &prompts,
            max_tokens: MAX_TOKENS,
            prefill: PrefillPolicy::Full,
            sampling: &Sampling::greedy(),
            interrupt: None,
            lossless: lossless.then(|| Lossless::with(Drafter::MaskLookup)),
        },
        &mut |step| plan.mask(step).clone(),
        &mut |_| ControlFlow::Continue(()),
    )
    .expect("generate");
    generation.texts[0].clone()
}

/// One turn of a scheduler: prefill, one decode per mask, one round per lossless lane.
fn turn(lanes: &mut Lanes<'_>, session: &mut Session<'_>, texts: &mut [String]) {
    let n = texts.len() as i32;
    for seq in 0..n {
        while lanes.phase(seq) == Some(LanePhase::Prefilling) {
            lanes.prefill(session, seq).expect("prefill");
        }
    }
    let mut groups: Vec<(Mask, Vec<i32>)> = Vec::new();
    for seq in 0..n {
        if lanes.phase(seq) != Some(LanePhase::Decoding) || lanes.is_lossless(seq) {
            continue;
        }
        let mask = lanes.next_mask(seq).expect("a lane").clone();
        match groups.iter_mut().find(|(m, _)| *m == mask) {
            Some((_, seqs)) => seqs.push(seq),
            None => groups.push((mask, vec![seq])),
        }
    }
    for (_, seqs) in &groups {
        lanes.decode(session, seqs).expect("decode");
    }
    for seq in 0..n {
        if lanes.is_lossless(seq) {
            lanes.round(session, seq).expect("round");
        }
    }
    for seq in 0..n {
        texts[seq as usize].push_str(&lanes.take_text(seq));
        if let Some(LanePhase::Finished(_)) = lanes.phase(seq) {
            let report = lanes.leave(session, seq).expect("leave");
            texts[seq as usize].push_str(&report.rest);
        }
    }
}

/// Runs `cases` (prompt, plan, lossless) as lanes of one session, one joining every third
/// turn while the others decode; returns each lane's text and its solo text. Lanes that
/// leave, and a lossless lane's refused drafts, free cells that llama.cpp refills with the
/// others' next tokens out of position order, where attention agrees only within F32
/// rounding (docs/SERVE.md, "Exactness"): the cases keep to text with clear choices.
fn run_lanes(model: &Model, cases: &[(&str, &Plan, bool)]) -> (Vec<String>, Vec<String>) {
    let expected: Vec<String> = cases
        .iter()
        .map(|(text, plan, lossless)| solo(model, text, plan, *lossless))
        .collect();
    let mut session = model.session(&common::ctx(4)).expect("session");
    let mut lanes = Lanes::new(&session);
    let mut texts = vec![String::new(); cases.len()];
    let mut turns = 0;
    let mut joined = 0;
    loop {
        if joined < cases.len() && turns % 3 == 0 {
            let (text, plan, lossless) = cases[joined];
            let seq = lanes.free_seq().expect("a free sequence");
            assert_eq!(seq, joined as i32);
            lanes
                .join(
                    &mut session,
                    seq,
                    LaneSpec {
                        prompt: prompt(model, text),
                        max_tokens: MAX_TOKENS,
                        sampling: Sampling::greedy(),
                        prefill: PrefillPolicy::Full,
                        plan: plan.clone(),
                        lossless: lossless.then(|| Lossless::with(Drafter::MaskLookup)),
                        max_cells: 256,
                    },
                )
                .expect("join");
            joined += 1;
        }
        turn(&mut lanes, &mut session, &mut texts);
        turns += 1;
        if joined == cases.len() && lanes.busy() == 0 {
            break;
        }
        assert!(turns < 500, "the lanes never finished");
    }
    assert_eq!(session.n_cached(), 0, "leaving frees every cell");
    (texts, expected)
}

#[test]
fn lanes_that_join_mid_batch_under_other_masks_give_their_solo_text() {
    let model = common::load("smollm2");
    let full = plan(&model, 1.0);
    let skipped = plan(&model, 1.25);
    let cases = [
        ("Write a haiku about rain", &full, false),
        ("Name three colours.", &skipped, false),
        ("Tell me a joke about cats.", &full, false),
    ];
    let (texts, expected) = run_lanes(&model, &cases);
    for (i, (text, _, _)) in cases.iter().enumerate() {
        assert_eq!(texts[i], expected[i], "{text}");
    }
    assert_ne!(expected[0], expected[1]);
}

#[test]
fn a_lossless_lane_gives_full_depths_text() {
    let model = common::load("smollm2");
    let full = plan(&model, 1.0);
    let drafting = plan(&model, 2.0);
    let text = "Describe the sea in one sentence.";
    let (texts, _) = run_lanes(&model, &[(text, &drafting, true)]);
    assert_eq!(texts[0], solo(&model, text, &full, false));
}

#[test]
fn a_lossless_lane_beside_a_plain_one_gives_each_its_solo_text() {
    let model = common::load("smollm2");
    let full = plan(&model, 1.0);
    let drafting = plan(&model, 2.0);
    let cases = [
        ("Write a haiku about rain", &full, false),
        ("Describe the sea in one sentence.", &drafting, true),
    ];
    let (texts, expected) = run_lanes(&model, &cases);
    for (i, (text, _, _)) in cases.iter().enumerate() {
        assert_eq!(texts[i], expected[i], "{text}");
    }
}

#[test]
fn prompts_that_arrive_together_prefill_in_one_decode_and_give_their_solo_text() {
    let model = common::load("smollm2");
    let full = plan(&model, 1.0);
    let texts_in = [
        "Write a haiku about rain",
        "Name three colours.",
        "Tell me a joke about cats.",
    ];
    let expected: Vec<String> = texts_in
        .iter()
        .map(|t| solo(&model, t, &full, false))
        .collect();
    let mut session = model.session(&common::ctx(4)).expect("session");
    let mut lanes = Lanes::new(&session);
    let mut prompt_tokens = 0;
    for (seq, text) in texts_in.iter().enumerate() {
        let tokens = prompt(&model, text);
        prompt_tokens += tokens.len();
        let spec = LaneSpec {
            prompt: tokens,
            max_tokens: MAX_TOKENS,
            sampling: Sampling::greedy(),
            prefill: PrefillPolicy::Full,
            plan: full.clone(),
            lossless: None,
            max_cells: 256,
        };
        lanes.join(&mut session, seq as i32, spec).expect("join");
    }
    assert!(prompt_tokens < uniskip::engine::SHARED_PREFILL_ROWS);
    // Every prompt whole, in one decode: each lane has its first token chosen.
    let ran = lanes
        .prefill_shared(&mut session, &[0, 1, 2])
        .expect("shared");
    let ran_tokens: Vec<usize> = ran.iter().map(|&(_, n)| n).collect();
    assert_eq!(ran.iter().map(|&(s, _)| s).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(ran_tokens.iter().sum::<usize>(), prompt_tokens);
    for seq in 0..3 {
        assert_eq!(lanes.phase(seq), Some(LanePhase::Decoding));
    }
    let mut texts = vec![String::new(); 3];
    while lanes.busy() > 0 {
        turn(&mut lanes, &mut session, &mut texts);
    }
    assert_eq!(texts, expected);
}
